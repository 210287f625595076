"""The signal bot (pure): trades one market on TradingView alerts (``alerts``).

Each alert goes through ``alerts.admit`` (once per id; dropped when older than
``max_lag``) and must name this market when it names one. Then, as a MARKET order at
most ``max_slippage_bps`` from the last price (the alert's ``price`` until the market
has given one):

    BUY    spends the alert's ``amount`` (or ``quantity`` x price) when
           ``use_alert_size``, else ``amount`` of the settings; never beyond ``budget``:
           what the position cost (fees included) plus what its buys in flight may
           spend, each sized at its worst price with the taker fee
    SELL   the alert's ``quantity`` when ``use_alert_size``, else all it holds
    CLOSE  all it holds

never more than it holds less what it is selling already. The client order id's scope
is a digest of the alert id, so an alert's order is recognisable in the venue's lists.
An alert it cannot act on (no price yet, the budget spent, less than one lot) is noted
ALERT_DROPPED with the reason; a dry run is a ``step`` whose commands are not sent.
``StopBot`` cancels its orders; with ``close_position`` it sells what it holds at market
once they have all ended (again at each price while something is left).

Prices it needs (``watch``): none (an alert is sized at the last price, which the
runtime's catch-up tick keeps current), but, stopped and selling, those at which what it
holds is worth the minimum order value once no order is out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import ClassVar

from app.bots.domain.alerts import Alert, AlertAction, SeenAlert, admit, symbol_matches
from app.bots.domain.errors import refuse
from app.bots.domain.runtime import (
    FLAT,
    MAX_AMOUNT,
    MAX_SLIPPAGE_BPS,
    ZERO,
    Action,
    BotKind,
    BotOrder,
    BotStatus,
    Event,
    Fill,
    OrderEnd,
    Plan,
    PriceBand,
    PriceTick,
    Signal,
    Step,
    StopBot,
    TimerTick,
    floor_to,
    worst_price,
    worth_the_minimum,
)
from app.trading.domain.orders import MarketSpec, OrderRequest, OrderType, Side
from app.trading.domain.positions import Position

ORDER = "ALERT"
MAX_LAG = timedelta(days=1)
REMEMBER_ALERTS = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class SignalSettings:
    amount: Decimal  # quote currency per BUY
    budget: Decimal  # the most the position may cost, fees included
    max_lag: timedelta = timedelta(minutes=1)
    use_alert_size: bool = True
    max_slippage_bps: int = 100


def validate_signal(settings: SignalSettings) -> SignalSettings:
    s = settings
    for value, field in ((s.amount, "amount"), (s.budget, "budget")):
        if not value.is_finite() or not 0 < value <= MAX_AMOUNT:
            refuse(field, f"An amount above 0 and at most {MAX_AMOUNT}")
    if not timedelta(seconds=1) <= s.max_lag <= MAX_LAG:
        refuse("maxLag", "A maximum lag between a second and a day")
    if not 0 <= s.max_slippage_bps <= MAX_SLIPPAGE_BPS:
        refuse("maxSlippageBps", f"0 to {MAX_SLIPPAGE_BPS} basis points")
    return s


@dataclass(frozen=True, slots=True)
class SignalState:
    status: BotStatus = BotStatus.RUNNING
    seq: int = 0
    position: Position = FLAT
    orders: tuple[BotOrder, ...] = ()
    last_price: Decimal | None = None  # the last price seen
    seen: tuple[SeenAlert, ...] = ()
    fees: Decimal = ZERO
    alerts: int = 0  # alerts acted on
    closing: bool = False  # stopped, selling what it holds


@dataclass(frozen=True, slots=True)
class SignalBot:
    kind: ClassVar[BotKind] = BotKind.SIGNAL
    bot_id: int
    market: MarketSpec
    settings: SignalSettings  # validated (``validate_signal``)

    def start(self, at: datetime) -> SignalState:
        return SignalState()

    def step(self, state: SignalState, event: Event) -> Step[SignalState]:
        if isinstance(event, PriceTick) and event.symbol != self.market.symbol:
            return Step(state, (), ())  # another market's price
        return _SignalStep(self, state, event.at).run(event)

    def wake_at(self, state: SignalState) -> datetime | None:
        return None  # alerts and fills drive it

    def watch(self, state: SignalState) -> Mapping[str, PriceBand]:
        band, held = PriceBand.NONE, state.position.quantity
        if state.closing and not state.orders and held >= self.market.lot_size:
            band = worth_the_minimum(self.market, held)
        return {self.market.symbol: band}


def alert_scope(alert_id: str) -> str:
    return "a" + hashlib.sha256(alert_id.encode()).hexdigest()[:12]


class _SignalStep:
    def __init__(self, bot: SignalBot, state: SignalState, at: datetime) -> None:
        self.bot, self.s, self.m, self.at = bot, bot.settings, bot.market, at
        self.state = state
        self.plan = Plan(bot_id=bot.bot_id, at=at, orders=state.orders, seq=state.seq)

    def run(self, event: Event) -> Step[SignalState]:
        freed = False  # a canceled order is done
        if isinstance(event, Fill):
            freed = self._fill(event)
        elif isinstance(event, OrderEnd):
            ended = self.plan.end(event)
            freed = ended is not None and ended.canceling
        elif isinstance(event, PriceTick):
            self.state = replace(self.state, last_price=event.price)
        elif isinstance(event, Signal):
            self._signal(event)
        elif isinstance(event, StopBot):
            self._stop(event.close_position)
        if self.state.closing and (freed or isinstance(event, PriceTick | TimerTick | StopBot)):
            self._sell_all()  # not on a refusal's end: it would be refused again at once
        return self.plan.result(self.state)

    def _fill(self, fill: Fill) -> bool:
        """Count the fill; whether it completed a canceled order."""
        order = self.plan.fill(fill)
        if order is None:
            return False
        st = self.state
        position = (
            st.position.bought(fill.quantity, fill.value + fill.fee)
            if fill.side is Side.BUY
            else st.position.sold(fill.quantity, fill.value - fill.fee)
        )
        self.state = replace(st, position=position, fees=st.fees + fill.fee)
        return order.canceling and fill.remaining == 0

    def _signal(self, signal: Signal) -> None:
        alert = signal.alert
        seen, dropped = admit(
            self.state.seen, alert, at=signal.at, max_lag=self.s.max_lag,
            remember=REMEMBER_ALERTS,
        )  # fmt: skip
        self.state = replace(self.state, seen=seen)
        if dropped is None:
            dropped = self._act(alert)
        if dropped is not None:
            self.plan.note(Action.ALERT_DROPPED, f"alert {alert.alert_id}: {dropped}")
        else:
            self.state = replace(self.state, alerts=self.state.alerts + 1)

    def _act(self, alert: Alert) -> str | None:
        """Place the alert's order; why not, when it cannot."""
        if alert.symbol is not None and not symbol_matches(
            alert.symbol, base=self.m.base, quote=self.m.quote
        ):
            return f"for {alert.symbol}, not {self.m.symbol}"
        if self.state.status is not BotStatus.RUNNING:
            return "the bot is stopped"
        price = self.state.last_price or alert.price
        if price is None:
            return "no price yet"
        side = Side.BUY if alert.action is AlertAction.BUY else Side.SELL
        worst = worst_price(self.m, side, price, self.s.max_slippage_bps)
        if side is Side.BUY:
            quantity, why = self._buy_quantity(alert, price, worst)
        else:
            quantity, why = self._sell_quantity(alert)
        if quantity < self.m.lot_size or quantity * price < self.m.min_notional:
            return why or "less than one lot or the minimum order value"
        self.plan.place(
            symbol=self.m.symbol, role=ORDER, scope=alert_scope(alert.alert_id),
            request=OrderRequest(side, OrderType.MARKET, quantity, worst_price=worst),
            reason=f"alert {alert.alert_id}: {alert.action.value.lower()} {quantity}",
        )  # fmt: skip
        return None

    def _buy_quantity(self, alert: Alert, price: Decimal, worst: Decimal) -> tuple[Decimal, str]:
        fee = 1 + self.m.taker_fee
        buying = self.plan.live(role=ORDER)
        in_flight = sum((o.open_quantity * o.price * fee for o in buying if o.side is Side.BUY),
                        ZERO)  # fmt: skip
        room = self.s.budget - self.state.position.cost - in_flight - self.m.quote_unit
        spend = self.s.amount
        if self.s.use_alert_size and alert.amount is not None:
            spend = alert.amount
        elif self.s.use_alert_size and alert.quantity is not None:
            spend = alert.quantity * worst * fee
        if room < spend:
            spend, why = room, f"the budget of {self.s.budget} {self.m.quote} is spent"
        else:
            why = ""
        if spend <= 0:
            return ZERO, why
        return floor_to(spend / (worst * fee), self.m.lot_size), why

    def _sell_quantity(self, alert: Alert) -> tuple[Decimal, str]:
        selling = sum((o.open_quantity for o in self.plan.live(role=ORDER) if o.side is Side.SELL),
                      ZERO)  # fmt: skip
        free = self.state.position.quantity - selling
        quantity = free
        if alert.action is AlertAction.SELL and self.s.use_alert_size and alert.quantity:
            quantity = min(free, floor_to(alert.quantity, self.m.lot_size))
        return quantity, "" if free > 0 else "nothing to sell"

    def _stop(self, close_position: bool) -> None:
        if self.state.status is not BotStatus.RUNNING:
            return
        self.state = replace(self.state, status=BotStatus.STOPPING)
        self.plan.note(Action.STOPPED, "stopped" + (", selling what it holds" * close_position))
        self.plan.cancel_all("the bot was stopped")
        self.state = replace(self.state, closing=close_position)

    def _sell_all(self) -> None:
        """Sell what it holds at market once every canceled order has ended (they may
        still trade until then) and no sale is out."""
        quantity, price = self.state.position.quantity, self.state.last_price
        if self.plan.orders or price is None or quantity < self.m.lot_size:
            return
        if quantity * price < self.m.min_notional:
            return
        self.plan.place(
            symbol=self.m.symbol, role=ORDER, scope="close",
            request=OrderRequest(
                Side.SELL, OrderType.MARKET, quantity,
                worst_price=worst_price(self.m, Side.SELL, price, self.s.max_slippage_bps),
            ),
            reason="the bot was stopped: selling what it holds",
        )  # fmt: skip
