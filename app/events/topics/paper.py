"""Paper trading's topics: a paper account's fills and order changes, to its owner (the
``paperUpdates`` subscription). Written by the paper step that made them, in its
transaction (``app.paper.state.record``); each carries its row as written, under the
row's column names (``id`` is the GraphQL node's), and the account's run (``resets``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Self

from app.events.topics.base import Event, Topic, Wire, opt


@dataclass(frozen=True, slots=True)
class PaperFilled:
    """A fill of a paper order (a ``paper_fills`` row). ``number``: the account's venue
    event number in its run, the order of its updates."""

    paper_account_id: int
    resets: int
    id: int
    number: int
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    liquidity: str
    price: Decimal
    quantity: Decimal
    quote_amount: Decimal
    fee: Decimal
    fee_currency: str
    filled_at: datetime

    def to_wire(self) -> Wire:
        return {
            "paperAccountId": self.paper_account_id,
            "resets": self.resets,
            "id": self.id,
            "number": self.number,
            "orderId": self.order_id,
            "clientOrderId": self.client_order_id,
            "symbol": self.symbol,
            "side": self.side,
            "liquidity": self.liquidity,
            "price": str(self.price),
            "quantity": str(self.quantity),
            "quoteAmount": str(self.quote_amount),
            "fee": str(self.fee),
            "feeCurrency": self.fee_currency,
            "filledAt": self.filled_at.isoformat(),
        }

    @classmethod
    def from_wire(cls, w: Mapping[str, Any]) -> Self:
        return cls(
            paper_account_id=w["paperAccountId"],
            resets=w["resets"],
            id=w["id"],
            number=w["number"],
            order_id=w["orderId"],
            client_order_id=w["clientOrderId"],
            symbol=w["symbol"],
            side=w["side"],
            liquidity=w["liquidity"],
            price=Decimal(w["price"]),
            quantity=Decimal(w["quantity"]),
            quote_amount=Decimal(w["quoteAmount"]),
            fee=Decimal(w["fee"]),
            fee_currency=w["feeCurrency"],
            filled_at=datetime.fromisoformat(w["filledAt"]),
        )


@dataclass(frozen=True, slots=True)
class PaperOrderUpdated:
    """A paper order as a step left it (its ``paper_orders`` row). ``sequence``: the
    account's venue event number of the order's last change in the step (a bracket's
    PENDING exit, placed without an event: the step's last)."""

    paper_account_id: int
    resets: int
    id: int
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    type: str
    status: str
    quantity: Decimal | None
    filled_quantity: Decimal
    price: Decimal | None
    stop_price: Decimal | None
    reason: str | None
    list_id: int | None
    list_role: str | None
    sequence: int
    created_at: datetime
    updated_at: datetime

    def to_wire(self) -> Wire:
        return {
            "paperAccountId": self.paper_account_id,
            "resets": self.resets,
            "id": self.id,
            "orderId": self.order_id,
            "clientOrderId": self.client_order_id,
            "symbol": self.symbol,
            "side": self.side,
            "type": self.type,
            "status": self.status,
            "quantity": opt(self.quantity, str),
            "filledQuantity": str(self.filled_quantity),
            "price": opt(self.price, str),
            "stopPrice": opt(self.stop_price, str),
            "reason": self.reason,
            "listId": self.list_id,
            "listRole": self.list_role,
            "sequence": self.sequence,
            "createdAt": self.created_at.isoformat(),
            "updatedAt": self.updated_at.isoformat(),
        }

    @classmethod
    def from_wire(cls, w: Mapping[str, Any]) -> Self:
        return cls(
            paper_account_id=w["paperAccountId"],
            resets=w["resets"],
            id=w["id"],
            order_id=w["orderId"],
            client_order_id=w["clientOrderId"],
            symbol=w["symbol"],
            side=w["side"],
            type=w["type"],
            status=w["status"],
            quantity=opt(w["quantity"], Decimal),
            filled_quantity=Decimal(w["filledQuantity"]),
            price=opt(w["price"], Decimal),
            stop_price=opt(w["stopPrice"], Decimal),
            reason=w["reason"],
            list_id=w["listId"],
            list_role=w["listRole"],
            sequence=w["sequence"],
            created_at=datetime.fromisoformat(w["createdAt"]),
            updated_at=datetime.fromisoformat(w["updatedAt"]),
        )


PAPER_FILLS = Topic("paper-fills", PaperFilled)
PAPER_ORDERS = Topic("paper-orders", PaperOrderUpdated)


def paper_filled(user_id: int, payload: PaperFilled) -> Event:
    return PAPER_FILLS.event(user_id, payload)


def paper_order_updated(user_id: int, payload: PaperOrderUpdated) -> Event:
    return PAPER_ORDERS.event(user_id, payload)
