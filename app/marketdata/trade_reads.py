"""Market data, the trades held per source: the series (``trade_series``: per source and
symbol, the range and the count) and the trades themselves (``list_trades``: in time
order, trades of the same time as they were imported, paged by a keyset cursor on the
time and the row's id). The venue's own trades are its fills (``recentTrades``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import ValidationFailed
from app.marketdata.domain.candles import EPOCH, VENUE, parse_source, parse_symbol
from db.models.marketdata import MarketTrade
from db.queries import Page, check_page_size, decode_cursor_keys, encode_cursor_keys

CURSOR_KIND = MarketTrade.__tablename__
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class TradeSeries:
    """The trades held of one symbol from one source."""

    source: str
    symbol: str
    first: datetime
    last: datetime
    trades: int


async def trade_series(
    session: AsyncSession, *, source: str | None = None, symbol: str | None = None
) -> list[TradeSeries]:
    """Per source and symbol with trades held: the first and last trade's time, how many."""
    statement = select(
        MarketTrade.source,
        MarketTrade.symbol,
        func.min(MarketTrade.time),
        func.max(MarketTrade.time),
        func.count(),
    ).group_by(MarketTrade.source, MarketTrade.symbol)
    if source is not None:
        statement = statement.where(MarketTrade.source == parse_source(source))
    if symbol is not None:
        statement = statement.where(MarketTrade.symbol == parse_symbol(symbol))
    rows = await session.execute(statement.order_by(MarketTrade.source, MarketTrade.symbol))
    return [TradeSeries(*row) for row in rows]


async def list_trades(
    session: AsyncSession,
    *,
    source: str,
    symbol: str,
    start: datetime | None = None,
    end: datetime | None = None,
    first: int,
    after: str | None = None,
) -> Page[MarketTrade]:
    """``symbol``'s trades from ``source`` in [start, end), oldest first."""
    source = parse_source(source)
    if source == VENUE:
        raise ValidationFailed("The venue's trades are recentTrades(symbol)", field="source")
    symbol = parse_symbol(symbol)
    check_page_size(first)
    if start is not None and end is not None and end <= start:
        raise ValidationFailed("end must be after start", field="end")
    statement = select(MarketTrade).where(
        MarketTrade.source == source, MarketTrade.symbol == symbol
    )
    if start is not None:
        statement = statement.where(MarketTrade.time >= start)
    if end is not None:
        statement = statement.where(MarketTrade.time < end)
    if after is not None:
        time, key = _position(after)
        statement = statement.where(
            tuple_(MarketTrade.time, MarketTrade.id)
            > tuple_(literal(time, MarketTrade.time.type), literal(key))
        )
    statement = statement.order_by(MarketTrade.time, MarketTrade.id).limit(first + 1)
    found = list((await session.scalars(statement)).all())
    return Page(
        items=[(_cursor(trade), trade) for trade in found[:first]],
        has_next_page=len(found) > first,
        has_previous_page=after is not None,
    )


def _cursor(trade: MarketTrade) -> str:
    return encode_cursor_keys(((trade.time - EPOCH) // _MICROSECOND, trade.id), kind=CURSOR_KIND)


def _position(after: str) -> tuple[datetime, int]:
    """The (time, id) a cursor points at."""
    micros, key = decode_cursor_keys(after, kind=CURSOR_KIND, count=2)
    try:
        return EPOCH + micros * _MICROSECOND, key
    except OverflowError:
        raise ValidationFailed("Invalid cursor", field="after") from None
