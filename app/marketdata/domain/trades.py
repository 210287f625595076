"""Trades of a source, pure: the value type, the trade file layouts (which column holds
what) and one row's fields turned into a Trade or refused with a reason.

Layouts understood:
  - ccxt ``fetch_trades`` JSON: objects with ``timestamp``, ``id``, ``side``, ``price``,
    ``amount`` (and ``symbol``, ``datetime``, ``cost`` ..., which are checked or left);
  - Binance's headerless CSV files: trades ``id, price, qty, quote_qty, time,
    is_buyer_maker[, is_best_match]`` and aggTrades ``id, price, qty, first_id, last_id,
    time, is_buyer_maker[, is_best_match]`` (told apart by where the boolean is);
  - CSV with a header (and JSON objects) in common names: ``time``/``timestamp``/...,
    ``price``, ``amount``/``qty``/``quantity``/``size``, optionally ``side`` (or
    ``is_buyer_maker``), ``id`` and ``symbol``.
Times and numbers are read as for candles (``layouts.parse_time``, ``parse_decimal``).
``side`` is the taker's: ``buy``/``sell`` (``b``/``s``, any case); ``is_buyer_maker``
true is a taker's sell. A row without an id gets one made from its time, price and
amount (``made_id``), numbered by the importer among identical trades."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from app.marketdata.domain.candles import EPOCH
from app.marketdata.domain.layouts import (
    Rejected,
    UnknownLayout,
    field_of,
    find_named,
    parse_decimal,
    parse_time,
    shortened,
)

Side = Literal["BUY", "SELL"]
MAX_ID = 128  # characters of a trade id


@dataclass(frozen=True, slots=True)
class Trade:
    """One trade: ``amount`` in the base currency at ``price``; ``side`` the taker's
    (None: the source does not say); ``trade_id`` the source's (None: it gives none)."""

    time: datetime
    price: Decimal
    amount: Decimal
    side: Side | None = None
    trade_id: str | None = None


def made_id(trade: Trade) -> str:
    """The id of a trade its file gives none: ``<µs since 1970>:<price>:<amount>``, to which
    the importer adds ``:<n>``, n counting identical trades of the file from 1."""
    micros = (trade.time - EPOCH) // _MICROSECOND
    return f"{micros}:{trade.price.normalize():f}:{trade.amount.normalize():f}"


FIELDS = ("time", "price", "amount", "side", "buyer_maker", "id", "symbol")
REQUIRED = FIELDS[:3]
ALIASES: dict[str, tuple[str, ...]] = {
    "time": (
        "timestamp", "time", "transact_time", "trade_time", "ts", "datetime", "date",
        "date_time", "created_at",
    ),
    "price": ("price", "px", "trade_price", "rate"),
    "amount": ("amount", "qty", "quantity", "size", "base_amount", "volume", "vol"),
    "side": ("side", "taker_side"),
    "buyer_maker": ("is_buyer_maker", "isbuyermaker", "buyer_maker"),
    "id": ("id", "trade_id", "tradeid", "tid", "agg_trade_id", "aggtradeid", "aggregate_tradeid"),
    "symbol": ("symbol",),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class TradeColumns:
    """Where each field is: a position (CSV) or a key (JSON objects); None: absent."""

    time: int | str
    price: int | str
    amount: int | str
    side: int | str | None = None
    buyer_maker: int | str | None = None
    id: int | str | None = None
    symbol: int | str | None = None

    @property
    def width(self) -> int:
        """Fields a positional row needs at least."""
        return 1 + max(p for p in (getattr(self, f) for f in FIELDS) if isinstance(p, int))


BINANCE_TRADES = TradeColumns(time=4, price=1, amount=2, buyer_maker=5, id=0)
BINANCE_AGG_TRADES = TradeColumns(time=5, price=1, amount=2, buyer_maker=6, id=0)
_BOOLEANS = {"true": True, "false": False}


def positional(fields: Sequence[object]) -> TradeColumns:
    """The columns of a headerless file, from its first row: Binance's trades (the
    boolean sixth) or aggTrades (the boolean seventh)."""
    texts = [str(f).strip().lower() for f in fields]
    if len(texts) in (6, 7) and texts[5] in _BOOLEANS:
        return BINANCE_TRADES
    if len(texts) in (7, 8) and texts[6] in _BOOLEANS:
        return BINANCE_AGG_TRADES
    raise UnknownLayout(
        f"rows of {len(texts)} fields without a header: Binance trades (id, price, qty,"
        " quote_qty, time, is_buyer_maker) or aggTrades (id, price, qty, first_id, last_id,"
        " time, is_buyer_maker) expected"
    )


def from_header(names: Sequence[str]) -> TradeColumns:
    found = find_named(names, ALIASES)
    missing = [f for f in REQUIRED if f not in found]
    if missing:
        raise UnknownLayout(f"the header names no column for {', '.join(missing)}")
    return TradeColumns(**found)


def from_object_keys(keys: Sequence[str]) -> TradeColumns:
    found = {field: keys[n] for field, n in find_named(keys, ALIASES).items()}
    missing = [f for f in REQUIRED if f not in found]
    if missing:
        raise Rejected(f"no {', '.join(missing)} key")
    return TradeColumns(**found)


def _absent(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _side(value: object) -> Side | None:
    if _absent(value):
        return None
    text = str(value).strip().lower()
    if text in ("buy", "b"):
        return "BUY"
    if text in ("sell", "s"):
        return "SELL"
    raise Rejected(f"side is buy or sell: {shortened(str(value))!r}")


def _buyer_maker(value: object) -> Side | None:
    if _absent(value):
        return None
    found = value if isinstance(value, bool) else _BOOLEANS.get(str(value).strip().lower())
    if found is None:
        raise Rejected(f"is_buyer_maker is true or false: {shortened(str(value))!r}")
    return "SELL" if found else "BUY"  # the buyer made the book: the taker sold


def _id(value: object) -> str | None:
    if _absent(value):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise Rejected(f"id is not text or a number: {shortened(str(value))!r}")
    text = format(value, "f") if isinstance(value, Decimal) else str(value).strip()
    if len(text) > MAX_ID:
        raise Rejected(f"id is longer than {MAX_ID} characters")
    if not text.isprintable():
        raise Rejected(f"id has characters that are not printable: {shortened(text)!r}")
    return text


def same_symbol(given: str, wanted: str) -> bool:
    """Whether a row's symbol names ``wanted`` (``BTCUSDT``, ``btc-usdt``, ccxt's
    ``BTC/USDT`` or ``BTC/USDT:USDT`` all name BTC/USDT)."""
    plain = given.split(":", 1)[0].upper()
    for separator in "/-_":
        plain = plain.replace(separator, "")
    return plain == wanted.replace("/", "")


def trade(
    row: Sequence[object] | Mapping[str, object], columns: TradeColumns, symbol: str
) -> Trade:
    """The trade in ``row`` (a list of fields or a JSON object) of ``symbol``."""
    if not isinstance(row, Mapping) and len(row) < columns.width:
        raise Rejected(f"{len(row)} fields, {columns.width} expected")

    def get(where: int | str | None) -> object:
        return None if where is None else field_of(row, where)

    named = get(columns.symbol)
    if not _absent(named) and not same_symbol(str(named), symbol):
        raise Rejected(f"symbol {shortened(str(named))!r} is not {symbol}")
    at = parse_time(get(columns.time))
    price = parse_decimal(get(columns.price), "price")
    amount = parse_decimal(get(columns.amount), "amount")
    found = [f"{n} is not positive" for n, v in (("price", price), ("amount", amount)) if v <= 0]
    if found:
        raise Rejected("; ".join(found))
    side = _side(get(columns.side))
    return Trade(
        time=at,
        price=price,
        amount=amount,
        side=side if side is not None else _buyer_maker(get(columns.buyer_maker)),
        trade_id=_id(get(columns.id)),
    )


_MICROSECOND = timedelta(microseconds=1)
