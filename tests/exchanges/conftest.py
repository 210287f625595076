"""The five exchange stand-ins (one server each, for the module) and the runtime's
connector pointed at them, ccxt's rate limiter off, for the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from app.exchanges.ccxt_edge import CcxtConnector
from app.runtime import Runtime
from tests.support.exchanges import StandIn, stand_in

EXCHANGES = ("binance", "kraken", "okx", "bybit", "coinbase")


@pytest.fixture(scope="module")
def stand_ins() -> Iterator[dict[str, StandIn]]:
    servers = {name: stand_in(name).start() for name in EXCHANGES}
    yield servers
    for server in servers.values():
        server.stop()


def connector_for(rt: Runtime, stand_ins: dict[str, StandIn], **options: object) -> CcxtConnector:
    return CcxtConnector(
        ring=rt.exchange_keys,
        api_bases={name: server.url for name, server in stand_ins.items()},
        rate_limit=False,
        backoff_seconds=0.01,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
async def exchanges(
    rt: Runtime, stand_ins: dict[str, StandIn]
) -> AsyncIterator[dict[str, StandIn]]:
    """The stand-ins, fresh, with ``rt`` talking to them."""
    original = rt.exchanges
    rt.exchanges = connector_for(rt, stand_ins)
    for server in stand_ins.values():
        server.reset()
    yield stand_ins
    await rt.exchanges.aclose()
    rt.exchanges = original
