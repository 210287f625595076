"""Order lists, pure: their kinds, the roles of their legs, a bracket's request and the one
planning of a list (``plan_oco``, ``plan_bracket``: the checks, each leg's order and its
first status). Used by the live venue (``app.trading.order_lists``, the engine) and the
simulated venue (``app.venues.domain.lists``), so both name, check and refuse legs the
same way.

- OCO: two orders of the same side and quantity, of two different types, neither MARKET.
- BRACKET: an entry (LIMIT or MARKET), then a take-profit LIMIT and a stop-loss
  (STOP_MARKET, or STOP_LIMIT with ``stop_loss_limit_price``) of the other side for the
  entry's quantity, PENDING until the entry is final. The take-profit must lie beyond the
  entry's price (its limit, or the last price); the stop-loss is checked against the same
  reference.

Refusals are the typed errors of ``validate_order`` and ``InvalidOrder``; a stop-loss's
``stopPrice`` problem is reported on the field ``stopLossPrice``. ``price_band_bps``
(the live venue's band) applies to an OCO's legs and a bracket's entry, never to the exits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from app.core.errors import UserError
from app.trading.domain.errors import InvalidOrder
from app.trading.domain.orders import (
    MarketSpec,
    OrderEvent,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    ValidOrder,
    apply,
    validate_order,
)


class ListKind:
    OCO = "OCO"
    BRACKET = "BRACKET"


class ListRole:
    LEG = "LEG"  # an OCO leg
    ENTRY = "ENTRY"
    TAKE_PROFIT = "TAKE_PROFIT"
    STOP_LOSS = "STOP_LOSS"


# The roles whose first fill or trigger cancels the others of their list.
OCO_ROLES = frozenset({ListRole.LEG, ListRole.TAKE_PROFIT, ListRole.STOP_LOSS})


@dataclass(frozen=True, slots=True)
class Bracket:
    """An entry, then (once it has filled) a take-profit LIMIT and a stop-loss, as OCO."""

    entry: OrderRequest
    take_profit_price: Decimal
    stop_loss_price: Decimal
    stop_loss_limit_price: Decimal | None = None  # STOP_LIMIT instead of STOP_MARKET


@dataclass(frozen=True, slots=True)
class PlannedLeg:
    """One order of a list as planned: checked, with its role and first status (NEW,
    UNTRIGGERED for a trigger order, PENDING for a bracket's exit)."""

    request: OrderRequest
    valid: ValidOrder
    role: str
    status: OrderStatus


def bracket_exits(bracket: Bracket) -> tuple[OrderRequest, OrderRequest]:
    """The take-profit and the stop-loss a bracket asks for (the entry's quantity)."""
    entry = bracket.entry
    exit_side = Side.SELL if entry.side is Side.BUY else Side.BUY
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
    return take_profit, stop_loss


def list_legs(
    oco: Sequence[OrderRequest] | None, bracket: Bracket | None
) -> list[tuple[OrderRequest, str]]:
    """The orders of a list in leg order (leg ``i`` is ``<client list id>:<i>``), each
    with its role: an OCO's two legs, or a bracket's entry, take-profit and stop-loss."""
    if bracket is not None:
        take_profit, stop_loss = bracket_exits(bracket)
        return [
            (bracket.entry, ListRole.ENTRY),
            (take_profit, ListRole.TAKE_PROFIT),
            (stop_loss, ListRole.STOP_LOSS),
        ]
    return [(request, ListRole.LEG) for request in oco or ()]


def plan_oco(
    spec: MarketSpec,
    legs: Sequence[OrderRequest],
    *,
    now: datetime,
    reference_price: Decimal | None,
    price_band_bps: int | None = None,
) -> list[PlannedLeg]:
    """The two legs of an OCO, checked; a typed ``UserError`` for the first problem."""
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
    for request, role in list_legs(legs, None):
        valid = validate_order(
            request, spec, now=now, reference_price=reference_price, price_band_bps=price_band_bps
        )
        status = (
            OrderStatus.NEW if valid.trigger is None else apply(OrderStatus.NEW, OrderEvent.ARM)
        )
        plan.append(PlannedLeg(request, valid, role, status))
    return plan


def plan_bracket(
    spec: MarketSpec,
    bracket: Bracket,
    *,
    now: datetime,
    reference_price: Decimal | None,
    price_band_bps: int | None = None,
) -> list[PlannedLeg]:
    """A bracket's entry (NEW) and its exits (PENDING), checked; a typed ``UserError``
    for the first problem."""
    entry = bracket.entry
    if entry.type not in (OrderType.LIMIT, OrderType.MARKET):
        raise InvalidOrder("A bracket's entry is a LIMIT or MARKET order", field="entry")
    valid_entry = validate_order(
        entry, spec, now=now, reference_price=reference_price, price_band_bps=price_band_bps
    )
    entry_price = spec.price(valid_entry.price) if entry.type is OrderType.LIMIT else None
    reference = entry_price or reference_price
    take_profit, stop_loss = bracket_exits(bracket)
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
        PlannedLeg(entry, valid_entry, ListRole.ENTRY, OrderStatus.NEW),
        PlannedLeg(take_profit, valid_tp, ListRole.TAKE_PROFIT, pending),
        PlannedLeg(stop_loss, valid_sl, ListRole.STOP_LOSS, pending),
    ]
