"""The OHLCV file layouts, pure: which column holds what, and one row's fields (text from
a CSV line, or numbers and text from a JSON item) turned into a Candle or refused with a
reason.

Layouts understood:
  - CSV with a header naming the columns (common names, any order: ``timestamp``/``time``/
    ``date``/``open_time``/``unix``..., ``open``, ``high``, ``low``, ``close``,
    ``volume``; optionally a quote volume and a trade count);
  - headerless CSV and JSON arrays in ccxt's order ``[ts, o, h, l, c, v]`` (fetch_ohlcv);
    rows of 12 fields are Binance klines (``[open_time, o, h, l, c, v, close_time,
    quote_volume, trades, ...]``);
  - JSON objects with the same names as CSV headers.
Timestamps are epoch seconds, milliseconds, microseconds or nanoseconds (told apart by
size), or ISO 8601 (UTC unless an offset is given). A time is the candle's open, or, for
files labelled so (``label="end"``), its end: a date on its last day (``2012-01-31`` for
January, as pandas labels monthly data) or an inclusive close time (``00:59:59.999``)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Literal

from app.marketdata.domain.candles import (
    DAY,
    EPOCH,
    Candle,
    Interval,
    out_of_range,
    problems,
)


class Rejected(Exception):
    """This row is not a candle; ``reason`` says why. The rest of the file goes on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownLayout(ValueError):
    """The file is in no layout we read: nothing is imported."""


FIELDS = ("timestamp", "open", "high", "low", "close", "volume", "quote_volume", "trades")
REQUIRED = FIELDS[:6]

# Header names (lower case, spaces and dashes as underscores), by field; the first listed
# wins when a file has several (``unix`` before ``date`` in CryptoDataDownload files).
_ALIASES: dict[str, tuple[str, ...]] = {
    "timestamp": (
        "timestamp", "unix", "unix_timestamp", "open_time", "opentime", "ts", "t", "time",
        "datetime", "date", "date_time", "time_period_start", "kline_open_time",
    ),
    "open": ("open", "o", "open_price", "price_open", "opening_price"),
    "high": ("high", "h", "high_price", "price_high"),
    "low": ("low", "l", "low_price", "price_low"),
    "close": ("close", "c", "close_price", "price_close", "closing_price"),
    "volume": ("volume", "v", "vol", "base_volume", "volume_traded", "base_asset_volume"),
    "quote_volume": (
        "quote_volume", "quote_asset_volume", "quotevolume", "quote_av", "qav", "turnover",
    ),
    "trades": ("trades", "number_of_trades", "trade_count", "tradecount", "count", "n"),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Columns:
    """Where each field is: a position in the row (CSV, JSON arrays) or a key (JSON
    objects). ``quote_volume`` and ``trades`` may be absent."""

    timestamp: int | str
    open: int | str
    high: int | str
    low: int | str
    close: int | str
    volume: int | str
    quote_volume: int | str | None = None
    trades: int | str | None = None

    @property
    def width(self) -> int:
        """Fields a positional row needs at least."""
        return 1 + max(p for p in (getattr(self, f) for f in FIELDS) if isinstance(p, int))


CCXT = Columns(0, 1, 2, 3, 4, 5)
BINANCE_KLINE = Columns(0, 1, 2, 3, 4, 5, quote_volume=7, trades=8)


def positional(width: int) -> Columns:
    """The columns of a headerless row of ``width`` fields."""
    if width >= 12:
        return BINANCE_KLINE
    if width >= 6:
        return CCXT
    raise UnknownLayout(f"rows have {width} fields: [ts, open, high, low, close, volume] expected")


def column_key(name: str) -> str:
    """A column's name compared with the aliases: lower case, spaces and dashes as ``_``."""
    return re.sub(r"[\s\-]+", "_", name.strip().strip('"').lower())


def find_named(names: Sequence[str], aliases: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Per field of ``aliases``, the position in ``names`` of the first of its aliases
    there (fields none of whose aliases is there are left out)."""
    keys = [column_key(n) for n in names]
    found: dict[str, int] = {}
    for field, options in aliases.items():
        position = next((keys.index(a) for a in options if a in keys), None)
        if position is not None:
            found[field] = position
    return found


def from_header(names: Sequence[str], *, symbol: str) -> Columns:
    """The columns a header names. ``Volume BTC`` / ``Volume USDT`` (the base and quote of
    ``symbol``) are the volume and the quote volume."""
    base, quote = (column_key(part) for part in symbol.split("/"))
    extra = {"volume": (f"volume_{base}",), "quote_volume": (f"volume_{quote}",)}
    found = find_named(names, {f: (*_ALIASES[f], *extra.get(f, ())) for f in FIELDS})
    if "timestamp" not in found and column_key(names[0]) == "":
        found["timestamp"] = 0  # an unnamed first column: the index pandas writes
    missing = [f for f in REQUIRED if f not in found]
    if missing:
        raise UnknownLayout(f"the header names no column for {', '.join(missing)}")
    return Columns(**found)


def from_object_keys(keys: Sequence[str]) -> Columns:
    """The columns of a JSON object with these keys."""
    found = {field: keys[n] for field, n in find_named(keys, _ALIASES).items()}
    missing = [f for f in REQUIRED if f not in found]
    if missing:
        raise Rejected(f"no {', '.join(missing)} key")
    return Columns(**found)


def is_header(fields: Sequence[str]) -> bool:
    """Whether a first CSV row names columns rather than holding a candle."""
    try:
        parse_time(fields[0])
    except Rejected:
        return True
    return False


_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?", re.ASCII)
_LONGEST_NUMBER = 200  # characters; longer text is no number we store


def parse_decimal(value: object, name: str) -> Decimal:
    """A number from text (plain or exponent notation, ASCII digits) or from JSON."""
    if isinstance(value, bool) or value is None:
        raise Rejected(f"{name} is not a number: {value!r}")
    if isinstance(value, int):
        value = Decimal(value)
    if isinstance(value, str):
        text = value.strip()
        if len(text) > _LONGEST_NUMBER or _NUMBER.fullmatch(text) is None:
            raise Rejected(f"{name} is not a number: {shortened(value)!r}")
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise Rejected(f"{name} is not a number: {shortened(text)!r}") from None
    if not isinstance(value, Decimal):
        raise Rejected(f"{name} is not a number: {shortened(str(value))!r}")
    why = out_of_range(value)
    if why:
        raise Rejected(f"{name} is out of range: {why}")
    return value.normalize() if value else Decimal(0)


def shortened(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


# Epoch numbers told apart by size: below 1e11 seconds (until year 5138), below 1e14
# milliseconds, below 1e17 microseconds (Binance's newer files), else nanoseconds.
_UNITS = ((Decimal("1e11"), 1), (Decimal("1e14"), 1_000), (Decimal("1e17"), 1_000_000))
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def parse_time(value: object) -> datetime:
    """An open time from epoch s / ms / µs / ns or ISO 8601 text."""
    if isinstance(value, str) and not _NUMBER.fullmatch(value.strip()):
        return _iso(value)
    number = parse_decimal(value, "timestamp") if not isinstance(value, Decimal) else value
    if number != number.to_integral_value() and abs(number) >= _UNITS[0][0]:
        raise Rejected(f"timestamp is not a whole number: {number}")
    per_second = next((unit for limit, unit in _UNITS if abs(number) < limit), 1_000_000_000)
    microseconds = number * 1_000_000 / per_second
    if not 0 <= microseconds < (LATEST - EPOCH) / timedelta(microseconds=1):
        raise Rejected(f"timestamp is out of range (1970 to 2200): {number}")
    return EPOCH + timedelta(microseconds=int(microseconds))


def _iso(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise Rejected(f"timestamp is neither a number nor ISO 8601: {shortened(text)!r}") from None
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    if not EPOCH <= at < LATEST:
        raise Rejected(f"timestamp is out of range (1970 to 2200): {shortened(text)!r}")
    return at


def _count(value: object) -> int:
    number = parse_decimal(value, "trades")
    if number != number.to_integral_value():
        raise Rejected(f"trades is not a whole number: {number}")
    return int(number)


def field_of(row: Sequence[object] | Mapping[str, object], where: int | str) -> object:
    return row[where]  # type: ignore[index]


TimeLabel = Literal["open", "end"]


def open_time_of_end(at: datetime, interval: Interval) -> datetime:
    """The open time of the candle that ``at`` labels the end of: ``at`` is on its last
    day (a 1d or longer candle) or in its last second (shorter ones)."""
    opened = interval.floor(at)
    closes = interval.next(opened)
    last = DAY if closes - opened >= DAY else timedelta(seconds=1)
    if closes - at > last:
        raise Rejected(
            f"time {at.isoformat()} is not the end of a {interval.name} candle"
            f" (its last {'day' if last == DAY else 'second'})"
        )
    return opened


def candle(
    row: Sequence[object] | Mapping[str, object],
    columns: Columns,
    interval: Interval,
    label: TimeLabel = "open",
) -> Candle:
    """The candle in ``row`` (a list of fields or a JSON object), valid for ``interval``;
    its time is the candle's open, or its end with ``label="end"``."""
    if not isinstance(row, Mapping) and len(row) < columns.width:
        raise Rejected(f"{len(row)} fields, {columns.width} expected")
    quote = columns.quote_volume
    trades = columns.trades
    at = parse_time(field_of(row, columns.timestamp))
    result = Candle(
        open_time=at if label == "open" else open_time_of_end(at, interval),
        open=parse_decimal(field_of(row, columns.open), "open"),
        high=parse_decimal(field_of(row, columns.high), "high"),
        low=parse_decimal(field_of(row, columns.low), "low"),
        close=parse_decimal(field_of(row, columns.close), "close"),
        volume=parse_decimal(field_of(row, columns.volume), "volume"),
        quote_volume=None if quote is None else _optional(field_of(row, quote), "quote volume"),
        trades=None if trades is None else _optional_count(field_of(row, trades)),
    )
    found = problems(result, interval)
    if found:
        raise Rejected("; ".join(found))
    return result


def _optional_count(value: object) -> int | None:
    return None if value in ("", None) else _count(value)


def _optional(value: object, name: str) -> Decimal | None:
    return None if value in ("", None) else parse_decimal(value, name)
