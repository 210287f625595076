"""The rebalance bot (pure): holds assets at target weights of their value in one quote
currency, trading each on its market ``<asset>/<quote>``.

What it holds is its own (``allocation`` at the start, then its fills), valued at the
last price of each market. A round starts, once every market has a price and nothing of
the last round is left,

    THRESHOLD  when an asset's weight is ``threshold`` or more away from its target
               (after a round that traded nothing, ``threshold`` more than its drift)
    PERIOD     every ``period`` from the start (the first at once); missed periods are
               not made up: the next is the first one after the round

and goes in two phases, so buys are paid with what the sells brought: SELLING (MARKET
sells of the assets above their target value), then, at the first price or timer tick
after those orders are done (the prices known at a fill may be old), BUYING
(MARKET buys of those below, at most what the quote currency holds: each sized at its
worst price, ``max_slippage_bps`` from the last price, with the taker fee; scaled down
together when the quote holding is short). Each trade is rounded down to whole lots and
skipped (noted SKIPPED) when it is worth less than ``min_trade`` or its market's minimum,
or when its fee exceeds the drift it corrects: when the drift it corrects, as a share of
the whole value (``(|d| - |d - v|) / total`` for a trade of value ``v`` against a drift
``d`` of the asset's value from its target), is not above its fee as a share of what it
trades (the taker fee, rounded up). So with a 0.2 % fee, weights less than 0.2 points
off their targets are left alone, however often the period comes. The quote currency
takes the rest.

``StopBot`` cancels its orders; with ``close_position`` it sells every asset at market
once they have all ended (again at each price while something is left).

Prices it needs (``watch``, a band per market): the first of each market; while a round
waits to buy, every one; PERIOD, no other (``wake_at`` wakes it when a round is due);
THRESHOLD, each market's last price divided and multiplied by one factor ``x``: 0.99 of
the way to the largest that keeps every weight less than ``threshold`` from its target
whatever the prices do inside all the bands (an asset's weight is highest with its price
at its band's top and the others' at their bottoms, lowest the other way round: each
limit is a root of a quadratic in ``x``). Stopped and selling, those at which a holding
is worth its market's minimum order value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import ClassVar

from app.bots.domain.errors import refuse
from app.bots.domain.runtime import (
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
    Step,
    StopBot,
    TimerTick,
    fee_of,
    figure,
    floor_to,
    worst_price,
    worth_the_minimum,
)
from app.trading.domain.orders import MarketSpec, OrderRequest, OrderType, Side

ONE = Decimal(1)
MAX_ASSETS = 20
MIN_PERIOD = timedelta(minutes=1)
MAX_PERIOD = timedelta(days=366)
TRADE = "TRADE"
CLOSE = "CLOSE"
SHARE = Decimal("0.99")  # of the way to the widest band, a band goes
LEAST_STRETCH = Decimal("1e-20")  # narrower: every price (far above the rounding of sums)


class RebalanceTrigger(StrEnum):
    THRESHOLD = "THRESHOLD"
    PERIOD = "PERIOD"


class Phase(StrEnum):
    IDLE = "IDLE"
    SELLING = "SELLING"
    BUYING = "BUYING"


@dataclass(frozen=True, slots=True)
class Target:
    asset: str
    weight: Decimal  # a fraction of the value


@dataclass(frozen=True, slots=True)
class Holding:
    asset: str
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class LastPrice:
    symbol: str
    price: Decimal


@dataclass(frozen=True, slots=True)
class RebalanceSettings:
    quote: str  # the currency values are counted in and every market's quote
    targets: tuple[Target, ...]  # weights add up to 1 (the quote may be among them)
    trigger: RebalanceTrigger
    threshold: Decimal | None = None  # THRESHOLD
    period: timedelta | None = None  # PERIOD
    min_trade: Decimal = ZERO  # in the quote: smaller trades are skipped
    max_slippage_bps: int = 100


def validate_rebalance(
    settings: RebalanceSettings, markets: Mapping[str, MarketSpec]
) -> RebalanceSettings:
    """``settings`` if allowed (``markets`` by symbol), else ``ValidationFailed``."""
    s = settings
    assets = [t.asset for t in s.targets]
    if not 1 <= len(assets) <= MAX_ASSETS or len(set(assets)) != len(assets):
        refuse("targets", f"1 to {MAX_ASSETS} different assets")
    if not [a for a in assets if a != s.quote]:
        refuse("targets", "At least one asset besides the quote currency")
    for target in s.targets:
        if not target.weight.is_finite() or not 0 <= target.weight <= 1:
            refuse("targets", "A weight is between 0 and 1")
        if target.asset != s.quote and f"{target.asset}/{s.quote}" not in markets:
            refuse("targets", f"No market {target.asset}/{s.quote}")
    if sum((t.weight for t in s.targets), ZERO) != 1:
        refuse("targets", "The weights add up to 1")
    if s.trigger is RebalanceTrigger.THRESHOLD:
        if s.threshold is None or not s.threshold.is_finite() or not 0 < s.threshold < 1:
            refuse("threshold", "A threshold between 0 and 1 (0.05 is 5 points of weight)")
    elif s.period is None or not MIN_PERIOD <= s.period <= MAX_PERIOD:
        refuse("period", "A period between a minute and a year")
    if not s.min_trade.is_finite() or not 0 <= s.min_trade <= MAX_AMOUNT:
        refuse("minTrade", f"An amount between 0 and {MAX_AMOUNT}")
    if not 0 <= s.max_slippage_bps <= MAX_SLIPPAGE_BPS:
        refuse("maxSlippageBps", f"0 to {MAX_SLIPPAGE_BPS} basis points")
    return s


@dataclass(frozen=True, slots=True)
class RebalanceState:
    status: BotStatus = BotStatus.RUNNING
    seq: int = 0
    holdings: tuple[Holding, ...] = ()  # by asset
    prices: tuple[LastPrice, ...] = ()  # by symbol: the last price seen of each market
    phase: Phase = Phase.IDLE
    round: int = 0  # rounds begun
    next_due: datetime | None = None  # PERIOD
    orders: tuple[BotOrder, ...] = ()
    fees: Decimal = ZERO
    quiet_drift: Decimal | None = None  # THRESHOLD: the drift of the last round without trades
    closing: bool = False  # stopped, selling every asset

    def held(self, asset: str) -> Decimal:
        return next((h.quantity for h in self.holdings if h.asset == asset), ZERO)


@dataclass(frozen=True, slots=True)
class RebalanceBot:
    kind: ClassVar[BotKind] = BotKind.REBALANCE
    bot_id: int
    markets: tuple[MarketSpec, ...]  # one per asset besides the quote
    settings: RebalanceSettings  # validated (``validate_rebalance``)
    allocation: tuple[Holding, ...]  # what it starts with

    def start(self, at: datetime) -> RebalanceState:
        holdings = tuple(sorted(self.allocation, key=lambda h: h.asset))
        due = at if self.settings.trigger is RebalanceTrigger.PERIOD else None
        return RebalanceState(holdings=holdings, next_due=due)

    def step(self, state: RebalanceState, event: Event) -> Step[RebalanceState]:
        if isinstance(event, PriceTick) and event.symbol not in self._symbols:
            return Step(state, (), ())  # not one of its markets' prices
        return _RebalanceStep(self, state, event.at).run(event)

    def wake_at(self, state: RebalanceState) -> datetime | None:
        """When a PERIOD round is due, unless a round is under way."""
        idle = state.phase is Phase.IDLE and not state.orders
        return state.next_due if state.status is BotStatus.RUNNING and idle else None

    @property
    def _symbols(self) -> list[str]:
        return [m.symbol for m in self.markets]

    def watch(self, state: RebalanceState) -> Mapping[str, PriceBand]:
        none, every = (dict.fromkeys(self._symbols, b) for b in (PriceBand.NONE, PriceBand.EVERY))
        if state.status is not BotStatus.RUNNING:
            return self._selling_bands(state) if state.closing and not state.orders else none
        if state.orders:
            return none  # it waits for them
        if state.phase is not Phase.IDLE:
            return every  # it buys at the next price
        prices = {p.symbol: p.price for p in state.prices}
        if len(prices) < len(self.markets):  # the first price of each
            return {s: PriceBand.NONE if s in prices else PriceBand.EVERY for s in self._symbols}
        if self.settings.trigger is RebalanceTrigger.PERIOD:
            return none
        widest = self._widest(state, prices)
        if widest is None:
            return none  # no weight moves with the prices
        stretch = (widest - 1) * SHARE
        if stretch < LEAST_STRETCH:
            return every
        x = 1 + stretch
        return {s: PriceBand.outside(p / x, p * x) for s, p in prices.items()}

    def _widest(self, state: RebalanceState, prices: Mapping[str, Decimal]) -> Decimal | None:
        """The largest ``x`` such that whatever each market's price does between its last
        divided and multiplied by ``x``, no target's weight is ``threshold`` or more from
        it (1 when one is already; None when no weight moves with the prices)."""
        s, cash = self.settings, state.held(self.settings.quote)
        values = {m.base: state.held(m.base) * prices[m.symbol] for m in self.markets}
        assets = sum(values.values(), ZERO)
        if cash < 0 or any(v < 0 for v in values.values()):
            return ONE
        if cash + assets <= 0:
            return None
        assert s.threshold is not None
        limit = s.threshold if state.quiet_drift is None else state.quiet_drift + s.threshold
        limit = max(s.threshold, limit)
        bounds: list[Decimal | None] = []
        for target in s.targets:
            held = cash if target.asset == s.quote else values.get(target.asset, ZERO)
            if abs(held / (cash + assets) - target.weight) >= limit:
                return ONE  # due at these prices
            top, bottom = target.weight + limit, target.weight - limit
            if target.asset == s.quote:
                # its weight is C / (C + S / x) at most, C / (C + S x) at least
                if top < 1:
                    bounds.append(_limit(ZERO, (1 - top) * cash, top * assets))
                if bottom > 0:
                    bounds.append(_limit(ZERO, bottom * assets, (1 - bottom) * cash))
            elif held > 0:
                # v x / (C + v x + R / x) at most, v / x / (C + v / x + R x) at least
                rest = assets - held
                if top < 1 and (cash or rest):
                    bounds.append(_limit((1 - top) * held, -top * cash, top * rest))
                if bottom > 0:
                    bounds.append(_limit(bottom * rest, bottom * cash, (1 - bottom) * held))
        return min((b for b in bounds if b is not None), default=None)

    def _selling_bands(self, state: RebalanceState) -> dict[str, PriceBand]:
        """Stopped and selling: each market's prices at which its holding is worth the
        minimum order value (every market's every price while one is: it sells them all
        at the next price of any)."""
        prices = {p.symbol: p.price for p in state.prices}
        bands = {}
        for market in self.markets:
            quantity = floor_to(state.held(market.base), market.lot_size)
            price = prices.get(market.symbol)
            if quantity <= 0:
                bands[market.symbol] = PriceBand.NONE
            elif price is None:
                bands[market.symbol] = PriceBand.EVERY
            elif quantity * price >= market.min_notional:
                return dict.fromkeys(self._symbols, PriceBand.EVERY)
            else:
                bands[market.symbol] = worth_the_minimum(market, quantity)
        return bands

    def market_of(self, asset: str) -> MarketSpec:
        return next(m for m in self.markets if m.base == asset)


class _RebalanceStep:
    def __init__(self, bot: RebalanceBot, state: RebalanceState, at: datetime) -> None:
        self.bot, self.s, self.at = bot, bot.settings, at
        self.state = state
        self.plan = Plan(bot_id=bot.bot_id, at=at, orders=state.orders, seq=state.seq)
        self.holdings = {h.asset: h.quantity for h in state.holdings}
        self.prices = {p.symbol: p.price for p in state.prices}

    def run(self, event: Event) -> Step[RebalanceState]:
        freed = False  # a canceled order is done
        if isinstance(event, Fill):
            freed = self._fill(event)
        elif isinstance(event, OrderEnd):
            ended = self.plan.end(event)
            freed = ended is not None and ended.canceling
        elif isinstance(event, PriceTick):
            self.prices[event.symbol] = event.price
        elif isinstance(event, StopBot):
            self._stop(event.close_position)
        self._advance(priced=isinstance(event, PriceTick | TimerTick))
        if self.state.closing and (freed or isinstance(event, PriceTick | TimerTick | StopBot)):
            self._sell_all()  # not on a refusal's end: it would be refused again at once
        return self.plan.result(
            self.state,
            holdings=tuple(Holding(a, q) for a, q in sorted(self.holdings.items())),
            prices=tuple(LastPrice(s, p) for s, p in sorted(self.prices.items())),
        )

    def _fill(self, fill: Fill) -> bool:
        """Count the fill; whether it completed a canceled order."""
        order = self.plan.fill(fill)
        if order is None:
            return False
        market = next(m for m in self.bot.markets if m.symbol == order.symbol)
        sign = 1 if fill.side is Side.BUY else -1
        self.holdings[market.base] = self.holdings.get(market.base, ZERO) + sign * fill.quantity
        quote = self.holdings.get(self.s.quote, ZERO) - sign * fill.value - fill.fee
        self.holdings[self.s.quote] = quote
        self.state = replace(self.state, fees=self.state.fees + fill.fee)
        return order.canceling and fill.remaining == 0

    def _advance(self, *, priced: bool) -> None:
        """The round's next phase once its orders are done; orders only on a price or a
        timer tick (after a fill, the prices known may be old)."""
        st = self.state
        if st.status is not BotStatus.RUNNING or self.plan.orders:
            return
        if st.phase is Phase.BUYING:
            self.state = replace(st, phase=Phase.IDLE)
            self.plan.note(Action.REBALANCE, f"round {st.round} done")
        elif not priced:
            return
        elif st.phase is Phase.SELLING:
            self._buy()
        elif len(self.prices) == len(self.bot.markets):
            why = self._due()
            if why is not None:
                self.state = replace(self.state, round=st.round + 1)
                self.plan.note(Action.REBALANCE, f"round {st.round + 1}: {why}")
                self._sell()

    def _due(self) -> str | None:
        st, s = self.state, self.s
        if s.trigger is RebalanceTrigger.PERIOD:
            assert s.period is not None and st.next_due is not None
            if self.at < st.next_due:
                return None
            missed = (self.at - st.next_due) // s.period
            self.state = replace(st, next_due=st.next_due + (missed + 1) * s.period)
            return f"the period of {s.period} is up"
        assert s.threshold is not None
        values = self._values()
        total = sum(values.values(), ZERO)
        if total <= 0:
            return None
        asset, drift = max(
            ((t.asset, abs(values.get(t.asset, ZERO) / total - t.weight)) for t in s.targets),
            key=lambda pair: pair[1],
        )
        floor = s.threshold if st.quiet_drift is None else st.quiet_drift + s.threshold
        if drift < max(s.threshold, floor):
            return None
        self.state = replace(st, quiet_drift=drift)  # cleared when the round trades
        return f"{asset} is {figure(drift)} away from its target weight"

    def _values(self) -> dict[str, Decimal]:
        values = {self.s.quote: self.holdings.get(self.s.quote, ZERO)}
        for market in self.bot.markets:
            values[market.base] = self.holdings.get(market.base, ZERO) * self.prices[market.symbol]
        return values

    def _drifts(self) -> tuple[Decimal, list[tuple[MarketSpec, Decimal]]]:
        """The total value, and each market's asset's target value less its value."""
        values = self._values()
        total = sum(values.values(), ZERO)
        weights = {t.asset: t.weight for t in self.s.targets}
        return total, [
            (m, weights.get(m.base, ZERO) * total - values[m.base])
            for m in sorted(self.bot.markets, key=lambda m: m.base)
        ]

    def _sell(self) -> None:
        total, drifts = self._drifts()
        for market, drift in drifts:
            if drift >= 0:
                continue
            price = self.prices[market.symbol]
            held = floor_to(self.holdings.get(market.base, ZERO), market.lot_size)
            quantity = min(held, floor_to(-drift / price, market.lot_size))
            self._trade(market, Side.SELL, quantity, drift, total)
        self.state = replace(self.state, phase=Phase.SELLING)
        if not self.plan.orders:
            self._buy()

    def _buy(self) -> None:
        total, drifts = self._drifts()
        wanted = [(m, d) for m, d in drifts if d > 0]
        fees = [m.taker_fee for m, _ in wanted]
        need = sum((d * (1 + f) for (_, d), f in zip(wanted, fees, strict=True)), ZERO)
        cash = self.holdings.get(self.s.quote, ZERO)
        room = cash - sum((m.quote_unit for m, _ in wanted), ZERO)
        scale = min(Decimal(1), room / need) if need and room > 0 else ZERO
        for market, drift in wanted:
            price = self.prices[market.symbol]
            worst = worst_price(market, Side.BUY, price, self.s.max_slippage_bps)
            quantity = floor_to(drift * scale / worst, market.lot_size)
            self._trade(market, Side.BUY, quantity, drift, total)
        self.state = replace(self.state, phase=Phase.BUYING)
        if not self.plan.orders:
            self.state = replace(self.state, phase=Phase.IDLE)
            self.plan.note(Action.REBALANCE, f"round {self.state.round} done")

    def _trade(
        self, market: MarketSpec, side: Side, quantity: Decimal, drift: Decimal, total: Decimal
    ) -> None:
        price = self.prices[market.symbol]
        value = quantity * price
        name = f"{side.value.lower()} {quantity} {market.base}"
        if quantity <= 0 or value < max(self.s.min_trade, market.min_notional):
            why = f"{market.base}: {figure(abs(drift))} {self.s.quote} off, under the minimum trade"
            self.plan.note(Action.SKIPPED, why)
            return
        moved = value if side is Side.SELL else -value
        corrected = (abs(drift) - abs(drift + moved)) / total  # of the weight
        cost = fee_of(market, value, market.taker_fee) / value  # of the trade
        if corrected <= cost:
            why = (
                f"{name}: it corrects {figure(corrected)} of the weight, its fee costs"
                f" {figure(cost)} of what it trades"
            )
            self.plan.note(Action.SKIPPED, why)
            return
        self.state = replace(self.state, quiet_drift=None)
        self.plan.place(
            symbol=market.symbol, role=TRADE, scope=str(self.state.round), index=0,
            request=OrderRequest(
                side, OrderType.MARKET, quantity,
                worst_price=worst_price(market, side, price, self.s.max_slippage_bps),
            ),
            reason=f"round {self.state.round}: {name}, {figure(abs(drift))} {self.s.quote} off",
        )  # fmt: skip

    def _stop(self, close_position: bool) -> None:
        if self.state.status is not BotStatus.RUNNING:
            return
        self.state = replace(self.state, status=BotStatus.STOPPING, phase=Phase.IDLE)
        self.plan.note(Action.STOPPED, "stopped" + (", selling every asset" * close_position))
        self.plan.cancel_all("the bot was stopped")
        self.state = replace(self.state, closing=close_position)

    def _sell_all(self) -> None:
        """Sell every asset at market once every canceled order has ended (they may
        still trade until then) and no sale is out."""
        if self.plan.orders:
            return
        for market in sorted(self.bot.markets, key=lambda m: m.base):
            quantity = floor_to(self.holdings.get(market.base, ZERO), market.lot_size)
            price = self.prices.get(market.symbol)
            if price is None or quantity <= 0 or quantity * price < market.min_notional:
                continue
            self.plan.place(
                symbol=market.symbol, role=CLOSE, scope="close",
                request=OrderRequest(
                    Side.SELL, OrderType.MARKET, quantity,
                    worst_price=worst_price(market, Side.SELL, price, self.s.max_slippage_bps),
                ),
                reason=f"the bot was stopped: selling {quantity} {market.base}",
            )  # fmt: skip


def _limit(a: Decimal, b: Decimal, c: Decimal) -> Decimal | None:
    """The largest ``x`` with ``a x^2 + b x - c <= 0`` (``a``, ``c`` >= 0; it holds at
    1), None when every ``x`` does: the positive root, computed without cancelling."""
    if a > 0:
        d = (b * b + 4 * a * c).sqrt()
        return (d - b) / (2 * a) if b < 0 else 2 * c / (b + d)
    return c / b if b > 0 else None
