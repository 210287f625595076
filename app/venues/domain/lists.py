"""Order lists on the simulated venue, pure: what an OCO or a bracket is made of, checked
as the live venue checks them (``app.trading.order_lists``: ``_plan_oco``,
``_plan_bracket``), and the names the live venue gives its legs.

- OCO: two orders of the same side and quantity, of two different types, neither MARKET,
  sharing one hold (the larger of their needs). The first to fill (even partly), to
  trigger, or to be refused on arrival cancels the other (``OrderEnded`` CANCELED, reason
  ``OCO``); canceling one leg cancels the other the same way.
- BRACKET: an entry (LIMIT or MARKET), then a take-profit LIMIT and a stop-loss
  (STOP_MARKET, or STOP_LIMIT with ``stop_loss_limit_price``) of the other side, PENDING
  until the entry is final. Then, when it filled something, the exits are sized to what
  it filled, take a new hold they share (INSUFFICIENT_FUNDS otherwise: both CANCELED with
  that reason) and go live as an OCO; when it filled nothing they end CANCELED
  ``ENTRY_NOT_FILLED``. The take-profit must lie beyond the entry's price (its limit, or
  the last price); the stop-loss is checked against the same reference.

Leg ``i`` of the list ``L`` has the client order id ``L:i`` (entry 0, take-profit 1,
stop-loss 2), as the live venue names them. Kinds, roles and ``Bracket`` are the live
venue's own (``app.trading.domain.lists``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from app.core.errors import UserError
from app.trading.domain.errors import InvalidOrder
from app.trading.domain.lists import Bracket, ListRole
from app.trading.domain.orders import (
    MarketSpec,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    ValidOrder,
    validate_order,
)
from app.venues.domain.venue import OrderAck

OCO_REASON = "OCO"  # the reason of a leg its sibling canceled
ENTRY_NOT_FILLED = "ENTRY_NOT_FILLED"  # a bracket's exits when the entry filled nothing


@dataclass(frozen=True, slots=True)
class Leg:
    request: OrderRequest
    valid: ValidOrder
    role: str
    status: OrderStatus  # NEW, UNTRIGGERED (armed on arrival) or PENDING (a bracket's exit)


@dataclass(frozen=True, slots=True)
class ListAck:
    """The answer to ``submit_list``: one ``OrderAck`` per leg (none when refused), and
    the refusal's code."""

    client_list_id: str
    orders: tuple[OrderAck, ...]
    code: str | None = None

    @property
    def ok(self) -> bool:
        return self.code is None


def leg_client_id(client_list_id: str, index: int) -> str:
    return f"{client_list_id}:{index}"


def plan_oco(
    spec: MarketSpec,
    legs: Sequence[OrderRequest],
    *,
    now: datetime,
    reference_price: Decimal | None,
) -> list[Leg]:
    if len(legs) != 2:
        raise InvalidOrder("An OCO has exactly two orders", field="orders")
    first, second = legs
    if first.side != second.side or first.quantity != second.quantity:
        raise InvalidOrder("Both orders of an OCO have the same side and quantity", field="orders")
    if OrderType.MARKET in (first.type, second.type) or first.type == second.type:
        raise InvalidOrder(
            "An OCO joins two different order types, neither of them MARKET", field="orders"
        )
    plan = []
    for request in legs:
        valid = validate_order(request, spec, now=now, reference_price=reference_price)
        status = OrderStatus.NEW if valid.trigger is None else OrderStatus.UNTRIGGERED
        plan.append(Leg(request, valid, ListRole.LEG, status))
    return plan


def plan_bracket(
    spec: MarketSpec, bracket: Bracket, *, now: datetime, reference_price: Decimal | None
) -> list[Leg]:
    entry = bracket.entry
    if entry.type not in (OrderType.LIMIT, OrderType.MARKET):
        raise InvalidOrder("A bracket's entry is a LIMIT or MARKET order", field="entry")
    valid_entry = validate_order(entry, spec, now=now, reference_price=reference_price)
    exit_side = Side.SELL if entry.side is Side.BUY else Side.BUY
    entry_price = spec.price(valid_entry.price) if entry.type is OrderType.LIMIT else None
    reference = entry_price or reference_price
    take_profit = OrderRequest(
        side=exit_side,
        type=OrderType.LIMIT,
        quantity=entry.quantity,
        price=bracket.take_profit_price,
    )
    stop_loss = OrderRequest(
        side=exit_side,
        type=OrderType.STOP_LIMIT if bracket.stop_loss_limit_price else OrderType.STOP_MARKET,
        quantity=entry.quantity,
        stop_price=bracket.stop_loss_price,
        price=bracket.stop_loss_limit_price,
    )
    valid_tp = validate_order(take_profit, spec, now=now, reference_price=None)
    if reference is not None:
        tp = bracket.take_profit_price
        if not (tp > reference if entry.side is Side.BUY else tp < reference):
            raise InvalidOrder(
                "The take-profit price must be beyond the entry price", field="takeProfitPrice"
            )
    try:
        valid_sl = validate_order(stop_loss, spec, now=now, reference_price=reference)
    except UserError as error:
        error.field = "stopLossPrice" if error.field == "stopPrice" else error.field
        raise
    pending = OrderStatus.PENDING
    return [
        Leg(entry, valid_entry, ListRole.ENTRY, OrderStatus.NEW),
        Leg(take_profit, valid_tp, ListRole.TAKE_PROFIT, pending),
        Leg(stop_loss, valid_sl, ListRole.STOP_LOSS, pending),
    ]
