"""Live trading over a real uvicorn server and real WebSocket clients: fills reach both
traders on ``myFills``; the order book stream sends a snapshot then deltas, and a client
that misses a sequence recovers by subscribing again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from app.asgi import create_app
from app.core.settings import Settings
from app.events import topics
from app.events.topics import channel
from tests.gateway.test_websocket import TRANSPORT_WS, LiveServer
from tests.support import GraphQLClient
from tests.support.pubsub import subscribed
from tests.support.trading import trader

TIMEOUT = 5.0
PLACE = """mutation($input: PlaceOrderInput!) { placeOrder(input: $input) {
  __typename ... on OrderPayload { order { status } } ... on Error { code } } }"""
MY_FILLS = "subscription { myFills { tradeId side liquidity price quantity fee feeCurrency } }"
BOOK = """subscription { orderBook(symbol: "BTC/USDT", depth: 5) {
  kind sequence previousSequence
  bids { price quantity orders } asks { price quantity orders } } }"""


@pytest.fixture
def live(settings: Settings) -> Iterator[LiveServer]:
    """A server per test, with the matching engines running inside it."""
    server = LiveServer(create_app(settings))
    server.start()
    yield server
    server.stop()


async def _subscribe(live: LiveServer, query: str, token: str | None = None) -> ClientConnection:
    ws = await connect(live.ws_url, subprotocols=[TRANSPORT_WS], open_timeout=TIMEOUT)
    await ws.send(
        json.dumps({"type": "connection_init", "payload": {"authToken": token} if token else {}})
    )
    ack = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    assert ack["type"] == "connection_ack", ack
    await ws.send(json.dumps({"id": "s", "type": "subscribe", "payload": {"query": query}}))
    return ws


async def _next(ws: ClientConnection) -> dict[str, Any]:
    message = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    assert message["type"] == "next", message
    assert "errors" not in message["payload"], message
    return message["payload"]["data"]


async def _place(gql: GraphQLClient, token: str, side: str, quantity: str, price: str) -> str:
    body = await gql.data(
        PLACE,
        {
            "input": {
                "symbol": "BTC/USDT",
                "side": side,
                "type": "LIMIT",
                "quantity": quantity,
                "price": price,
            }
        },
        token=token,
    )
    assert body["placeOrder"]["__typename"] == "OrderPayload", body
    return body["placeOrder"]["order"]["status"]


async def _until_engines_own(gql: GraphQLClient, token: str) -> None:
    """The server's engines take their markets in the background at start-up."""
    for _ in range(100):
        status = await _place(gql, token, "BUY", "0.0001", "50000")
        if status != "NEW":
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the server's engines never applied an order")


async def test_both_traders_receive_their_fill_on_my_fills(live, live_gql, rt):
    seller_id, seller = await trader(live_gql, rt, "ws-seller@example.com", BTC="1")
    buyer_id, buyer = await trader(live_gql, rt, "ws-buyer@example.com", USDT="10000")
    await _until_engines_own(live_gql, buyer)
    seller_ws = await _subscribe(live, MY_FILLS, seller)
    buyer_ws = await _subscribe(live, MY_FILLS, buyer)
    prefix = rt.settings.redis_prefix
    await subscribed(rt, *(channel(prefix, topics.FILLS.named(), u) for u in (seller_id, buyer_id)))
    try:
        assert await _place(live_gql, seller, "SELL", "0.01", "90000") == "OPEN"
        assert await _place(live_gql, buyer, "BUY", "0.01", "90000") == "FILLED"
        sold = (await _next(seller_ws))["myFills"]
        bought = (await _next(buyer_ws))["myFills"]
    finally:
        await seller_ws.close()
        await buyer_ws.close()
    assert sold["tradeId"] == bought["tradeId"]
    assert (sold["side"], sold["liquidity"], sold["fee"]) == ("SELL", "MAKER", "0.900000")
    assert (bought["side"], bought["liquidity"], bought["fee"]) == ("BUY", "TAKER", "1.800000")
    assert sold["price"] == bought["price"] == "90000.00" and sold["quantity"] == "0.0100"


async def test_order_book_stream_snapshot_deltas_and_recovery(live, live_gql, rt):
    _, maker = await trader(live_gql, rt, "ws-maker@example.com", BTC="1", USDT="100000")
    await _until_engines_own(live_gql, maker)
    ws = await _subscribe(live, BOOK)
    try:
        snapshot = (await _next(ws))["orderBook"]
        assert snapshot["kind"] == "SNAPSHOT" and snapshot["previousSequence"] is None
        assert [b["price"] for b in snapshot["bids"]] == ["50000.00"]
        await asyncio.sleep(0.3)
        await _place(live_gql, maker, "SELL", "0.01", "91000")
        first = (await _next(ws))["orderBook"]
        assert first["kind"] == "DELTA"
        assert first["previousSequence"] == snapshot["sequence"] < first["sequence"]
        assert first["asks"] == [{"price": "91000.00", "quantity": "0.0100", "orders": 1}]
        await _place(live_gql, maker, "SELL", "0.02", "91000")
        await _place(live_gql, maker, "BUY", "0.01", "89000")
        missed = (await _next(ws))["orderBook"]  # this client "loses" this delta
        after_gap = (await _next(ws))["orderBook"]
        assert missed["previousSequence"] == first["sequence"]
        # The client holds first["sequence"]: the next delta does not follow it.
        assert after_gap["previousSequence"] != first["sequence"]
    finally:
        await ws.close()
    again = await _subscribe(live, BOOK)  # recover: a new snapshot
    try:
        fresh = (await _next(again))["orderBook"]
    finally:
        await again.close()
    assert fresh["kind"] == "SNAPSHOT" and fresh["sequence"] == after_gap["sequence"]
    assert fresh["asks"] == [{"price": "91000.00", "quantity": "0.0300", "orders": 2}]
    assert [b["price"] for b in fresh["bids"]] == ["89000.00", "50000.00"]
