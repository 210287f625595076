"""The bots' runtime vocabulary (pure): what a bot is given, what it answers.

Every bot kind is a deterministic state machine::

    bot.step(state, event) -> Step(state, commands, decisions)

``event`` is one of

    Fill        one of its orders traded (the venue's ``OrderFilled``)
    OrderEnd    one of its orders ended without its last fill: CANCELED, EXPIRED, or
                REJECTED (refused on arrival; ``refusal`` turns a refused ``OrderAck``
                into one)
    PriceTick   a price of a market: a trade, or a candle's close
    Signal      an alert (``alerts.Alert``) received at ``at``
    TimerTick   time passed (cooldowns, periods)
    StopBot     stop: cancel its orders, and sell what it holds when ``close_position``

and each carries its time ``at``: a bot reads the time from its events only, never from
the clock. ``commands`` are what to send to the venue, in order (cancels before the
orders that need what they release): ``PlaceOrder`` (a symbol, an ``OrderRequest`` of the
venue interface, a client order id) and ``CancelOrder`` (by client order id).
``decisions`` record each command and everything else the bot decided, each with its
reason (``Action``).

The client order id of each order is ``bot:<bot id>:<scope>:<step>``: the scope is what
the order belongs to (a DCA deal's number, a grid level, a rebalance round, an alert),
the step the bot's count of orders placed so far, kept in its state. So the same state
and event give the same ids: after a crash between a step and its placement, running
the step again places the same orders, which the venue takes once (submissions are
idempotent by client order id), and nothing is lost or doubled.

State is plain frozen data (``codec`` turns it into JSON and back) that keeps the bot's
live orders (``BotOrder``); ``Plan`` is the scratch pad a step uses to place, cancel and
note, and to follow fills and ends of the orders it knows.

What a runtime (the live service, paper, ``backtest.BotStrategy``) owes the machines:

- events one at a time, each step's state stored before its commands are sent, and the
  commands sent in order (a crash in between: send them again, same ids);
- an order's events in the venue's order: its fills before its end. Every order ends
  with its last fill or an ``OrderEnd``, a canceled one too (the machines wait for a
  canceled sell's end before selling what it may have sold: the live venue reports ends
  in its acks and open orders, not as events yet, so the service turns a cancel's or a
  refusal's ack into the ``OrderEnd``, after the order's fills);
- a ``TimerTick`` at ``bot.wake_at(state)``, before any event at or after that moment
  (so a band never depends on the time: the end of a cooldown comes as a wake-up), once
  per moment: a wake-up at or before the last ``TimerTick`` the runtime gave is not due
  again, and one at or before the event just stepped is given at once, at its time;
- ``PriceTick`` s of its own markets only (the symbols ``bot.watch(state)`` names: all its
  markets, always), and of those at least every one its band reaches
  (``watch(state)[symbol].reaches(price)``, the band of the state at that moment): a
  tick strictly inside the band changes nothing but the price the bot last saw. So a
  runtime that indexes the bands (``triggers.PriceTriggers``, one per market) steps only
  the bots a trade concerns, and a bot whose band is ``PriceBand.NONE`` costs nothing. It
  may give more (a backtest gives every close);
- a catch-up tick: before any other event (a ``Fill``, an ``OrderEnd``, a ``TimerTick``,
  a ``Signal``, a ``StopBot``, a tick of another of its markets), a ``PriceTick`` with
  each of its markets' price as of that event (the last trade at or before its time, at
  that trade's time) when the bot has not been given it. So the last price a bot keeps
  (``last_price``, rebalance's ``prices``: "the last price seen") is the market's
  whenever it acts on anything but a price: it sizes a market order on a fill, a wake-up
  or an alert at the market's price without having been given the ticks in between. (A
  fill read from the record after later trades is preceded by the trade before it, not
  the latest: given every tick in time order, that is the price the bot would have had.
  The live runtime gives a tick at the fill's own price, the price of its own trade.)

The property tests (``tests/bots/test_price_interest.py``) run each kind on every tick
and on the ticks its bands reach with the catch-up ticks, and find the same commands,
decisions and states.

Amounts are ``Decimal``: prices on the market's tick, quantities on its lot (``floor_to``,
``ceil_to``), quote amounts in its quote currency.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, localcontext
from enum import StrEnum
from typing import Any, ClassVar, Generic, NamedTuple, Protocol, TypeVar

from app.bots.domain.alerts import Alert
from app.trading.domain.orders import BPS, MarketSpec, OrderRequest, OrderStatus, Side
from app.trading.domain.positions import Position
from app.venues.domain.venue import OrderAck, OrderEnded, OrderFilled, VenueEvent

ZERO = Decimal(0)
FLAT = Position()  # holding nothing
MAX_AMOUNT = Decimal("1000000000000000")  # 1e15 of a currency: the most any setting takes
MAX_SLIPPAGE_BPS = 1_000  # the farthest a market order's worst price may be
S = TypeVar("S")


class BotKind(StrEnum):
    DCA = "DCA"
    GRID = "GRID"
    REBALANCE = "REBALANCE"
    SIGNAL = "SIGNAL"


class BotStatus(StrEnum):
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"  # stopped: waiting for its orders to end
    STOPPED = "STOPPED"


class Action(StrEnum):
    """What a decision is."""

    PLACE = "PLACE"
    CANCEL = "CANCEL"
    ORDER_ENDED = "ORDER_ENDED"  # an order ended that the bot had not canceled
    DEAL_OPENED = "DEAL_OPENED"
    DEAL_CLOSED = "DEAL_CLOSED"
    DEAL_ABANDONED = "DEAL_ABANDONED"  # its base order got nothing
    WAITING = "WAITING"  # something keeps the bot from acting (budget, lot, price)
    SKIPPED = "SKIPPED"  # a trade not worth making (rebalance)
    ALERT_DROPPED = "ALERT_DROPPED"  # a repeat, stale, another market's, or unusable
    REBALANCE = "REBALANCE"
    GRID_STARTED = "GRID_STARTED"
    GRID_MOVED = "GRID_MOVED"  # trailed up one level
    STOPPED = "STOPPED"
    UNKNOWN_ORDER = "UNKNOWN_ORDER"  # an event for an order the bot does not track


# --- events -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fill:
    at: datetime
    client_order_id: str
    side: Side
    price: Decimal
    quantity: Decimal
    fee: Decimal  # in the quote currency
    remaining: Decimal  # the order's quantity left after this fill

    @property
    def value(self) -> Decimal:
        return self.price * self.quantity


@dataclass(frozen=True, slots=True)
class OrderEnd:
    at: datetime
    client_order_id: str
    status: OrderStatus  # CANCELED, EXPIRED or REJECTED
    reason: str  # a DoneReason or an error code


@dataclass(frozen=True, slots=True)
class PriceTick:
    at: datetime
    symbol: str
    price: Decimal


@dataclass(frozen=True, slots=True)
class Signal:
    at: datetime  # received
    alert: Alert


@dataclass(frozen=True, slots=True)
class TimerTick:
    at: datetime


@dataclass(frozen=True, slots=True)
class StopBot:
    at: datetime
    close_position: bool = False


Event = Fill | OrderEnd | PriceTick | Signal | TimerTick | StopBot


def from_venue(event: VenueEvent) -> Fill | OrderEnd | None:
    """The venue's event as the bot's (acceptances and triggers are not the bot's)."""
    if isinstance(event, OrderFilled):
        return Fill(
            event.at,
            event.client_order_id,
            event.side,
            event.price,
            event.quantity,
            event.fee,
            event.remaining,
        )
    if isinstance(event, OrderEnded):
        return OrderEnd(event.at, event.client_order_id, event.status, event.reason)
    return None


def refusal(ack: OrderAck, at: datetime) -> OrderEnd | None:
    """A submission the venue refused, as the order's end (None when it was taken)."""
    if ack.ok:
        return None
    assert ack.code is not None
    return OrderEnd(at, ack.client_order_id, OrderStatus.REJECTED, ack.code)


# --- commands and decisions ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    client_order_id: str
    symbol: str
    request: OrderRequest
    reason: str


@dataclass(frozen=True, slots=True)
class CancelOrder:
    client_order_id: str
    reason: str


Command = PlaceOrder | CancelOrder


@dataclass(frozen=True, slots=True)
class Decision:
    at: datetime
    action: Action
    reason: str
    client_order_id: str | None = None


class Step(NamedTuple, Generic[S]):
    state: S
    commands: tuple[Command, ...]
    decisions: tuple[Decision, ...]


class BotState(Protocol):
    """What every kind's state has: its status, its count of orders placed, its orders."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def status(self) -> BotStatus: ...

    @property
    def seq(self) -> int: ...

    @property
    def orders(self) -> tuple[BotOrder, ...]: ...


B = TypeVar("B", bound=BotState)


@dataclass(frozen=True, slots=True)
class PriceBand:
    """The prices of one market a bot must be given: a ``PriceTick`` at or below ``low``
    or at or above ``high`` (None: no bound on that side), every one (``EVERY``), or none
    (``NONE``: no bound at all). A tick strictly between the bounds would change nothing
    but the price the bot last saw. Bounds with ``low >= high`` reach every price."""

    low: Decimal | None = None
    high: Decimal | None = None
    every: bool = False

    EVERY: ClassVar[PriceBand]
    NONE: ClassVar[PriceBand]

    @classmethod
    def outside(cls, low: Decimal | None = None, high: Decimal | None = None) -> PriceBand:
        """The band of these bounds: ``EVERY`` when they leave no price between them."""
        if low is not None and high is not None and low >= high:
            return cls.EVERY
        return cls(low, high)

    def reaches(self, price: Decimal) -> bool:
        return (
            self.every
            or (self.low is not None and price <= self.low)
            or (self.high is not None and price >= self.high)
        )

    def __or__(self, other: PriceBand) -> PriceBand:
        """The prices either needs: the higher low, the lower high."""
        if self.every or other.every:
            return PriceBand.EVERY
        lows = [b for b in (self.low, other.low) if b is not None]
        highs = [b for b in (self.high, other.high) if b is not None]
        return PriceBand.outside(max(lows, default=None), min(highs, default=None))


PriceBand.EVERY = PriceBand(every=True)
PriceBand.NONE = PriceBand()


def interest(bands: Iterable[PriceBand]) -> PriceBand:
    """The prices any of ``bands`` needs (``NONE`` for none)."""
    out = PriceBand.NONE
    for band in bands:
        out |= band
    return out


def quotient(dividend: Decimal, divisor: Decimal, rounding: str) -> Decimal:
    """``dividend / divisor`` rounded ``rounding`` (``ROUND_FLOOR``, ``ROUND_CEILING``)
    at the context's precision: a band's bound on the safe side of a threshold."""
    with localcontext() as context:
        context.rounding = rounding
        return dividend / divisor


class Bot(Protocol[S]):
    """A bot kind with its settings: ``start`` gives its first state, ``step`` the next.
    ``wake_at`` is when it needs a ``TimerTick`` without any other event (None: never),
    so an idle bot costs nothing until then. ``watch`` is the band of prices it needs,
    for each of its markets (by symbol, always the same ones: its markets), so a bot
    waiting for its price costs nothing until a trade reaches it (the runtime's duties
    are in this module's docstring)."""

    kind: ClassVar[BotKind]
    bot_id: int

    def start(self, at: datetime) -> S: ...

    def step(self, state: S, event: Event) -> Step[S]: ...

    def wake_at(self, state: S) -> datetime | None: ...

    def watch(self, state: S) -> Mapping[str, PriceBand]: ...


def client_order_id(bot_id: int, scope: str, step: int) -> str:
    return f"bot:{bot_id}:{scope}:{step}"


# --- orders a bot tracks ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BotOrder:
    """One of the bot's orders from its placement until it ends or fills completely."""

    client_order_id: str
    symbol: str
    side: Side
    role: str  # the kind's name for it (SAFETY, TAKE_PROFIT, GRID ...)
    scope: str  # what it belongs to (a deal, a grid level, a round, an alert)
    index: int  # its number within the scope (a safety order's, a take-profit step's)
    quantity: Decimal
    price: Decimal  # its limit price, or a market order's worst price
    filled: Decimal = ZERO
    canceling: bool = False  # the bot asked to cancel it; the end has not come yet

    @property
    def open_quantity(self) -> Decimal:
        return self.quantity - self.filled


class Plan:
    """One step's scratch pad: the bot's orders as the step changes them, the commands
    and the decisions so far."""

    def __init__(self, *, bot_id: int, at: datetime, orders: Iterable[BotOrder], seq: int):
        self.bot_id, self.at, self.seq = bot_id, at, seq
        self.orders: dict[str, BotOrder] = {o.client_order_id: o for o in orders}
        self.commands: list[Command] = []
        self.decisions: list[Decision] = []

    def place(
        self,
        *,
        symbol: str,
        role: str,
        scope: str,
        request: OrderRequest,
        reason: str,
        index: int = 0,
    ) -> BotOrder:
        self.seq += 1
        cid = client_order_id(self.bot_id, scope, self.seq)
        price = request.price if request.price is not None else request.worst_price
        assert price is not None, "a bot's market orders carry their worst price"
        order = BotOrder(cid, symbol, request.side, role, scope, index, request.quantity, price)
        self.orders[cid] = order
        self.commands.append(PlaceOrder(cid, symbol, request, reason))
        self.decisions.append(Decision(self.at, Action.PLACE, reason, cid))
        return order

    def cancel(self, order: BotOrder, reason: str) -> None:
        if order.canceling or order.client_order_id not in self.orders:
            return
        self.orders[order.client_order_id] = replace(order, canceling=True)
        self.commands.append(CancelOrder(order.client_order_id, reason))
        self.decisions.append(Decision(self.at, Action.CANCEL, reason, order.client_order_id))

    def note(self, action: Action, reason: str, client_order_id: str | None = None) -> None:
        self.decisions.append(Decision(self.at, action, reason, client_order_id))

    def fill(self, event: Fill) -> BotOrder | None:
        """The order with this fill counted (forgotten once filled completely); None,
        noted, for an order the bot does not track."""
        order = self.orders.get(event.client_order_id)
        if order is None:
            self.note(Action.UNKNOWN_ORDER, "a fill of an order this bot does not track",
                      event.client_order_id)  # fmt: skip
            return None
        order = replace(order, filled=order.filled + event.quantity)
        if event.remaining == 0:
            del self.orders[event.client_order_id]
        else:
            self.orders[event.client_order_id] = order
        return order

    def end(self, event: OrderEnd) -> BotOrder | None:
        """The order that ended (forgotten); None for one the bot does not track (it
        ended with its last fill, or is not the bot's). An end the bot did not ask for
        is noted."""
        order = self.orders.pop(event.client_order_id, None)
        if order is not None and not order.canceling:
            self.note(
                Action.ORDER_ENDED,
                f"{order.role} order {event.status.value}: {event.reason}",
                event.client_order_id,
            )
        return order

    def live(self, *, role: str | None = None, scope: str | None = None) -> list[BotOrder]:
        """Orders not being canceled, of ``role`` and ``scope`` when given."""
        return [
            o
            for o in self.orders.values()
            if not o.canceling
            and (role is None or o.role == role)
            and (scope is None or o.scope == scope)
        ]

    def tracked(self, *, scope: str) -> list[BotOrder]:
        """Every order of ``scope`` that has not ended, canceling or not."""
        return [o for o in self.orders.values() if o.scope == scope]

    def cancel_all(self, reason: str, *, scope: str | None = None) -> None:
        for order in self.live(scope=scope):
            self.cancel(order, reason)

    def result(self, state: B, *, idle: bool = True, **changes: Any) -> Step[B]:
        """The step's answer: ``state`` with ``changes``, the plan's orders and its count
        of orders placed; a STOPPING bot is STOPPED once none of its orders is left and it
        is ``idle`` (nothing else keeps it: a DCA deal still selling)."""
        status = state.status
        if status is BotStatus.STOPPING and not self.orders and idle:
            status = BotStatus.STOPPED
        orders = tuple(self.orders.values())
        new = replace(state, status=status, seq=self.seq, orders=orders, **changes)
        return Step(new, tuple(self.commands), tuple(self.decisions))


# --- amounts ------------------------------------------------------------------------------


def floor_to(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(ROUND_FLOOR) * step


def ceil_to(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(ROUND_CEILING) * step


def nearest_to(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(ROUND_HALF_EVEN) * step


def lots_worth(market: MarketSpec, quote: Decimal, price: Decimal) -> Decimal:
    """The most whole lots ``quote`` pays for at ``price`` (fees not counted)."""
    if quote <= 0:
        return ZERO
    return floor_to(quote / price, market.lot_size)


def fee_of(market: MarketSpec, value: Decimal, rate: Decimal) -> Decimal:
    """A fee as the venue charges it on one order: rounded up to the quote's minor unit."""
    return ceil_to(value * rate, market.quote_unit)


def worst_price(market: MarketSpec, side: Side, price: Decimal, slippage_bps: int) -> Decimal:
    """A market order's worst acceptable price, ``slippage_bps`` from ``price``: a BUY's
    above (rounded down to the tick), a SELL's below (rounded up, at least one tick)."""
    if side is Side.BUY:
        return max(market.tick_size, floor_to(price * (BPS + slippage_bps) / BPS, market.tick_size))
    return max(market.tick_size, ceil_to(price * (BPS - slippage_bps) / BPS, market.tick_size))


def max_fee(market: MarketSpec) -> Decimal:
    return max(market.maker_fee, market.taker_fee)


def figure(value: Decimal) -> str:
    """A computed figure in a reason: at most 8 decimals, no trailing zeros."""
    return f"{value.quantize(Decimal('0.00000001')).normalize():f}"


def worth_the_minimum(market: MarketSpec, quantity: Decimal) -> PriceBand:
    """The prices at which ``quantity`` is worth the market's minimum order value (its
    bound rounded down: every such price reaches it)."""
    if market.min_notional <= 0:
        return PriceBand.EVERY
    return PriceBand(high=quotient(market.min_notional, quantity, ROUND_FLOOR))
