"""The matching engine for one market: an in-memory limit order book, pure and
deterministic. Commands in, events out; no I/O, no clock, no randomness.

Units are integers scoped to the book's ``MarketSpec`` (see ``app.trading.domain.orders``):
prices in ticks, quantities in lots, values and fees in quote minor units. Convert at the
edge with ``MarketSpec.to_ticks`` / ``to_lots`` / ``price`` / ``quantity`` /
``quote_amount``.

Commands, each with a strictly increasing ``seq`` (gaps allowed; a command whose seq is
not above ``last_seq`` was already applied and is ignored, so redelivery is harmless):

    Place       a LIMIT or MARKET order. ``price`` is the limit price, or for MARKET the
                worst acceptable price (slippage protection: it never trades beyond it).
                GTC / GTD rest what does not fill; IOC expires the rest; FOK fills all
                or is rejected; post-only is rejected if it would trade on arrival.
    Cancel      one resting order.          CancelAll   every resting order of a user.
    Amend       new price and total quantity of a resting order. It keeps its place in
                the queue only when the price is unchanged and the quantity does not
                grow; otherwise it goes to the back of its (new) level, and if the new
                price crosses it trades as a taker first (post-only: refused instead).
    ExpireDue   expire every GTD order with ``expires_at <= now`` (epoch ms). The clock
                is a command, so replay expires the same orders at the same point.

Events, in the order they happened, each carrying the seq of the command that caused it:

    Accepted → Fill* → (OrderDone)      an order's life; it ends with a Fill that leaves
                                        it 0 lots, or with OrderDone (CANCELED/EXPIRED)
    Rejected                            a Place refused (the order never lived)
    Amended / AmendRejected / CancelRejected

A ``Fill`` carries both sides (maker and taker order and user ids, the taker's side),
the maker's price, the quantity, the value in quote units, each side's fee and each
side's remaining quantity. ``order_events`` maps events to ``OrderEvent`` transitions.

Matching: price-time priority. A taker trades against the best opposite price, oldest
order first, at the resting order's price, while the price is within its limit.

Self-trade prevention, EXPIRE TAKER: when a taker reaches a resting order of its own
user, the taker's remainder is canceled (``OrderDone(CANCELED, SELF_TRADE_PREVENTED)``);
the resting order and the fills before it stand. A FOK whose fill would need to pass its
own order is rejected. (This keeps a market maker's quotes in place.)

Fees: both sides pay in the quote currency; an order's fees so far are
``ceil(sum(fill value * its rate))``, charged as that grows (maker rate while resting,
taker rate while taking), so they never undercharge and never exceed the hold.

Replay: the state is exactly the command log applied in order; ``replay`` on a fresh
book yields identical events and book. ``snapshot`` / ``OrderBook.restore`` save and
rebuild a book without its history (every resting order carries ``priority``, the seq
that gave it its place in the queue).

What the caller owns: order ids unique for ever (the database's; the book only notices
a duplicate among its live orders), funds (the book trusts that every order's hold
covers it: ``orders.hold_units``), ownership checks before Cancel / Amend, and the clock
(a GTD order past its time still trades until the next ExpireDue).

Layout, for speed: per side a dict price → deque of orders (queue order) and a sorted
list of keys (bids: price, asks: -price) whose last element is the best price, kept
with bisect; a dict order id → order for cancel and amend.

Size: one idea, the book, and its invariants (price-time priority, self-trade
prevention, fees that never undercharge nor exceed the hold, replay giving identical
events) hold across the commands, the events they emit and ``OrderBook``'s methods
together, so they are read in one place; the commands and events are its interface.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterable, Mapping
from enum import StrEnum
from heapq import heappop, heappush
from typing import Literal, NamedTuple

from app.core.errors import AppError, InvariantViolation
from app.trading.domain.errors import (
    FokNotFillable,
    InvalidAmend,
    InvalidOrder,
    OrderNotAmendable,
    OrderNotCancellable,
    PostOnlyWouldTake,
)
from app.trading.domain.orders import (
    MarketSpec,
    OrderEvent,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    ValidOrder,
    epoch_ms,
)

BUY, SELL = Side.BUY, Side.SELL
GTC, IOC, FOK, GTD = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.GTD
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET

# (side, type, time in force, post-only) the engine takes.
_ALLOWED = frozenset(
    (side, *combination)
    for side in Side
    for combination in (
        (LIMIT, GTC, False),
        (LIMIT, GTC, True),
        (LIMIT, GTD, False),
        (LIMIT, GTD, True),
        (LIMIT, IOC, False),
        (LIMIT, FOK, False),
        (MARKET, IOC, False),
        (MARKET, FOK, False),
    )
)


class RejectReason(StrEnum):
    """Why a command was refused; each value is the code of a trading error."""

    INVALID_ORDER = "INVALID_ORDER"
    DUPLICATE_ORDER_ID = "DUPLICATE_ORDER_ID"  # a wiring bug: ids come from the database
    POST_ONLY_WOULD_TAKE = "POST_ONLY_WOULD_TAKE"
    FOK_NOT_FILLABLE = "FOK_NOT_FILLABLE"
    ORDER_NOT_CANCELLABLE = "ORDER_NOT_CANCELLABLE"  # not resting: unknown, filled or done
    ORDER_NOT_AMENDABLE = "ORDER_NOT_AMENDABLE"
    INVALID_AMEND = "INVALID_AMEND"


class DoneReason(StrEnum):
    CANCELED = "CANCELED"  # Cancel / CancelAll
    SELF_TRADE_PREVENTED = "SELF_TRADE_PREVENTED"
    NO_LIQUIDITY = "NO_LIQUIDITY"  # IOC / MARKET: the other side ran out
    PRICE_LIMIT = "PRICE_LIMIT"  # IOC / MARKET: the next price was beyond the limit
    GTD_EXPIRED = "GTD_EXPIRED"


_REJECTION_ERRORS: Mapping[RejectReason, type[AppError]] = {
    RejectReason.INVALID_ORDER: InvalidOrder,
    RejectReason.DUPLICATE_ORDER_ID: InvariantViolation,
    RejectReason.POST_ONLY_WOULD_TAKE: PostOnlyWouldTake,
    RejectReason.FOK_NOT_FILLABLE: FokNotFillable,
    RejectReason.ORDER_NOT_CANCELLABLE: OrderNotCancellable,
    RejectReason.ORDER_NOT_AMENDABLE: OrderNotAmendable,
    RejectReason.INVALID_AMEND: InvalidAmend,
}


def rejection_error(reason: RejectReason) -> AppError:
    """The typed error to answer a client with (or to raise) for a refused command."""
    return _REJECTION_ERRORS[reason]()


# --- commands (NamedTuples: immutable and cheap; ``kind`` names the type on the wire) ----


class Place(NamedTuple):
    seq: int
    order_id: int
    user_id: int
    side: Side
    type: OrderType  # LIMIT or MARKET
    price: int  # ticks: the limit, or a MARKET order's worst acceptable price
    quantity: int  # lots
    time_in_force: TimeInForce = GTC
    post_only: bool = False
    expires_at: int | None = None  # GTD: epoch milliseconds
    kind: Literal["PLACE"] = "PLACE"


class Cancel(NamedTuple):
    seq: int
    order_id: int
    kind: Literal["CANCEL"] = "CANCEL"


class CancelAll(NamedTuple):
    seq: int
    user_id: int
    kind: Literal["CANCEL_ALL"] = "CANCEL_ALL"


class Amend(NamedTuple):
    seq: int
    order_id: int
    price: int  # ticks
    quantity: int  # the new total quantity in lots (filled + remaining)
    kind: Literal["AMEND"] = "AMEND"


class ExpireDue(NamedTuple):
    seq: int
    now: int  # epoch milliseconds
    kind: Literal["EXPIRE_DUE"] = "EXPIRE_DUE"


Command = Place | Cancel | CancelAll | Amend | ExpireDue


def place_command(order: ValidOrder, *, seq: int, order_id: int, user_id: int) -> Place:
    """The engine command for a validated order (a conditional one once triggered)."""
    return Place(
        seq,
        order_id,
        user_id,
        order.side,
        order.book_type,
        order.price,
        order.quantity,
        order.time_in_force,
        order.post_only,
        None if order.expires_at is None else epoch_ms(order.expires_at),
    )


# --- events ------------------------------------------------------------------------------


class Accepted(NamedTuple):
    seq: int
    order_id: int
    kind: Literal["ACCEPTED"] = "ACCEPTED"


class Rejected(NamedTuple):
    seq: int
    order_id: int
    reason: RejectReason
    kind: Literal["REJECTED"] = "REJECTED"


class Fill(NamedTuple):
    seq: int
    trade_id: int  # 1, 2, 3 ... per book
    maker_order_id: int
    taker_order_id: int
    maker_user_id: int
    taker_user_id: int
    taker_side: Side
    price: int  # ticks: the maker's price
    quantity: int  # lots
    notional: int  # quote units: price * quantity * units_per_tick_lot
    maker_fee: int  # quote units
    taker_fee: int  # quote units
    maker_remaining: int  # lots left on each order after this fill
    taker_remaining: int
    kind: Literal["FILL"] = "FILL"


class OrderDone(NamedTuple):
    """An order leaves the book with lots left: CANCELED or EXPIRED."""

    seq: int
    order_id: int
    status: OrderStatus
    reason: DoneReason
    remaining: int
    kind: Literal["DONE"] = "DONE"


class Amended(NamedTuple):
    seq: int
    order_id: int
    price: int
    quantity: int
    remaining: int
    kept_priority: bool
    kind: Literal["AMENDED"] = "AMENDED"


class AmendRejected(NamedTuple):
    seq: int
    order_id: int
    reason: RejectReason
    kind: Literal["AMEND_REJECTED"] = "AMEND_REJECTED"


class CancelRejected(NamedTuple):
    seq: int
    order_id: int
    reason: RejectReason
    kind: Literal["CANCEL_REJECTED"] = "CANCEL_REJECTED"


Event = Accepted | Rejected | Fill | OrderDone | Amended | AmendRejected | CancelRejected


def order_events(event: Event) -> tuple[tuple[int, OrderEvent], ...]:
    """The status transitions an engine event means: (order id, ``OrderEvent``) pairs
    to feed to ``orders.apply``."""
    if isinstance(event, Fill):
        return (
            (event.maker_order_id, _fill_event(event.maker_remaining)),
            (event.taker_order_id, _fill_event(event.taker_remaining)),
        )
    if isinstance(event, Accepted):
        return ((event.order_id, OrderEvent.ACCEPT),)
    if isinstance(event, Rejected):
        return ((event.order_id, OrderEvent.REJECT),)
    if isinstance(event, OrderDone):
        done = OrderEvent.CANCEL if event.status is OrderStatus.CANCELED else OrderEvent.EXPIRE
        return ((event.order_id, done),)
    if isinstance(event, Amended):
        return ((event.order_id, OrderEvent.AMEND),)
    return ()


def _fill_event(remaining: int) -> OrderEvent:
    return OrderEvent.FILL_PARTIAL if remaining else OrderEvent.FILL


# --- views --------------------------------------------------------------------------------


class RestingOrder(NamedTuple):
    order_id: int
    user_id: int
    side: Side
    price: int
    quantity: int  # total lots (filled + remaining)
    remaining: int
    fee_numerator: int  # fees so far = ceil(fee_numerator / market.fee_denominator)
    priority: int  # the seq that gave the order its place in the queue
    post_only: bool = False
    expires_at: int | None = None


class BookSnapshot(NamedTuple):
    last_seq: int
    last_trade_id: int
    bids: tuple[RestingOrder, ...]  # best price first, then queue order
    asks: tuple[RestingOrder, ...]


class Level(NamedTuple):
    price: int
    quantity: int
    orders: int


class Depth(NamedTuple):
    seq: int  # the last command applied
    bids: tuple[Level, ...]  # best first
    asks: tuple[Level, ...]


# --- the book -----------------------------------------------------------------------------


class _Resting:
    __slots__ = (
        "expires_at",
        "fee_acc",
        "order_id",
        "post_only",
        "price",
        "priority",
        "quantity",
        "remaining",
        "side",
        "user_id",
    )

    def __init__(
        self,
        order_id: int,
        user_id: int,
        side: Side,
        price: int,
        quantity: int,
        remaining: int,
        fee_acc: int,
        priority: int,
        post_only: bool,
        expires_at: int | None,
    ) -> None:
        self.order_id = order_id
        self.user_id = user_id
        self.side = side
        self.price = price
        self.quantity = quantity
        self.remaining = remaining
        self.fee_acc = fee_acc
        self.priority = priority
        self.post_only = post_only
        self.expires_at = expires_at

    def public(self) -> RestingOrder:
        return RestingOrder(
            self.order_id,
            self.user_id,
            self.side,
            self.price,
            self.quantity,
            self.remaining,
            self.fee_acc,
            self.priority,
            self.post_only,
            self.expires_at,
        )


_MatchResult = tuple[int, int, bool]  # remaining lots, taker fee numerator, self-trade


class OrderBook:
    """One market's book. ``handle`` applies one command and returns its events."""

    def __init__(self, market: MarketSpec) -> None:
        self.market = market
        self._units = market.units_per_tick_lot
        self._fee_den = market.fee_denominator
        self._maker_num = market.maker_fee_numerator
        self._taker_num = market.taker_fee_numerator
        self._bids: dict[int, deque[_Resting]] = {}
        self._asks: dict[int, deque[_Resting]] = {}
        self._bid_keys: list[int] = []  # prices, ascending: the best bid is last
        self._ask_keys: list[int] = []  # -prices, ascending: the best ask is last
        self._orders: dict[int, _Resting] = {}
        self._expiries: list[tuple[int, int]] = []  # heap of (expires_at, order id)
        self._last_seq = 0
        self._trade_id = 0

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def last_trade_id(self) -> int:
        return self._trade_id

    @property
    def best_bid(self) -> int | None:
        return self._bid_keys[-1] if self._bid_keys else None

    @property
    def best_ask(self) -> int | None:
        return -self._ask_keys[-1] if self._ask_keys else None

    def __len__(self) -> int:
        return len(self._orders)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._orders

    def handle(self, command: Command) -> list[Event]:
        out: list[Event] = []
        if command.seq <= self._last_seq:
            return out  # already applied
        self._last_seq = command.seq
        self._dispatch(command, out)
        return out

    def apply_consequence(self, command: Command) -> list[Event]:
        """Apply a command that follows from the last one applied rather than from the
        log: an OCO sibling's cancel after a fill, a stop order its trades triggered, an
        expiry. It carries the last command's seq (``command.seq == last_seq``), so a
        pure ``replay`` of the log does not repeat it; the caller stores its effects with
        the last command's."""
        if command.seq != self._last_seq:
            raise InvariantViolation(f"a consequence of seq {self._last_seq} has {command.seq}")
        out: list[Event] = []
        self._dispatch(command, out)
        return out

    def skip(self, seq: int) -> None:
        """Use up ``seq`` for a command that does not concern the book (a conditional
        order handed to the trigger engine, a refused amendment)."""
        if seq > self._last_seq:
            self._last_seq = seq

    def level(self, side: Side, price: int) -> tuple[int, int]:
        """(lots, orders) resting at one price on one side."""
        level = (self._bids if side is BUY else self._asks).get(price)
        if not level:
            return 0, 0
        return sum(o.remaining for o in level), len(level)

    def _dispatch(self, command: Command, out: list[Event]) -> None:
        if isinstance(command, Place):
            self._place(command, out)
        elif isinstance(command, Cancel):
            self._cancel(command, out)
        elif isinstance(command, Amend):
            self._amend(command, out)
        elif isinstance(command, CancelAll):
            self._cancel_all(command, out)
        elif isinstance(command, ExpireDue):
            self._expire_due(command, out)
        else:
            raise InvariantViolation(f"not a matching command: {command!r}")

    # -- place ----------------------------------------------------------------------------

    def _place(self, c: Place, out: list[Event]) -> None:
        seq, order_id, user_id, side, type_, price, quantity, tif, post_only, expires_at, _ = c
        orders = self._orders
        if order_id in orders:
            out.append(Rejected(seq, order_id, RejectReason.DUPLICATE_ORDER_ID))
            return
        # The common case by identity; otherwise by equality, so plain strings equal to
        # the enum values pass too (and are normalised).
        if not (type_ is LIMIT and tif is GTC and (side is BUY or side is SELL)):
            if (side, type_, tif, post_only) not in _ALLOWED or (tif == GTD) != (
                expires_at is not None
            ):
                out.append(Rejected(seq, order_id, RejectReason.INVALID_ORDER))
                return
            side = BUY if side == BUY else SELL
            tif = TimeInForce(tif)
        elif expires_at is not None:
            out.append(Rejected(seq, order_id, RejectReason.INVALID_ORDER))
            return
        if quantity <= 0 or price <= 0:
            out.append(Rejected(seq, order_id, RejectReason.INVALID_ORDER))
            return
        if side is BUY:
            keys, limit_key = self._ask_keys, -price
        else:
            keys, limit_key = self._bid_keys, price
        crosses = bool(keys) and keys[-1] >= limit_key
        if crosses and post_only:
            out.append(Rejected(seq, order_id, RejectReason.POST_ONLY_WOULD_TAKE))
            return
        if tif is FOK and not (crosses and self._fillable(user_id, side, price, quantity)):
            out.append(Rejected(seq, order_id, RejectReason.FOK_NOT_FILLABLE))
            return
        out.append(Accepted(seq, order_id))
        remaining, fee_acc = quantity, 0
        if crosses:
            remaining, fee_acc, self_trade = self._match(
                out, seq, order_id, user_id, side, price, remaining, 0
            )
            if not remaining:
                return
            if self_trade:
                out.append(
                    OrderDone(
                        seq,
                        order_id,
                        OrderStatus.CANCELED,
                        DoneReason.SELF_TRADE_PREVENTED,
                        remaining,
                    )
                )
                return
        if tif is IOC or tif is FOK:
            reason = DoneReason.PRICE_LIMIT if keys else DoneReason.NO_LIQUIDITY
            out.append(OrderDone(seq, order_id, OrderStatus.EXPIRED, reason, remaining))
            return
        order = _Resting(
            order_id, user_id, side, price, quantity, remaining, fee_acc, seq, post_only, expires_at
        )
        orders[order_id] = order
        # enqueue (inlined: the hot path)
        if side is BUY:
            levels, keys, key = self._bids, self._bid_keys, price
        else:
            levels, keys, key = self._asks, self._ask_keys, -price
        level = levels.get(price)
        if level is None:
            levels[price] = deque((order,))
            if not keys or key > keys[-1]:
                keys.append(key)
            else:
                insort(keys, key)
        else:
            level.append(order)
        if expires_at is not None:
            heappush(self._expiries, (expires_at, order_id))

    def _fillable(self, user_id: int, side: Side, limit: int, quantity: int) -> bool:
        """Whether a FOK can fill completely before reaching its limit or its own user."""
        if side is BUY:
            levels, keys, sign, limit_key = self._asks, self._ask_keys, -1, -limit
        else:
            levels, keys, sign, limit_key = self._bids, self._bid_keys, 1, limit
        need = quantity
        for i in range(len(keys) - 1, -1, -1):
            key = keys[i]
            if key < limit_key:
                return False
            for maker in levels[key * sign]:
                if maker.user_id == user_id:
                    return False
                need -= maker.remaining
                if need <= 0:
                    return True
        return False

    def _match(
        self,
        out: list[Event],
        seq: int,
        taker_id: int,
        taker_user: int,
        side: Side,
        limit: int,
        remaining: int,
        taker_acc: int,
    ) -> _MatchResult:
        """Trade ``remaining`` lots against the other side up to ``limit``."""
        if side is BUY:
            levels, keys, sign, limit_key = self._asks, self._ask_keys, -1, -limit
        else:
            levels, keys, sign, limit_key = self._bids, self._bid_keys, 1, limit
        orders = self._orders
        emit = out.append
        den, maker_num, taker_num = self._fee_den, self._maker_num, self._taker_num
        trade_id = self._trade_id
        self_trade = False
        while keys:
            key = keys[-1]
            if key < limit_key:
                break
            price = key * sign
            level = levels[price]
            unit_value = price * self._units
            while True:
                maker = level[0]
                if maker.user_id == taker_user:
                    self_trade = True
                    break
                maker_remaining = maker.remaining
                quantity = maker_remaining if maker_remaining < remaining else remaining
                notional = unit_value * quantity
                # fees: ceil(new total) - ceil(old total), ceil(x / d) == -(-x // d)
                maker_acc = maker.fee_acc
                maker.fee_acc = new_acc = maker_acc + notional * maker_num
                maker_fee = (-maker_acc // den) - (-new_acc // den)
                new_acc = taker_acc + notional * taker_num
                taker_fee = (-taker_acc // den) - (-new_acc // den)
                taker_acc = new_acc
                maker_remaining -= quantity
                remaining -= quantity
                trade_id += 1
                emit(
                    Fill(
                        seq,
                        trade_id,
                        maker.order_id,
                        taker_id,
                        maker.user_id,
                        taker_user,
                        side,
                        price,
                        quantity,
                        notional,
                        maker_fee,
                        taker_fee,
                        maker_remaining,
                        remaining,
                    )
                )
                if maker_remaining:
                    maker.remaining = maker_remaining
                    break  # the taker is done
                level.popleft()
                del orders[maker.order_id]
                if not remaining or not level:
                    break
            if not level:
                del levels[price]
                keys.pop()
            if self_trade or not remaining:
                break
        self._trade_id = trade_id
        return remaining, taker_acc, self_trade

    # -- book keeping ---------------------------------------------------------------------

    def _enqueue(self, order: _Resting) -> None:
        price = order.price
        if order.side is BUY:
            levels, keys, key = self._bids, self._bid_keys, price
        else:
            levels, keys, key = self._asks, self._ask_keys, -price
        level = levels.get(price)
        if level is None:
            levels[price] = deque((order,))
            if not keys or key > keys[-1]:
                keys.append(key)
            else:
                insort(keys, key)
        else:
            level.append(order)

    def _unlink(self, order: _Resting) -> None:
        price = order.price
        if order.side is BUY:
            levels, keys, key = self._bids, self._bid_keys, price
        else:
            levels, keys, key = self._asks, self._ask_keys, -price
        level = levels[price]
        if level[0] is order:
            level.popleft()
        else:
            level.remove(order)
        if not level:
            del levels[price]
            del keys[bisect_left(keys, key)]

    # -- cancel, amend, expire ------------------------------------------------------------

    def _cancel(self, c: Cancel, out: list[Event]) -> None:
        order = self._orders.pop(c.order_id, None)
        if order is None:
            out.append(CancelRejected(c.seq, c.order_id, RejectReason.ORDER_NOT_CANCELLABLE))
            return
        self._unlink(order)
        out.append(
            OrderDone(c.seq, c.order_id, OrderStatus.CANCELED, DoneReason.CANCELED, order.remaining)
        )

    def _cancel_all(self, c: CancelAll, out: list[Event]) -> None:
        mine = sorted(o.order_id for o in self._orders.values() if o.user_id == c.user_id)
        for order_id in mine:
            self._cancel(Cancel(c.seq, order_id), out)

    def _amend(self, c: Amend, out: list[Event]) -> None:
        seq, order_id, price, quantity = c.seq, c.order_id, c.price, c.quantity
        order = self._orders.get(order_id)
        if order is None:
            out.append(AmendRejected(seq, order_id, RejectReason.ORDER_NOT_AMENDABLE))
            return
        remaining = quantity - (order.quantity - order.remaining)
        if price <= 0 or remaining <= 0:
            out.append(AmendRejected(seq, order_id, RejectReason.INVALID_AMEND))
            return
        if price == order.price and quantity <= order.quantity:
            order.quantity, order.remaining = quantity, remaining
            out.append(Amended(seq, order_id, price, quantity, remaining, True))
            return
        if order.side is BUY:
            crosses = bool(self._ask_keys) and self._ask_keys[-1] >= -price
        else:
            crosses = bool(self._bid_keys) and self._bid_keys[-1] >= price
        if crosses and order.post_only:
            out.append(AmendRejected(seq, order_id, RejectReason.POST_ONLY_WOULD_TAKE))
            return
        self._unlink(order)
        order.price, order.quantity, order.remaining, order.priority = (
            price,
            quantity,
            remaining,
            seq,
        )
        out.append(Amended(seq, order_id, price, quantity, remaining, False))
        if crosses:
            remaining, order.fee_acc, self_trade = self._match(
                out, seq, order_id, order.user_id, order.side, price, remaining, order.fee_acc
            )
            order.remaining = remaining
            if not remaining:
                del self._orders[order_id]
                return
            if self_trade:
                del self._orders[order_id]
                out.append(
                    OrderDone(
                        seq,
                        order_id,
                        OrderStatus.CANCELED,
                        DoneReason.SELF_TRADE_PREVENTED,
                        remaining,
                    )
                )
                return
        self._enqueue(order)

    def _expire_due(self, c: ExpireDue, out: list[Event]) -> None:
        heap = self._expiries
        while heap and heap[0][0] <= c.now:
            expires_at, order_id = heappop(heap)
            order = self._orders.get(order_id)
            if order is None or order.expires_at != expires_at:
                continue  # gone already
            del self._orders[order_id]
            self._unlink(order)
            out.append(
                OrderDone(
                    c.seq,
                    order_id,
                    OrderStatus.EXPIRED,
                    DoneReason.GTD_EXPIRED,
                    order.remaining,
                )
            )

    # -- views ----------------------------------------------------------------------------

    def depth(self, levels: int) -> Depth:
        """Aggregated quantity and order count at the best ``levels`` prices per side."""
        bids = tuple(
            Level(p, sum(o.remaining for o in self._bids[p]), len(self._bids[p]))
            for p in reversed(self._bid_keys[-levels:] if levels > 0 else [])
        )
        asks = tuple(
            Level(-k, sum(o.remaining for o in self._asks[-k]), len(self._asks[-k]))
            for k in reversed(self._ask_keys[-levels:] if levels > 0 else [])
        )
        return Depth(self._last_seq, bids, asks)

    def snapshot(self) -> BookSnapshot:
        bids = tuple(o.public() for p in reversed(self._bid_keys) for o in self._bids[p])
        asks = tuple(o.public() for k in reversed(self._ask_keys) for o in self._asks[-k])
        return BookSnapshot(self._last_seq, self._trade_id, bids, asks)

    def resting(self, order_id: int) -> RestingOrder | None:
        order = self._orders.get(order_id)
        return None if order is None else order.public()

    @classmethod
    def restore(cls, market: MarketSpec, snapshot: BookSnapshot) -> OrderBook:
        """A book with ``snapshot``'s resting orders (in any order: they are queued by
        price, then ``priority``), ready for the commands after ``snapshot.last_seq``."""
        book = cls(market)
        for side, resting in ((BUY, snapshot.bids), (SELL, snapshot.asks)):
            for o in sorted(resting, key=lambda o: o.priority):
                book._restore_one(side, o, snapshot.last_seq)
        book._last_seq, book._trade_id = snapshot.last_seq, snapshot.last_trade_id
        if book.best_bid is not None and book.best_ask is not None:
            if book.best_bid >= book.best_ask:
                raise InvariantViolation("restored book is crossed")
        return book

    def _restore_one(self, side: Side, o: RestingOrder, last_seq: int) -> None:
        if (
            o.side is not side
            or o.order_id in self._orders
            or not 0 < o.remaining <= o.quantity
            or o.price <= 0
            or o.priority > last_seq
        ):
            raise InvariantViolation(f"cannot restore resting order {o!r}")
        order = _Resting(*o)
        self._enqueue(order)
        self._orders[o.order_id] = order
        if o.expires_at is not None:
            heappush(self._expiries, (o.expires_at, o.order_id))


def replay(market: MarketSpec, commands: Iterable[Command]) -> tuple[OrderBook, list[Event]]:
    """A fresh book fed ``commands`` in order, and every event it emitted."""
    book = OrderBook(market)
    events: list[Event] = []
    for command in commands:
        events.extend(book.handle(command))
    return book, events
