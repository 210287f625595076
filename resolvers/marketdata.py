"""Market data queries: candles of any source, what the store holds. Parse, one service
call, map."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.types import Info

from app.marketdata import reads
from app.marketdata.domain.candles import INTERVALS, VENUE
from app.trading.domain.errors import UnknownMarket
from app.trading.domain.orders import MarketSpec
from graphql_schema.gateway.context import Context
from graphql_schema.marketdata.types import MarketDataCoverage, candle_node
from graphql_schema.trading.fields import market_row
from graphql_schema.trading.markets import CandleNode

Ctx = Info[Context, None]
SOURCE = (
    "VENUE (built from the platform's trades), file:<name> (an imported file) or"
    f" exchange:<name>. Stored sources have {' '.join(INTERVALS)} (1M: calendar months);"
    " quoteVolume and trades are 0 where the source does not give them."
)


async def candles(
    info: Ctx,
    symbol: str,
    interval: str,
    start: datetime,
    end: datetime | None = None,
    of: Annotated[str, strawberry.argument(name="source", description=SOURCE)] = VENUE,
) -> list[CandleNode]:
    """OHLCV candles opening in [start, end): the venue's built from its trades (1m, 5m,
    15m, 1h, 4h, 1d), another source's as stored; empty intervals are left out."""
    # (``source`` is the name GraphQL sees: in Python it is the parent value's)
    spec = await _spec(info, symbol, required=of == VENUE)
    async with info.context.rt.sessions() as session:
        found = await reads.candles(
            session,
            source=of,
            symbol=symbol,
            interval=interval,
            start=start,
            end=end or info.context.rt.now(),
        )
    return [candle_node(c, spec) for c in found]


async def _spec(info: Ctx, symbol: str, *, required: bool) -> MarketSpec | None:
    """The market's spec (figures are shown at its scale); None for a symbol that is no
    market of the venue, unless the venue is asked."""
    try:
        return (await market_row(info, symbol)).spec
    except UnknownMarket:
        if required:
            raise
        return None


async def market_data_sources(
    info: Ctx,
    of: Annotated[str | None, strawberry.argument(name="source")] = None,
    symbol: str | None = None,
) -> list[MarketDataCoverage]:
    """The stored series (imported files, exchanges) per source, symbol and interval: the
    range held and its gaps. The venue's candles are built from its trades, not stored."""
    async with info.context.rt.sessions() as session:
        found = await reads.coverage(session, source=of, symbol=symbol)
    return [MarketDataCoverage.from_coverage(c) for c in found]
