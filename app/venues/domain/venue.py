"""The venue interface: what everything that trades goes through (bots, copy trading,
backtests; exchanges later). Implementations: ``simulated.SimulatedVenue`` (the pure
matching book driven by candles) and, with awaited calls (``AsyncVenue``), the live
internal venue ``app.venues.live.LiveVenue`` (today's engine).

An order is named by the caller's ``client_order_id``: submitting the same id again with
the same request returns the original acknowledgement and changes nothing (idempotent);
the same id with another request is refused with ``CLIENT_ORDER_ID_REUSED``. A refusal is
an ``OrderAck`` carrying the error's stable ``code`` (the codes of
``app.trading.domain.errors`` and ``app.core.errors``: ``INSUFFICIENT_FUNDS``,
``PRICE_OFF_TICK``, ``POST_ONLY_WOULD_TAKE`` ...), never an exception.

The event stream is numbered 1, 2, 3 ...; ``events(after=n)`` returns those after ``n``.
An order's life in events::

    OrderAccepted (status OPEN, or UNTRIGGERED for a conditional order)
      → OrderTriggered (conditional orders) → OrderAccepted (OPEN)
      → OrderFilled* → OrderEnded (CANCELED / EXPIRED / REJECTED), or its last fill

A refused submission has one event, ``OrderEnded`` with status REJECTED and the code.
Amounts are ``Decimal`` at the market's tick, lot and quote scale; times are UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from app.trading.domain.orders import OrderRequest, OrderStatus, OrderType, Side


class Liquidity(StrEnum):
    MAKER = "MAKER"  # the order rested and was traded against: maker fee
    TAKER = "TAKER"  # the order traded on arrival (or on its trigger): taker fee


@dataclass(frozen=True, slots=True)
class OrderAck:
    """The answer to a submit, cancel or amend: the order's status after it, and the
    refusal's code (None when it was done)."""

    client_order_id: str
    order_id: int | None  # None when no such order exists
    status: OrderStatus | None
    code: str | None = None

    @property
    def ok(self) -> bool:
        return self.code is None


@dataclass(frozen=True, slots=True)
class OrderAccepted:
    number: int
    at: datetime
    order_id: int
    client_order_id: str
    status: OrderStatus  # OPEN, or UNTRIGGERED (a conditional order waiting for its price)


@dataclass(frozen=True, slots=True)
class OrderTriggered:
    number: int
    at: datetime
    order_id: int
    client_order_id: str
    price: Decimal  # the price that fired it


@dataclass(frozen=True, slots=True)
class OrderFilled:
    number: int
    at: datetime
    order_id: int
    client_order_id: str
    side: Side
    price: Decimal
    quantity: Decimal
    value: Decimal  # price x quantity, in the quote currency
    fee: Decimal  # in the quote currency
    liquidity: Liquidity
    remaining: Decimal  # the order's quantity left after this fill


@dataclass(frozen=True, slots=True)
class OrderEnded:
    """An order ends without its last fill: CANCELED, EXPIRED or REJECTED."""

    number: int
    at: datetime
    order_id: int
    client_order_id: str
    status: OrderStatus
    reason: str  # a DoneReason or an error code


VenueEvent = OrderAccepted | OrderTriggered | OrderFilled | OrderEnded


@dataclass(frozen=True, slots=True)
class OpenOrder:
    order_id: int
    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    filled: Decimal
    price: Decimal  # the limit, or a market type's worst acceptable price
    stop_price: Decimal | None
    status: OrderStatus


@dataclass(frozen=True, slots=True)
class Balance:
    currency: str
    available: Decimal
    held: Decimal  # set aside for open orders

    @property
    def total(self) -> Decimal:
        return self.available + self.held


class Venue(Protocol):
    """A place to trade. Synchronous: the simulated venue is pure; the live venue, whose
    calls are awaited, is to expose the same methods as coroutines."""

    def submit(self, *, symbol: str, client_order_id: str, request: OrderRequest) -> OrderAck:
        """Place an order (idempotent by ``client_order_id``)."""
        ...

    def cancel(self, *, client_order_id: str) -> OrderAck: ...

    def amend(self, *, client_order_id: str, price: Decimal, quantity: Decimal) -> OrderAck:
        """New limit price and total quantity of a resting limit order."""
        ...

    def open_orders(self) -> tuple[OpenOrder, ...]: ...

    def balances(self) -> Mapping[str, Balance]: ...

    def events(self, *, after: int = 0) -> tuple[VenueEvent, ...]: ...


class AsyncVenue(Protocol):
    """The venue interface with awaited calls: the live internal venue
    (``app.venues.live.LiveVenue``), and exchanges later."""

    async def submit(
        self, *, symbol: str, client_order_id: str, request: OrderRequest
    ) -> OrderAck: ...

    async def cancel(self, *, client_order_id: str) -> OrderAck: ...

    async def amend(
        self, *, client_order_id: str, price: Decimal, quantity: Decimal
    ) -> OrderAck: ...

    async def open_orders(self) -> tuple[OpenOrder, ...]: ...

    async def balances(self) -> Mapping[str, Balance]: ...

    async def events(self, *, after: int = 0) -> tuple[VenueEvent, ...]: ...
