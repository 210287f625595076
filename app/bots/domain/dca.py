"""The DCA bot (pure): deals of a base order, safety orders and take-profit, on one market.

A deal:

    OPENING  the base order: a MARKET buy of ``base_order`` (quote) at most
             ``max_slippage_bps`` above the last price (its worst price; the quantity is
             sized at that price, so it never spends more than ``base_order``)
    OPEN     once the base order is done (filled, or ended with a part filled; with
             nothing filled the deal is abandoned and no deal starts for RETRY_AFTER or
             the cooldown). Its entry price is the base order's average fill price.
             Resting LIMIT buys, the safety orders, wait below it (``dca_settings``):
             ``max_active_safety_orders`` at a time, the next placed when one is done,
             ``max_safety_orders`` in all. Each buy's fill re-places the take-profit:
             LIMIT sells of the position, a step's share at the average entry price x
             (1 + its profit) (rounded up to the tick). Trailing instead: once the price
             reaches average x (1 + profit), the bot follows its highest price and
             sells at market when it falls ``trailing_deviation`` below it.
             The first take-profit fill cancels the safety orders (no buying after
             taking profit). A take-profit is replaced by cancelling it and placing the
             new one once the old one has ended: its fills come before its end, so the
             new one is sized on what is really left, and a deal never has sells out for
             more than it holds (deals on one market share its base: an oversized sell
             would take another deal's). A take-profit the venue refuses is placed
             again at the first event RETRY_AFTER later. A price at or below average
             x (1 - stop_loss) closes.
    CLOSING  its orders are canceled and, once its canceled sells have ended, what it
             holds is sold at market (again at each price while something is left);
             when the take-profit sold everything, it waits for its safety orders'
             cancels. Closed (forgotten, its figures added
             to the bot's totals and noted) once none of its orders is live and nothing
             sellable is left (less than a lot or below the minimum order value stays).

A deal starts on a price, a timer tick or an alert (never on a fill or an order's end,
whose last price may be old) when the bot runs, its start condition holds (at once, or a
BUY alert), fewer than ``max_active_deals`` are open, the cooldown since the last deal's
start or end has passed, and a price is known: at most one deal per event. A SELL or CLOSE
alert closes the open deals at market. Alerts go through ``alerts.admit`` (once per
id, ``max_lag``).

Figures of a deal (``Deal``), fees included: the average entry (what the buys paid per
unit, fees not included), the position at average cost (``positions.Position``: cost
with buy fees; a sale realises its proceeds less sell fees less the sold share of the
cost), the breakeven price (what sells the position for its cost after the exit fee).
Budget: a deal's buys never pay more than ``deal_budget`` before fees (each buy is
sized at its limit or worst price, and each safety order is placed once).

Stop: ``StopBot`` cancels every order; with ``close_position`` each deal sells what it
holds at market, without, the deals end keeping what they hold (reason KEPT).

Prices it needs (``watch``): an open deal's stop-loss and below; trailing, its target and
above, then its high and above, and the high less ``trailing_deviation`` and below; a
closing deal's prices that make what it has left worth the minimum order value. A deal
starts at the next price, at the end of a cooldown or retry wait (``wake_at``), or, with
a base order under one lot, at a price low enough to buy one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import ClassVar

from app.bots.domain.alerts import AlertAction, SeenAlert, admit, symbol_matches
from app.bots.domain.dca_settings import (
    DcaSettings,
    StartCondition,
    base_order,
    base_order_affordable_at,
    safety_deviation,
    safety_order,
)
from app.bots.domain.runtime import (
    FLAT,
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
    ceil_to,
    figure,
    floor_to,
    interest,
    worst_price,
    worth_the_minimum,
)
from app.trading.domain.orders import MarketSpec, OrderRequest, OrderType, Side
from app.trading.domain.positions import Position

BASE, SAFETY, TAKE_PROFIT, CLOSE = "BASE", "SAFETY", "TAKE_PROFIT", "CLOSE"
# close reasons
TAKE_PROFIT_REACHED = "TAKE_PROFIT"
TRAILING_TAKE_PROFIT = "TRAILING_TAKE_PROFIT"
STOP_LOSS = "STOP_LOSS"
ALERT = "ALERT"
STOPPED = "STOPPED"
KEPT = "KEPT"  # stopped without selling: the position stays
RETRY_AFTER = timedelta(minutes=1)  # after a base order that got nothing
MAX_LAG = timedelta(minutes=1)
REMEMBER_ALERTS = timedelta(days=1)


class DealStatus(StrEnum):
    OPENING = "OPENING"
    OPEN = "OPEN"
    CLOSING = "CLOSING"


@dataclass(frozen=True, slots=True)
class Deal:
    number: int
    status: DealStatus
    opened_at: datetime
    position: Position = FLAT
    bought: Decimal = ZERO  # base, in all
    bought_value: Decimal = ZERO  # quote paid, fees not included
    sold: Decimal = ZERO
    sold_value: Decimal = ZERO  # quote received, fees not deducted
    fees: Decimal = ZERO
    entry_price: Decimal | None = None  # the base order's average fill price
    safety_placed: int = 0
    safety_filled: int = 0  # safety orders filled completely
    tp_done: tuple[int, ...] = ()  # take-profit steps filled completely
    tp_dirty: bool = False  # the position grew: place the take-profit again
    tp_retry_at: datetime | None = None  # a take-profit the venue refused: again from then
    took_profit: bool = False
    peak: Decimal | None = None  # trailing: the highest price since it reached its target
    close_reason: str = ""

    @property
    def scope(self) -> str:
        return str(self.number)

    @property
    def average_entry(self) -> Decimal | None:
        return self.bought_value / self.bought if self.bought else None

    def breakeven(self, exit_fee: Decimal) -> Decimal | None:
        """The price that sells the position for what it cost, after ``exit_fee``."""
        quantity = self.position.quantity
        return self.position.cost / (quantity * (1 - exit_fee)) if quantity else None


@dataclass(frozen=True, slots=True)
class DcaState:
    status: BotStatus = BotStatus.RUNNING
    seq: int = 0  # orders placed so far
    next_deal: int = 1
    deals: tuple[Deal, ...] = ()  # not closed yet, by number
    orders: tuple[BotOrder, ...] = ()
    last_price: Decimal | None = None  # the last price seen
    last_deal_at: datetime | None = None  # the last deal's start or end (the cooldown)
    retry_at: datetime | None = None  # no deal before (a base order got nothing)
    seen: tuple[SeenAlert, ...] = ()
    deals_closed: int = 0
    realized_pnl: Decimal = ZERO  # of closed deals, fees included
    fees: Decimal = ZERO  # of closed deals
    waiting: str = ""  # why no deal could start (the base order too small), noted once


@dataclass(frozen=True, slots=True)
class DcaBot:
    kind: ClassVar[BotKind] = BotKind.DCA
    bot_id: int
    market: MarketSpec
    settings: DcaSettings  # validated (``validate_dca``)
    max_lag: timedelta = MAX_LAG

    def start(self, at: datetime) -> DcaState:
        return DcaState()

    def step(self, state: DcaState, event: Event) -> Step[DcaState]:
        if isinstance(event, PriceTick) and event.symbol != self.market.symbol:
            return Step(state, (), ())  # another market's price
        return _DcaStep(self, state, event.at).run(event)

    def wake_at(self, state: DcaState) -> datetime | None:
        """When a refused take-profit is to be placed again, or the end of the cooldown
        (or of a retry wait) when a deal could start then."""
        if state.status is not BotStatus.RUNNING:
            return None
        times = [d.tp_retry_at for d in state.deals if d.tp_retry_at is not None]
        if self._may_start(state) and (wait := self._start_wait(state)) is not None:
            times.append(wait)
        return min(times) if times else None

    def watch(self, state: DcaState) -> Mapping[str, PriceBand]:
        bands = [self._deal_band(state, deal) for deal in state.deals]
        if self._may_start(state):
            bands.append(self._start_band(state))
        return {self.market.symbol: interest(bands)}

    def _may_start(self, state: DcaState) -> bool:
        """Whether a deal starts by itself once a price and the time allow it."""
        s, running = self.settings, state.status is BotStatus.RUNNING
        free = len(state.deals) < s.max_active_deals
        return running and free and s.start is StartCondition.IMMEDIATELY

    def _start_wait(self, state: DcaState) -> datetime | None:
        """The end of the cooldown or of a retry wait, when one applies (or both's)."""
        last, retry = state.last_deal_at, state.retry_at
        waits = [retry] if retry is not None and (last is None or retry > last) else []
        if last is not None and self.settings.cooldown:
            waits.append(last + self.settings.cooldown)
        return max(waits, default=None)

    def _start_band(self, state: DcaState) -> PriceBand:
        if state.last_price is None:
            return PriceBand.EVERY
        if state.waiting:  # its base order buys a lot only at or below this price
            return PriceBand(low=base_order_affordable_at(self.settings, self.market))
        if self._start_wait(state) is None:
            return PriceBand.EVERY  # a deal starts at the next price
        return PriceBand.NONE  # at the end of the wait (``wake_at``)

    def _deal_band(self, state: DcaState, deal: Deal) -> PriceBand:
        s, average = self.settings, deal.average_entry
        if deal.status is DealStatus.CLOSING:
            return self._closing_band(state, deal)
        if deal.status is not DealStatus.OPEN or average is None:
            return PriceBand.NONE
        band = PriceBand.NONE if s.stop_loss is None else PriceBand(average * (1 - s.stop_loss))
        if s.trailing_deviation is None:
            return band
        if deal.peak is None:  # its target, then its high and the fall that sells
            return band | PriceBand(high=average * (1 + s.take_profit[0].profit))
        return band | PriceBand.outside(deal.peak * (1 - s.trailing_deviation), deal.peak)

    def _closing_band(self, state: DcaState, deal: Deal) -> PriceBand:
        """A closing deal sells what is left at a price where it is worth the minimum."""
        mine = [o for o in state.orders if o.scope == deal.scope]
        if deal.close_reason == KEPT or any(o.side is Side.SELL and o.canceling for o in mine):
            return PriceBand.NONE  # it keeps it, or sells once its canceled sells have ended
        if not mine:
            return PriceBand.EVERY  # it sells, or closes, at the next price
        selling = sum((o.open_quantity for o in mine if o.role == CLOSE and not o.canceling), ZERO)
        rest = deal.position.quantity - selling
        if rest < self.market.lot_size:
            return PriceBand.NONE
        return worth_the_minimum(self.market, rest)


class _DcaStep:
    def __init__(self, bot: DcaBot, state: DcaState, at: datetime) -> None:
        self.bot, self.s, self.m, self.at = bot, bot.settings, bot.market, at
        self.state = state
        self.plan = Plan(bot_id=bot.bot_id, at=at, orders=state.orders, seq=state.seq)
        self.deals = {deal.number: deal for deal in state.deals}
        self.buy_alert: str | None = None  # a BUY alert's id, in this step

    def run(self, event: Event) -> Step[DcaState]:
        if isinstance(event, Fill):
            self._fill(event)
        elif isinstance(event, OrderEnd):
            self._end(event)
        elif isinstance(event, PriceTick):
            self._price(event.price)
        elif isinstance(event, Signal):
            self._signal(event)
        elif isinstance(event, StopBot):
            self._stop(event.close_position)
        for number in list(self.deals):
            self._tend(self.deals[number])
        if isinstance(event, PriceTick | TimerTick | Signal):  # a deal starts on a fresh price
            self._maybe_start()
        deals = tuple(self.deals[n] for n in sorted(self.deals))
        return self.plan.result(self.state, idle=not deals, deals=deals)

    # --- events ---------------------------------------------------------------------------

    def _fill(self, fill: Fill) -> None:
        order = self.plan.fill(fill)
        deal = None if order is None else self.deals.get(int(order.scope))
        if order is None or deal is None:
            return
        deal = _booked(deal, fill)
        done = fill.remaining == 0
        if order.role == BASE and done and deal.status is DealStatus.OPENING:
            deal = self._entered(deal) or deal
        elif order.role == SAFETY:
            deal = replace(deal, tp_dirty=True, safety_filled=deal.safety_filled + done)
        elif order.role == TAKE_PROFIT:
            if not deal.took_profit:
                for safety in self.plan.live(role=SAFETY, scope=deal.scope):
                    self.plan.cancel(safety, "the take-profit has begun: no more safety orders")
            # a take-profit being replaced sold first: its replacement is too large and
            # its step is not done (the step is placed again for what is left)
            dirty = deal.tp_dirty or order.canceling
            tp_done = (*deal.tp_done, order.index) if done and not dirty else deal.tp_done
            deal = replace(deal, took_profit=True, tp_done=tp_done, tp_dirty=dirty)
        self.deals[deal.number] = deal
        if deal.status is DealStatus.OPEN and fill.side is Side.SELL and not deal.position.quantity:
            self._close(deal, TAKE_PROFIT_REACHED, "the take-profit sold the whole position")
        elif done and order.canceling:
            self._after_cancel(deal)

    def _end(self, end: OrderEnd) -> None:
        order = self.plan.end(end)
        deal = None if order is None else self.deals.get(int(order.scope))
        if order is None or deal is None:
            return
        if order.role == BASE and deal.status is DealStatus.OPENING:
            entered = self._entered(deal)
            if entered is None:
                del self.deals[deal.number]
            else:
                self.deals[deal.number] = entered
        elif order.role == TAKE_PROFIT and not order.canceling:
            self.deals[deal.number] = replace(deal, tp_retry_at=self.at + RETRY_AFTER)
        elif order.canceling:
            self._after_cancel(deal)
        # A safety order's end frees its slot (the next one is placed); a close order is
        # placed again at the next price.

    def _after_cancel(self, deal: Deal) -> None:
        """One of the deal's canceled orders is done: a closing deal may sell now."""
        if deal.status is DealStatus.CLOSING and deal.close_reason != KEPT:
            self._sell_rest(deal, f"deal {deal.number}: selling the rest ({deal.close_reason})")

    def _price(self, price: Decimal) -> None:
        self.state = replace(self.state, last_price=price)
        for deal in list(self.deals.values()):
            average = deal.average_entry
            if deal.status is DealStatus.CLOSING and deal.close_reason != KEPT:
                self._sell_rest(deal, f"deal {deal.number}: selling the rest ({deal.close_reason})")
            elif deal.status is not DealStatus.OPEN or average is None:
                continue
            elif self.s.stop_loss is not None and price <= average * (1 - self.s.stop_loss):
                stop = average * (1 - self.s.stop_loss)
                why = f"price {price} at or below the stop-loss {figure(stop)}"
                self._close(deal, STOP_LOSS, why)
            elif self.s.trailing_deviation is not None:
                self._trail(deal, average, price)

    def _trail(self, deal: Deal, average: Decimal, price: Decimal) -> None:
        assert self.s.trailing_deviation is not None
        target = average * (1 + self.s.take_profit[0].profit)
        if deal.peak is None and price < target:
            return
        peak = price if deal.peak is None else max(deal.peak, price)
        deal = replace(deal, peak=peak)
        self.deals[deal.number] = deal
        if price <= peak * (1 - self.s.trailing_deviation):
            why = (
                f"price {price} fell {self.s.trailing_deviation} below its high {peak}"
                f" after reaching the target {figure(target)}"
            )
            self._close(deal, TRAILING_TAKE_PROFIT, why)

    def _signal(self, signal: Signal) -> None:
        alert = signal.alert
        seen, dropped = admit(
            self.state.seen, alert, at=signal.at, max_lag=self.bot.max_lag,
            remember=REMEMBER_ALERTS,
        )  # fmt: skip
        self.state = replace(self.state, seen=seen)
        if dropped is None and alert.symbol is not None:
            if not symbol_matches(alert.symbol, base=self.m.base, quote=self.m.quote):
                dropped = f"alert for {alert.symbol}, not {self.m.symbol}"
        if dropped is None and alert.action is AlertAction.BUY:
            if self.s.start is StartCondition.SIGNAL:
                self.buy_alert = alert.alert_id  # _maybe_start notes what it did
                return
            dropped = "this bot starts its deals by itself"
        if dropped is None:
            open_deals = [d for d in self.deals.values() if d.status is not DealStatus.CLOSING]
            for deal in open_deals:
                self._close(deal, ALERT, f"alert {alert.alert_id}: {alert.action.value}")
            dropped = None if open_deals else "no open deal to close"
        if dropped is not None:
            self.plan.note(Action.ALERT_DROPPED, f"alert {alert.alert_id}: {dropped}")

    def _stop(self, close_position: bool) -> None:
        if self.state.status is not BotStatus.RUNNING:
            return
        self.state = replace(self.state, status=BotStatus.STOPPING)
        self.plan.note(Action.STOPPED, "stopped" + (", selling what it holds" * close_position))
        for deal in list(self.deals.values()):
            if close_position:
                self._close(deal, STOPPED, "the bot was stopped")
            else:
                self._close(deal, KEPT, "the bot was stopped, keeping what it holds")

    # --- a deal's course ------------------------------------------------------------------

    def _entered(self, deal: Deal) -> Deal | None:
        """A deal whose base order is done: OPEN at its entry price, or None: abandoned
        (nothing bought)."""
        if not deal.bought:
            retry = self.at + max(self.s.cooldown, RETRY_AFTER)
            self.state = replace(self.state, retry_at=retry, last_deal_at=self.at)
            self.plan.note(Action.DEAL_ABANDONED, f"deal {deal.number}: the base order got nothing")
            return None
        entry = deal.bought_value / deal.bought
        self.plan.note(
            Action.DEAL_OPENED, f"deal {deal.number}: {deal.bought} bought at {figure(entry)}"
        )
        return replace(deal, status=DealStatus.OPEN, entry_price=entry, tp_dirty=True)

    def _tend(self, deal: Deal) -> None:
        entry = deal.entry_price
        if deal.tp_retry_at is not None and self.at >= deal.tp_retry_at:
            deal = replace(deal, tp_dirty=True, tp_retry_at=None)
        if deal.status is DealStatus.OPEN and entry is not None:
            if deal.tp_dirty and self.s.trailing_deviation is None:
                deal = self._place_take_profit(deal)
            if not deal.took_profit:
                deal = self._place_safety_orders(deal, entry)
        self.deals[deal.number] = deal
        if (
            deal.status is DealStatus.CLOSING
            and not self.plan.tracked(scope=deal.scope)
            and (deal.close_reason == KEPT or not self._sellable(deal.position.quantity))
        ):
            self._finish(deal)

    def _place_take_profit(self, deal: Deal) -> Deal:
        for old in self.plan.live(role=TAKE_PROFIT, scope=deal.scope):
            self.plan.cancel(old, "replaced: the position grew")
        if self._canceling_sells(deal):
            return deal  # placed when they have ended: what they sold is known then
        average = deal.average_entry
        assert average is not None
        steps = [(i, step) for i, step in enumerate(self.s.take_profit) if i not in deal.tp_done]
        shares = sum((step.share for _, step in steps), ZERO)
        position, left = deal.position.quantity, deal.position.quantity
        for k, (i, step) in enumerate(steps):
            last = k == len(steps) - 1
            quantity = left if last else floor_to(position * step.share / shares, self.m.lot_size)
            price = ceil_to(average * (1 + step.profit), self.m.tick_size)
            if quantity <= 0 or (not last and quantity * price < self.m.min_notional):
                continue  # what it would sell goes to the next step
            left -= quantity
            self.plan.place(
                symbol=self.m.symbol, role=TAKE_PROFIT, scope=deal.scope, index=i,
                request=OrderRequest(Side.SELL, OrderType.LIMIT, quantity, price=price),
                reason=f"deal {deal.number}: take-profit step {i + 1}, {step.profit} above"
                f" the average entry {figure(average)}",
            )  # fmt: skip
        return replace(deal, tp_dirty=False)

    def _place_safety_orders(self, deal: Deal, entry: Decimal) -> Deal:
        live = len(self.plan.live(role=SAFETY, scope=deal.scope))
        placed = deal.safety_placed
        while live < self.s.max_active_safety_orders and placed < self.s.max_safety_orders:
            placed += 1
            price, quantity = safety_order(self.s, self.m, entry, placed)
            if not quantity or quantity * price < self.m.min_notional:
                self.plan.note(
                    Action.WAITING,
                    f"deal {deal.number}: safety order {placed} is under one lot or the"
                    " minimum order value: skipped",
                )
                continue
            self.plan.place(
                symbol=self.m.symbol, role=SAFETY, scope=deal.scope, index=placed,
                request=OrderRequest(Side.BUY, OrderType.LIMIT, quantity, price=price),
                reason=f"deal {deal.number}: safety order {placed},"
                f" {figure(safety_deviation(self.s, placed))} below"
                f" the entry {figure(entry)}",
            )  # fmt: skip
            live += 1
        return replace(deal, safety_placed=placed)

    def _close(self, deal: Deal, reason: str, why: str) -> None:
        deal = replace(deal, status=DealStatus.CLOSING, close_reason=reason, tp_retry_at=None)
        self.deals[deal.number] = deal
        self.plan.cancel_all(f"deal {deal.number}: {why}", scope=deal.scope)
        if reason != KEPT:
            self._sell_rest(deal, f"deal {deal.number}: {why}")

    def _sell_rest(self, deal: Deal, why: str) -> None:
        """Sell at market what the deal holds and is not selling yet, once its canceled
        sells have ended (until then they may still sell some of it)."""
        selling = sum((o.open_quantity for o in self.plan.live(role=CLOSE, scope=deal.scope)), ZERO)
        quantity = deal.position.quantity - selling
        price = self.state.last_price
        if price is None or not self._sellable(quantity) or self._canceling_sells(deal):
            return
        worst = worst_price(self.m, Side.SELL, price, self.s.max_slippage_bps)
        self.plan.place(
            symbol=self.m.symbol, role=CLOSE, scope=deal.scope,
            request=OrderRequest(Side.SELL, OrderType.MARKET, quantity, worst_price=worst),
            reason=why,
        )  # fmt: skip

    def _canceling_sells(self, deal: Deal) -> bool:
        return any(o.side is Side.SELL and o.canceling for o in self.plan.tracked(scope=deal.scope))

    def _sellable(self, quantity: Decimal) -> bool:
        price = self.state.last_price
        if quantity < self.m.lot_size:
            return False
        return price is None or quantity * price >= self.m.min_notional

    def _finish(self, deal: Deal) -> None:
        del self.deals[deal.number]
        st = self.state
        self.state = replace(
            st,
            deals_closed=st.deals_closed + 1,
            realized_pnl=st.realized_pnl + deal.position.realized_pnl,
            fees=st.fees + deal.fees,
            last_deal_at=self.at,
        )
        kept = f", kept {deal.position.quantity}" if deal.position.quantity else ""
        self.plan.note(
            Action.DEAL_CLOSED,
            f"deal {deal.number} {deal.close_reason}: bought {deal.bought} for"
            f" {deal.bought_value}, sold {deal.sold} for {deal.sold_value}, fees {deal.fees},"
            f" realised {figure(deal.position.realized_pnl)}{kept}",
        )

    # --- new deals ------------------------------------------------------------------------

    def _maybe_start(self) -> None:
        if self.state.status is not BotStatus.RUNNING:
            if self.buy_alert is not None:
                self._drop_buy_alert("the bot is stopped")
            return
        if self.s.start is StartCondition.SIGNAL and self.buy_alert is None:
            return
        why = self._cannot_start()
        if why is not None:
            if self.buy_alert is not None:
                self._drop_buy_alert(why)
            return
        self._open_deal()

    def _drop_buy_alert(self, why: str) -> None:
        self.plan.note(Action.ALERT_DROPPED, f"alert {self.buy_alert}: no deal started, {why}")

    def _cannot_start(self) -> str | None:
        st, active = self.state, len(self.deals)
        if active >= self.s.max_active_deals:
            return f"{active} deals open, the most allowed"
        if st.last_price is None:
            return "no price yet"
        if st.last_deal_at is not None and self.at < st.last_deal_at + self.s.cooldown:
            return f"cooling down until {(st.last_deal_at + self.s.cooldown).isoformat()}"
        if st.retry_at is not None and self.at < st.retry_at:
            return f"the last base order got nothing: waiting until {st.retry_at.isoformat()}"
        return None

    def _open_deal(self) -> None:
        st = self.state
        assert st.last_price is not None
        quantity, worst = base_order(self.s, self.m, st.last_price)
        if not quantity or quantity * st.last_price < self.m.min_notional:
            why = (
                f"the base order of {self.s.base_order} {self.m.quote} is under one lot or"
                " the minimum order value"
            )  # not the price: noted once while the price moves
            if self.buy_alert is not None:
                self._drop_buy_alert(f"{why} at {st.last_price}")
            elif st.waiting != why:
                self.plan.note(Action.WAITING, f"{why} at {st.last_price}")
            self.state = replace(st, waiting=why)
            return
        number = st.next_deal
        deal = Deal(number, DealStatus.OPENING, self.at)
        by = "" if self.buy_alert is None else f" on alert {self.buy_alert}"
        self.plan.place(
            symbol=self.m.symbol, role=BASE, scope=deal.scope,
            request=OrderRequest(Side.BUY, OrderType.MARKET, quantity, worst_price=worst),
            reason=f"deal {number}{by}: base order of {self.s.base_order} {self.m.quote}",
        )  # fmt: skip
        self.deals[number] = deal
        self.state = replace(st, next_deal=number + 1, last_deal_at=self.at, waiting="")


def _booked(deal: Deal, fill: Fill) -> Deal:
    value, fee = fill.value, fill.fee
    if fill.side is Side.BUY:
        return replace(
            deal,
            position=deal.position.bought(fill.quantity, value + fee),
            bought=deal.bought + fill.quantity,
            bought_value=deal.bought_value + value,
            fees=deal.fees + fee,
        )
    return replace(
        deal,
        position=deal.position.sold(fill.quantity, value - fee),
        sold=deal.sold + fill.quantity,
        sold_value=deal.sold_value + value,
        fees=deal.fees + fee,
    )
