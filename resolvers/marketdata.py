"""Market data queries: candles of any source, what the store holds, a source's trades.
Parse, one service call, map."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.types import Info

from app.marketdata import reads, trade_reads
from app.marketdata.domain.candles import INTERVALS, VENUE
from app.trading.domain.errors import UnknownMarket
from app.trading.domain.orders import MarketSpec
from graphql_schema.exchanges.markets import Venue
from graphql_schema.gateway.context import Context
from graphql_schema.marketdata.types import (
    MarketDataCoverage,
    MarketTrade,
    MarketTradeConnection,
    MarketTradeSeries,
    candle_node,
)
from graphql_schema.paging import to_connection
from graphql_schema.trading.fields import market_row
from graphql_schema.trading.markets import CandleNode
from resolvers import exchange_markets

Ctx = Info[Context, None]
SOURCE = (
    "VENUE (built from the platform's trades), file:<name> (an imported file) or"
    f" exchange:<name>. Stored sources have {' '.join(INTERVALS)} (1M: calendar months):"
    " held, merged from a finer interval held, or else built from the source's trades;"
    " quoteVolume and trades are 0 where the source does not give them."
)
VENUE_ARGUMENT = (
    "An exchange: its candles (fetched through ccxt into the store as source"
    " exchange:<id>, only what the store lacks); source must then be left out."
)
STORED_SOURCE = "file:<name> (an imported file) or exchange:<name>; a bare name is file:<name>."


async def candles(
    info: Ctx,
    symbol: str,
    interval: str,
    start: datetime,
    end: datetime | None = None,
    of: Annotated[str, strawberry.argument(name="source", description=SOURCE)] = VENUE,
    venue: Annotated[Venue, strawberry.argument(description=VENUE_ARGUMENT)] = Venue.PLATFORM,
) -> list[CandleNode]:
    """OHLCV candles opening in [start, end): the venue's built from its trades (1m, 5m,
    15m, 1h, 4h, 1d), another source's as stored; empty intervals are left out."""
    # (``source`` is the name GraphQL sees: in Python it is the parent value's)
    if venue is not Venue.PLATFORM:
        end = end or info.context.rt.now()
        return await exchange_markets.candles(info, venue, of, symbol, interval, start, end)
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


async def market_trade_series(
    info: Ctx,
    of: Annotated[str | None, strawberry.argument(name="source")] = None,
    symbol: str | None = None,
) -> list[MarketTradeSeries]:
    """The trades held per source and symbol: the first and last trade's time, how many.
    Candles of such a series (where none are held) are built from them."""
    async with info.context.rt.sessions() as session:
        found = await trade_reads.trade_series(session, source=of, symbol=symbol)
    return [MarketTradeSeries.from_series(s) for s in found]


async def market_trades(
    info: Ctx,
    of: Annotated[str, strawberry.argument(name="source", description=STORED_SOURCE)],
    symbol: str,
    start: datetime | None = None,
    end: datetime | None = None,
    first: int = 50,
    after: str | None = None,
) -> MarketTradeConnection:
    """A stored source's trades of ``symbol`` at times in [start, end), oldest first (the
    venue's own trades: ``recentTrades``)."""
    async with info.context.rt.sessions() as session:
        page = await trade_reads.list_trades(
            session, source=of, symbol=symbol, start=start, end=end, first=first, after=after
        )
    spec = await _spec(info, symbol, required=False)
    return to_connection(  # type: ignore[return-value]
        MarketTradeConnection, page, lambda row: MarketTrade.from_row(row, spec)
    )
