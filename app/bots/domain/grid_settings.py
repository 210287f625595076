"""A grid bot's settings, validated, its price lines and its profit per level (pure).

``levels`` price lines from ``lower`` to ``upper`` (both included), each on the tick
(rounded to the nearest): ARITHMETIC lines are evenly spaced (``lower + i x (upper -
lower) / (levels - 1)``), GEOMETRIC ones by a constant ratio (``lower x r^i``, ``r =
(upper / lower)^(1 / (levels - 1))``). Line ``i`` for ``i >= levels`` continues the same
way (a grid trailing up). Between two neighbouring lines is a level: it buys at the lower
line and sells at the upper one.

A level's profit per unit of the base, net of the maker fee on both sides (both orders
rest): ``sell x (1 - maker) - buy x (1 + maker)``. A grid with any level at or below zero
is refused (``GridSpacingBelowFees``): fees would eat it. With a quantity (``quantity_
profit``) the fees are as the venue charges them, rounded up per order.

Limits (``ValidationFailed`` naming the field): 0 < lower < upper <= MAX_PRICE, both on
the tick; 2 .. MAX_LEVELS lines, all different once on the tick; an investment in (0,
MAX_AMOUNT]; slippage 0 .. MAX_SLIPPAGE_BPS.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from itertools import pairwise

from app.bots.domain.errors import GridSpacingBelowFees, refuse
from app.bots.domain.runtime import (
    MAX_AMOUNT,
    MAX_SLIPPAGE_BPS,
    fee_of,
    floor_to,
    max_fee,
    nearest_to,
    worst_price,
)
from app.trading.domain.orders import MarketSpec, Side

MAX_LEVELS = 200
MAX_PRICE = Decimal("1000000000000000")  # 1e15
MIN_ROUND_TRIP_UNITS = 2  # quote units a level's round trip must make at least


class Spacing(StrEnum):
    ARITHMETIC = "ARITHMETIC"
    GEOMETRIC = "GEOMETRIC"


class AtBounds(StrEnum):
    """What the grid does when the price leaves its range."""

    WAIT = "WAIT"  # nothing: it waits for the price to come back
    STOP = "STOP"  # stops (its orders canceled, what it holds kept)
    TRAIL_UP = "TRAIL_UP"  # above the top: the lowest level moves to the top; below: waits


@dataclass(frozen=True, slots=True)
class GridSettings:
    lower: Decimal
    upper: Decimal
    levels: int  # price lines, lower and upper included
    investment: Decimal  # quote currency, fees included
    spacing: Spacing = Spacing.ARITHMETIC
    at_bounds: AtBounds = AtBounds.WAIT
    max_slippage_bps: int = 100  # the opening market buy's worst price from the last price


@dataclass(frozen=True, slots=True)
class LevelProfit:
    buy: Decimal
    sell: Decimal
    profit: Decimal  # per unit of the base (or for the quantity given), net of maker fees

    @property
    def fraction(self) -> Decimal:
        """The profit as a fraction of what the buy costs (per unit)."""
        return self.profit / self.buy


def line_price(settings: GridSettings, market: MarketSpec, i: int) -> Decimal:
    """Price line ``i`` (0 is ``lower``), on the tick."""
    lower, upper, n = settings.lower, settings.upper, settings.levels - 1
    if i == 0:
        return lower
    if i == n:
        return upper
    if settings.spacing is Spacing.ARITHMETIC:
        raw = lower + (upper - lower) * i / n
    else:
        raw = lower * ((upper / lower) ** (Decimal(1) / n)) ** i
    return nearest_to(raw, market.tick_size)


def level_profits(settings: GridSettings, market: MarketSpec) -> tuple[LevelProfit, ...]:
    """Each level's profit per unit of the base, net of maker fees, from the lowest."""
    lines = [line_price(settings, market, i) for i in range(settings.levels)]
    fee = market.maker_fee
    return tuple(
        LevelProfit(buy, sell, sell * (1 - fee) - buy * (1 + fee)) for buy, sell in pairwise(lines)
    )


def quantity_profit(market: MarketSpec, buy: Decimal, sell: Decimal, quantity: Decimal) -> Decimal:
    """One round trip of ``quantity``: the sell's value less the buy's, less both maker
    fees as charged (rounded up per order)."""
    fee = market.maker_fee
    bought, sold = buy * quantity, sell * quantity
    return sold - bought - fee_of(market, bought, fee) - fee_of(market, sold, fee)


@dataclass(frozen=True, slots=True)
class GridOpening:
    """How a grid starts at a price: its lines, the quantity each level trades, the
    levels that buy first and those whose base the opening buy gets (at ``worst`` at
    most)."""

    lines: tuple[Decimal, ...]
    quantity: Decimal
    buying: tuple[int, ...]
    waiting: tuple[int, ...]
    worst: Decimal


def grid_opening(settings: GridSettings, market: MarketSpec, price: Decimal) -> GridOpening:
    """The most whole lots per level the investment pays for at these prices with the
    larger fee rate, less one quote unit per order for the fees' rounding."""
    lines = tuple(line_price(settings, market, i) for i in range(settings.levels))
    count = settings.levels - 1
    buying = tuple(i for i in range(count) if lines[i] < price)
    waiting = tuple(i for i in range(count) if lines[i] >= price)
    worst = worst_price(market, Side.BUY, price, settings.max_slippage_bps)
    at_prices = sum((lines[i] for i in buying), Decimal(0)) + worst * len(waiting)
    orders = len(buying) + (1 if waiting else 0)
    spendable = settings.investment / (1 + max_fee(market)) - orders * market.quote_unit
    quantity = floor_to(max(spendable, Decimal(0)) / at_prices, market.lot_size)
    return GridOpening(lines, quantity, buying, waiting, worst)


def opening_problem(opening: GridOpening, settings: GridSettings, market: MarketSpec) -> str | None:
    """Why the grid cannot start so (None when it can): less than one lot or the
    minimum order value per level, or a level whose round trip of that quantity makes
    less than MIN_ROUND_TRIP_UNITS quote units after its fees (rounded up)."""
    quantity, lines = opening.quantity, opening.lines
    if quantity < market.lot_size or quantity * lines[0] < market.min_notional:
        return (
            f"an investment of {settings.investment} {market.quote} buys less than one lot"
            " or the minimum order value per level"
        )
    least, buy = min(
        (quantity_profit(market, buy, sell, quantity), buy) for buy, sell in pairwise(lines)
    )
    if least < MIN_ROUND_TRIP_UNITS * market.quote_unit:
        return (
            f"a round trip of {quantity} from {buy} makes {least} {market.quote} after fees:"
            " invest more or use fewer levels"
        )
    return None


def validate_grid(settings: GridSettings, market: MarketSpec) -> GridSettings:
    """``settings`` if allowed, else ``ValidationFailed`` or ``GridSpacingBelowFees``."""
    s = settings
    for value, field in ((s.lower, "lower"), (s.upper, "upper")):
        if not value.is_finite() or not 0 < value <= MAX_PRICE:
            refuse(field, f"A price above 0 and at most {MAX_PRICE}")
        if nearest_to(value, market.tick_size) != value:
            refuse(field, f"{market.symbol} prices are multiples of {market.tick_size}")
    if s.lower >= s.upper:
        refuse("upper", "The upper price is above the lower one")
    if not 2 <= s.levels <= MAX_LEVELS:
        refuse("levels", f"2 to {MAX_LEVELS} price lines")
    if not s.investment.is_finite() or not 0 < s.investment <= MAX_AMOUNT:
        refuse("investment", f"An amount above 0 and at most {MAX_AMOUNT}")
    if not 0 <= s.max_slippage_bps <= MAX_SLIPPAGE_BPS:
        refuse("maxSlippageBps", f"0 to {MAX_SLIPPAGE_BPS} basis points")
    profits = level_profits(s, market)
    if any(p.buy >= p.sell for p in profits):
        refuse("levels", f"Lines closer than the tick {market.tick_size}: fewer levels")
    worst = min(profits, key=lambda p: p.fraction)
    if worst.profit <= 0:
        raise GridSpacingBelowFees(
            f"Buying at {worst.buy} and selling at {worst.sell} makes {worst.profit} per unit"
            f" after the maker fee of {market.maker_fee} on both: fewer levels or a wider range",
            field="levels",
        )
    return s
