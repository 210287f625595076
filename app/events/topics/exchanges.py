"""Exchange accounts' topics: an order on a connected account as it changed, and each of
its fills as recorded, to its owner (the ``exchangeOrderUpdates`` subscription). Written
in the transaction that changed the row (``app.exchanges.orders``: placement, a report;
``app.exchanges.following``: reconciliation, a stream), with the row's values under its
column names."""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any, Self

from app.events.topics.base import Event, Topic, Wire


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class _Wired:
    """``to_wire`` / ``from_wire`` from the dataclass's fields: camelCase keys, Decimals
    as text, datetimes in ISO 8601, None kept."""

    def to_wire(self) -> Wire:
        wire: Wire = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, Decimal):
                value = str(value)
            elif isinstance(value, datetime):
                value = value.isoformat()
            wire[_camel(f.name)] = value
        return wire

    @classmethod
    def from_wire(cls, w: Mapping[str, Any]) -> Self:
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            value, hint = w[_camel(f.name)], hints[f.name]
            if value is not None and Decimal in (hint, *typing.get_args(hint)):
                value = Decimal(value)
            elif value is not None and datetime in (hint, *typing.get_args(hint)):
                value = datetime.fromisoformat(value)
            values[f.name] = value
        return cls(**values)


@dataclass(frozen=True, slots=True)
class ExchangeOrderUpdated(_Wired):
    """An ``exchange_orders`` row as a change left it (placed PENDING_SUBMIT or ARMED,
    answered, fired, moved by a report or reconciliation, canceled, rejected)."""

    id: int
    connection_id: int
    client_order_id: str
    exchange_order_id: str | None
    symbol: str
    side: str
    type: str
    quantity: Decimal
    price: Decimal | None
    stop_price: Decimal | None
    filled: Decimal
    status: str
    emulated: bool
    reject_code: str | None
    created_at: datetime
    updated_at: datetime
    triggered_at: datetime | None  # an emulated stop's: when it fired, at what price, and
    trigger_price: Decimal | None  # why it has not (STALE_PRICES, RISK_HALTED)
    trigger_note: str | None
    list_id: int | None  # the OCO or bracket it is a leg of, and which leg
    list_role: str | None


@dataclass(frozen=True, slots=True)
class ExchangeFilled(_Wired):
    """An ``exchange_fills`` row, recorded once (unique on the exchange's trade id)."""

    id: int
    connection_id: int
    order_id: int
    symbol: str
    trade_id: str
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_currency: str | None
    filled_at: datetime


EXCHANGE_ORDERS = Topic("exchange-orders", ExchangeOrderUpdated)
EXCHANGE_FILLS = Topic("exchange-fills", ExchangeFilled)


def exchange_order_updated(user_id: int, payload: ExchangeOrderUpdated) -> Event:
    return EXCHANGE_ORDERS.event(user_id, payload)


def exchange_filled(user_id: int, payload: ExchangeFilled) -> Event:
    return EXCHANGE_FILLS.event(user_id, payload)


def of_row(payload: type[ExchangeOrderUpdated] | type[ExchangeFilled], row: Any) -> Any:
    """A payload from a row (a record or mapping with the table's columns)."""
    return payload(**{f.name: row[f.name] for f in fields(payload)})
