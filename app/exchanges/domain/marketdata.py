"""An exchange's public market data as the ccxt edge hands it over (Decimals, converted
once): its ticker and order book here; its trades and candles are the market data
store's ``Trade`` and ``Candle``. Pure: what a request may ask (``check_*``), the source
name candles and trades are stored under, an order book as JSON (for the short-lived
shared cache), the difference between two books (for subscriptions that poll) and the
checksum an exchange's book stream carries (OKX's)."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from app.core.errors import ValidationFailed
from app.exchanges.domain.catalogue import ExchangeId
from app.marketdata.domain.candles import parse_symbol

MAX_BOOK_DEPTH = 500  # levels a side a request may ask for (the venue's own limit)
MAX_TRADES = 1000  # recent trades a request may ask for
BOOK_TIERS = (20, 100, MAX_BOOK_DEPTH)  # depths fetched (and cached): the smallest that covers

Level = tuple[Decimal, Decimal]  # price, amount
# The deepest order book each exchange serves in one request (spot): a deeper request is
# answered with what it has (Bybit's spot book stops at 200 levels, OKX's at 400).
BOOK_MAX: dict[ExchangeId, int] = {
    ExchangeId.BINANCE: 5000,
    ExchangeId.KRAKEN: 500,
    ExchangeId.OKX: 400,
    ExchangeId.BYBIT: 200,
    ExchangeId.COINBASE: 500,
}


def source_of(exchange: ExchangeId) -> str:
    """The market data store's source for the exchange's candles and trades."""
    return f"exchange:{exchange.value}"


def check_symbol(symbol: str) -> str:
    """``BASE/QUOTE`` (upper case letters and digits) or ``ValidationFailed``: nothing
    else is sent to an exchange."""
    return parse_symbol(symbol)


def check_depth(depth: int) -> int:
    if not 1 <= depth <= MAX_BOOK_DEPTH:
        raise ValidationFailed(f"depth is between 1 and {MAX_BOOK_DEPTH}", field="depth")
    return depth


def check_trades(first: int) -> int:
    if not 1 <= first <= MAX_TRADES:
        raise ValidationFailed(f"first is between 1 and {MAX_TRADES}", field="first")
    return first


def book_tier(depth: int, exchange_max: int) -> int:
    """The depth to fetch for ``depth`` levels: one of a few, so that requests of any depth
    share a fetch; at most what the exchange serves."""
    return min(next(t for t in BOOK_TIERS if t >= depth), exchange_max)


_TICKER_NUMBERS = ("last", "bid", "ask", "high", "low", "base_volume", "quote_volume")


@dataclass(frozen=True, slots=True)
class ExchangeTicker:
    symbol: str
    last: Decimal | None
    bid: Decimal | None
    ask: Decimal | None
    high: Decimal | None
    low: Decimal | None
    base_volume: Decimal | None
    quote_volume: Decimal | None
    at: datetime

    def to_json(self) -> str:
        fields = {n: getattr(self, n) for n in ("symbol", "at", *_TICKER_NUMBERS)}
        return json.dumps({n: _text(v) for n, v in fields.items()})

    @classmethod
    def from_json(cls, text: str | bytes) -> ExchangeTicker:
        raw = json.loads(text)
        numbers = {n: _number(raw[n]) for n in _TICKER_NUMBERS}
        return cls(symbol=raw["symbol"], at=datetime.fromisoformat(raw["at"]), **numbers)


@dataclass(frozen=True, slots=True)
class ExchangeBook:
    """The top levels a side, best first; ``nonce`` the exchange's update id, if it says."""

    symbol: str
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    nonce: int | None
    at: datetime

    def top(self, depth: int) -> ExchangeBook:
        return ExchangeBook(self.symbol, self.bids[:depth], self.asks[:depth], self.nonce, self.at)

    def to_json(self) -> str:
        return json.dumps({
            "symbol": self.symbol, "nonce": self.nonce, "at": self.at.isoformat(),
            "bids": [[str(p), str(q)] for p, q in self.bids],
            "asks": [[str(p), str(q)] for p, q in self.asks],
        })  # fmt: skip

    @classmethod
    def from_json(cls, text: str | bytes) -> ExchangeBook:
        raw = json.loads(text)
        return cls(
            symbol=raw["symbol"],
            bids=tuple((Decimal(p), Decimal(q)) for p, q in raw["bids"]),
            asks=tuple((Decimal(p), Decimal(q)) for p, q in raw["asks"]),
            nonce=raw["nonce"],
            at=datetime.fromisoformat(raw["at"]),
        )


def changed_levels(before: tuple[Level, ...], after: tuple[Level, ...]) -> list[Level]:
    """The levels of ``after`` that differ from ``before``, and those of ``before`` gone
    from it (amount 0), in ``after``'s order then ``before``'s: a delta from one polled
    book to the next."""
    old, new = dict(before), dict(after)
    changed = [(p, q) for p, q in after if old.get(p) != q]
    return changed + [(p, Decimal(0)) for p, _ in before if p not in new]


OKX_CHECKSUM_LEVELS = 25


def okx_book_checksum(bids: tuple[Level, ...], asks: tuple[Level, ...]) -> int:
    """OKX's checksum of a book (its ``books`` channel): the signed CRC32 of the top 25
    levels a side as ``bid price:bid size:ask price:ask size:...``, pairs in turn while
    both sides last, then the longer side's rest; numbers written as the exchange writes
    them (no trailing zeros, no exponent)."""
    parts: list[str] = []
    for n in range(OKX_CHECKSUM_LEVELS):
        for side in (bids, asks):
            if n < len(side):
                parts += [_plain(side[n][0]), _plain(side[n][1])]
    crc = zlib.crc32(":".join(parts).encode())
    return crc - 2**32 if crc >= 2**31 else crc


def _plain(number: Decimal) -> str:
    return format(number.normalize(), "f")


def timestamp(milliseconds: Any, default: datetime) -> datetime:
    """ccxt's epoch milliseconds (None: ``default``)."""
    if milliseconds is None:
        return default
    return datetime.fromtimestamp(int(milliseconds) / 1000, UTC)


def _text(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _number(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


@dataclass(frozen=True, slots=True)
class SyncedSeries:
    """One series the candle job keeps up to date."""

    exchange: ExchangeId
    symbol: str
    interval: str

    @property
    def name(self) -> str:
        return f"{self.exchange.value}:{self.symbol}:{self.interval}"


def parse_synced(entry: str) -> SyncedSeries:
    """``exchange:BASE/QUOTE:interval`` (``binance:BTC/USDT:1m``) or ``ValidationFailed``."""
    from app.exchanges.domain.catalogue import parse_exchange
    from app.marketdata.domain.candles import interval_named

    parts = entry.strip().split(":")
    if len(parts) != 3:
        raise ValidationFailed(
            f"{entry!r}: expected exchange:BASE/QUOTE:interval", field="exchangeCandleSync"
        )
    exchange, symbol, interval = parts
    return SyncedSeries(parse_exchange(exchange), check_symbol(symbol),
                        interval_named(interval).name)  # fmt: skip
