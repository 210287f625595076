"""Market data, the read side: ``candles`` of any source (the one interface later parts,
a simulated venue, paper trading and backtests, read through) and what the store holds
(``coverage``).

The venue's candles are built from its trades (app/trading/reads.py). A stored source
answers with the candles held at the interval asked for; when it holds only a finer
interval that divides it (1m for 1h), its candles are merged in PostgreSQL; when it
holds neither, they are built from its trades (none: no candles). Candles held win over
trades, per series: a source with 1h candles and trades answers 1h and 1d from its
candles, 1m from its trades."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import ValidationFailed
from app.marketdata.candle_sql import ohlcv_select
from app.marketdata.domain.candles import (
    INTERVALS,
    VENUE,
    Candle,
    Gap,
    Interval,
    interval_named,
    parse_source,
    parse_symbol,
)
from app.marketdata.domain.layouts import LATEST
from app.trading import markets
from app.trading import reads as trading_reads
from db.models.marketdata import MarketCandle, MarketTrade
from db.raw import driver

MAX_CANDLES = trading_reads.MAX_CANDLES
MAX_GAPS = 20  # gaps listed per series by ``coverage`` (all are counted)
TABLE = MarketCandle.__tablename__
TRADES = MarketTrade.__tablename__


async def candles(
    session: AsyncSession,
    *,
    source: str = VENUE,
    symbol: str,
    interval: str,
    start: datetime,
    end: datetime,
) -> list[Candle]:
    """The candles of ``symbol`` from ``source`` opening in [start, end), at most
    MAX_CANDLES; intervals without a candle are left out."""
    source = parse_source(source)
    if source == VENUE:
        return await _venue_candles(session, symbol, interval, start, end)
    wanted = interval_named(interval)
    _check_range(wanted, start, end)
    return await _stored(session, source, parse_symbol(symbol), wanted, start, end)


async def stream_candles(
    session: AsyncSession,
    *,
    source: str,
    symbol: str,
    interval: str,
    start: datetime,
    end: datetime,
) -> AsyncIterator[Candle]:
    """All candles in [start, end), however many, read MAX_CANDLES at a time."""
    grid = interval_named(interval)
    while start < end:
        page_end = min(end, grid.shift(grid.floor(start), MAX_CANDLES))
        for candle in await candles(
            session, source=source, symbol=symbol, interval=interval, start=start, end=page_end
        ):
            yield candle
        start = page_end


def _check_range(interval: Interval, start: datetime, end: datetime) -> None:
    # the venue's checks and words (app/trading/reads.py), for every source alike
    if end <= start:
        raise ValidationFailed("to must be after from", field="to")
    if end > LATEST:  # no candle is stored after it; past year 9999 is no datetime
        raise ValidationFailed(f"to is at most {LATEST.date().isoformat()}", field="to")
    if interval.periods(start, end) > MAX_CANDLES:
        raise ValidationFailed(f"At most {MAX_CANDLES} candles per query", field="from")


async def _venue_candles(
    session: AsyncSession, symbol: str, interval: str, start: datetime, end: datetime
) -> list[Candle]:
    market = await markets.market_by_symbol(session, symbol)
    built = await trading_reads.candles(
        session, market_id=market.id, interval=interval, start=start, end=end
    )
    return [
        Candle(c.open_time, c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.trades)
        for c in built
    ]


_HELD = f"""
    SELECT i FROM unnest($3::text[]) AS i
    WHERE EXISTS (SELECT 1 FROM {TABLE} WHERE source = $1 AND symbol = $2 AND interval = i)
"""  # noqa: S608 (no input in the text: the table and column names)
_EXACT = f"""
    SELECT open_time AS t, open, high, low, close, volume, quote_volume, trades FROM {TABLE}
    WHERE source = $1 AND symbol = $2 AND interval = $3 AND open_time >= $4 AND open_time < $5
    ORDER BY open_time
"""  # noqa: S608 (no input in the text: the table and column names)


def _by_step(time: str, parameter: int) -> str:
    """The open time of ``time``'s candle: the step and the grid's origin are parameters."""
    return f"date_bin(${parameter}::interval, {time}, ${parameter + 1}::timestamptz)"


def _by_month(time: str) -> str:
    return f"date_trunc('month', {time}, 'UTC')"  # date_bin takes no months


def _merged(bucket: str) -> str:
    """Candles of a finer interval merged per ``bucket`` (the coarser open time)."""
    return ohlcv_select(
        bucket=bucket,
        rows=f"{TABLE} WHERE source = $1 AND symbol = $2 AND interval = $3"
        " AND open_time >= $4 AND open_time < $5",
        order=("open_time",),
        open="open",
        high="high",
        low="low",
        close="close",
        volume="sum(volume)",
        quote_volume="CASE WHEN count(quote_volume) = count(*) THEN sum(quote_volume) END",
        trades="CASE WHEN count(trades) = count(*) THEN sum(trades) END",
    )


def _from_trades(bucket: str) -> str:
    """Candles built from the source's trades per ``bucket``; trades of the same time are
    taken in the order they were imported (``id``)."""
    return ohlcv_select(
        bucket=bucket,
        rows=f"{TRADES} WHERE source = $1 AND symbol = $2 AND time >= $3 AND time < $4",
        order=("time", "id"),
        volume="sum(amount)",
        quote_volume="sum(price * amount)",
        trades="count(*)",
    )


_MERGED = _merged(_by_step("open_time", 6))
_MERGED_BY_MONTH = _merged(_by_month("open_time"))
_FROM_TRADES = _from_trades(_by_step("time", 5))
_FROM_TRADES_BY_MONTH = _from_trades(_by_month("time"))


async def _stored(
    session: AsyncSession,
    source: str,
    symbol: str,
    wanted: Interval,
    start: datetime,
    end: datetime,
) -> list[Candle]:
    connection = await driver(session)
    finer = [i.name for i in INTERVALS.values() if i.divides(wanted)]
    held = {r["i"] for r in await connection.fetch(_HELD, source, symbol, finer)}
    if wanted.name in held:
        rows = await connection.fetch(_EXACT, source, symbol, wanted.name, start, end)
        return [_candle(r) for r in rows]
    # candles opening in [start, end): whole candles of the finer interval's grid, or the
    # trades in them
    first, until = wanted.ceil(start), wanted.ceil(end)
    if held:
        coarsest = max((INTERVALS[name] for name in held), key=lambda i: i.step)
        by_month, by_step = _MERGED_BY_MONTH, _MERGED
        found: tuple[Any, ...] = (source, symbol, coarsest.name, first, until)
    else:
        by_month, by_step = _FROM_TRADES_BY_MONTH, _FROM_TRADES
        found = (source, symbol, first, until)
    if wanted.months:
        assert wanted.months == 1, "a bucket of several months is not written yet"
        rows = await connection.fetch(by_month, *found)
    else:
        rows = await connection.fetch(by_step, *found, wanted.step, wanted.origin)
    return [_candle(r) for r in rows]


def _plain(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.normalize()


def _candle(r: Any) -> Candle:
    return Candle(
        r["t"],
        r["open"].normalize(),
        r["high"].normalize(),
        r["low"].normalize(),
        r["close"].normalize(),
        r["volume"].normalize(),
        _plain(r["quote_volume"]),
        None if r["trades"] is None else int(r["trades"]),
    )


@dataclass(frozen=True, slots=True)
class Coverage:
    """What the store holds of one series: its range, how many candles, what is missing."""

    source: str
    symbol: str
    interval: str
    first: datetime
    last: datetime
    candles: int
    missing: int  # candles missing between first and last
    gap_count: int
    gaps: list[Gap] = field(default_factory=list)  # the first MAX_GAPS


_SERIES = f"""
    SELECT source, symbol, interval, min(open_time) AS first, max(open_time) AS last,
           count(*) AS candles
    FROM {TABLE}
    WHERE ($1::text IS NULL OR source = $1) AND ($2::text IS NULL OR symbol = $2)
    GROUP BY source, symbol, interval ORDER BY source, symbol, interval
"""  # noqa: S608 (no input in the text: the table and column names)
_GAPS = f"""
    WITH steps AS (
        SELECT * FROM unnest($3::text[], $4::int[], $5::interval[]) AS s(interval, months, step)
    ),
    held AS (
        SELECT c.source, c.symbol, c.interval, c.open_time, s.months, s.step,
               lag(c.open_time) OVER (PARTITION BY c.source, c.symbol, c.interval
                                      ORDER BY c.open_time) AS previous
        FROM {TABLE} c JOIN steps s ON s.interval = c.interval
        WHERE ($1::text IS NULL OR c.source = $1) AND ($2::text IS NULL OR c.symbol = $2)
    ),
    following AS (  -- the open time after the previous candle's (months on the UTC calendar)
        SELECT source, symbol, interval, open_time,
               ((previous AT TIME ZONE 'UTC') + make_interval(months => months))
                   AT TIME ZONE 'UTC' + step AS expected
        FROM held
    ),
    gaps AS (
        SELECT source, symbol, interval, expected AS start, open_time AS "end",
               count(*) OVER series AS gap_count,
               row_number() OVER (series ORDER BY open_time) AS n
        FROM following WHERE open_time > expected
        WINDOW series AS (PARTITION BY source, symbol, interval)
    )
    SELECT source, symbol, interval, start, "end", gap_count FROM gaps WHERE n <= $6
    ORDER BY source, symbol, interval, start
"""  # noqa: S608 (no input in the text: the table and column names)


async def coverage(
    session: AsyncSession, *, source: str | None = None, symbol: str | None = None
) -> list[Coverage]:
    """Per stored series (source, symbol, interval): the range held and its gaps."""
    source = None if source is None else parse_source(source)
    symbol = None if symbol is None else parse_symbol(symbol)
    if source == VENUE:
        return []  # built from trades on demand, never stored
    connection = await driver(session)
    series = await connection.fetch(_SERIES, source, symbol)
    steps = list(INTERVALS.values())
    gap_rows = await connection.fetch(
        _GAPS,
        source,
        symbol,
        [i.name for i in steps],
        [i.months for i in steps],
        [timedelta(0) if i.months else i.step for i in steps],
        MAX_GAPS,
    )
    found: dict[tuple[str, str, str], tuple[int, list[Gap]]] = {}
    for g in gap_rows:
        step = INTERVALS[g["interval"]]
        _, listed = found.setdefault((g["source"], g["symbol"], g["interval"]), (0, []))
        listed.append(Gap(g["start"], g["end"], step.count(g["start"], g["end"])))
        found[(g["source"], g["symbol"], g["interval"])] = (g["gap_count"], listed)
    result = []
    for s in series:
        key = (s["source"], s["symbol"], s["interval"])
        gap_count, listed = found.get(key, (0, []))
        step = INTERVALS.get(s["interval"])
        expected = 0 if step is None else step.count(s["first"], s["last"]) + 1
        result.append(
            Coverage(*key, s["first"], s["last"], s["candles"], expected - s["candles"],
                     gap_count, listed)
        )  # fmt: skip
    return result
