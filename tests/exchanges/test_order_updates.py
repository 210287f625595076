"""``exchangeOrderUpdates`` over a real uvicorn server and a real WebSocket client: the
owner of a connected account receives each change of an order placed there (recorded,
answered, filled by the exchange and read by the poller) and each fill once, however
often reconciliation reads it; the events are the ones written with the rows (the
outbox). Another user's subscription to the account gets ``NotFound`` and ends. The
order's ``fills`` are read through a DataLoader (one statement for any number of orders).
The real ccxt talks to the stand-ins."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from app.events import topics
from app.exchanges import following
from tests.exchanges.test_orders_api import _account, _place
from tests.gateway.test_websocket import TRANSPORT_WS, LiveServer, serving
from tests.support.documents import signed_in
from tests.support.exchanges import fill
from tests.support.pubsub import subscribed
from tests.support.trading import scalar

TIMEOUT = 5.0
UPDATES = """subscription($id: ID) { exchangeOrderUpdates(accountId: $id) {
  __typename
  ... on ExchangeOrderUpdate { accountId order { id clientOrderId status filled } }
  ... on ExchangeFillUpdate { accountId fill { orderId tradeId price quantity fee } }
  ... on Error { code field } } }"""
FILLS = """query($id: ID!) { node(id: $id) { ... on ExchangeAccount { orders(first: 5) {
  edges { node { id fills { orderId tradeId price quantity feeCurrency } } } } } } }"""


# A server with its outbox relay; the test's own runtime talks to the stand-ins.
live = pytest.fixture(serving, name="live")


async def _open(live: LiveServer, token: str, account_id: str | None) -> ClientConnection:
    ws = await connect(live.ws_url, subprotocols=[TRANSPORT_WS], open_timeout=TIMEOUT)
    await ws.send(json.dumps({"type": "connection_init", "payload": {"authToken": token}}))
    ack = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    assert ack["type"] == "connection_ack", ack
    payload = {"query": UPDATES, "variables": {"id": account_id}}
    await ws.send(json.dumps({"id": "x", "type": "subscribe", "payload": payload}))
    return ws


async def _receive(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


async def _update(ws: ClientConnection) -> dict[str, Any]:
    message = await _receive(ws)
    assert message["type"] == "next" and "errors" not in message["payload"], message
    return message["payload"]["data"]["exchangeOrderUpdates"]


async def _events(rt, topic: topics.Topic[Any]) -> int:
    return await scalar(rt, "SELECT count(*) FROM outbox WHERE topic = $1", topic.named())


@pytest.mark.parametrize("name", ["binance", "kraken"])
async def test_the_owner_follows_an_orders_changes_and_each_fill_once(
    live, gql, rt, exchanges, name
):
    token, account_id, _ = await _account(gql, exchanges, name)
    owner = await scalar(rt, "SELECT id FROM users WHERE email = 'carol@example.com'")
    other = (await signed_in(gql, "dave@example.com"))["accessToken"]

    theirs = await _open(live, other, account_id)
    assert await _update(theirs) == {"__typename": "NotFound", "code": "NOT_FOUND",
                                     "field": "accountId"}  # fmt: skip
    assert (await _receive(theirs))["type"] == "complete"
    await theirs.close()

    ws = await _open(live, token, account_id)
    try:
        prefix = rt.settings.redis_prefix
        channels = [topics.channel(prefix, t.named(), owner)
                    for t in (topics.EXCHANGE_ORDERS, topics.EXCHANGE_FILLS)]  # fmt: skip
        await subscribed(rt, *channels)
        placed = (await _place(gql, token, account_id))["exchangeOrder"]
        recorded = await _update(ws)
        assert recorded == {"__typename": "ExchangeOrderUpdate", "accountId": account_id,
                            "order": {"id": placed["id"], "clientOrderId": placed["clientOrderId"],
                                      "status": "PENDING_SUBMIT", "filled": "0"}}  # fmt: skip
        answered = await _update(ws)
        assert answered["order"]["status"] == "OPEN"

        [at_exchange] = exchanges[name].orders
        trade = fill(exchanges[name], at_exchange, Decimal("0.004"))
        await following.poll_live(rt)
        await following.poll_live(rt)  # read again: nothing new
        got = [await _update(ws), await _update(ws)]
        kinds = sorted(u["__typename"] for u in got)
        assert kinds == ["ExchangeFillUpdate", "ExchangeOrderUpdate"], got
        moved = next(u for u in got if u["__typename"] == "ExchangeOrderUpdate")
        assert (moved["order"]["status"], moved["order"]["filled"]) == ("PARTIALLY_FILLED",
                                                                        "0.004")  # fmt: skip
        filled = next(u for u in got if u["__typename"] == "ExchangeFillUpdate")["fill"]
        assert (filled["orderId"], filled["tradeId"]) == (placed["id"], trade.id)
        assert Decimal(filled["quantity"]) == Decimal("0.004")
        assert Decimal(filled["price"]) == Decimal("40000")
        assert await _events(rt, topics.EXCHANGE_FILLS) == 1
        assert await _events(rt, topics.EXCHANGE_ORDERS) == 3
    finally:
        await ws.close()


async def test_an_orders_fills_are_read_in_one_statement(gql, rt, exchanges, sql_statements):
    token, account_id, _ = await _account(gql, exchanges, "binance")
    ids = []
    for _ in range(3):
        ids.append((await _place(gql, token, account_id))["exchangeOrder"]["id"])
    for order in exchanges["binance"].orders[:2]:
        fill(exchanges["binance"], order, Decimal("0.01"))
    await following.poll_live(rt)
    sql_statements.reset()
    account = (await gql.data(FILLS, {"id": account_id}, token=token))["node"]
    nodes = [e["node"] for e in reversed(account["orders"]["edges"])]  # oldest first
    assert [n["id"] for n in nodes] == ids
    assert [len(n["fills"]) for n in nodes] == [1, 1, 0]
    assert {n["fills"][0]["orderId"] for n in nodes[:2]} == set(ids[:2])
    assert [n["fills"][0]["feeCurrency"] for n in nodes[:2]] == ["USDT", "USDT"]
    assert [s for s in sql_statements.statements if "exchange_fills" in s] == [
        next(s for s in sql_statements.statements if "exchange_fills" in s)
    ]
