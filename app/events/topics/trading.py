"""The matching engine's topics: a user's fills and orders, a market's book, trades, ticker."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Self

from app.events.topics.base import Event, Topic, Wire, opt


@dataclass(frozen=True, slots=True)
class Fill:
    trade_id: int
    order_id: int
    symbol: str
    side: str
    liquidity: str  # MAKER | TAKER
    price: Decimal
    quantity: Decimal
    quote_amount: Decimal
    fee: Decimal
    fee_currency: str
    sequence: int
    at: datetime

    def to_wire(self) -> Wire:
        return {
            "tradeId": self.trade_id,
            "orderId": self.order_id,
            "symbol": self.symbol,
            "side": self.side,
            "liquidity": self.liquidity,
            "price": str(self.price),
            "quantity": str(self.quantity),
            "quoteAmount": str(self.quote_amount),
            "fee": str(self.fee),
            "feeCurrency": self.fee_currency,
            "sequence": self.sequence,
            "at": self.at.isoformat(),
        }

    @classmethod
    def from_wire(cls, w: Mapping[str, Any]) -> Self:
        return cls(
            trade_id=int(w["tradeId"]),
            order_id=int(w["orderId"]),
            symbol=w["symbol"],
            side=w["side"],
            liquidity=w["liquidity"],
            price=Decimal(w["price"]),
            quantity=Decimal(w["quantity"]),
            quote_amount=Decimal(w["quoteAmount"]),
            fee=Decimal(w["fee"]),
            fee_currency=w["feeCurrency"],
            sequence=w["sequence"],
            at=datetime.fromisoformat(w["at"]),
        )


@dataclass(frozen=True, slots=True)
class OrderUpdated:
    order_id: int
    symbol: str
    status: str
    quantity: Decimal
    filled_quantity: Decimal
    sequence: int
    at: datetime
    side: str | None = None  # always written; [side] for readers
    reason: str | None = None

    def to_wire(self) -> Wire:
        return {
            "orderId": self.order_id,
            "symbol": self.symbol,
            "side": self.side,
            "status": self.status,
            "filledQuantity": str(self.filled_quantity),
            "quantity": str(self.quantity),
            "reason": self.reason,
            "sequence": self.sequence,
            "at": self.at.isoformat(),
        }

    @classmethod
    def from_wire(cls, w: Mapping[str, Any]) -> Self:
        return cls(
            order_id=int(w["orderId"]),
            symbol=w["symbol"],
            status=w["status"],
            quantity=Decimal(w["quantity"]),
            filled_quantity=Decimal(w["filledQuantity"]),
            sequence=w["sequence"],
            at=datetime.fromisoformat(w["at"]),
            side=w.get("side"),
            reason=w.get("reason"),
        )


Level = tuple[Decimal, Decimal, int]  # price, quantity, orders


@dataclass(frozen=True, slots=True)
class BookLevels:
    """The levels a batch changed (quantity 0: the level is gone), after
    ``previous_sequence``: a subscriber applies it only on top of that sequence."""

    symbol: str
    sequence: int
    previous_sequence: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]

    def to_wire(self) -> Wire:
        return {
            "symbol": self.symbol,
            "sequence": self.sequence,
            "previousSequence": self.previous_sequence,
            "bids": [[str(p), str(q), n] for p, q, n in self.bids],
            "asks": [[str(p), str(q), n] for p, q, n in self.asks],
        }

    @classmethod
    def from_wire(cls, w: Mapping[str, Any]) -> Self:
        def levels(rows: Any) -> tuple[Level, ...]:
            return tuple((Decimal(p), Decimal(q), int(n)) for p, q, n in rows)

        return cls(
            symbol=w["symbol"],
            sequence=w["sequence"],
            previous_sequence=w["previousSequence"],
            bids=levels(w["bids"]),
            asks=levels(w["asks"]),
        )


@dataclass(frozen=True, slots=True)
class Trade:
    trade_id: int
    symbol: str
    price: Decimal
    quantity: Decimal
    taker_side: str
    at: datetime
    sequence: int | None = None  # always written; [sequence] for readers

    def to_wire(self) -> Wire:
        return {
            "symbol": self.symbol,
            "at": self.at.isoformat(),
            "tradeId": self.trade_id,
            "price": str(self.price),
            "quantity": str(self.quantity),
            "takerSide": self.taker_side,
            "sequence": self.sequence,
        }

    @classmethod
    def from_wire(cls, w: Mapping[str, Any]) -> Self:
        return cls(
            trade_id=int(w["tradeId"]),
            symbol=w["symbol"],
            price=Decimal(w["price"]),
            quantity=Decimal(w["quantity"]),
            taker_side=w["takerSide"],
            at=datetime.fromisoformat(w["at"]),
            sequence=w.get("sequence"),
        )


@dataclass(frozen=True, slots=True)
class Ticker:
    symbol: str
    last: Decimal | None
    best_bid: Decimal | None
    best_ask: Decimal | None
    sequence: int
    at: datetime

    def to_wire(self) -> Wire:
        return {
            "symbol": self.symbol,
            "last": opt(self.last, str),
            "bestBid": opt(self.best_bid, str),
            "bestAsk": opt(self.best_ask, str),
            "sequence": self.sequence,
            "at": self.at.isoformat(),
        }

    @classmethod
    def from_wire(cls, w: Mapping[str, Any]) -> Self:
        return cls(
            symbol=w["symbol"],
            last=opt(w["last"], Decimal),
            best_bid=opt(w["bestBid"], Decimal),
            best_ask=opt(w["bestAsk"], Decimal),
            sequence=w["sequence"],
            at=datetime.fromisoformat(w["at"]),
        )


FILLS = Topic("fills", Fill)
ORDERS = Topic("orders", OrderUpdated)
BOOK = Topic("book", BookLevels, per_market=True)
TRADES = Topic("trades", Trade, per_market=True)
TICKER = Topic("ticker", Ticker, per_market=True)


def fill(user_id: int, payload: Fill) -> Event:
    return FILLS.event(user_id, payload)


def order_updated(user_id: int, payload: OrderUpdated) -> Event:
    return ORDERS.event(user_id, payload)


def book_levels(payload: BookLevels) -> Event:
    return BOOK.event(None, payload, symbol=payload.symbol)


def trade(payload: Trade) -> Event:
    return TRADES.event(None, payload, symbol=payload.symbol)


def ticker(payload: Ticker) -> Event:
    return TICKER.event(None, payload, symbol=payload.symbol)
