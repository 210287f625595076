"""A DCA bot's settings, validated, and its safety-order ladder (pure).

Percentages are fractions (0.01 = 1 %). Safety order n (1, 2, ...) buys
``safety_order x volume_scale^(n-1)`` of the quote currency at a price
``deviation_n`` below the deal's entry (its base order's average fill price), where
``deviation_n = price_deviation x (1 + step_scale + ... + step_scale^(n-1))``: with
step scale 1 the orders are evenly spaced, above 1 each gap is wider than the last.

Limits (each refusal is a ``ValidationFailed`` naming the GraphQL field; nothing
changes): amounts in (0, MAX_AMOUNT]; 0 .. MAX_SAFETY_ORDERS safety orders, at least one
and at most that many active at once; a deviation in (0, 1) and the last safety order's
deviation below 1 (a price above zero); scales in (0, MAX_SCALE]; 1 .. MAX_TAKE_PROFIT_STEPS
take-profit steps at rising percentages whose shares add up to 1, the first one's
profit above the fees (a buy at the taker fee, a sell at the maker fee, or the taker fee
when trailing); trailing with one step only, its deviation in (0, 1); a stop-loss in
(0, 1); 1 .. MAX_ACTIVE_DEALS deals at once; a cooldown of 0 .. MAX_COOLDOWN; slippage
0 .. MAX_SLIPPAGE_BPS.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from itertools import pairwise

from app.bots.domain.errors import refuse
from app.bots.domain.runtime import (
    MAX_AMOUNT,
    MAX_SLIPPAGE_BPS,
    ZERO,
    floor_to,
    lots_worth,
    worst_price,
)
from app.trading.domain.orders import BPS, MarketSpec, Side

ONE = Decimal(1)
MAX_SAFETY_ORDERS = 100
MAX_SCALE = Decimal(10)
MAX_TAKE_PROFIT_STEPS = 8
MAX_ACTIVE_DEALS = 100
MAX_COOLDOWN = timedelta(days=365)
MARGIN = Decimal("1e-20")


class StartCondition(StrEnum):
    IMMEDIATELY = "IMMEDIATELY"  # a deal starts as soon as one may
    SIGNAL = "SIGNAL"  # a deal starts on a BUY alert


@dataclass(frozen=True, slots=True)
class TakeProfitStep:
    profit: Decimal  # above the deal's average entry price
    share: Decimal  # of the position


@dataclass(frozen=True, slots=True)
class DcaSettings:
    base_order: Decimal  # quote currency, bought at market when a deal starts
    safety_order: Decimal  # quote currency, the first safety order's size
    max_safety_orders: int
    max_active_safety_orders: int
    price_deviation: Decimal  # the first safety order's distance below the entry
    step_scale: Decimal = ONE
    volume_scale: Decimal = ONE
    take_profit: tuple[TakeProfitStep, ...] = (TakeProfitStep(Decimal("0.01"), ONE),)
    trailing_deviation: Decimal | None = None  # trailing take-profit (one step)
    stop_loss: Decimal | None = None  # below the average entry price
    max_active_deals: int = 1
    cooldown: timedelta = timedelta(0)  # between one deal's start or end and the next start
    start: StartCondition = StartCondition.IMMEDIATELY
    max_slippage_bps: int = 100  # market orders' worst price from the last price


def safety_deviation(settings: DcaSettings, n: int) -> Decimal:
    """How far below the entry safety order ``n`` (from 1) buys."""
    return settings.price_deviation * sum((settings.step_scale**k for k in range(n)), Decimal(0))


def safety_volume(settings: DcaSettings, n: int) -> Decimal:
    """What safety order ``n`` (from 1) spends, in the quote currency."""
    return settings.safety_order * settings.volume_scale ** (n - 1)


def deal_budget(settings: DcaSettings) -> Decimal:
    """The most one deal spends before fees: its base order and every safety order."""
    return settings.base_order + sum(
        (safety_volume(settings, n) for n in range(1, settings.max_safety_orders + 1)),
        Decimal(0),
    )


def base_order(
    settings: DcaSettings, market: MarketSpec, price: Decimal
) -> tuple[Decimal, Decimal]:
    """(quantity, worst price) of a deal's base order at the last price ``price``: the
    quantity ``base_order`` pays for at the worst price, so it never spends more."""
    worst = worst_price(market, Side.BUY, price, settings.max_slippage_bps)
    return lots_worth(market, settings.base_order, worst), worst


def base_order_affordable_at(settings: DcaSettings, market: MarketSpec) -> Decimal:
    """A price above which the base order buys less than one lot: there its worst price,
    above ``p x (1 + slippage) - tick`` (rounded down to the tick), is above ``base_order
    / lot`` (with a margin far wider than the rounding of the bot's own division)."""
    s, m = settings, market
    bound = (s.base_order / m.lot_size + m.tick_size) * BPS / (BPS + s.max_slippage_bps)
    return bound * (1 + MARGIN)


def safety_order(
    settings: DcaSettings, market: MarketSpec, entry: Decimal, n: int
) -> tuple[Decimal, Decimal]:
    """(price, quantity) of safety order ``n`` of a deal entered at ``entry``: the price
    rounded down to the tick, the quantity down to the lot (zero when under one)."""
    price = floor_to(entry * (1 - safety_deviation(settings, n)), market.tick_size)
    if price <= 0:
        return market.tick_size, ZERO
    return price, lots_worth(market, safety_volume(settings, n), price)


def validate_dca(settings: DcaSettings, market: MarketSpec) -> DcaSettings:
    """``settings`` if allowed, else ``ValidationFailed`` for the first problem."""
    s = settings
    _amount(s.base_order, "baseOrder")
    if not 0 <= s.max_safety_orders <= MAX_SAFETY_ORDERS:
        refuse("maxSafetyOrders", f"0 to {MAX_SAFETY_ORDERS} safety orders")
    if s.max_safety_orders:
        _amount(s.safety_order, "safetyOrder")
        if not 1 <= s.max_active_safety_orders <= s.max_safety_orders:
            refuse("maxActiveSafetyOrders", "1 to maxSafetyOrders at once")
        _fraction(s.price_deviation, "priceDeviation")
        for value, field in ((s.step_scale, "stepScale"), (s.volume_scale, "volumeScale")):
            if not 0 < value <= MAX_SCALE:
                refuse(field, f"A scale is above 0 and at most {MAX_SCALE}")
        if safety_deviation(s, s.max_safety_orders) >= 1:
            refuse("stepScale", "The last safety order would buy at a price of zero or less")
        if deal_budget(s) > MAX_AMOUNT:
            refuse("volumeScale", "The safety orders would spend more than the maximum amount")
    _take_profit(s, market)
    if s.stop_loss is not None:
        _fraction(s.stop_loss, "stopLoss")
    if not 1 <= s.max_active_deals <= MAX_ACTIVE_DEALS:
        refuse("maxActiveDeals", f"1 to {MAX_ACTIVE_DEALS} deals at once")
    if not timedelta(0) <= s.cooldown <= MAX_COOLDOWN:
        refuse("cooldown", "A cooldown is between 0 and a year")
    if not 0 <= s.max_slippage_bps <= MAX_SLIPPAGE_BPS:
        refuse("maxSlippageBps", f"0 to {MAX_SLIPPAGE_BPS} basis points")
    return s


def _take_profit(s: DcaSettings, market: MarketSpec) -> None:
    steps = s.take_profit
    if not 1 <= len(steps) <= MAX_TAKE_PROFIT_STEPS:
        refuse("takeProfit", f"1 to {MAX_TAKE_PROFIT_STEPS} take-profit steps")
    for step in steps:
        if not 0 < step.profit <= MAX_SCALE or not 0 < step.share <= 1:
            refuse("takeProfit", "A step's profit is above 0, its share in (0, 1]")
    if any(a.profit >= b.profit for a, b in pairwise(steps)):
        refuse("takeProfit", "Take-profit steps go up")
    if sum((step.share for step in steps), Decimal(0)) != 1:
        refuse("takeProfit", "The steps' shares add up to 1")
    exit_fee = market.maker_fee
    if s.trailing_deviation is not None:
        if len(steps) != 1:
            refuse("trailingDeviation", "A trailing take-profit has one step")
        _fraction(s.trailing_deviation, "trailingDeviation")
        exit_fee = market.taker_fee
    if (1 + steps[0].profit) * (1 - exit_fee) <= 1 + market.taker_fee:
        refuse("takeProfit", f"A profit of {steps[0].profit} does not cover the fees")


def _amount(value: Decimal, field: str) -> None:
    if not value.is_finite() or not 0 < value <= MAX_AMOUNT:
        refuse(field, f"An amount above 0 and at most {MAX_AMOUNT}")


def _fraction(value: Decimal, field: str) -> None:
    if not value.is_finite() or not 0 < value < 1:
        refuse(field, "A fraction between 0 and 1 (0.01 is 1 %)")
