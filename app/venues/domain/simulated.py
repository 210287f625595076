"""The simulated venue: the platform's own pure matching book (``matching.OrderBook``)
holding one account's orders on one market, driven by candles. Same inputs, same
settings and seed: byte-identical events.

The clock is the candles': ``advance(candle)`` plays one candle; between two calls the
time is the last candle's close (``now``), when the caller decides and submits.

Inside a candle the price walks the four points of ``paths.path_points`` (the
``PathMode``). At each point, in this order:

1. (the open only) orders that have *arrived* enter: a conditional order is armed, any
   other trades as a taker against the market at the point's price, and the rest of a
   limit order rests on the book;
2. conditional orders the segment from the previous point reaches fire
   (``triggers.TriggerSet``: at their trigger level, or at the open after a gap) and
   trade as takers at that price, as in 1;
3. the market sweeps the book: a synthetic counter-order (IOC) at the point's price
   trades with every resting order it crosses, each at the resting order's own price
   (a limit buy the low touches fills at its limit), as a maker.

The market's liquidity is a synthetic order of another user: for a taker, a resting
order at the price, canceled afterwards; for the sweep, an IOC. Its quantity is what is
left of the candle's budget, ``volume_share`` of the candle's volume (rounded down to
lots; None: unlimited), so fills beyond it are partial: a limit order keeps resting, a
market order's rest expires (``NO_LIQUIDITY``).

Latency: an order submitted at the close of candle t arrives at the open of candle
t + ``latency``; with latency 0 it arrives at once, at the close price of t, against
what is left of t's budget.

Fees are the book's: the market spec's maker rate for a resting order, taker rate for
one trading on arrival or trigger, ``ceil`` per order as in the live engine.
Funds: an order holds what it may spend (``orders.hold_units``) when submitted, or is
refused ``INSUFFICIENT_FUNDS`` and changes nothing; validation is the live venue's
(``orders.validate_order``, the last close as the reference price), so refusals carry
the same codes. Fills move held funds; an order's end releases what is left. A
``gate`` (``OrderGate``: a backtest's risk limits) is asked about each validated order,
and each leg of a list, before the funds: its refusal is a refusal like the venue's own.

Randomness is a feature only: ``slippage_bps`` > 0 moves each taker price against the
order by a uniform 0 .. slippage_bps basis points, drawn from ``random.Random(seed)``
(never beyond the order's own limit).

Amendments change a resting order at once (the book's rules, the hold follows); one that
makes it marketable fills at the next sweep at its own price (not a list's orders, as
live).

Order lists (``submit_list``: OCO and bracket, ``lists``) follow the live engine: an OCO
leg's fill (even partial), trigger or refusal on arrival cancels its sibling (reason
``OCO``), the legs share one hold, released when the last of them ends; a bracket's exits
go live when the entry is final (sized to its fill, a new shared hold), at the current
point of the path, the stop-loss first tested at the next point (live: the last trade
price at once). ``cancel_list`` (not on the live venue: there one cancels a leg) cancels
every live leg (reason CANCELED). A refused list leaves nothing, not even its id. Not
simulated (yet): market data other than candles, other markets.

Size: one idea, one account's orders on the simulated book; the order lists' hooks sit in
the fill, end and trigger paths of that private state (the list rules are in ``lists``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from app.core.errors import InsufficientFunds, InvariantViolation, UserError
from app.trading.domain import matching as m
from app.trading.domain.errors import (
    ClientOrderIdReused,
    InvalidAmend,
    InvalidOrder,
    OrderNotAmendable,
    OrderNotCancellable,
    OrderNotFound,
    UnknownMarket,
)
from app.trading.domain.lists import OCO_ROLES, Bracket, ListRole, plan_bracket, plan_oco
from app.trading.domain.orders import (
    BPS,
    EPOCH,
    FINAL_STATUSES,
    LIVE_STATUSES,
    MarketSpec,
    OrderEvent,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    ValidOrder,
    apply,
    epoch_ms,
    hold_units,
    validate_order,
)
from app.venues.domain.lists import ENTRY_NOT_FILLED, OCO_REASON, ListAck, leg_client_id
from app.venues.domain.paths import Candle, PathMode, path_points
from app.venues.domain.triggers import TriggerSet
from app.venues.domain.venue import (
    Balance,
    Liquidity,
    OpenOrder,
    OrderAccepted,
    OrderAck,
    OrderEnded,
    OrderFilled,
    OrderTriggered,
    VenueEvent,
)

ACCOUNT_USER, MARKET_USER = 1, 0  # user ids on the book: the account's and the market's
UNLIMITED = 10**30


class OrderGate(Protocol):
    """Pre-trade checks of the account's own (a backtest's risk limits: ``app.backtesting.
    domain.protections``): asked about each validated order before its funds are held,
    told of each order placed (funded) and each cancel asked. A refusal's code refuses
    the order as the venue's own rules do (REJECTED, ``OrderEnded`` with the code)."""

    def admit(self, venue: SimulatedVenue, client_order_id: str, valid: ValidOrder) -> str | None:
        """None, or the code of the refusal."""
        ...

    def placed(self, venue: SimulatedVenue, orders: int) -> None: ...

    def cancel_asked(self, venue: SimulatedVenue) -> None: ...


@dataclass(frozen=True, slots=True)
class SimulationSettings:
    path: PathMode = PathMode.ADVERSE_FIRST
    volume_share: Decimal | None = Decimal("0.1")  # of each candle's volume; None: no cap
    latency: int = 1  # candles between a submission and its arrival
    slippage_bps: int = 0  # the most a taker price is moved against the order (random)
    seed: int = 0


class _Hold:
    """Minor units held: an order's own, or shared by an OCO's legs (a bracket's exits)."""

    __slots__ = ("units",)

    def __init__(self) -> None:
        self.units = 0


class _Order:
    __slots__ = (
        "arrive",
        "client_order_id",
        "currency",
        "filled",
        "first_ack",
        "funds",
        "legs",
        "order_id",
        "request",
        "role",
        "status",
        "symbol",
        "valid",
    )

    def __init__(self, order_id: int, client_order_id: str, symbol: str, request: OrderRequest):
        self.order_id = order_id
        self.client_order_id = client_order_id
        self.symbol = symbol
        self.request = request
        self.status = OrderStatus.NEW
        self.valid: ValidOrder | None = None
        self.currency = ""
        self.funds = _Hold()  # of ``currency``
        self.filled = 0  # lots
        self.arrive = 0  # candle index
        self.first_ack: OrderAck | None = None
        self.role: str | None = None  # a ``ListRole`` when in a list
        self.legs: list[_Order] = []  # the list's orders (this one too)

    @property
    def hold(self) -> int:
        """Minor units of ``currency`` still held (shared with the OCO's other leg)."""
        return self.funds.units

    @hold.setter
    def hold(self, units: int) -> None:
        self.funds.units = units


class SimulatedVenue:
    """One account on one market (``Venue``), plus ``advance`` to play a candle."""

    def __init__(
        self,
        market: MarketSpec,
        *,
        balances: Mapping[str, Decimal],
        settings: SimulationSettings = SimulationSettings(),
        start: datetime = EPOCH,
        gate: OrderGate | None = None,
    ) -> None:
        if settings.latency < 0 or not 0 <= settings.slippage_bps < BPS:
            raise InvariantViolation(f"bad simulation settings: {settings!r}")
        self.market = market
        self.settings = settings
        self._scales = {market.base: market.base_scale, market.quote: market.quote_scale}
        unknown = set(balances) - set(self._scales)
        if unknown:
            raise InvariantViolation(f"balances in {sorted(unknown)}: not of {market.symbol}")
        self._available = {
            c: _units(balances.get(c, Decimal(0)), s) for c, s in self._scales.items()
        }
        self._held = dict.fromkeys(self._scales, 0)
        self._book = m.OrderBook(market)
        self._triggers = TriggerSet()
        self._rng = random.Random(settings.seed)  # noqa: S311 (simulation, not secrets)
        self._orders: dict[int, _Order] = {}
        self._by_client: dict[str, _Order] = {}
        self._pending: list[_Order] = []  # submitted, not arrived
        self._expiring: list[_Order] = []  # orders with an expiry (GTD) that may be live
        self._lists: dict[str, tuple[object, ListAck]] = {}  # by client list id
        self._entries_done: list[_Order] = []  # brackets' entries to hand over
        self._events: list[VenueEvent] = []
        self._seq = 0
        self._synthetic = 0
        self._index = -1  # the last candle played
        self._now = start
        self._at = start  # the time of what happens now (a fill inside a candle: its open)
        self._last_ticks: int | None = None  # the last close in ticks (see ``_last``) ...
        self._close: Decimal | None = None  # ... or the close not yet taken in ticks
        self._budget = 0  # lots the market may still trade in this candle
        self._changes = 0  # how many times the balances changed
        self._shown: dict[str, tuple[int, int, Balance]] = {}  # the last balance shown
        self._unit = {c: Decimal(1).scaleb(-s) for c, s in self._scales.items()}
        self._quote_unit, self._base_units_per_lot = market.quote_unit, market.base_units_per_lot
        self._share, self._lot = settings.volume_share, market.lot_size
        self._gate = gate

    # -- the clock and the market --------------------------------------------------------

    @property
    def now(self) -> datetime:
        return self._now

    @property
    def last_price(self) -> Decimal | None:
        return None if self._last is None else self.market.price(self._last)

    @property
    def candle_index(self) -> int:
        return self._index

    @property
    def changes(self) -> int:
        """How many times the balances changed: what ``balances()`` shows stays the same
        while this does."""
        return self._changes

    @property
    def _last(self) -> int | None:
        """Ticks: the last close (taken in ticks when first asked)."""
        if self._close is not None:
            self._last_ticks, self._close = self.market.nearest_ticks(self._close), None
        return self._last_ticks

    @_last.setter
    def _last(self, ticks: int | None) -> None:
        self._last_ticks, self._close = ticks, None

    def advance(self, candle: Candle) -> bool:
        """Play one candle: arrivals at its open, triggers and fills along its path.
        False when nothing can have happened but the clock moving: no event, no change
        in the balances."""
        open_time = candle.open_time
        if open_time < self._now and self._index >= 0:
            raise InvariantViolation(f"candle at {open_time} is before {self._now}")
        self._index += 1
        self._at = open_time
        share = self._share
        self._budget = UNLIMITED if share is None else int(candle.volume * share // self._lot)
        expired = bool(self._expiring)
        if expired:
            self._expire(open_time)
        else:
            self._seq += 1  # the expiry's, used up as when there was something to expire
        if not (self._pending or self._entries_done or self._triggers) and (
            not self._book or self._out_of_reach(candle)
        ):
            # nothing arrives, fires or trades in this candle: only the clock moves
            self._close = candle.close
            self._now = self._at = open_time + candle.interval
            return expired
        base = self.market.base
        holding = self._available[base] + self._held[base] > 0
        previous: int | None = None
        for k, point in enumerate(
            path_points(candle, self.market, self.settings.path, holding=holding)
        ):
            if k == 0:
                due = [o for o in self._pending if o.arrive <= self._index]
                self._pending = [o for o in self._pending if o.arrive > self._index]
                for order in due:
                    if order.status is OrderStatus.NEW:  # not canceled by an OCO sibling
                        self._arrive(order, point)
                if self._entries_done:
                    self._hand_over(point)
            for fired in self._triggers.observe(previous, point) if self._triggers else ():
                order = self._orders[fired.order_id]
                if order.status is not OrderStatus.UNTRIGGERED:
                    continue  # an OCO sibling fired first
                order.status = apply(order.status, OrderEvent.TRIGGER)
                self._emit(
                    OrderTriggered,
                    self._at,
                    order.order_id,
                    order.client_order_id,
                    self.market.price(fired.price),
                )
                if order.role in OCO_ROLES:
                    self._cancel_siblings(order)
                self._take(order, fired.price)
                self._hand_over(point)
            if self._book:
                self._sweep(point)
                if self._entries_done:
                    self._hand_over(point)
            previous = point
        self._last = previous
        self._now = self._at = candle.close_time
        return True

    def _out_of_reach(self, candle: Candle) -> bool:
        """Whether no resting order is crossed anywhere on the candle's path (its points
        lie between the low and the high, in ticks)."""
        book = self._book
        bid, ask = book.best_bid, book.best_ask
        ticks = self.market.nearest_ticks
        return (bid is None or bid < ticks(candle.low)) and (
            ask is None or ask > ticks(candle.high)
        )

    # -- Venue ---------------------------------------------------------------------------

    def submit(self, *, symbol: str, client_order_id: str, request: OrderRequest) -> OrderAck:
        known = self._by_client.get(client_order_id)
        if known is not None:
            if known.request == request and known.symbol == symbol:
                assert known.first_ack is not None
                return known.first_ack
            return OrderAck(client_order_id, known.order_id, known.status, ClientOrderIdReused.code)
        order = _Order(len(self._orders) + 1, client_order_id, symbol, request)
        self._orders[order.order_id] = self._by_client[client_order_id] = order
        code = self._admit(order)
        if code is not None:
            order.status = apply(order.status, OrderEvent.REJECT)
            self._end(order, code)
        else:
            order.arrive = self._index + self.settings.latency
            self._send(order)
        order.first_ack = OrderAck(client_order_id, order.order_id, order.status, code)
        return order.first_ack

    def _send(self, order: _Order) -> None:
        order.arrive = self._index + self.settings.latency
        if self.settings.latency == 0 and self._last is not None:
            self._arrive(order, self._last)
            self._hand_over(self._last)
        else:
            self._pending.append(order)

    def submit_list(
        self,
        *,
        symbol: str,
        client_list_id: str,
        oco: tuple[OrderRequest, OrderRequest] | None = None,
        bracket: Bracket | None = None,
    ) -> ListAck:
        """An OCO or a bracket (``lists``), idempotent by ``client_list_id``; its legs are
        named ``<client_list_id>:<i>``. Refused (a code, nothing changed) as the live
        venue refuses it."""
        key = (symbol, oco, bracket)
        known = self._lists.get(client_list_id)
        if known is not None:
            if known[0] == key:
                return known[1]
            return replace(known[1], code=ClientOrderIdReused.code)
        spec = self.market
        ids = [leg_client_id(client_list_id, i) for i in range(2 if bracket is None else 3)]
        try:
            if (oco is None) == (bracket is None):
                raise InvalidOrder("Give an OCO or a bracket", field="kind")
            if symbol != spec.symbol:
                raise UnknownMarket()
            if any(i in self._by_client for i in ids):
                raise ClientOrderIdReused()
            ref, now = self.last_price, self._now
            plan = (
                plan_oco(spec, oco, now=now, reference_price=ref)
                if oco is not None
                else plan_bracket(spec, bracket, now=now, reference_price=ref)  # type: ignore[arg-type]
            )
        except UserError as error:
            return ListAck(client_list_id, (), error.code)
        if self._gate is not None:
            for cid, leg in zip(ids, plan, strict=True):
                refused = self._gate.admit(self, cid, leg.valid)
                if refused is not None:
                    return ListAck(client_list_id, (), refused)
        funded = [leg for leg in plan if leg.status is not OrderStatus.PENDING]
        units = max(hold_units(spec, x.valid.side, x.valid.price, x.valid.quantity) for x in funded)
        if units > self._available[self._currency(funded[0].valid.side)]:
            return ListAck(client_list_id, (), InsufficientFunds.code)
        legs: list[_Order] = []
        for cid, leg in zip(ids, plan, strict=True):
            order = _Order(len(self._orders) + 1, cid, symbol, leg.request)
            order.valid, order.role, order.legs = leg.valid, leg.role, legs
            if leg.valid.expires_at is not None:
                self._expiring.append(order)
            order.currency = self._currency(leg.valid.side)
            if leg.status is OrderStatus.PENDING:
                order.status = OrderStatus.PENDING
            elif oco is not None:
                order.funds = legs[0].funds if legs else order.funds  # one hold for the OCO
            self._orders[order.order_id] = self._by_client[cid] = order
            legs.append(order)
        self._move_hold(legs[0], units)
        if self._gate is not None:
            self._gate.placed(self, len(legs))
        for order in legs:
            if order.status is OrderStatus.NEW:
                self._send(order)
        for order in legs:
            order.first_ack = self._ack(order)
        ack = ListAck(client_list_id, tuple(o.first_ack for o in legs if o.first_ack))
        self._lists[client_list_id] = (key, ack)
        return ack

    def cancel_list(self, *, client_list_id: str) -> ListAck:
        """Cancel every live order of the list (a bracket's exits before its entry)."""
        if self._gate is not None:
            self._gate.cancel_asked(self)
        known = self._lists.get(client_list_id)
        if known is None:
            return ListAck(client_list_id, (), OrderNotFound.code)
        legs = [self._by_client[a.client_order_id] for a in known[1].orders]
        for order in reversed(legs):
            if order.status in LIVE_STATUSES:
                self._cancel_now(order, m.DoneReason.CANCELED.value)
        self._hand_over(self._last)
        return ListAck(client_list_id, tuple(self._ack(o) for o in legs))

    def cancel(self, *, client_order_id: str) -> OrderAck:
        if self._gate is not None:
            self._gate.cancel_asked(self)
        order = self._by_client.get(client_order_id)
        if order is None:
            return OrderAck(client_order_id, None, None, OrderNotFound.code)
        if order.order_id in self._book or order.status in (
            OrderStatus.NEW,
            OrderStatus.UNTRIGGERED,
            OrderStatus.PENDING,
        ):
            self._cancel_now(order, m.DoneReason.CANCELED.value)
            if order.role in OCO_ROLES:
                self._cancel_siblings(order)  # canceling one leg cancels the OCO
            self._hand_over(self._last)
        else:
            return self._ack(order, OrderNotCancellable.code)
        return self._ack(order)

    def _cancel_now(self, order: _Order, reason: str) -> None:
        if order.order_id in self._book:
            self._book.handle(m.Cancel(self._next_seq(), order.order_id))
        else:
            if order in self._pending:
                self._pending.remove(order)
            self._triggers.disarm(order.order_id)
        order.status = apply(order.status, OrderEvent.CANCEL)
        self._end(order, reason)

    def amend(self, *, client_order_id: str, price: Decimal, quantity: Decimal) -> OrderAck:
        order = self._by_client.get(client_order_id)
        if order is None:
            return OrderAck(client_order_id, None, None, OrderNotFound.code)
        resting = self._book.resting(order.order_id)
        if resting is None or order.legs:
            return self._ack(order, OrderNotAmendable.code)
        try:
            ticks = self.market.to_ticks(price)
            lots = self.market.to_lots(quantity)
        except UserError as error:
            return self._ack(order, error.code)
        remaining = lots - (resting.quantity - resting.remaining)
        if remaining <= 0:
            return self._ack(order, InvalidAmend.code)
        delta = self._hold_need(resting, ticks, remaining) - order.hold
        if delta > self._available[order.currency]:
            return self._ack(order, InsufficientFunds.code)
        self._move_hold(order, max(delta, 0))
        events = self._book.handle(m.Amend(self._next_seq(), order.order_id, ticks, lots))
        rejected = [e for e in events if isinstance(e, m.AmendRejected)]
        if rejected:
            self._move_hold(order, -max(delta, 0))
            return self._ack(order, rejected[0].reason.value)
        assert order.valid is not None
        order.valid = replace(order.valid, price=ticks, quantity=lots)
        self._absorb(events)
        if delta < 0 and order.hold:
            self._move_hold(order, delta)
        return self._ack(order)

    def open_orders(self) -> tuple[OpenOrder, ...]:
        spec = self.market
        return tuple(
            OpenOrder(
                o.order_id,
                o.client_order_id,
                o.symbol,
                o.valid.side,
                o.valid.type,
                spec.quantity(o.valid.quantity),
                spec.quantity(o.filled),
                spec.price(o.valid.price),
                None if o.valid.stop_price is None else spec.price(o.valid.stop_price),
                o.status,
            )
            for o in self._orders.values()
            if o.status in LIVE_STATUSES and o.valid is not None
        )

    def balances(self) -> Mapping[str, Balance]:
        return {c: self.balance(c) for c in self._scales}

    def balance(self, currency: str) -> Balance:
        """One currency's of ``balances()`` (the same object while it does not change)."""
        available, held = self._available[currency], self._held[currency]
        shown = self._shown.get(currency)
        if shown is None or shown[0] != available or shown[1] != held:
            balance = Balance(
                currency, self._amount(currency, available), self._amount(currency, held)
            )
            shown = self._shown[currency] = (available, held, balance)
        return shown[2]

    def events(self, *, after: int = 0) -> tuple[VenueEvent, ...]:
        return tuple(self._events[after:])

    @property
    def event_count(self) -> int:
        """The number of the last event (0: none yet)."""
        return len(self._events)

    # -- orders arriving, trading and ending ---------------------------------------------

    def _admit(self, order: _Order) -> str | None:
        """Validate and hold: None, or the refusal's code (nothing changed)."""
        try:
            if order.symbol != self.market.symbol:
                raise UnknownMarket()
            valid = validate_order(
                order.request, self.market, now=self._now, reference_price=self.last_price
            )
        except UserError as error:
            return error.code
        if self._gate is not None:
            refused = self._gate.admit(self, order.client_order_id, valid)
            if refused is not None:
                return refused
        units = hold_units(self.market, valid.side, valid.price, valid.quantity)
        currency = self._currency(valid.side)
        if units > self._available[currency]:
            return InsufficientFunds.code
        order.valid, order.currency = valid, currency
        self._move_hold(order, units)
        if valid.expires_at is not None:
            self._expiring.append(order)
        if self._gate is not None:
            self._gate.placed(self, 1)
        return None

    def _arrive(self, order: _Order, price: int) -> None:
        assert order.valid is not None
        if order.valid.trigger is not None:
            order.status = apply(order.status, OrderEvent.ARM)
            self._triggers.arm(order.order_id, order.valid)
            self._emit(OrderAccepted, self._at, order.order_id, order.client_order_id, order.status)
        else:
            self._take(order, price)

    def _take(self, order: _Order, price: int) -> None:
        """Place ``order`` on the book with the market's liquidity resting at ``price``."""
        valid = order.valid
        assert valid is not None
        synthetic = None
        if self._budget > 0:
            price = self._slipped(valid, price)
            self._synthetic -= 1
            synthetic = self._synthetic
            other = Side.SELL if valid.side is Side.BUY else Side.BUY
            place = m.Place(
                self._next_seq(),
                synthetic,
                MARKET_USER,
                other,
                OrderType.LIMIT,
                price,
                min(self._budget, UNLIMITED),
                TimeInForce.GTC,
            )
            self._absorb(self._book.handle(place))
        command = m.place_command(
            valid, seq=self._next_seq(), order_id=order.order_id, user_id=ACCOUNT_USER
        )
        self._absorb(self._book.handle(command))
        if synthetic is not None and synthetic in self._book:
            self._book.handle(m.Cancel(self._next_seq(), synthetic))

    def _slipped(self, valid: ValidOrder, price: int) -> int:
        bps = self.settings.slippage_bps
        if not bps:
            return price
        moved = price * self._rng.randint(0, bps) // BPS
        if valid.side is Side.BUY:
            return max(price, min(price + moved, valid.price))
        return min(price, max(price - moved, valid.price, 1))

    def _sweep(self, point: int) -> None:
        """The market trades at ``point`` with every resting order it crosses."""
        book = self._book
        for side, crosses in (
            (Side.SELL, book.best_bid is not None and book.best_bid >= point),
            (Side.BUY, book.best_ask is not None and book.best_ask <= point),
        ):
            if crosses and self._budget > 0:
                self._synthetic -= 1
                place = m.Place(
                    self._next_seq(),
                    self._synthetic,
                    MARKET_USER,
                    side,
                    OrderType.LIMIT,
                    point,
                    self._budget,
                    TimeInForce.IOC,
                )
                self._absorb(book.handle(place))

    def _absorb(self, events: list[m.Event]) -> None:
        for event in events:
            if isinstance(event, m.Fill):
                self._budget -= event.quantity
                if event.maker_user_id == ACCOUNT_USER:
                    maker = self._orders[event.maker_order_id]
                    self._fill(
                        maker, event, event.maker_fee, event.maker_remaining, Liquidity.MAKER
                    )
                else:
                    taker = self._orders[event.taker_order_id]
                    self._fill(
                        taker, event, event.taker_fee, event.taker_remaining, Liquidity.TAKER
                    )
                continue
            order = self._orders.get(getattr(event, "order_id", 0))
            if order is None:
                continue  # the market's
            if isinstance(event, m.Accepted):
                order.status = apply(order.status, OrderEvent.ACCEPT)
                self._emit(
                    OrderAccepted, self._at, order.order_id, order.client_order_id, order.status
                )
            elif isinstance(event, m.Rejected):
                order.status = apply(order.status, OrderEvent.REJECT)
                self._end(order, event.reason.value)
                if order.role in OCO_ROLES:
                    self._cancel_siblings(order)  # a leg refused on arrival
            elif isinstance(event, m.OrderDone):
                done = (
                    OrderEvent.CANCEL if event.status is OrderStatus.CANCELED else OrderEvent.EXPIRE
                )
                order.status = apply(order.status, done)
                self._end(order, event.reason.value)

    def _fill(
        self, order: _Order, fill: m.Fill, fee: int, remaining: int, liquidity: Liquidity
    ) -> None:
        spec, base, quote = self.market, self.market.base, self.market.quote
        assert order.valid is not None
        base_units = fill.quantity * self._base_units_per_lot
        if order.valid.side is Side.BUY:
            cost = fill.notional + fee
            order.hold -= cost
            self._held[quote] -= cost
            self._available[base] += base_units
        else:
            order.hold -= base_units
            self._held[base] -= base_units
            self._available[quote] += fill.notional - fee
        self._changes += 1
        if order.hold < 0:
            raise InvariantViolation(f"order {order.order_id} spent more than it held")
        order.filled += fill.quantity
        order.status = apply(
            order.status, OrderEvent.FILL_PARTIAL if remaining else OrderEvent.FILL
        )
        self._emit(
            OrderFilled,
            self._at,
            order.order_id,
            order.client_order_id,
            order.valid.side,
            spec.price(fill.price),
            spec.quantity(fill.quantity),
            self._quote_unit * fill.notional,
            self._quote_unit * fee,
            liquidity,
            spec.quantity(remaining),
        )
        if order.role in OCO_ROLES:
            self._cancel_siblings(order)
        if not remaining:
            self._finished(order)

    def _end(self, order: _Order, reason: str) -> None:
        self._release(order)
        self._emit(
            OrderEnded, self._at, order.order_id, order.client_order_id, order.status, reason
        )
        if order.role == ListRole.ENTRY:
            self._entries_done.append(order)

    def _finished(self, order: _Order) -> None:
        """Its last fill: what a better price left of the hold is free."""
        self._release(order)
        if order.role == ListRole.ENTRY:
            self._entries_done.append(order)

    def _release(self, order: _Order) -> None:
        """Release what is left of the hold, unless a live order shares it."""
        if not order.legs or not any(
            o is not order and o.funds is order.funds and o.status in LIVE_STATUSES
            for o in order.legs
        ):
            self._move_hold(order, -order.hold)

    # -- order lists ---------------------------------------------------------------------

    def _cancel_siblings(self, order: _Order) -> None:
        for other in order.legs:
            if other is not order and other.role in OCO_ROLES and other.status in LIVE_STATUSES:
                self._cancel_now(other, OCO_REASON)

    def _hand_over(self, price: int | None) -> None:
        """Brackets whose entry is final: their exits go live at ``price`` for what the
        entry filled, or end (``ENTRY_NOT_FILLED``, ``INSUFFICIENT_FUNDS``)."""
        while self._entries_done:
            entry = self._entries_done.pop(0)
            exits = [o for o in entry.legs if o.status is OrderStatus.PENDING]
            if not exits:
                continue
            need = 0
            shared = _Hold()
            for order in exits:
                assert order.valid is not None
                order.funds = shared
                order.valid = replace(order.valid, quantity=entry.filled)
                v = order.valid
                need = max(need, hold_units(self.market, v.side, v.price, v.quantity))
            reason = None
            if entry.filled == 0:
                reason = ENTRY_NOT_FILLED
            elif need > self._available[exits[0].currency]:
                reason = InsufficientFunds.code
            if reason is not None:
                for order in exits:
                    order.status = apply(order.status, OrderEvent.CANCEL)
                    self._end(order, reason)
                continue
            assert price is not None  # the entry filled: a candle was played
            self._move_hold(exits[0], need)
            for order in exits:
                if order.role == ListRole.TAKE_PROFIT:
                    order.status = apply(order.status, OrderEvent.RELEASE)
                self._arrive(order, price)

    def _expire(self, moment: datetime) -> None:
        """GTD orders whose time has come, on the book and off it (none to look at when
        no order with an expiry is live: only the command's seq is used up)."""
        seq = self._next_seq()
        if not self._expiring:
            return
        self._absorb(self._book.handle(m.ExpireDue(seq, epoch_ms(moment))))
        for order in list(self._expiring):
            expires = order.valid.expires_at if order.valid is not None else None
            if (
                expires is not None
                and expires <= moment
                and order.status in (OrderStatus.NEW, OrderStatus.UNTRIGGERED)
            ):
                if order in self._pending:
                    self._pending.remove(order)
                self._triggers.disarm(order.order_id)
                order.status = apply(order.status, OrderEvent.EXPIRE)
                self._end(order, m.DoneReason.GTD_EXPIRED.value)
        self._expiring = [o for o in self._expiring if o.status not in FINAL_STATUSES]

    # -- funds ---------------------------------------------------------------------------

    def _currency(self, side: Side) -> str:
        """What an order of ``side`` holds."""
        return self.market.quote if side is Side.BUY else self.market.base

    def _move_hold(self, order: _Order, units: int) -> None:
        """Hold ``units`` more for ``order`` (available → held), or release ``-units``."""
        if not units:
            return
        self._available[order.currency] -= units
        self._held[order.currency] += units
        self._changes += 1
        order.hold += units

    def _hold_need(self, resting: m.RestingOrder, price: int, lots: int) -> int:
        """What a resting order must hold for ``lots`` more at ``price`` (the live engine's
        rule: its fees so far are in ``fee_numerator``)."""
        spec = self.market
        if resting.side is Side.SELL:
            return lots * spec.base_units_per_lot
        notional = spec.notional_units(price, lots)
        rate = max(spec.maker_fee_numerator, spec.taker_fee_numerator)
        den, so_far = spec.fee_denominator, resting.fee_numerator
        return notional + (-(-(so_far + notional * rate) // den)) - (-(-so_far // den))

    def _amount(self, currency: str, units: int) -> Decimal:
        unit = self._unit[currency]
        return (unit * units).quantize(unit)

    # -- bookkeeping ---------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _emit(self, kind: Callable[..., VenueEvent], *fields: object) -> None:
        """Record an event of ``kind``: its number, then ``fields``."""
        self._events.append(kind(len(self._events) + 1, *fields))

    def _ack(self, order: _Order, code: str | None = None) -> OrderAck:
        return OrderAck(order.client_order_id, order.order_id, order.status, code)


def _units(amount: Decimal, scale: int) -> int:
    units = amount.scaleb(scale)
    if units != units.to_integral_value() or units < 0:
        raise InvariantViolation(f"{amount} is not a whole number of minor units (scale {scale})")
    return int(units)
