"""The seeded candle generator (geometric Brownian motion with jumps), pure: valid candles
on the grid, the tick and the lot; the same seed gives the same candles (pinned by digest),
another seed others; and the model's statistics: the volatility of the closes, the range
of a Brownian bridge, the number of jumps, the mean volume."""

from __future__ import annotations

import hashlib
import itertools
import math
import statistics
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from app.core.errors import InvariantViolation
from app.marketdata.domain.candles import INTERVALS, problems
from app.marketdata.domain.synthetic import Synthetic, generate_candles

TICK, LOT = Decimal("0.01"), Decimal("0.0001")


def generate(count: int, **model: object) -> list:
    return generate_candles(Synthetic(count, **model), tick_size=TICK, lot_size=LOT)  # type: ignore[arg-type]


def log_returns(candles: list) -> list[float]:
    return [math.log(c.close / c.open) for c in candles]


def test_candles_are_valid_on_the_grid_the_tick_and_the_lot():
    start = datetime(2024, 3, 1, tzinfo=UTC)
    candles = generate(2000, start=start, interval=timedelta(minutes=5), price=Decimal("123.45"))
    assert len(candles) == 2000
    assert candles[0].open == Decimal("123.45")
    assert [c.open_time for c in candles] == [start + k * timedelta(minutes=5) for k in range(2000)]
    for before, candle in itertools.pairwise(candles):
        assert candle.open == before.close  # no gaps
    for c in candles:
        assert problems(c, INTERVALS["5m"]) == []
        for price in (c.open, c.high, c.low, c.close):
            assert price % TICK == 0 and price.as_tuple().exponent == -2
        assert c.volume % LOT == 0 and c.volume >= 0
    assert any(c.high > max(c.open, c.close) for c in candles)
    assert any(c.low < min(c.open, c.close) for c in candles)


def test_the_same_seed_gives_the_same_candles_and_another_seed_others():
    first = generate(500, seed=42)
    assert generate(500, seed=42) == first
    assert generate(500, seed=43) != first
    digest = hashlib.sha256(repr(first).encode()).hexdigest()
    assert digest == "4e76c968ef5caa7d6d0a9830a813a6984746f54a9687ec99b49028b9eb0aa1bb"


def test_the_closes_have_the_asked_volatility_and_drift():
    # hourly for four years, no jumps: the annualised volatility of the log returns
    candles = generate(35_040, interval=timedelta(hours=1), volatility=0.8, jump_rate=0, seed=1)
    returns = log_returns(candles)
    per_year = 365 * 24
    assert statistics.stdev(returns) * math.sqrt(per_year) == pytest.approx(0.8, rel=0.03)
    # the drift of a GBM's log price is drift - volatility^2 / 2 (here -0.32 a year), give
    # or take 0.8 / sqrt(4 years) for one path: only its sign and size are checked
    assert -0.32 - 1.0 < statistics.fmean(returns) * per_year < -0.32 + 1.0


def test_high_and_low_are_a_brownian_bridge_s_extremes():
    # the mean range of a driftless Brownian motion over T is sqrt(8 / pi) sigma sqrt(T);
    # a high price and small ticks keep rounding out of it
    candles = generate(20_000, volatility=0.5, jump_rate=0, price=Decimal(1_000_000), seed=2)
    sigma = 0.5 * math.sqrt(1 / (365 * 24 * 60))
    ranges = [math.log(c.high / c.low) for c in candles]
    assert statistics.fmean(ranges) == pytest.approx(math.sqrt(8 / math.pi) * sigma, rel=0.03)


def test_jumps_come_at_their_rate():
    # 2,000 jumps a year of about 5 %, on 1-minute candles whose own moves are ~0.03 %
    candles = generate(52_560, jump_rate=2000, jump_volatility=0.05, seed=3)  # 0.1 year
    big = sum(1 for r in log_returns(candles) if abs(r) > 0.005)
    expected = 2000 * 0.1 * 0.92  # P(|N(0, 0.05)| > 0.005) = 0.92
    assert big == pytest.approx(expected, rel=0.15)
    assert not any(abs(r) > 0.005 for r in log_returns(generate(52_560, jump_rate=0, seed=3)))


def test_volume_is_lognormal_around_its_mean_and_grows_with_the_move():
    candles = generate(20_000, volume=Decimal(8), seed=4)
    volumes = [float(c.volume) for c in candles]
    assert statistics.fmean(volumes) == pytest.approx(8 * 0.9, rel=0.05)  # E(0.5 + |Z|/2)
    moves = list(zip(volumes, log_returns(candles), strict=True))
    calm = [volume for volume, r in moves if abs(r) < 1e-4]
    wild = [volume for volume, r in moves if abs(r) > 8e-4]
    assert statistics.fmean(wild) > 1.5 * statistics.fmean(calm)


@pytest.mark.parametrize(
    "bad",
    [
        {"count": -1},
        {"interval": timedelta(0)},
        {"price": Decimal(0)},
        {"volatility": -0.1},
        {"jump_rate": -1.0},
        {"volume": Decimal(-1)},
    ],
)
def test_bad_parameters_are_refused(bad):
    with pytest.raises(InvariantViolation):
        Synthetic(**{"count": 10, **bad})  # type: ignore[arg-type]


def test_a_tick_or_lot_that_is_not_positive_is_refused():
    with pytest.raises(InvariantViolation):
        generate_candles(Synthetic(3), tick_size=Decimal(0), lot_size=LOT)
