"""The backtest metrics (app/backtesting/domain/metrics.py): small cases computed by hand,
the edge cases, properties, and the deflated Sharpe ratio against its paper's example.
The comparison with an independent implementation is in test_metrics_reference.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.backtesting import (
    ClosedTrade,
    EquityPoint,
    compute_metrics,
    deflated_sharpe_ratio,
    periods_per_year,
)
from app.backtesting.domain.metrics import CONTEXT

D = Decimal
T0 = datetime(2024, 1, 1, tzinfo=UTC)
YEARLY = timedelta(days=365)  # one bar per year: P = 1, so annualising changes nothing
DAILY = timedelta(days=1)


def curve(equities, *, closes=None, in_market=None, step=DAILY) -> list[EquityPoint]:
    closes = closes or [D(100)] * len(equities)
    in_market = in_market or [False] * len(equities)
    return [
        EquityPoint(at=T0 + i * step, equity=D(e), close=D(c), in_market=m)
        for i, (e, c, m) in enumerate(zip(equities, closes, in_market, strict=True))
    ]


def trade(pnl, fees="1") -> ClosedTrade:
    return ClosedTrade(
        entry_at=T0,
        exit_at=T0 + DAILY,
        side="long",
        quantity=D(1),
        entry_price=D(100),
        exit_price=D(100) + D(pnl),
        pnl=D(pnl),
        fees=D(fees),
    )


def close_to(value: Decimal | None, expected: Decimal, digits: int = 25) -> bool:
    """Equal to 25 digits: the expectations here are worked out at the default 28."""
    assert value is not None
    return abs(value - expected) < D(10) ** -digits


def sqrt(value: Decimal) -> Decimal:
    with localcontext(CONTEXT):
        return value.sqrt()


# ---------------------------------------------------------------- a case computed by hand
# yearly bars (P = 1): equity 100 -> 120 -> 90 -> 135, returns 0.2, -0.25, 0.5
HAND = curve(
    ["100", "120", "90", "135"],
    closes=["10", "11", "9", "12"],
    in_market=[False, True, True, False],
    step=YEARLY,
)
HAND_TRADES = [trade("30"), trade("-10"), trade("0")]


def test_hand_computed_returns_metrics():
    m = compute_metrics(HAND, HAND_TRADES, interval=YEARLY)
    assert m.periods_per_year == 1
    assert m.bars == 4 and m.start == HAND[0].at and m.end == HAND[-1].at
    assert m.total_return == D("0.35")
    assert close_to((1 + m.cagr) ** 3, D("1.35"))  # 3 years to grow by 35 %
    # mean 0.15; deviations 0.05, -0.4, 0.35: sample variance 0.285 / 2 = 0.1425
    assert close_to(m.volatility, sqrt(D("0.1425")))
    assert close_to(m.sharpe**2, D(3) / D(19))  # 0.15^2 / 0.1425
    # downside deviation: sqrt(0.25^2 / 3); 0.15^2 / (0.0625 / 3) = 1.08
    assert close_to(m.sortino, sqrt(D("1.08")))
    assert m.buy_and_hold_return == D("0.2")


def test_hand_computed_drawdown_and_calmar():
    m = compute_metrics(HAND, HAND_TRADES, interval=YEARLY)
    dd = m.max_drawdown
    assert dd.depth == D("0.25")  # 120 -> 90
    assert (dd.peak_at, dd.trough_at, dd.recovered_at) == (HAND[1].at, HAND[2].at, HAND[3].at)
    assert dd.duration == 2 * YEARLY
    assert close_to(m.calmar, m.cagr * 4, 25)


def test_hand_computed_trade_metrics_and_exposure():
    m = compute_metrics(HAND, HAND_TRADES, interval=YEARLY)
    assert m.trades == 3
    assert close_to(m.win_rate, D(1) / 3)  # a break-even trade is not a win
    assert m.profit_factor == 3  # 30 / 10
    assert close_to(m.expectancy, D(20) / 3)
    assert m.fees_paid == 3
    assert m.exposure == D("0.5")
    overridden = compute_metrics(HAND, HAND_TRADES, interval=YEARLY, fees_paid=D("4.5"))
    assert overridden.fees_paid == D("4.5")


def test_hand_computed_return_moments():
    stats = compute_metrics(HAND, [], interval=YEARLY).returns
    assert stats.observations == 3
    assert stats.mean == D("0.15")
    # population moments: m2 = 0.095, m3 = -0.007, m4 = 0.0135375
    assert close_to(stats.skewness, D("-0.007") / (D("0.095") * sqrt(D("0.095"))))
    assert close_to(stats.kurtosis, D("1.5"))
    assert close_to(stats.sharpe**2, D(3) / D(19))


def test_annualisation_uses_a_365_day_year():
    assert periods_per_year(timedelta(days=1)) == 365
    assert periods_per_year(timedelta(hours=4)) == 2190
    assert periods_per_year(timedelta(hours=1)) == 8760
    assert periods_per_year(timedelta(minutes=15)) == 35040
    assert periods_per_year(timedelta(minutes=1)) == 525600
    with pytest.raises(ValueError):
        periods_per_year(timedelta(0))
    hourly = compute_metrics(
        curve(["100", "101", "100.5"], step=timedelta(hours=1)), [], interval=timedelta(hours=1)
    )
    yearly = compute_metrics(curve(["100", "101", "100.5"], step=YEARLY), [], interval=YEARLY)
    assert close_to(hourly.sharpe, yearly.sharpe * sqrt(D(8760)), 25)


# ---------------------------------------------------------------- edge cases


def test_a_single_bar_has_no_return_based_metric():
    m = compute_metrics(curve(["1000"]), [], interval=DAILY)
    assert m.total_return == 0 and m.buy_and_hold_return == 0
    assert (m.cagr, m.sharpe, m.sortino, m.volatility, m.calmar) == (None,) * 5
    assert m.max_drawdown.depth == 0 and m.max_drawdown.peak_at is None
    assert m.returns.observations == 0 and m.returns.sharpe is None


def test_a_flat_curve_has_no_sharpe_rather_than_infinity():
    m = compute_metrics(curve(["500"] * 5), [], interval=DAILY)
    assert m.total_return == 0 and m.cagr == 0 and m.volatility == 0
    assert (m.sharpe, m.sortino, m.calmar) == (None, None, None)
    assert m.returns.skewness is None and m.returns.kurtosis is None
    assert m.max_drawdown.depth == 0


def test_no_trades():
    m = compute_metrics(curve(["100", "101"]), [], interval=DAILY)
    assert m.trades == 0 and m.fees_paid == 0 and m.exposure == 0
    assert (m.win_rate, m.profit_factor, m.expectancy) == (None, None, None)


def test_profit_factor_without_a_losing_trade_is_none():
    m = compute_metrics(curve(["100", "101"]), [trade("5"), trade("0")], interval=DAILY)
    assert m.profit_factor is None and m.win_rate == D("0.5")
    only_losses = compute_metrics(curve(["100", "99"]), [trade("-5")], interval=DAILY)
    assert only_losses.profit_factor == 0 and only_losses.win_rate == 0


def test_a_rising_curve_has_no_sortino_and_no_drawdown():
    m = compute_metrics(curve(["100", "101", "103"]), [], interval=DAILY)
    assert m.sortino is None and m.calmar is None and m.sharpe is not None
    assert m.max_drawdown.depth == 0


def test_a_drawdown_not_recovered_has_no_end():
    m = compute_metrics(curve(["100", "80", "90"]), [], interval=DAILY)
    dd = m.max_drawdown
    assert dd.depth == D("0.2") and dd.recovered_at is None and dd.duration is None
    assert dd.peak_at == T0 and dd.trough_at == T0 + DAILY


def test_the_deepest_drawdown_is_kept_not_the_latest():
    # 100 -> 50 (50 %), back to 100, then 200 -> 150 (25 %)
    m = compute_metrics(curve(["100", "50", "100", "200", "150"]), [], interval=DAILY)
    dd = m.max_drawdown
    assert dd.depth == D("0.5") and dd.trough_at == T0 + DAILY
    assert dd.recovered_at == T0 + 2 * DAILY  # back at the peak's equity counts


def test_losing_everything():
    m = compute_metrics(curve(["100", "50", "0"]), [], interval=DAILY)
    assert m.total_return == -1 and m.cagr == -1 and m.max_drawdown.depth == 1
    after_zero = compute_metrics(curve(["100", "0", "10"]), [], interval=DAILY)
    assert after_zero.sharpe is None and after_zero.returns.observations == 0


def test_a_cagr_too_large_to_hold_is_none_not_an_overflow():
    minute = timedelta(minutes=1)
    m = compute_metrics(curve(["1", "1000"], step=minute), [], interval=minute)
    assert m.cagr is None and m.calmar is None and m.total_return == 999
    huge = compute_metrics(curve(["100", "250"], step=minute), [], interval=minute)
    assert huge.cagr is not None and huge.cagr > D("1e200000")  # 2.5 ^ 525600


def test_invalid_curves_are_refused():
    with pytest.raises(ValueError):
        compute_metrics([], [], interval=DAILY)
    with pytest.raises(ValueError):
        compute_metrics(curve(["0", "1"]), [], interval=DAILY)
    points = curve(["100", "101"])
    with pytest.raises(ValueError):
        compute_metrics([points[1], points[0]], [], interval=DAILY)


# ---------------------------------------------------------------- properties
# Equities with at most 2 decimals and factors that are integers: products stay exact, and
# Decimal division is correctly rounded, so a scaled curve gives the very same quotients.
cents = st.integers(min_value=1, max_value=10**9).map(lambda c: D(c).scaleb(-2))
equities = st.lists(cents, min_size=1, max_size=40)


@given(equities)
def test_drawdown_is_a_fraction_between_zero_and_one(values):
    depth = compute_metrics(curve(values), [], interval=DAILY).max_drawdown.depth
    assert 0 <= depth <= 1


@given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=40))
def test_a_curve_that_never_falls_has_no_drawdown(steps):
    values, total = [], D(100)
    for step in steps:
        total += D(step).scaleb(-2)
        values.append(total)
    m = compute_metrics(curve(values), [], interval=DAILY)
    assert m.max_drawdown.depth == 0 and m.max_drawdown.peak_at is None


@given(equities, st.integers(min_value=2, max_value=10**6))
def test_scaling_the_equity_leaves_returns_based_metrics_unchanged(values, factor):
    one = compute_metrics(curve(values), [], interval=DAILY)
    scaled = compute_metrics(curve([v * factor for v in values]), [], interval=DAILY)
    names = "total_return cagr volatility sharpe sortino calmar max_drawdown exposure returns"
    for name in names.split():
        assert getattr(scaled, name) == getattr(one, name), name


# ---------------------------------------------------------------- deflated Sharpe ratio


def test_deflated_sharpe_ratio_matches_the_papers_example():
    """Bailey & López de Prado (2014), section "A numerical example": an annual Sharpe of 2.5
    over 5 years of daily returns (T = 1250, 250 a year), the best of N = 100 trials whose
    annual Sharpe ratios have variance 1/2, skewness -3, kurtosis 10: SR0 = 0.1132 per day
    and DSR = 0.9004."""
    dsr = deflated_sharpe_ratio(
        sharpe=2.5 / 250**0.5,
        sharpe_variance=0.5 / 250,
        trials=100,
        observations=1250,
        skewness=-3,
        kurtosis=10,
    )
    assert dsr == pytest.approx(0.9004, abs=5e-5)


def test_deflated_sharpe_ratio_with_one_trial_is_the_probabilistic_sharpe_ratio():
    from statistics import NormalDist

    sr, t, skew, kurt = 0.1, 500, -0.5, 5.0
    psr = NormalDist().cdf(sr * (t - 1) ** 0.5 / (1 - skew * sr + (kurt - 1) / 4 * sr**2) ** 0.5)
    one = dict(sharpe=sr, trials=1, observations=t, skewness=skew, kurtosis=kurt)
    assert deflated_sharpe_ratio(sharpe_variance=0.01, **one) == pytest.approx(psr)
    many = dict(one, trials=50)
    assert deflated_sharpe_ratio(sharpe_variance=0.0, **many) == pytest.approx(psr)


@given(st.integers(min_value=1, max_value=10_000))
def test_more_variants_tried_never_raise_the_deflated_sharpe_ratio(trials):
    args = dict(sharpe=0.08, sharpe_variance=0.002, observations=1000, skewness=0, kurtosis=3)
    fewer = deflated_sharpe_ratio(trials=trials, **args)
    more = deflated_sharpe_ratio(trials=trials + 1, **args)
    assert fewer is not None and more is not None and more <= fewer
    assert 0 <= more <= 1


def test_deflated_sharpe_ratio_edge_cases():
    args = dict(sharpe=0.1, sharpe_variance=0.01, skewness=0, kurtosis=3)
    assert deflated_sharpe_ratio(trials=10, observations=1, **args) is None
    with pytest.raises(ValueError):
        deflated_sharpe_ratio(trials=0, observations=100, **args)
    # a variance term under the root at or below zero: undefined, not an error
    assert (
        deflated_sharpe_ratio(
            sharpe=2.0, sharpe_variance=0.0, trials=1, observations=100, skewness=5, kurtosis=3
        )
        is None
    )
