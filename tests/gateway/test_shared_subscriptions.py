"""Shared public subscriptions (graphql_schema/gateway/shared_subscriptions.py) over a real
uvicorn server and real WebSocket clients: sockets on one orderBook document share one
execution but each gets its own snapshot; a late subscriber lines up with the shared
deltas; complete, slow sockets, variables and user-specific subscriptions.

The server runs without matching engines: the test moves the book itself, as the
engine does (``markets.book_seq`` in PostgreSQL, then the outbox event on Redis), so
every sequence is under its control."""

from __future__ import annotations

import asyncio
import json
import random
import socket
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from starlette.routing import WebSocketRoute
from websockets.asyncio.client import ClientConnection, connect

from app.events.outbox import channel
from app.runtime import Runtime
from graphql_schema.gateway import shared_subscriptions
from graphql_schema.gateway.shared_subscriptions import SharedStreams
from tests.gateway.test_websocket import TRANSPORT_WS, LiveServer, serving
from tests.support.pubsub import subscribed
from tests.support.trading import trader

TIMEOUT = 5.0
SYMBOL = "BTC/USDT"
BOOK = """subscription Book($depth: Int!) { orderBook(symbol: "BTC/USDT", depth: $depth) {
  kind symbol sequence previousSequence
  bids { price quantity orders } asks { price quantity orders } } }"""
MY_ORDERS = "subscription { myOrders { orderId status quantity sequence } }"
NEXT_PREFIX = ',"type":"next","payload":'


# A server per test (fresh statistics), without engines: the test moves the book.
live = pytest.fixture(serving, name="live")


def _shared(live: LiveServer) -> SharedStreams:
    app = live.server.config.app
    slot = next(r.app for r in app.routes if isinstance(r, WebSocketRoute))
    return slot.view.shared_streams


class Book:
    """Moves the BTC/USDT book as the engine does: a new ``book_seq``, then its event.
    Its sequences start far above the engine's (which start again at 0 after every
    test): the resolvers keep recent deltas by (symbol, sequence) for the process."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.channel = channel(rt.settings.redis_prefix, f"book:{SYMBOL}", None)
        self.published = 0

    async def start(self) -> int:
        base = random.randrange(10**9, 2 * 10**9)
        async with self.rt.sessions() as session, session.begin():
            await session.execute(
                text(
                    "UPDATE markets SET book_seq = :n, applied_seq = :n, next_seq = :n"
                    " WHERE symbol = :s"
                ),
                {"n": base, "s": SYMBOL},
            )
        return base

    async def delta(self, levels: int = 1) -> int:
        async with self.rt.sessions() as session, session.begin():
            query = text(
                "UPDATE markets SET book_seq = book_seq + 1,"
                " applied_seq = greatest(applied_seq, book_seq + 1),"
                " next_seq = greatest(next_seq, book_seq + 1)"
                " WHERE symbol = :s RETURNING book_seq"
            )
            sequence = int((await session.execute(query, {"s": SYMBOL})).scalar_one())
        n = self.published = self.published + 1
        payload = {
            "symbol": SYMBOL,
            "sequence": sequence,
            "previousSequence": sequence - 1,
            "bids": [[f"{80000 - i}.00", f"0.{n:03d}", 1] for i in range(levels)],
            "asks": [[f"{90000 + i}.00", f"0.{n:03d}", 1] for i in range(levels)],
        }
        event = {"id": sequence, "topic": f"book:{SYMBOL}", "payload": payload}
        await self.rt.redis.publish(self.channel, json.dumps(event))
        return sequence


async def _open(live: LiveServer, token: str | None = None, **options: Any) -> ClientConnection:
    ws = await connect(live.ws_url, subprotocols=[TRANSPORT_WS], open_timeout=TIMEOUT, **options)
    init = {"authToken": token} if token else {}
    await ws.send(json.dumps({"type": "connection_init", "payload": init}))
    ack = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    assert ack["type"] == "connection_ack", ack
    return ws


async def _subscribe(
    ws: ClientConnection, op: str, query: str, variables: dict[str, Any] | None = None
) -> None:
    payload = {"query": query, "variables": variables or {}}
    await ws.send(json.dumps({"id": op, "type": "subscribe", "payload": payload}))


async def _book(live: LiveServer, op: str, depth: int = 5) -> ClientConnection:
    ws = await _open(live)
    await _subscribe(ws, op, BOOK, {"depth": depth})
    return ws


async def _raw(ws: ClientConnection) -> str:
    message = await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert isinstance(message, str)
    return message


async def _next(ws: ClientConnection, op: str) -> tuple[dict[str, Any], str]:
    """The next ``next`` message of operation ``op``: (its data, its payload as sent)."""
    raw = await _raw(ws)
    message = json.loads(raw)
    assert message["type"] == "next" and message["id"] == op, message
    assert "errors" not in message["payload"], message
    return message["payload"]["data"], raw.split(NEXT_PREFIX, 1)[1][:-1]


async def _joined(live: LiveServer, operations: int) -> None:
    """Until ``operations`` operations have joined the server's shared streams (an event
    broadcast before an operation joined is not its to receive)."""
    for _ in range(500):
        if _shared(live).stats.joined >= operations:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{_shared(live).stats.joined} operations joined, not {operations}")


async def _nothing(ws: ClientConnection, seconds: float = 0.3) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), seconds)


async def test_sockets_on_one_document_share_one_execution_each_with_its_snapshot(live, rt):
    book = Book(rt)
    start = await book.start()
    sockets = [await _book(live, op) for op in ("a", "b", "c")]
    try:
        for ws, op in zip(sockets, ("a", "b", "c"), strict=True):
            snapshot, _ = await _next(ws, op)  # each under its own operation id
            assert snapshot["orderBook"]["kind"] == "SNAPSHOT"
            assert snapshot["orderBook"]["sequence"] == start
        sent = [await book.delta() for _ in range(3)]
        received = {
            op: [await _next(ws, op) for _ in sent]
            for ws, op in zip(sockets, ("a", "b", "c"), strict=True)
        }
    finally:
        for ws in sockets:
            await ws.close()
    for data, _ in received["a"]:
        assert data["orderBook"]["kind"] == "DELTA"
    assert [d["orderBook"]["sequence"] for d, _ in received["a"]] == sent
    assert [p for _, p in received["a"]] == [p for _, p in received["b"]]
    assert [p for _, p in received["a"]] == [p for _, p in received["c"]]
    stats = _shared(live).stats
    assert stats.streams == 1 and stats.joined == 3
    assert stats.results == 1 + len(sent)  # one snapshot, each delta once: not per socket
    # a socket that subscribed after the shared snapshot went out read its own
    assert stats.deliveries == 3 * len(sent) + 3 - stats.heads


async def test_a_later_socket_gets_a_fresh_snapshot_then_the_shared_deltas(live, rt):
    book = Book(rt)
    await book.start()
    first = await _book(live, "early")
    late = None
    try:
        start = (await _next(first, "early"))[0]["orderBook"]["sequence"]
        early = [await book.delta() for _ in range(3)]
        for sequence in early:
            assert (await _next(first, "early"))[0]["orderBook"]["sequence"] == sequence
        late = await _book(live, "late")
        snapshot = (await _next(late, "late"))[0]["orderBook"]
        assert snapshot["kind"] == "SNAPSHOT"
        assert snapshot["sequence"] == early[-1] != start  # its own, read now
        after = [await book.delta() for _ in range(3)]
        got_first = [await _next(first, "early") for _ in after]
        got_late = [await _next(late, "late") for _ in after]
    finally:
        await first.close()
        if late is not None:
            await late.close()
    deltas = [d["orderBook"] for d, _ in got_late]
    assert deltas[0]["previousSequence"] == snapshot["sequence"]
    assert [d["sequence"] for d in deltas] == after
    assert [p for _, p in got_late] == [p for _, p in got_first]
    stats = _shared(live).stats
    assert stats.streams == 1 and stats.heads == 1 and stats.switched == 1
    # the late socket's own execution made its snapshot only; every delta ran once
    assert stats.results == 1 + len(early) + len(after)


async def test_one_socket_completing_does_not_end_the_others(live, rt):
    book = Book(rt)
    await book.start()
    leaving, staying = await _book(live, "x"), await _book(live, "y")
    try:
        await _next(leaving, "x")
        await _next(staying, "y")
        await leaving.send(json.dumps({"id": "x", "type": "complete"}))
        await asyncio.sleep(0.1)
        sequence = await book.delta()
        assert (await _next(staying, "y"))[0]["orderBook"]["sequence"] == sequence
        await _nothing(leaving)  # nothing more for the completed operation
        await _subscribe(leaving, "x2", BOOK, {"depth": 5})  # the socket goes on
        again = (await _next(leaving, "x2"))[0]["orderBook"]
        assert again["kind"] == "SNAPSHOT" and again["sequence"] == sequence
        sequence = await book.delta()
        assert (await _next(staying, "y"))[0]["orderBook"]["sequence"] == sequence
        assert (await _next(leaving, "x2"))[0]["orderBook"]["sequence"] == sequence
        await staying.send(json.dumps({"id": "y", "type": "complete"}))
        await leaving.send(json.dumps({"id": "x2", "type": "complete"}))
        await asyncio.sleep(0.2)
        assert _shared(live).streams == {}  # the last one out ended the stream
    finally:
        await leaving.close()
        await staying.close()


async def test_a_slow_socket_is_dropped_with_an_error_while_the_others_go_on(live, rt, monkeypatch):
    monkeypatch.setattr(shared_subscriptions, "QUEUE_SIZE", 4)
    # small socket buffers (the accepted sockets inherit the listening socket's), so a
    # client that stops reading blocks the server's sends after a few messages
    live.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    book = Book(rt)
    await book.start()
    fast = await _book(live, "fast")
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    stuck.connect(live.socket.getsockname())
    # max_queue=1, no compression: the client stops reading from the socket at once
    slow = await _open(live, sock=stuck, max_queue=1, compression=None)
    try:
        await _subscribe(slow, "slow", BOOK, {"depth": 5})
        await _next(fast, "fast")
        await _next(slow, "slow")
        sent = []
        for _ in range(60):  # ~25 kB each
            sent.append(await book.delta(levels=150))
            assert (await _next(fast, "fast"))[0]["orderBook"]["sequence"] == sent[-1]
        assert _shared(live).stats.dropped == 1
        got: list[int] = []
        while True:  # now read what reached the slow socket: some deltas, then the end
            message = json.loads(await _raw(slow))
            if message["type"] == "complete":
                break
            payload = message["payload"]
            if "errors" in payload:
                error = payload["errors"][0]
                continue
            got.append(payload["data"]["orderBook"]["sequence"])
        assert error["extensions"]["code"] == "TRY_AGAIN" and error["path"] == ["orderBook"]
        assert got == sent[: len(got)] and len(got) < len(sent)
        sequence = await book.delta()  # the fast socket goes on, the slow one is done
        assert (await _next(fast, "fast"))[0]["orderBook"]["sequence"] == sequence
        await _nothing(slow)
    finally:
        await fast.close()
        await slow.close()


async def test_different_depths_do_not_share(live, rt):
    book = Book(rt)
    await book.start()
    shallow, deep, also_deep = await _book(live, "s", 1), await _book(live, "d", 7), None
    try:
        await _next(shallow, "s")
        await _next(deep, "d")
        also_deep = await _book(live, "d2", 7)
        await _next(also_deep, "d2")
        sequence = await book.delta()
        for ws, op in ((shallow, "s"), (deep, "d"), (also_deep, "d2")):
            assert (await _next(ws, op))[0]["orderBook"]["sequence"] == sequence
    finally:
        for ws in (shallow, deep, also_deep):
            if ws is not None:
                await ws.close()
    shared = _shared(live)
    assert shared.stats.streams == 2  # depth 1 and depth 7
    assert shared.stats.results == 2 * 2  # per stream: one snapshot, one delta


def _order_event(user_id: int, order_id: int, sequence: int) -> str:
    payload = {
        "orderId": order_id,
        "symbol": SYMBOL,
        "status": "OPEN",
        "quantity": "1",
        "filledQuantity": "0",
        "sequence": sequence,
        "at": datetime.now(UTC).isoformat(),
    }
    return json.dumps({"id": sequence, "topic": "orders", "userId": user_id, "payload": payload})


async def test_a_user_specific_subscription_is_never_shared(live, live_gql, rt):
    alice, alice_token = await trader(live_gql, rt, "shared-alice@example.com")
    bob, bob_token = await trader(live_gql, rt, "shared-bob@example.com")
    alice_ws, bob_ws = await _open(live, alice_token), await _open(live, bob_token)
    try:
        await _subscribe(alice_ws, "mine", MY_ORDERS)  # the same document for both
        await _subscribe(bob_ws, "mine", MY_ORDERS)
        prefix = rt.settings.redis_prefix
        await subscribed(rt, channel(prefix, "orders", alice), channel(prefix, "orders", bob))
        await rt.redis.publish(channel(prefix, "orders", alice), _order_event(alice, 101, 1))
        await rt.redis.publish(channel(prefix, "orders", bob), _order_event(bob, 202, 2))
        alice_got = (await _next(alice_ws, "mine"))[0]["myOrders"]
        bob_got = (await _next(bob_ws, "mine"))[0]["myOrders"]
        await _nothing(alice_ws)
        await _nothing(bob_ws)
    finally:
        await alice_ws.close()
        await bob_ws.close()
    assert alice_got["sequence"] == 1 and bob_got["sequence"] == 2
    assert alice_got["orderId"] != bob_got["orderId"]
    assert _shared(live).stats.joined == 0


TRADES = 'subscription { trades(symbol: "BTC/USDT") { tradeId price quantity takerSide } }'


def _trade_event(trade_id: int) -> str:
    payload = {
        "tradeId": trade_id,
        "symbol": SYMBOL,
        "price": "90000",
        "quantity": f"0.{trade_id:03d}",
        "takerSide": "BUY",
        "at": datetime.now(UTC).isoformat(),
    }
    return json.dumps({"id": trade_id, "topic": f"trades:{SYMBOL}", "payload": payload})


async def test_trades_are_shared_and_a_later_socket_gets_the_trades_after_it_joined(live, rt):
    name = channel(rt.settings.redis_prefix, f"trades:{SYMBOL}", None)
    first, second, later = await _open(live), await _open(live), None
    try:
        await _subscribe(first, "t1", TRADES)
        await _subscribe(second, "t2", TRADES)
        await _joined(live, 2)
        await subscribed(rt, name)
        await rt.redis.publish(name, _trade_event(1))
        one = [await _next(first, "t1"), await _next(second, "t2")]
        later = await _open(live)
        await _subscribe(later, "t3", TRADES)
        await _joined(live, 3)
        await rt.redis.publish(name, _trade_event(2))
        two = [await _next(first, "t1"), await _next(second, "t2"), await _next(later, "t3")]
        await _nothing(later, 0.2)  # trade 1 happened before it joined
    finally:
        for ws in (first, second, later):
            if ws is not None:
                await ws.close()
    assert [d["trades"]["tradeId"] for d, _ in one + two] == [1, 1, 2, 2, 2]
    assert one[0][1] == one[1][1] and two[0][1] == two[1][1] == two[2][1]
    stats = _shared(live).stats
    assert stats.streams == 1 and stats.joined == 3 and stats.heads == 0
    assert stats.results == 2


async def test_an_error_of_the_shared_execution_reaches_every_socket(live, rt):
    sockets = [await _book(live, op, depth=0) for op in ("e1", "e2")]  # depth 0: refused
    try:
        for ws, op in zip(sockets, ("e1", "e2"), strict=True):
            message = json.loads(await _raw(ws))
            assert message["id"] == op and message["type"] == "next", message
            assert message["payload"]["data"] is None
            assert message["payload"]["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED"
            assert json.loads(await _raw(ws)) == {"id": op, "type": "complete"}
    finally:
        for ws in sockets:
            await ws.close()
    assert _shared(live).stats.joined == 2  # both through the shared path
