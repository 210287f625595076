"""``paperUpdates`` over a real uvicorn server and real WebSocket clients, both protocols:
the owner receives the order update of a command and, when the live market trades
through the order, the fill and the order's FILLED update (the live-price consumer's
step), each with the account as of that event (fresh DataLoaders per event); the ids are
the nodes ``paperAccount { orders fills }`` shows. Another user's subscription to the
account gets ``NotFound`` and ends; logging out closes the owner's socket."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal as D
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from app.events import topics
from app.paper import live as paper_live
from tests.gateway.test_websocket import LEGACY_WS, TRANSPORT_WS, LiveServer, serving
from tests.support.documents import LOGOUT
from tests.support.money import user_id, verified_user
from tests.support.trading import funded_user, trade_at, trader

pytestmark = pytest.mark.usefixtures("engines")

TIMEOUT = 5.0
OPEN = """
mutation($input: OpenPaperAccountInput!) { openPaperAccount(input: $input) {
  ... on PaperAccountPayload { paperAccount { id } } } }"""
PLACE = """
mutation($input: PlacePaperOrderInput!) { placePaperOrder(input: $input) {
  __typename ... on PaperOrderPayload { order { id status } } } }"""
UPDATES = """subscription($id: ID!) { paperUpdates(paperAccountId: $id) {
  __typename
  ... on PaperOrderUpdate { paperAccountId resets sequence
    order { id clientOrderId status filledQuantity price }
    paperAccount { balances { currency available held } } }
  ... on PaperFillUpdate { paperAccountId resets sequence
    fill { id clientOrderId price quantity liquidity }
    paperAccount { balances { currency available held } } }
  ... on Error { code field } } }"""
NODES = """query($id: ID!) { paperAccount(id: $id) {
  orders(first: 5) { edges { node { id } } } fills(first: 5) { edges { node { id } } } } }"""


# A server (its outbox relay and paper consumer running); the test's own engines match
# the live orders.
live = pytest.fixture(serving, name="live")


class Client:
    """One protocol's subscribe / next / complete messages."""

    def __init__(self, subprotocol: Subprotocol) -> None:
        legacy = subprotocol == LEGACY_WS
        self.subprotocol = subprotocol
        self.subscribe, self.next = ("start", "data") if legacy else ("subscribe", "next")

    async def open(self, live: LiveServer, token: str, variables: dict) -> ClientConnection:
        ws = await connect(live.ws_url, subprotocols=[self.subprotocol], open_timeout=TIMEOUT)
        await ws.send(json.dumps({"type": "connection_init", "payload": {"authToken": token}}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert ack["type"] == "connection_ack", ack
        payload = {"query": UPDATES, "variables": variables}
        await ws.send(json.dumps({"id": "p", "type": self.subscribe, "payload": payload}))
        return ws

    async def receive(self, ws: ClientConnection) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))

    async def update(self, ws: ClientConnection) -> dict[str, Any]:
        message = await self.receive(ws)
        assert message["type"] == self.next and message["id"] == "p", message
        assert "errors" not in message["payload"], message
        return message["payload"]["data"]["paperUpdates"]


async def until_subscribed(rt, owner: int) -> None:
    """Until the server listens on the user's paper channels (an event before is lost)."""
    names = [topics.channel(rt.settings.redis_prefix, t.named(), owner)
             for t in (topics.PAPER_FILLS, topics.PAPER_ORDERS)]  # fmt: skip
    for _ in range(200):
        counts = dict(await rt.redis.pubsub_numsub(*names))
        if all(counts.get(name.encode()) for name in names):
            return
        await asyncio.sleep(0.025)
    raise AssertionError("the server never subscribed to the paper channels")


def balances(update: dict[str, Any]) -> dict[str, tuple[D, D]]:
    return {b["currency"]: (D(b["available"]), D(b["held"]))
            for b in update["paperAccount"]["balances"]}  # fmt: skip


@pytest.mark.parametrize("subprotocol", [TRANSPORT_WS, LEGACY_WS])
async def test_the_owner_follows_orders_and_fills_and_nobody_else(live, live_gql, rt, subprotocol):
    client = Client(subprotocol)
    maker = await funded_user(rt, "maker", BTC="5")
    taker = await funded_user(rt, "taker", USDT="1000000")
    await trade_at(rt, maker, taker, "90000")
    auth = await verified_user(live_gql, rt, "paper@example.com")
    token = auth["accessToken"]
    owner = await user_id(rt, "paper@example.com")
    _, other = await trader(live_gql, rt, "other@example.com")
    start = {"name": "Live", "symbol": "BTC/USDT",
             "balances": [{"currency": "USDT", "amount": "10000"}]}  # fmt: skip
    opened = await live_gql.data(OPEN, {"input": start}, token=token)
    account_id = opened["openPaperAccount"]["paperAccount"]["id"]
    variables = {"id": account_id}

    theirs = await client.open(live, other, variables)
    assert await client.update(theirs) == {"__typename": "NotFound", "code": "NOT_FOUND",
                                           "field": "paperAccountId"}  # fmt: skip
    assert (await client.receive(theirs))["type"] == "complete"
    await theirs.close()

    ws = await client.open(live, token, variables)
    try:
        await until_subscribed(rt, owner)
        order = {"paperAccountId": account_id, "clientOrderId": "dip", "side": "BUY",
                 "type": "LIMIT", "quantity": "0.01", "price": "89000"}  # fmt: skip
        placed = await live_gql.data(PLACE, {"input": order}, token=token)
        assert placed["placePaperOrder"]["order"]["status"] == "OPEN"
        opened_update = await client.update(ws)
        assert opened_update["__typename"] == "PaperOrderUpdate"
        assert opened_update["order"]["clientOrderId"] == "dip"
        assert opened_update["order"]["status"] == "OPEN"
        assert opened_update["order"]["id"] == placed["placePaperOrder"]["order"]["id"]
        assert (opened_update["paperAccountId"], opened_update["resets"]) == (account_id, 0)
        assert balances(opened_update)["USDT"][1] > 0 and balances(opened_update)["BTC"] == (0, 0)

        await trade_at(rt, maker, taker, "88900")  # through the order: the consumer fills it
        await paper_live.run_once(rt)
        fill = await client.update(ws)
        filled = await client.update(ws)
    finally:
        await ws.close()
    assert fill["__typename"] == "PaperFillUpdate" and filled["__typename"] == "PaperOrderUpdate"
    assert (fill["fill"]["clientOrderId"], fill["fill"]["liquidity"]) == ("dip", "MAKER")
    assert D(fill["fill"]["price"]) == D("89000") and D(fill["fill"]["quantity"]) == D("0.01")
    assert (filled["order"]["status"], D(filled["order"]["filledQuantity"])) == (
        "FILLED",
        D("0.01"),
    )
    assert opened_update["sequence"] < fill["sequence"] == filled["sequence"]
    # read for this event, not the first one: the position is there, the hold is gone
    assert balances(fill)["BTC"] == (D("0.01"), 0) and balances(fill)["USDT"][1] == 0
    nodes = (await live_gql.data(NODES, variables, token=token))["paperAccount"]
    assert [e["node"]["id"] for e in nodes["fills"]["edges"]] == [fill["fill"]["id"]]
    assert [e["node"]["id"] for e in nodes["orders"]["edges"]] == [filled["order"]["id"]]


async def test_logging_out_closes_the_owners_socket(live, live_gql, rt):
    client = Client(TRANSPORT_WS)
    auth = await verified_user(live_gql, rt, "paper@example.com")
    token = auth["accessToken"]
    start = {"name": "Out", "symbol": "BTC/USDT",
             "balances": [{"currency": "USDT", "amount": "100"}]}  # fmt: skip
    opened = await live_gql.data(OPEN, {"input": start}, token=token)
    ws = await client.open(live, token, {"id": opened["openPaperAccount"]["paperAccount"]["id"]})
    await until_subscribed(rt, await user_id(rt, "paper@example.com"))
    await live_gql.data(LOGOUT, {"t": auth["refreshToken"]}, token=token)
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
