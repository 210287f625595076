"""Connected exchange accounts' topic: an account's orders changed at its exchange (an
order moved, fills recorded), to its owner. Written by the poller's reconciliation in
the transaction that records the change (``app.exchanges.orders``); the bots job reads
it to wake the bots trading on that account (``app.bots.worker``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from app.events.topics.base import Event, Topic, Wire


@dataclass(frozen=True, slots=True)
class ExchangeOrdersChanged:
    """``connection_id``'s orders on ``symbol``: how many moved and how many fills were
    recorded (read them from ``exchange_orders`` / ``exchange_fills``)."""

    connection_id: int
    symbol: str
    orders_changed: int
    fills_added: int

    def to_wire(self) -> Wire:
        return {
            "connectionId": self.connection_id,
            "symbol": self.symbol,
            "ordersChanged": self.orders_changed,
            "fillsAdded": self.fills_added,
        }

    @classmethod
    def from_wire(cls, w: Mapping[str, Any]) -> Self:
        return cls(
            connection_id=w["connectionId"],
            symbol=w["symbol"],
            orders_changed=w["ordersChanged"],
            fills_added=w["fillsAdded"],
        )


EXCHANGE_ORDERS = Topic("exchange-orders", ExchangeOrdersChanged)


def exchange_orders_changed(user_id: int, payload: ExchangeOrdersChanged) -> Event:
    return EXCHANGE_ORDERS.event(user_id, payload)
