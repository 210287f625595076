"""Each event of a subscription is executed with fresh DataLoaders: a field read through a
loader shows the value as of that event, not as of the first one.

Strawberry builds the context once per WebSocket connection (and the gateway once per
operation); a subscription's events all execute against it. The test serves a small schema
of its own (the public one's paperUpdates reads its account through loaders too, tested in
tests/paper/test_paper_updates_ws.py) through
the real view (real uvicorn server, real WebSocket clients, both protocols): an outbox
topic whose events name a market, and the market read through ``market_by_id``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
import strawberry
from sqlalchemy import text
from starlette.routing import WebSocketRoute
from strawberry.types import Info
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from app.asgi import create_app
from app.core.settings import Settings
from app.events.outbox import channel
from app.events.topics.base import Topic
from app.runtime import Runtime
from graphql_schema.gateway.access import public
from graphql_schema.gateway.extensions import OperationPolicy
from graphql_schema.gateway.limits import DocumentParser, QueryLimits
from graphql_schema.gateway.view import GraphQLView
from graphql_schema.trading.markets import MarketNode
from resolvers.common import stream_events
from tests.gateway.test_websocket import LEGACY_WS, TRANSPORT_WS, LiveServer
from tests.support.pubsub import subscribed

TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class _Changed:
    """The test topic's payload."""

    n: int
    market_id: int

    def to_wire(self) -> dict[str, Any]:
        return {"n": self.n, "marketId": self.market_id}

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> _Changed:
        return cls(n=wire["n"], market_id=wire["marketId"])


CHANGES = Topic("test-market-changes", _Changed)
TOPIC = CHANGES.named()
SYMBOL = "BTC/USDT"
WATCH = "subscription { marketChanges { n market { symbol status } } }"


@strawberry.type
class _Query:
    ok: bool = strawberry.field(resolver=lambda: True, extensions=public())


@strawberry.type
class _MarketChanged:
    n: int
    market_id: strawberry.Private[int]

    @strawberry.field
    async def market(self, info: Info) -> MarketNode:
        return MarketNode.from_row(await info.context.loaders.market_by_id.load(self.market_id))


@strawberry.type
class _Subscription:
    @strawberry.subscription(extensions=public())
    async def market_changes(self, info: Info) -> AsyncGenerator[_MarketChanged, None]:
        def convert(p: _Changed) -> _MarketChanged:
            return _MarketChanged(n=p.n, market_id=p.market_id)

        async for event in stream_events(info, CHANGES, convert):
            yield event


_schema = strawberry.Schema(
    query=_Query,
    subscription=_Subscription,
    extensions=[OperationPolicy, DocumentParser, QueryLimits],
)


@pytest.fixture
def live(settings: Settings) -> Iterator[LiveServer]:
    """The real app (its pub/sub hub, its runtime) serving the schema above."""
    server = LiveServer(create_app(settings.model_copy(update={"trading_engine_enabled": False})))
    server.start()
    app = server.server.config.app
    slot = next(r.app for r in app.routes if isinstance(r, WebSocketRoute))
    slot.view = GraphQLView(schema=_schema, rt=slot.view.rt)
    yield server
    server.stop()


class _Protocol:
    def __init__(self, subprotocol: Subprotocol) -> None:
        self.subprotocol = subprotocol
        legacy = subprotocol == LEGACY_WS
        self.subscribe, self.next = ("start", "data") if legacy else ("subscribe", "next")

    async def open(self, live: LiveServer, query: str) -> ClientConnection:
        ws = await connect(live.ws_url, subprotocols=[self.subprotocol], open_timeout=TIMEOUT)
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert ack["type"] == "connection_ack", ack
        await ws.send(json.dumps({"id": "w", "type": self.subscribe, "payload": {"query": query}}))
        return ws

    async def data(self, ws: ClientConnection) -> dict[str, Any]:
        message = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert message["type"] == self.next, message
        assert "errors" not in message["payload"], message
        return message["payload"]["data"]


async def _publish(rt: Runtime, name: str, n: int, market_id: int) -> None:
    event = {"id": n, "topic": TOPIC, "payload": {"n": n, "marketId": market_id}}
    await rt.redis.publish(name, json.dumps(event))


async def _set_status(rt: Runtime, status: str) -> int:
    async with rt.sessions() as session, session.begin():
        query = text("UPDATE markets SET status = :status WHERE symbol = :s RETURNING id")
        return int((await session.execute(query, {"status": status, "s": SYMBOL})).scalar_one())


@pytest.mark.parametrize("subprotocol", [TRANSPORT_WS, LEGACY_WS])
async def test_each_event_reads_through_fresh_loaders(live, rt, subprotocol):
    protocol = _Protocol(subprotocol)
    name = channel(rt.settings.redis_prefix, TOPIC, None)
    market_id = await _set_status(rt, "OPEN")
    ws = await protocol.open(live, WATCH)
    try:
        await subscribed(rt, name)
        await _publish(rt, name, 1, market_id)
        first = (await protocol.data(ws))["marketChanges"]
        assert first == {"n": 1, "market": {"symbol": SYMBOL, "status": "OPEN"}}

        await _set_status(rt, "HALTED")
        await _publish(rt, name, 2, market_id)
        second = (await protocol.data(ws))["marketChanges"]
    finally:
        await ws.close()
    assert second == {"n": 2, "market": {"symbol": SYMBOL, "status": "HALTED"}}
