"""Market making, pure: USD prices that follow a seeded random walk, and layered quotes
around a reference price on a market's tick and lot. ``app.trading.market_maker``
places them.

Every draw comes from the ``random.Random`` passed in, in a fixed order, so the same
seed and the same starting prices give the same quotes. The walk is a simulation of an
outside market, not security: ``random`` is the right tool.

Units as in ``app.trading.domain.orders``: quotes are in ticks and lots; reference prices and
values are ``Decimal``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from random import Random

from app.trading.domain.orders import BPS, MarketSpec, Side

SIGNIFICANT_DIGITS = 12  # a walked price keeps this many, so repeated steps stay short


@dataclass(frozen=True, slots=True)
class Quote:
    side: Side
    price: int  # ticks
    quantity: int  # lots


@dataclass(frozen=True, slots=True)
class LadderShape:
    levels: int  # quotes per side
    spread_bps: int  # from the best bid to the best ask
    step_bps: int  # between two levels of a side
    level_value: Decimal  # the first level's value in the quote currency; level i: x (2+i)/2


def _significant(value: Decimal) -> Decimal:
    return value.quantize(Decimal(1).scaleb(value.adjusted() - SIGNIFICANT_DIGITS + 1))


def walk_step(price: Decimal, rng: Random, volatility_bps: int) -> Decimal:
    """One step of a geometric random walk: a normal move of ``volatility_bps`` (one
    standard deviation), drawn in hundredths of a basis point, never below half."""
    hundredths = round(rng.gauss(0.0, volatility_bps * 100))
    factor = max(Decimal("0.5"), 1 + Decimal(hundredths) / (BPS * 100))
    return _significant(price * factor)


@dataclass
class PriceWalk:
    """USD prices per currency; the ``fixed`` ones (the cash currencies) stay where they
    are. A currency seen for the first time starts at the price it is given."""

    prices: dict[str, Decimal] = field(default_factory=dict)
    fixed: frozenset[str] = frozenset()

    def step(self, rng: Random, volatility_bps: int, known: Mapping[str, Decimal]) -> None:
        for code in sorted(known):
            self.prices.setdefault(code, known[code])
        for code in sorted(self.prices):
            if code not in self.fixed:
                self.prices[code] = walk_step(self.prices[code], rng, volatility_bps)

    def rate(self, base: str, quote: str) -> Decimal | None:
        """The price of ``base`` in ``quote`` (the walk's cross rate)."""
        if base not in self.prices or quote not in self.prices:
            return None
        return _significant(self.prices[base] / self.prices[quote])


def keep_in_band(reference: Decimal, last: Decimal | None, room_bps: int) -> Decimal:
    """``reference``, moved to at most ``room_bps`` from the last trade price, so every
    quote around it stays inside the market's price band."""
    if last is None:
        return reference
    room = Decimal(max(room_bps, 0)) / BPS
    return min(max(reference, last * (1 - room)), last * (1 + room))


def min_lots(spec: MarketSpec, price: int) -> int:
    """The fewest lots worth at least the market's minimum notional at ``price``."""
    needed = (spec.min_notional / spec.quote_unit).to_integral_value(ROUND_CEILING)
    per_lot = price * spec.units_per_tick_lot
    return max(1, -(-int(needed) // per_lot))


def _lots(spec: MarketSpec, price: int, value: Decimal) -> int:
    lots = int((value / (spec.price(price) * spec.lot_size)).to_integral_value(ROUND_FLOOR))
    return max(lots, min_lots(spec, price))


def max_offset_bps(shape: LadderShape) -> Decimal:
    """How far the outermost quote is from the reference."""
    return Decimal(shape.spread_bps) / 2 + (shape.levels - 1) * shape.step_bps


def ladder(spec: MarketSpec, reference: Decimal, shape: LadderShape, rng: Random) -> list[Quote]:
    """``shape.levels`` bids and as many asks, level by level from the best (a bid, then
    an ask: placed in this order, a requoted book is two-sided again at once). Bids at and
    below ``reference`` less half the spread, asks at and above it plus half the spread,
    each level ``step_bps`` further out and on its own tick, every bid below every ask.
    Sizes grow outwards, each jittered by +-20 %, never under the minimum notional."""
    centre = reference / spec.tick_size  # in ticks, not rounded
    quotes: list[Quote] = []
    bids: list[Quote] = []
    asks: list[Quote] = []
    for level in range(shape.levels):
        offset = (Decimal(shape.spread_bps) / 2 + level * shape.step_bps) / BPS
        bid = int((centre * (1 - offset)).to_integral_value(ROUND_FLOOR))
        ask = int((centre * (1 + offset)).to_integral_value(ROUND_CEILING))
        if bids:
            bid = min(bid, bids[-1].price - 1)
        if asks:
            ask = max(ask, asks[-1].price + 1)
        ask = max(ask, bid + 1)
        value = shape.level_value * (2 + level) / 2
        bid_value = value * rng.randint(80, 120) / 100
        ask_value = value * rng.randint(80, 120) / 100
        if bid >= 1:
            bids.append(Quote(Side.BUY, bid, _lots(spec, bid, bid_value)))
            quotes.append(bids[-1])
        asks.append(Quote(Side.SELL, ask, _lots(spec, ask, ask_value)))
        quotes.append(asks[-1])
    return quotes


def taker_order(
    spec: MarketSpec, quotes: Collection[Quote], rng: Random, probability: float
) -> Quote | None:
    """Now and then (``probability`` per call) a small order that takes the best quote on
    one side (a BUY at the best ask, a SELL at the best bid), so the market trades and its
    last price follows the walk. The draws are the same whether it trades or not."""
    trades = rng.random() < probability
    side = Side.BUY if rng.random() < 0.5 else Side.SELL
    multiple = rng.randint(1, 3)
    opposite = [q for q in quotes if q.side is not side]
    if not trades or not opposite:
        return None
    best = (min if side is Side.BUY else max)(opposite, key=lambda q: q.price)
    lots = min(best.quantity, min_lots(spec, best.price) * multiple)
    return Quote(side, best.price, lots)
