"""Generated candles (pure, seeded): geometric Brownian motion with jumps, for tests and
benchmarks that need a long, realistic-looking series without a data file.

    generate_candles(Synthetic(...), tick_size=..., lot_size=...) -> list[Candle]

The model, per candle of length dt (in years; a year is 365 days, as crypto trades
every day):

    log return   (drift - volatility^2 / 2) dt + volatility sqrt(dt) Z
                 + the sum of the jumps in the candle: their number is Poisson
                 (jump_rate per year), each N(jump_mean, jump_volatility) in log price
    open         the previous close (a market that never closes: no gaps)
    high, low    the extremes of a Brownian bridge from the open to the close over dt
                 (sampled exactly: P(max > m) = exp(-2 m (m - b) / (volatility^2 dt)),
                 in log price), never inside the body
    volume       lognormal around ``volume`` (base currency), larger on larger moves

Prices are on the tick (rounded to the nearest, at least one tick); volumes are whole
lots, rounded down. The walk itself runs in floats (it is a model of a market, not an
amount of money); every value that leaves is an exact ``Decimal`` of the tick or the lot.
The same parameters and seed give the same candles on the same platform (``random.Random``
and ``math``: Python's own, correctly rounded on the common libms).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from app.core.errors import InvariantViolation
from app.marketdata.domain.candles import Candle

YEAR = timedelta(days=365)


@dataclass(frozen=True, slots=True)
class Synthetic:
    """The parameters of a generated series; rates are per year, in log price."""

    count: int  # candles
    interval: timedelta = timedelta(minutes=1)
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC)
    price: Decimal = Decimal(60_000)  # the first open
    drift: float = 0.0
    volatility: float = 0.6  # 60 % a year: a crypto asset
    jump_rate: float = 50.0  # jumps a year
    jump_mean: float = 0.0
    jump_volatility: float = 0.02  # a jump moves the price about 2 %
    volume: Decimal = Decimal(5)  # the mean volume of a candle, in the base currency
    seed: int = 0

    def __post_init__(self) -> None:
        if (
            self.count < 0
            or self.interval <= timedelta(0)
            or self.price <= 0
            or self.volatility < 0
            or self.jump_rate < 0
            or self.jump_volatility < 0
            or self.volume < 0
        ):
            raise InvariantViolation(f"bad synthetic series: {self!r}")


def generate_candles(series: Synthetic, *, tick_size: Decimal, lot_size: Decimal) -> list[Candle]:
    """``series.count`` candles on the grid from ``series.start``, prices on ``tick_size``,
    volumes in whole ``lot_size``."""
    if tick_size <= 0 or lot_size <= 0:
        raise InvariantViolation("the tick and the lot are positive")
    rng = random.Random(series.seed)  # noqa: S311 (a model, not secrets)
    dt = series.interval / YEAR
    sigma = series.volatility * math.sqrt(dt)  # of one candle's diffusion
    step = (series.drift - series.volatility**2 / 2) * dt
    jump_chance = series.jump_rate * dt  # of a jump in one candle (Poisson mean)
    no_jump = math.exp(-jump_chance)
    tick = float(tick_size)
    mean_lots = float(series.volume / lot_size)
    log_price = math.log(float(series.price))
    open_ticks = _ticks(log_price, tick)
    candles: list[Candle] = []
    at = series.start
    for _ in range(series.count):
        diffusion = sigma * rng.gauss(0.0, 1.0)
        move = (
            step
            + diffusion
            + _jumps(rng, jump_chance, no_jump, series.jump_mean, series.jump_volatility)
        )
        high, low = _bridge_extremes(rng, move, sigma)
        close_ticks = _ticks(log_price + move, tick)
        high_ticks = max(_ticks(log_price + high, tick), open_ticks, close_ticks)
        low_ticks = min(_ticks(log_price + low, tick), open_ticks, close_ticks)
        size = abs(move) / sigma if sigma else 0.0
        lots = int(mean_lots * math.exp(0.5 * rng.gauss(0.0, 1.0) - 0.125) * (0.5 + size / 2))
        candles.append(
            Candle(
                at,
                tick_size * open_ticks,
                tick_size * high_ticks,
                tick_size * low_ticks,
                tick_size * close_ticks,
                lot_size * lots,
            )
        )
        log_price += move
        open_ticks = close_ticks
        at += series.interval
    return candles


def _ticks(log_price: float, tick: float) -> int:
    return max(1, round(math.exp(log_price) / tick))


def _jumps(
    rng: random.Random, chance: float, no_jump: float, mean: float, volatility: float
) -> float:
    """The sum of this candle's jumps (log price): a Poisson number (mean ``chance``,
    ``no_jump`` = exp(-chance)) of normal jumps, counted by inversion (one uniform when
    there is none, as nearly always)."""
    u, k, p, cumulative = rng.random(), 0, no_jump, no_jump
    while u > cumulative and p > 0:
        k += 1
        p *= chance / k
        cumulative += p
    return sum(rng.gauss(mean, volatility) for _ in range(k))


def _bridge_extremes(rng: random.Random, move: float, sigma: float) -> tuple[float, float]:
    """The highest and lowest log price (from the open's) of a Brownian bridge from 0 to
    ``move`` with standard deviation ``sigma`` over the candle."""
    spread_high = -2 * sigma * sigma * math.log(1.0 - rng.random())
    spread_low = -2 * sigma * sigma * math.log(1.0 - rng.random())
    high = (move + math.sqrt(move * move + spread_high)) / 2
    low = (move - math.sqrt(move * move + spread_low)) / 2
    return high, low
