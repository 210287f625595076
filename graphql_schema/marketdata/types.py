"""Market data types: what the store holds per source (coverage, gaps; trade series),
candles of any source shown as the venue's ``CandleNode``, and a source's trades."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry
from strawberry import relay

from app.marketdata.domain.candles import Candle, Gap
from app.marketdata.reads import Coverage
from app.marketdata.trade_reads import TradeSeries
from app.trading import reads as trading_reads
from app.trading.domain.orders import MarketSpec
from db.models.marketdata import MarketTrade as TradeRow
from graphql_schema.trading.enums import OrderSide
from graphql_schema.trading.markets import CandleNode, places


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


@strawberry.type
class MarketTradeSeries:
    """The trades held of one symbol from one source (an imported file, an exchange)."""

    source: str
    symbol: str
    first: datetime = strawberry.field(description="Time of the first trade held.")
    last: datetime = strawberry.field(description="Time of the last trade held.")
    trades: int

    @classmethod
    def from_series(cls, s: TradeSeries) -> MarketTradeSeries:
        return cls(source=s.source, symbol=s.symbol, first=s.first, last=s.last, trades=s.trades)


@strawberry.type
class MarketTrade:
    """A trade of a stored source; figures at the market's scale when the symbol is a
    market of the venue."""

    trade_id: str = strawberry.field(
        description="The source's id; for a file without ids: <µs since 1970>:<price>:<amount>:<n>."
    )
    price: Decimal
    quantity: Decimal
    taker_side: OrderSide | None = strawberry.field(description="Null: the source does not say.")
    at: datetime

    @classmethod
    def from_row(cls, row: TradeRow, spec: MarketSpec | None) -> MarketTrade:
        shown = places(spec)
        return cls(
            trade_id=row.trade_id,
            price=shown.show(row.price, shown.price),
            quantity=shown.quantity_of(row.amount),
            taker_side=None if row.side is None else OrderSide(row.side),
            at=row.time,
        )


@strawberry.type
class MarketTradeConnection(relay.Connection[MarketTrade]):
    """Trades in time order (trades of the same time as imported), paged by keyset cursor."""
