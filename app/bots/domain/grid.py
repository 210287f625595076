"""The grid bot (pure): levels that buy low and sell one line higher, over and over.

Start (the first price ``P``): each level (buy line ``i``, sell line ``i + 1``) trades
the same quantity ``q``. Levels whose buy line is below ``P`` rest a LIMIT buy there
(BUYING); the others need the base to sell (WAITING): one MARKET buy gets it for all of
them (its worst price ``max_slippage_bps`` above ``P``). ``q`` is the most whole lots
the investment pays for at those prices with the larger fee rate, less one quote unit
per order for the fee's rounding, so the grid never spends more than its investment.
It does not start (STOPPED) when ``q`` is under one lot or the minimum order value, or
when a round trip of ``q`` at the least profitable level would not make two quote units
after fees (so no level ever loses on its fees' rounding).

A level's course (``TRANSITIONS``; ``move`` refuses anything else)::

    WAITING ─(the opening buy gave it q)─► SELLING ─(sold q)─► BUYING ─(bought q)─► SELLING
       └──────────(the opening buy got too little)──────────► IDLE ◄─(its order refused)
    MOVING ─(the funding buy's cancel ended)─► BUYING, or IDLE (too little left)

SELLING rests a LIMIT sell of what it holds at its sell line, BUYING a LIMIT buy of ``q``
at its buy line. Each level keeps what it holds at average cost (``Position``: its
realised profit, fees included); base bought by the opening buy and not given to a level
(too little came for the last one) is ``spare``. So the base the bot holds is always the
levels' and the spare (the property tests check it against the venue).

Bounds (``AtBounds``), on each price: STOP above the top line or below the lowest stops
the bot; TRAIL_UP above the top line moves the lowest level to the top (while the price
is above the top, and only a level waiting to buy with nothing filled): its buy is
canceled and a new top level waits (MOVING) for that cancel's end, then buys at the old
top line what the unfilled part freed pays for there (``floor(unfilled x low / top)``),
so the investment still bounds what it spends even when the canceled buy filled before
its cancel (what it bought then is spare). WAIT does nothing. ``StopBot`` cancels every
order; with ``close_position`` what the levels and the spare hold moves to the spare
and is sold at market once every canceled order has ended (they may still trade until
then; their fills then go to the spare).

Prices it needs (``watch``): every one until it starts; then, STOP, those at or outside
its lowest and top lines, TRAIL_UP those at or above its top line, WAIT none; stopped,
every one while it has the spare to sell and no order out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import ClassVar

from app.bots.domain.grid_settings import (
    MIN_ROUND_TRIP_UNITS,
    AtBounds,
    GridSettings,
    grid_opening,
    line_price,
    opening_problem,
    quantity_profit,
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
    Step,
    StopBot,
    floor_to,
    worst_price,
)
from app.core.errors import InvariantViolation
from app.trading.domain.orders import MarketSpec, OrderRequest, OrderType, Side
from app.trading.domain.positions import Position

LEVEL, OPENING, CLOSE = "LEVEL", "OPENING", "CLOSE"
SPARE_SCOPE = "spare"


class LevelStatus(StrEnum):
    WAITING = "WAITING"
    BUYING = "BUYING"
    SELLING = "SELLING"
    MOVING = "MOVING"  # trailed to the top: waits for the end of the buy that funds it
    IDLE = "IDLE"


_L = LevelStatus
TRANSITIONS: Mapping[LevelStatus, frozenset[LevelStatus]] = {
    _L.WAITING: frozenset({_L.SELLING, _L.IDLE}),
    _L.BUYING: frozenset({_L.SELLING, _L.IDLE}),
    _L.SELLING: frozenset({_L.BUYING, _L.IDLE}),
    _L.MOVING: frozenset({_L.BUYING, _L.IDLE}),
    _L.IDLE: frozenset(),
}


@dataclass(frozen=True, slots=True)
class Level:
    line: int  # its buy line; it sells at line + 1
    quantity: Decimal  # q: what each buy gets
    status: LevelStatus
    position: Position = FLAT  # what it holds, at cost; its realised profit
    cycles: int = 0  # round trips completed
    funded_by: str = ""  # MOVING: the canceled buy whose unfilled part pays for it


def move(level: Level, status: LevelStatus) -> Level:
    if status not in TRANSITIONS[level.status]:
        raise InvariantViolation(f"grid level {level.status.value} -> {status.value}")
    return replace(level, status=status)


@dataclass(frozen=True, slots=True)
class GridState:
    status: BotStatus = BotStatus.RUNNING
    started: bool = False
    seq: int = 0
    bottom: int = 0  # the lowest level's buy line (trailing up raises it)
    levels: tuple[Level, ...] = ()  # from the lowest
    orders: tuple[BotOrder, ...] = ()
    spare: Position = FLAT  # base no level holds
    last_price: Decimal | None = None  # the last price seen
    fees: Decimal = ZERO
    stop_reason: str = ""
    closing: bool = False  # stopped selling what it holds: every fill is the spare's

    @property
    def base_held(self) -> Decimal:
        return self.spare.quantity + sum((lv.position.quantity for lv in self.levels), ZERO)

    @property
    def profit(self) -> Decimal:
        """Realised by the levels and the spare, fees included."""
        return self.spare.realized_pnl + sum((lv.position.realized_pnl for lv in self.levels), ZERO)


@dataclass(frozen=True, slots=True)
class GridBot:
    kind: ClassVar[BotKind] = BotKind.GRID
    bot_id: int
    market: MarketSpec
    settings: GridSettings  # validated (``validate_grid``)

    def start(self, at: datetime) -> GridState:
        return GridState()

    def step(self, state: GridState, event: Event) -> Step[GridState]:
        if isinstance(event, PriceTick) and event.symbol != self.market.symbol:
            return Step(state, (), ())  # another market's price
        return _GridStep(self, state, event.at).run(event)

    def wake_at(self, state: GridState) -> datetime | None:
        return None  # prices and fills drive it

    def watch(self, state: GridState) -> Mapping[str, PriceBand]:
        return {self.market.symbol: self._band(state)}

    def _band(self, state: GridState) -> PriceBand:
        if state.status is not BotStatus.RUNNING:
            lot = self.market.lot_size  # stopped: it sells the spare at the next price
            sells = state.closing and not state.orders and state.spare.quantity >= lot
            return PriceBand.EVERY if sells else PriceBand.NONE
        if not state.started:
            return PriceBand.EVERY
        bottom, top = self.line(state.bottom), self.line(state.bottom + len(state.levels))
        if self.settings.at_bounds is AtBounds.STOP:
            return PriceBand.outside(bottom, top)
        if self.settings.at_bounds is AtBounds.TRAIL_UP:
            return PriceBand(high=top)
        return PriceBand.NONE

    def line(self, i: int) -> Decimal:
        return line_price(self.settings, self.market, i)


class _GridStep:
    def __init__(self, bot: GridBot, state: GridState, at: datetime) -> None:
        self.bot, self.s, self.m = bot, bot.settings, bot.market
        self.state = state
        self.plan = Plan(bot_id=bot.bot_id, at=at, orders=state.orders, seq=state.seq)
        self.levels = {lv.line: lv for lv in state.levels}

    def run(self, event: Event) -> Step[GridState]:
        running = self.state.status is BotStatus.RUNNING
        if isinstance(event, Fill):
            self._fill(event)
        elif isinstance(event, OrderEnd):
            self._end(event)
        elif isinstance(event, PriceTick):
            self.state = replace(self.state, last_price=event.price)
            if running and not self.state.started:
                self._start(event.price)
            elif running:
                self._bounds(event.price)
            elif self.state.closing:
                self._sell_spare("stopped: selling the rest")
        elif isinstance(event, StopBot):
            self._stop("stopped", close_position=event.close_position)
        levels = tuple(self.levels[line] for line in sorted(self.levels))
        return self.plan.result(self.state, levels=levels)

    # --- start ----------------------------------------------------------------------------

    def _start(self, price: Decimal) -> None:
        opening = grid_opening(self.s, self.m, price)
        lines, quantity, buying, waiting = (
            opening.lines,
            opening.quantity,
            opening.buying,
            opening.waiting,
        )
        why = opening_problem(opening, self.s, self.m)
        if why is not None:
            self.state = replace(self.state, status=BotStatus.STOPPED, stop_reason=why)
            self.plan.note(Action.STOPPED, why)
            return
        self.state = replace(self.state, started=True)
        self.plan.note(
            Action.GRID_STARTED,
            f"{len(lines) - 1} levels of {quantity} {self.m.base} from {lines[0]} to"
            f" {lines[-1]} at {price}: {len(buying)} buying, {len(waiting)} to sell",
        )
        for i in buying:
            self._buy(Level(i, quantity, LevelStatus.BUYING))
        for i in waiting:
            self.levels[i] = Level(i, quantity, LevelStatus.WAITING)
        if waiting:
            self.plan.place(
                symbol=self.m.symbol, role=OPENING, scope=SPARE_SCOPE,
                request=OrderRequest(
                    Side.BUY, OrderType.MARKET, quantity * len(waiting), worst_price=opening.worst
                ),
                reason=f"the base for the {len(waiting)} levels at and above {price}",
            )  # fmt: skip

    # --- fills and ends -------------------------------------------------------------------

    def _fill(self, fill: Fill) -> None:
        order = self.plan.fill(fill)
        if order is None:
            return
        level = None
        if order.role == LEVEL and not self.state.closing:
            level = self.levels.get(order.index)
        if level is None:
            self.state = replace(self.state, spare=_booked(self.state.spare, fill))
        else:
            level = replace(level, position=_booked(level.position, fill))
        self.state = replace(self.state, fees=self.state.fees + fill.fee)
        done = fill.remaining == 0
        if order.role == OPENING and done:
            self._hand_out()
        if done and order.canceling:
            self._canceled(order, filled=True)
        if level is None or not done:
            if level is not None:
                self.levels[level.line] = level
            return
        if fill.side is Side.BUY and level.status is LevelStatus.BUYING:
            self._sell(move(level, LevelStatus.SELLING))
        elif fill.side is Side.SELL and level.status is LevelStatus.SELLING:
            self._buy(replace(move(level, LevelStatus.BUYING), cycles=level.cycles + 1))
        else:
            self.levels[level.line] = level

    def _end(self, end: OrderEnd) -> None:
        order = self.plan.end(end)
        if order is None:
            return
        if order.role == OPENING:
            self._hand_out()
        elif order.canceling:
            self._canceled(order, filled=False)
        elif order.role == LEVEL and order.index in self.levels:
            self.levels[order.index] = move(self.levels[order.index], LevelStatus.IDLE)

    def _canceled(self, order: BotOrder, *, filled: bool) -> None:
        """A canceled order is done (ended, or filled before the cancel): the level it
        funds (trailing up) buys with what it left, or goes IDLE; a closing grid sells."""
        moving = [lv for lv in self.levels.values() if lv.funded_by == order.client_order_id]
        for level in moving:
            self._fund(level, order, filled=filled)
        if self.state.closing:
            self._sell_spare("stopped: selling what the grid holds")

    def _fund(self, level: Level, order: BotOrder, *, filled: bool) -> None:
        top = self.bot.line(level.line)
        left = ZERO if filled else order.quantity - order.filled
        quantity = floor_to(left * order.price / top, self.m.lot_size)
        sell = self.bot.line(level.line + 1)
        running = self.state.status is BotStatus.RUNNING
        if not running or not self._worth_a_level(quantity, top, sell):
            self.levels[level.line] = replace(move(level, LevelStatus.IDLE), funded_by="")
            self.plan.note(Action.WAITING, f"level {level.line}: {quantity} at {top} is too little")
            return
        self._buy(replace(move(level, LevelStatus.BUYING), quantity=quantity, funded_by=""))

    def _worth_a_level(self, quantity: Decimal, buy: Decimal, sell: Decimal) -> bool:
        return (
            quantity >= self.m.lot_size
            and quantity * buy >= self.m.min_notional
            and quantity_profit(self.m, buy, sell, quantity)
            >= MIN_ROUND_TRIP_UNITS * self.m.quote_unit
        )

    def _hand_out(self) -> None:
        """The opening buy is done: each WAITING level, from the lowest, takes q of the
        spare and sells it; those it cannot cover go IDLE."""
        spare = self.state.spare
        for line in sorted(self.levels):
            level = self.levels[line]
            if level.status is not LevelStatus.WAITING:
                continue
            if spare.quantity < level.quantity or self.state.status is not BotStatus.RUNNING:
                self.levels[line] = move(level, LevelStatus.IDLE)
                self.plan.note(Action.WAITING, f"level {line}: the opening buy got too little")
                continue
            cost = spare.cost * level.quantity / spare.quantity
            spare = Position(spare.quantity - level.quantity, spare.cost - cost, spare.realized_pnl)
            self._sell(move(replace(level, position=Position(level.quantity, cost)), _L.SELLING))
        self.state = replace(self.state, spare=spare)

    def _buy(self, level: Level) -> None:
        self.levels[level.line] = level
        if self.state.status is not BotStatus.RUNNING:
            return
        price = self.bot.line(level.line)
        self.plan.place(
            symbol=self.m.symbol, role=LEVEL, scope=str(level.line), index=level.line,
            request=OrderRequest(Side.BUY, OrderType.LIMIT, level.quantity, price=price),
            reason=f"level {level.line}: buy at {price}",
        )  # fmt: skip

    def _sell(self, level: Level) -> None:
        self.levels[level.line] = level
        if self.state.status is not BotStatus.RUNNING:
            return
        price = self.bot.line(level.line + 1)
        quantity = level.position.quantity
        self.plan.place(
            symbol=self.m.symbol, role=LEVEL, scope=str(level.line), index=level.line,
            request=OrderRequest(Side.SELL, OrderType.LIMIT, quantity, price=price),
            reason=f"level {level.line}: sell at {price}",
        )  # fmt: skip

    # --- bounds and stop ------------------------------------------------------------------

    def _bounds(self, price: Decimal) -> None:
        bottom, top = self.bot.line(self.state.bottom), self.bot.line(self._top_line())
        rule = self.s.at_bounds
        if rule is AtBounds.STOP and price > top:
            self._stop(f"price {price} above the top line {top}", close_position=False)
        elif rule is AtBounds.STOP and price < bottom:
            self._stop(f"price {price} below the lowest line {bottom}", close_position=False)
        elif rule is AtBounds.TRAIL_UP:
            for _ in range(len(self.levels)):
                if price <= self.bot.line(self._top_line()) or not self._trail_up(price):
                    break

    def _top_line(self) -> int:
        return self.state.bottom + len(self.levels)

    def _trail_up(self, price: Decimal) -> bool:
        low = self.levels[self.state.bottom]
        orders = self.plan.live(role=LEVEL, scope=str(low.line))
        if low.status is not LevelStatus.BUYING or low.position.quantity or len(orders) != 1:
            return False
        if orders[0].filled:
            return False
        top = self._top_line()
        old_low, old_top = self.bot.line(low.line), self.bot.line(top)
        quantity = floor_to(low.quantity * old_low / old_top, self.m.lot_size)
        if not self._worth_a_level(quantity, old_top, self.bot.line(top + 1)):
            why = f"trailing up stops: {quantity} at {old_top} is too little"
            self.plan.note(Action.WAITING, why)
            return False
        self.plan.cancel(orders[0], f"trailing up: price {price} above the top line {old_top}")
        del self.levels[low.line]
        self.state = replace(self.state, bottom=self.state.bottom + 1)
        self.levels[top] = Level(top, ZERO, LevelStatus.MOVING, funded_by=orders[0].client_order_id)
        moved = f"level {low.line} ({old_low}) moves to {top} ({old_top})"
        self.plan.note(Action.GRID_MOVED, moved)
        return True

    def _stop(self, why: str, *, close_position: bool) -> None:
        if self.state.status is not BotStatus.RUNNING:
            return
        self.state = replace(self.state, status=BotStatus.STOPPING, stop_reason=why)
        self.plan.note(Action.STOPPED, why)
        self.plan.cancel_all(why)
        if not close_position:
            return
        spare = self.state.spare
        for line, level in list(self.levels.items()):
            held = level.position
            spare = Position(spare.quantity + held.quantity, spare.cost + held.cost,
                             spare.realized_pnl)  # fmt: skip
            self.levels[line] = replace(level, position=Position(ZERO, ZERO, held.realized_pnl))
        self.state = replace(self.state, spare=spare, closing=True)
        self._sell_spare(f"{why}: selling what the grid holds")

    def _sell_spare(self, why: str) -> None:
        """Sell the spare at market once every canceled order has ended (until then they
        may still trade) and no sale of it is out."""
        price, quantity = self.state.last_price, self.state.spare.quantity
        if price is None or quantity < self.m.lot_size or self.plan.orders:
            return
        self.plan.place(
            symbol=self.m.symbol, role=CLOSE, scope=SPARE_SCOPE,
            request=OrderRequest(
                Side.SELL, OrderType.MARKET, quantity,
                worst_price=worst_price(self.m, Side.SELL, price, self.s.max_slippage_bps),
            ),
            reason=why,
        )  # fmt: skip


def _booked(position: Position, fill: Fill) -> Position:
    if fill.side is Side.BUY:
        return position.bought(fill.quantity, fill.value + fill.fee)
    return position.sold(fill.quantity, fill.value - fill.fee)
