"""The engine's memory of its market: the live orders, their holds, the ways into them
(``OrderIndex``), and what one batch has changed (``Batch``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from app.ledger import journal as ledger
from app.trading.domain import orders as rules
from app.trading.domain.matching import Place, RestingOrder
from app.trading.domain.orders import (
    FINAL_STATUSES,
    MarketSpec,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    TrailingOffsetType,
    TrailingSpec,
    TrailingState,
    Trigger,
    epoch_ms,
)
from app.trading.engine.rows import FillRow


@dataclass(slots=True)
class LiveOrder:
    id: int
    user_id: int
    side: Side
    type: OrderType
    status: OrderStatus
    tif: TimeInForce
    post_only: bool
    quantity: int  # lots
    filled: int  # lots
    executed: int  # quote units
    fees: int  # quote units
    fee_numerator: int
    price: int  # book price, ticks
    stop: int | None
    trailing: TrailingSpec | None
    trailing_state: TrailingState | None
    expires_ms: int | None
    hold_id: int | None
    list_id: int | None
    list_role: str | None
    priority: int | None
    reason: str | None = None
    changed: bool = False  # publish a status event

    @property
    def trigger(self) -> Trigger | None:
        return rules.TYPE_RULES[self.type].trigger

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(slots=True)
class HoldState:
    id: int
    user_id: int
    currency: str
    amount: int  # minor units
    remaining: int
    spent: bool = False
    status: str = "PENDING"


@dataclass(slots=True)
class OrderIndex:
    """Ways into a market's live orders other than by id, so that no event scans them
    all (the engine keeps every resting order; one scan per fill or batch made each
    batch's cost grow with the size of the book)."""

    lists: dict[int, set[int]] = field(default_factory=dict)  # list id -> its orders
    users: dict[int, set[int]] = field(default_factory=dict)  # user id -> their orders
    conditional: set[int] = field(default_factory=set)  # with a trigger: stops and kin
    expiring: set[int] = field(default_factory=set)  # with an expiry (GTD)
    # remembered or changed since the last ``MarketEngine._forget_final``: only these
    # can have become final
    unsettled: set[int] = field(default_factory=set)

    def add(self, order: LiveOrder) -> None:
        if order.list_id is not None:
            self.lists.setdefault(order.list_id, set()).add(order.id)
        self.users.setdefault(order.user_id, set()).add(order.id)
        if order.trigger is not None:
            self.conditional.add(order.id)
        if order.expires_ms is not None:
            self.expiring.add(order.id)
        self.unsettled.add(order.id)

    def remove(self, order: LiveOrder) -> None:
        if order.list_id is not None:
            _discard(self.lists, order.list_id, order.id)
        _discard(self.users, order.user_id, order.id)
        self.conditional.discard(order.id)
        self.expiring.discard(order.id)

    def siblings(self, order: LiveOrder) -> set[int]:
        """The other orders of its list: the only ones that can share its hold (a
        placement takes a hold per order, or one per OCO; a bracket's exits share one)."""
        if order.list_id is None:
            return set()
        return self.lists.get(order.list_id, set()) - {order.id}


def _discard(groups: dict[int, set[int]], key: int, member: int) -> None:
    group = groups.get(key)
    if group is not None:
        group.discard(member)
        if not group:
            del groups[key]


@dataclass
class Batch:
    """What one transaction writes."""

    outcomes: dict[int, str] = field(default_factory=dict)
    orders: dict[int, LiveOrder] = field(default_factory=dict)  # touched
    holds: dict[int, HoldState] = field(default_factory=dict)  # touched
    fills: list[FillRow] = field(default_factory=list)
    trades: list[dict[str, Any]] = field(default_factory=list)  # topics.Trade's fields
    levels: set[tuple[Side, int]] = field(default_factory=set)
    positions: list[tuple[int, str, Decimal, Decimal, bool]] = field(default_factory=list)
    # bracket entries that ended (filled, canceled, expired): their exits follow once the
    # events at hand are applied
    entries_done: list[LiveOrder] = field(default_factory=list)
    # the batch's postings, written together at its end (``_write``): fills carry the
    # number of their entry in it until then. Trades and releases are deferred (their
    # accounts locked together before the write, in primary-key order); what may be
    # refused (a hold taken by an amend or a bracket's exits) is posted at once.
    journal: ledger.JournalBatch = field(default_factory=ledger.JournalBatch)


def _units(amount: Decimal, scale: int) -> int:
    return int(amount.scaleb(scale))


def resting(o: LiveOrder) -> RestingOrder:
    assert o.priority is not None
    return RestingOrder(
        o.id,
        o.user_id,
        o.side,
        o.price,
        o.quantity,
        o.quantity - o.filled,
        o.fee_numerator,
        o.priority,
        o.post_only,
        o.expires_ms,
    )


def place(seq: int, order: LiveOrder) -> Place:
    return Place(
        seq,
        order.id,
        order.user_id,
        order.side,
        rules.TYPE_RULES[order.type].book_type,
        order.price,
        order.quantity - order.filled,
        order.tif,
        order.post_only,
        order.expires_ms,
    )


def live_order(spec: MarketSpec, row: Any) -> LiveOrder:
    """An order as ``ORDER_COLUMNS`` reads it."""
    trailing = None
    state = None
    if row["trailing_offset_type"] is not None:
        kind = TrailingOffsetType(row["trailing_offset_type"])
        offset = (
            spec.to_ticks(row["trailing_offset"])
            if kind is TrailingOffsetType.AMOUNT
            else int(row["trailing_offset"] * 100)
        )
        activation = (
            None if row["activation_price"] is None else spec.to_ticks(row["activation_price"])
        )
        trailing = TrailingSpec(offset, kind, activation)
        extreme = row["trailing_extreme"]
        state = TrailingState(
            row["trailing_active"], None if extreme is None else spec.to_ticks(extreme)
        )
    return LiveOrder(
        id=row["id"],
        user_id=row["user_id"],
        side=Side(row["side"]),
        type=OrderType(row["type"]),
        status=OrderStatus(row["status"]),
        tif=TimeInForce(row["time_in_force"]),
        post_only=row["post_only"],
        quantity=spec.to_lots(row["quantity"]),
        filled=int(row["filled_quantity"] / spec.lot_size),
        executed=_units(row["executed_value"], spec.quote_scale),
        fees=_units(row["fees"], spec.quote_scale),
        fee_numerator=int(row["fee_numerator"]),
        price=spec.to_ticks(row["book_price"]),
        stop=None if row["stop_price"] is None else spec.to_ticks(row["stop_price"]),
        trailing=trailing,
        trailing_state=state,
        expires_ms=None if row["expires_at"] is None else epoch_ms(row["expires_at"]),
        hold_id=row["hold_id"],
        list_id=row["list_id"],
        list_role=row["list_role"],
        priority=row["priority"],
        reason=row["reason"],
    )


def hold_state(row: Any) -> HoldState:
    """The hold of an order as ``ORDER_COLUMNS`` reads it."""
    scale = row["hold_scale"]
    return HoldState(
        row["hold_id"],
        row["hold_user"],
        row["hold_currency"],
        _units(row["hold_amount"], scale),
        _units(row["hold_remaining"], scale),
        status=row["hold_status"],
    )
