"""The metric formulas against an independent implementation: empyrical-reloaded (a dev-only
dependency, the statistics behind pyfolio/zipline) and scipy.stats for the moments, on the
same returns, as floats.

Conventions, aligned here:
- risk-free rate 0 (empyrical's ``risk_free`` and ``required_return`` default to 0);
- annualisation: empyrical's default is 252 trading days; we pass ``annualization=P``, our
  365-day crypto year (P = 365 for daily bars);
- standard deviation: both use the sample one (``ddof=1``) for volatility and Sharpe;
- Sortino: both divide by the downside deviation over ALL returns,
  ``sqrt(mean(min(r, 0)^2))``, not the standard deviation of the losing ones;
- CAGR: both count years as ``len(returns) / P``;
- maximum drawdown: empyrical's is negative (-0.25), ours a positive fraction (0.25); both
  count the starting equity as the first peak (empyrical anchors its cumulative returns);
- undefined values: empyrical gives NaN or inf (flat curve, no losing bar), we give None;
  the curves here have both gains and losses so every value is defined;
- skewness and kurtosis: population moments (``scipy.stats.skew(bias=True)``,
  ``kurtosis(fisher=False)``: 3 for a normal distribution), as the deflated Sharpe ratio's
  paper uses them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import empyrical
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from app.backtesting import EquityPoint, compute_metrics

T0 = datetime(2024, 1, 1, tzinfo=UTC)
# floats lose digits where a result is a small difference (a 0.01 % drawdown, CAGR of a few
# bars raised to P / n): 1e-6 relative is far below any formula mistake and above that noise
REL = 1e-6


def _curve(returns: list[Decimal], step: timedelta) -> list[EquityPoint]:
    equity, points = Decimal(10_000), []
    for i, r in enumerate([Decimal(0), *returns]):
        equity = equity * (1 + r)
        points.append(EquityPoint(at=T0 + i * step, equity=equity, close=Decimal(1)))
    return points


def _check(returns: list[Decimal], step: timedelta, per_year: int) -> None:
    m = compute_metrics(_curve(returns, step), [], interval=step)
    assert m.periods_per_year == per_year
    # the returns as the curve gives them (equal to the inputs up to Decimal rounding)
    r = np.array([float(x) for x in returns])

    def approx(value):
        return pytest.approx(value, rel=REL, abs=1e-9)

    assert float(m.sharpe) == approx(empyrical.sharpe_ratio(r, annualization=per_year))
    assert float(m.sortino) == approx(empyrical.sortino_ratio(r, annualization=per_year))
    assert float(m.volatility) == approx(empyrical.annual_volatility(r, annualization=per_year))
    assert float(m.cagr) == approx(empyrical.cagr(r, annualization=per_year))
    assert float(m.max_drawdown.depth) == approx(-empyrical.max_drawdown(r))
    assert float(m.calmar) == approx(empyrical.calmar_ratio(r, annualization=per_year))
    assert float(m.total_return) == approx(empyrical.cum_returns_final(r))
    assert float(m.returns.skewness) == approx(scipy_stats.skew(r, bias=True))
    assert float(m.returns.kurtosis) == approx(scipy_stats.kurtosis(r, fisher=False, bias=True))


def test_a_fixed_daily_series_matches_empyrical():
    returns = [Decimal(x) for x in ("0.01", "-0.02", "0.03", "0", "0.015", "-0.005", "-0.01")]
    _check(returns, timedelta(days=1), 365)


def _mixed(limit_bps: int):
    """Returns within +-limit in basis points, with at least one gain and one loss."""
    bps = st.integers(min_value=-limit_bps, max_value=limit_bps)
    return st.lists(bps.map(lambda b: Decimal(b).scaleb(-4)), min_size=3, max_size=60).filter(
        lambda rs: any(r > 0 for r in rs) and any(r < 0 for r in rs)
    )


# daily bars up to +-50 %, hourly up to +-5 %: CAGR (growth ^ (P / bars)) stays within a
# float's range for the reference (1.05 ^ 8760 ~ 1e185)
@settings(max_examples=60, deadline=None)
@given(_mixed(5000))
def test_random_daily_curves_match_empyrical(returns):
    _check(returns, timedelta(days=1), 365)


@settings(max_examples=30, deadline=None)
@given(_mixed(500))
def test_random_hourly_curves_match_empyrical(returns):
    _check(returns, timedelta(hours=1), 8760)
