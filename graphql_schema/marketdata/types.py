"""Market data types: what the store holds per source (coverage, gaps), and candles of
any source shown as the venue's ``CandleNode``."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry

from app.marketdata.domain.candles import Candle, Gap
from app.marketdata.reads import Coverage
from app.trading import reads as trading_reads
from app.trading.domain.orders import MarketSpec
from graphql_schema.trading.markets import CandleNode


def candle_node(candle: Candle, spec: MarketSpec | None) -> CandleNode:
    """A candle at its market's scale (as it is when the symbol is no market of ours);
    a quote volume or trade count the source does not give is 0."""
    row = trading_reads.Candle(
        candle.open_time,
        candle.open,
        candle.high,
        candle.low,
        candle.close,
        candle.volume,
        candle.quote_volume or Decimal(0),
        candle.trades or 0,
    )
    return CandleNode.from_row(row, spec)


@strawberry.type
class CandleGap:
    """Candles missing from a stored series."""

    start: datetime = strawberry.field(description="Open time of the first missing candle.")
    end: datetime = strawberry.field(description="Open time of the next candle held.")
    missing: int

    @classmethod
    def from_gap(cls, gap: Gap) -> CandleGap:
        return cls(start=gap.start, end=gap.end, missing=gap.missing)


@strawberry.type
class MarketDataCoverage:
    """One stored series (source, symbol, interval): the range held and its gaps."""

    source: str
    symbol: str
    interval: str
    first: datetime = strawberry.field(description="Open time of the first candle held.")
    last: datetime = strawberry.field(description="Open time of the last candle held.")
    candles: int
    missing: int = strawberry.field(description="Candles missing between first and last.")
    gap_count: int
    gaps: list[CandleGap] = strawberry.field(description="The first 20 gaps.")

    @classmethod
    def from_coverage(cls, c: Coverage) -> MarketDataCoverage:
        return cls(
            source=c.source,
            symbol=c.symbol,
            interval=c.interval,
            first=c.first,
            last=c.last,
            candles=c.candles,
            missing=c.missing,
            gap_count=c.gap_count,
            gaps=[CandleGap.from_gap(g) for g in c.gaps],
        )
