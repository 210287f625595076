"""Candles, intervals and sources: the value types of market data, their validation,
gap detection and aggregation to a coarser interval. Pure (no database, no I/O).

A candle's ``open_time`` is the start of its interval, on the interval's grid: every
interval up to a day counts from 1970-01-01 00:00 UTC (so a day starts at midnight UTC,
an hour on the hour, as exchanges do); a week starts on Monday 00:00 UTC; a month (``1M``,
ccxt's name) on the 1st at 00:00 UTC, and lasts as long as the calendar says."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from app.core.errors import ValidationFailed

VENUE = "VENUE"  # the platform's own trades
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MONDAY = datetime(1970, 1, 5, tzinfo=UTC)


YEAR = timedelta(days=365)
DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Interval:
    """A candle length and the grid its candles open on: ``origin + k * step``. A calendar
    interval (``months`` > 0) opens on the 1st 00:00 UTC of every ``months``-th month from
    1970-01; its candles differ in length, and ``step`` is its nominal length (a year /
    12 per month: what annualising a monthly return uses), no candle's."""

    name: str
    step: timedelta
    origin: datetime = EPOCH
    months: int = 0

    def floor(self, at: datetime) -> datetime:
        """The open time of the candle of this interval that ``at`` falls in."""
        if self.months:
            return _month_start(_month_index(at) // self.months * self.months)
        return at - (at - self.origin) % self.step

    def ceil(self, at: datetime) -> datetime:
        """The first open time of this interval at or after ``at``."""
        floor = self.floor(at)
        return floor if floor == at else self.next(floor)

    def is_aligned(self, at: datetime) -> bool:
        if self.months:
            return self.floor(at) == at
        return (at - self.origin) % self.step == timedelta(0)

    def shift(self, open_time: datetime, candles: int) -> datetime:
        """The open time ``candles`` candles after ``open_time`` (before, when negative)."""
        if self.months:
            return _month_start(_month_index(open_time) + candles * self.months)
        return open_time + candles * self.step

    def next(self, open_time: datetime) -> datetime:
        """The open time of the candle after the one opening at ``open_time``."""
        return self.shift(open_time, 1)

    def length(self, open_time: datetime) -> timedelta:
        """How long the candle opening at ``open_time`` lasts."""
        return self.next(open_time) - open_time

    def divides(self, coarser: Interval) -> bool:
        """Whether whole candles of this interval make up each candle of ``coarser``."""
        if coarser.months:
            if self.months:
                return coarser.months % self.months == 0
            return DAY % self.step == timedelta(0) and self.is_aligned(EPOCH)
        if self.months:
            return False
        return coarser.step % self.step == timedelta(0) and self.is_aligned(coarser.origin)

    def count(self, start: datetime, end: datetime) -> int:
        """How many candles open in [start, end) when both are on the grid."""
        if self.months:
            return (_month_index(end) - _month_index(start)) // self.months
        return (end - start) // self.step

    def periods(self, start: datetime, end: datetime) -> float:
        """How many candles [start, end) spans, for the limits of a request: ``(end -
        start) / step``; for a calendar interval, the candles opening in it."""
        if self.months:
            return self.count(self.ceil(start), self.ceil(end))
        return (end - start) / self.step


def _month_index(at: datetime) -> int:
    """Months from 1970-01 to the month ``at`` falls in, in UTC."""
    utc = at.astimezone(UTC)
    return (utc.year - EPOCH.year) * 12 + utc.month - 1


def _month_start(index: int) -> datetime:
    year, month = divmod(index, 12)
    return datetime(EPOCH.year + year, month + 1, 1, tzinfo=UTC)


def _interval(name: str, **length: float) -> Interval:
    return Interval(name, timedelta(**length))


INTERVALS: dict[str, Interval] = {
    i.name: i
    for i in (
        _interval("1m", minutes=1),
        _interval("3m", minutes=3),
        _interval("5m", minutes=5),
        _interval("15m", minutes=15),
        _interval("30m", minutes=30),
        _interval("1h", hours=1),
        _interval("2h", hours=2),
        _interval("4h", hours=4),
        _interval("6h", hours=6),
        _interval("8h", hours=8),
        _interval("12h", hours=12),
        _interval("1d", days=1),
        Interval("1w", timedelta(weeks=1), MONDAY),
        Interval("1M", YEAR / 12, months=1),
    )
}


def interval_named(name: str) -> Interval:
    found = INTERVALS.get(name)
    if found is None:
        raise ValidationFailed(f"interval is one of {', '.join(INTERVALS)}", field="interval")
    return found


_SOURCE = re.compile(r"(?:(file|exchange):)?([a-z0-9][a-z0-9._-]{0,39})", re.ASCII)
_SYMBOL = re.compile(r"[A-Z0-9]{1,20}/[A-Z0-9]{1,20}", re.ASCII)


def parse_source(text: str) -> str:
    """``VENUE``, ``file:<name>`` or ``exchange:<name>``; a bare name is a file source
    (``binance`` is ``file:binance``). Names are lower case letters, digits, ``.-_``."""
    if text == VENUE:
        return VENUE
    found = _SOURCE.fullmatch(text.strip().lower())
    if found is None:
        raise ValidationFailed(
            "source is VENUE, file:<name> or exchange:<name> (name: a-z 0-9 . - _, at most 40)",
            field="source",
        )
    return f"{found.group(1) or 'file'}:{found.group(2)}"


def parse_symbol(text: str) -> str:
    """``BASE/QUOTE`` in upper case (``btc/usdt`` is ``BTC/USDT``)."""
    symbol = text.strip().upper()
    if _SYMBOL.fullmatch(symbol) is None:
        raise ValidationFailed("symbol is BASE/QUOTE, e.g. BTC/USDT", field="symbol")
    return symbol


@dataclass(frozen=True, slots=True)
class Candle:
    """OHLCV of one interval. ``volume`` is in the base currency; ``quote_volume`` and
    ``trades`` are None when the source does not say."""

    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal | None = None
    trades: int | None = None


# What a NUMERIC(38, 18) column holds.
MAX_INTEGER_DIGITS = 20
MAX_DECIMALS = 18


def out_of_range(value: Decimal) -> str | None:
    """Why ``value`` cannot be stored (None: it can)."""
    if not value.is_finite():
        return "not a finite number"
    if value and value.adjusted() >= MAX_INTEGER_DIGITS:
        return f"more than {MAX_INTEGER_DIGITS} digits before the point"
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_DECIMALS:
        return f"more than {MAX_DECIMALS} decimals"
    return None


def problems(candle: Candle, interval: Interval) -> list[str]:
    """Why ``candle`` is not a valid candle of ``interval`` (empty: it is)."""
    found: list[str] = []
    if not interval.is_aligned(candle.open_time):
        found.append(f"open time {candle.open_time.isoformat()} is not on the {interval.name} grid")
    prices = {"open": candle.open, "high": candle.high, "low": candle.low, "close": candle.close}
    found += [f"{name} is not positive" for name, value in prices.items() if value <= 0]
    if candle.high < candle.low:
        found.append("high is below low")
    else:
        if candle.high < max(candle.open, candle.close):
            found.append("high is below open or close")
        if candle.low > min(candle.open, candle.close):
            found.append("low is above open or close")
    if candle.volume < 0:
        found.append("volume is negative")
    if candle.quote_volume is not None and candle.quote_volume < 0:
        found.append("quote volume is negative")
    if candle.trades is not None and candle.trades < 0:
        found.append("trades is negative")
    return found


@dataclass(frozen=True, slots=True)
class Gap:
    """Candles missing between two held ones: ``missing`` of them, from ``start`` (the
    first missing open time) up to ``end`` (the open time of the next candle held)."""

    start: datetime
    end: datetime
    missing: int


def gaps(open_times: Iterable[datetime], interval: Interval) -> Iterator[Gap]:
    """The gaps in ascending, distinct, aligned ``open_times``."""
    previous: datetime | None = None
    for at in open_times:
        if previous is not None:
            if at <= previous:
                raise ValueError("open times must ascend")
            expected = interval.next(previous)
            if at > expected:
                yield Gap(expected, at, interval.count(expected, at))
        previous = at


def aggregate(candles: Iterable[Candle], to: Interval) -> Iterator[Candle]:
    """Candles (ascending by open time, of an interval that divides ``to``) merged into
    candles of ``to``: first open, highest high, lowest low, last close, summed volumes.
    A coarse candle is made of the finer ones held, whether or not all of them are."""
    bucket: list[Candle] = []
    for candle in candles:
        if bucket and candle.open_time <= bucket[-1].open_time:
            raise ValueError("candles must ascend by open time")
        if bucket and to.floor(candle.open_time) != to.floor(bucket[0].open_time):
            yield _merged(bucket, to)
            bucket = []
        bucket.append(candle)
    if bucket:
        yield _merged(bucket, to)


def _merged(bucket: list[Candle], to: Interval) -> Candle:
    quotes = [c.quote_volume for c in bucket if c.quote_volume is not None]
    trades = [c.trades for c in bucket if c.trades is not None]
    return Candle(
        open_time=to.floor(bucket[0].open_time),
        open=bucket[0].open,
        high=max(c.high for c in bucket),
        low=min(c.low for c in bucket),
        close=bucket[-1].close,
        volume=sum((c.volume for c in bucket), Decimal(0)),
        quote_volume=sum(quotes, Decimal(0)) if len(quotes) == len(bucket) else None,
        trades=sum(trades) if len(trades) == len(bucket) else None,
    )
