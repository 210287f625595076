"""The result of a backtest: performance metrics from the equity curve and the closed trades.

Pure and exact: Decimal in and Decimal out, with every operation (the square roots of the
Sharpe and Sortino annualisation, the fractional power of CAGR) done in Decimal under one
explicit context, ``CONTEXT`` (34 significant digits, half-even). The one exception is the
deflated Sharpe ratio (``deflated_sharpe_ratio``): a probability that needs the normal
distribution's CDF and its inverse, which exist for floats only (``statistics.NormalDist``);
it takes and returns dimensionless floats, never an amount of money.

Conventions (docs/backtesting.md, "Metrics"):

- The equity curve has one point per bar, at the bar's close, the first point being the
  starting equity. Its ``n`` points give ``n - 1`` simple returns
  ``r_i = E_i / E_(i-1) - 1``.
- Annualisation: ``P`` periods per year = 365 days / the bar interval (crypto trades every
  day: 365 for daily bars, 8760 for hourly bars). Years elapsed = ``(n - 1) / P``.
- Risk-free rate 0; the standard deviation is the sample one (``ddof = 1``).
- A metric that is undefined for the input is ``None``, never an infinity, NaN or an error:
  Sharpe of a flat curve, profit factor without a losing trade, anything needing returns
  from a single bar.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal, Overflow
from functools import reduce
from itertools import pairwise, repeat
from statistics import NormalDist

CONTEXT = Context(prec=34, rounding=ROUND_HALF_EVEN)
YEAR = timedelta(days=365)
ZERO = Decimal(0)
ONE = Decimal(1)
# the Euler-Mascheroni constant (Bailey & López de Prado 2014, eq. for E[max SR])
EULER_GAMMA = 0.5772156649015329


@dataclass(frozen=True, slots=True)
class EquityPoint:
    """The account at one bar's close: its equity (cash + positions at the close, in the
    quote currency), the market's close price (the buy-and-hold benchmark) and whether a
    position was held during the bar (exposure)."""

    at: datetime
    equity: Decimal
    close: Decimal
    in_market: bool = False


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    """One round trip. ``pnl`` is net of fees: what the trade added to equity; ``fees`` are
    the fees paid on both legs (already inside ``pnl``)."""

    entry_at: datetime
    exit_at: datetime
    side: str  # "long" or "short"
    quantity: Decimal
    entry_price: Decimal
    exit_price: Decimal
    pnl: Decimal
    fees: Decimal


@dataclass(frozen=True, slots=True)
class Drawdown:
    """The deepest fall from a running peak, as a fraction of that peak (0.25 = 25 %).

    ``peak_at`` is where it starts (the last high before the trough), ``trough_at`` its
    low, ``recovered_at`` the first bar back at or above the peak's equity (its end; None
    while not recovered). All three are None when the curve never falls (``depth`` 0)."""

    depth: Decimal
    peak_at: datetime | None = None
    trough_at: datetime | None = None
    recovered_at: datetime | None = None

    @property
    def duration(self) -> timedelta | None:
        """Peak to recovery; None while not recovered."""
        if self.peak_at is None or self.recovered_at is None:
            return None
        return self.recovered_at - self.peak_at


@dataclass(frozen=True, slots=True)
class ReturnStatistics:
    """The per-bar returns, not annualised: what the deflated Sharpe ratio takes.
    ``skewness`` and ``kurtosis`` are the population moments (kurtosis not in excess: 3 for
    a normal distribution); ``sharpe`` is mean / sample standard deviation."""

    observations: int
    mean: Decimal | None
    stdev: Decimal | None
    sharpe: Decimal | None
    skewness: Decimal | None
    kurtosis: Decimal | None


@dataclass(frozen=True, slots=True)
class BacktestMetrics:
    """Every figure of a backtest result. Fractions, not percentages (0.12 = 12 %); money
    (``expectancy``, ``fees_paid``, equities) in the quote currency."""

    start: datetime
    end: datetime
    bars: int
    periods_per_year: Decimal
    starting_equity: Decimal
    final_equity: Decimal
    total_return: Decimal
    cagr: Decimal | None
    volatility: Decimal | None
    sharpe: Decimal | None
    sortino: Decimal | None
    calmar: Decimal | None
    max_drawdown: Drawdown
    trades: int
    win_rate: Decimal | None
    profit_factor: Decimal | None
    expectancy: Decimal | None
    exposure: Decimal
    fees_paid: Decimal
    buy_and_hold_return: Decimal
    returns: ReturnStatistics


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """What a run leaves: its metrics, its equity curve and its closed trades."""

    metrics: BacktestMetrics
    curve: Sequence[EquityPoint]
    trades: Sequence[ClosedTrade]


def periods_per_year(interval: timedelta) -> Decimal:
    """Bars in a 365-day year: 365 for 1d, 8760 for 1h, 525600 for 1m."""
    if interval <= timedelta(0):
        raise ValueError("the bar interval must be positive")
    seconds = Decimal(interval.days * 86400 + interval.seconds) + Decimal(
        interval.microseconds
    ).scaleb(-6)
    return CONTEXT.divide(Decimal(YEAR.days * 86400), seconds)


def simple_returns(equity: Sequence[Decimal]) -> list[Decimal] | None:
    """``E_i / E_(i-1) - 1`` for each bar after the first; None when a bar starts at or
    below zero equity (a return from nothing is undefined)."""
    if any(value <= 0 for value in equity[:-1]):
        return None
    ratios = map(CONTEXT.divide, equity[1:], equity[:-1])
    return list(map(CONTEXT.subtract, ratios, repeat(ONE)))


def max_drawdown(curve: Sequence[EquityPoint]) -> Drawdown:
    """The deepest ``1 - E_t / max(E_s, s <= t)``; the first such trough on a tie."""
    peak_index = best_peak = best_trough = 0
    depth = ZERO
    for index, point in enumerate(curve):
        peak = curve[peak_index].equity
        if point.equity >= peak:
            peak_index = index
            continue
        fall = CONTEXT.subtract(ONE, CONTEXT.divide(point.equity, peak))
        if fall > depth:
            depth, best_peak, best_trough = fall, peak_index, index
    if depth == 0:
        return Drawdown(depth=ZERO)
    peak_equity = curve[best_peak].equity
    recovered = next((p.at for p in curve[best_trough + 1 :] if p.equity >= peak_equity), None)
    return Drawdown(
        depth=depth,
        peak_at=curve[best_peak].at,
        trough_at=curve[best_trough].at,
        recovered_at=recovered,
    )


def return_statistics(returns: Sequence[Decimal] | None) -> ReturnStatistics:
    if not returns:
        return ReturnStatistics(0, None, None, None, None, None)
    n = len(returns)
    mean = CONTEXT.divide(_sum(returns), Decimal(n))
    deviations = list(map(CONTEXT.subtract, returns, repeat(mean)))
    m2 = _moment(deviations, 2)
    stdev = CONTEXT.sqrt(CONTEXT.divide(CONTEXT.multiply(m2, n), n - 1)) if n > 1 else None
    sharpe = CONTEXT.divide(mean, stdev) if stdev else None
    skewness = kurtosis = None
    if m2 > 0:
        skewness = CONTEXT.divide(_moment(deviations, 3), CONTEXT.multiply(m2, CONTEXT.sqrt(m2)))
        kurtosis = CONTEXT.divide(_moment(deviations, 4), CONTEXT.multiply(m2, m2))
    return ReturnStatistics(n, mean, stdev, sharpe, skewness, kurtosis)


def compute_metrics(
    curve: Sequence[EquityPoint],
    trades: Sequence[ClosedTrade],
    *,
    interval: timedelta,
    fees_paid: Decimal | None = None,
) -> BacktestMetrics:
    """The metrics of one run. ``fees_paid`` defaults to the closed trades' fees; pass the
    engine's total when a position still open at the end has paid some too."""
    if not curve:
        raise ValueError("the equity curve has no points")
    if curve[0].equity <= 0 or curve[0].close <= 0:
        raise ValueError("the equity curve starts at a positive equity and price")
    if any(a.at >= b.at for a, b in pairwise(curve)):
        raise ValueError("the equity curve's points are in strictly increasing time")
    per_year = periods_per_year(interval)
    first, last = curve[0], curve[-1]
    equity = [p.equity for p in curve]
    returns = simple_returns(equity)
    stats = return_statistics(returns)
    total = CONTEXT.subtract(CONTEXT.divide(last.equity, first.equity), ONE)
    drawdown = max_drawdown(curve)
    cagr = _cagr(CONTEXT.add(ONE, total), len(curve) - 1, per_year)
    sharpe = _annualise(stats.sharpe, per_year)
    calmar = CONTEXT.divide(cagr, drawdown.depth) if cagr is not None and drawdown.depth else None
    return BacktestMetrics(
        start=first.at,
        end=last.at,
        bars=len(curve),
        periods_per_year=per_year,
        starting_equity=first.equity,
        final_equity=last.equity,
        total_return=total,
        cagr=cagr,
        volatility=_annualise(stats.stdev, per_year),
        sharpe=sharpe,
        sortino=_sortino(returns, per_year),
        calmar=calmar,
        max_drawdown=drawdown,
        trades=len(trades),
        win_rate=_win_rate(trades),
        profit_factor=_profit_factor(trades),
        expectancy=CONTEXT.divide(_sum(t.pnl for t in trades), len(trades)) if trades else None,
        exposure=CONTEXT.divide(sum(p.in_market for p in curve), len(curve)),
        fees_paid=_sum(t.fees for t in trades) if fees_paid is None else fees_paid,
        buy_and_hold_return=CONTEXT.subtract(CONTEXT.divide(last.close, first.close), ONE),
        returns=stats,
    )


def backtest_result(
    curve: Sequence[EquityPoint],
    trades: Sequence[ClosedTrade],
    *,
    interval: timedelta,
    fees_paid: Decimal | None = None,
) -> BacktestResult:
    """The curve and trades with their metrics (``compute_metrics``)."""
    metrics = compute_metrics(curve, trades, interval=interval, fees_paid=fees_paid)
    return BacktestResult(metrics=metrics, curve=tuple(curve), trades=tuple(trades))


def deflated_sharpe_ratio(
    *,
    sharpe: float,
    sharpe_variance: float,
    trials: int,
    observations: int,
    skewness: float,
    kurtosis: float,
) -> float | None:
    """The probability that the best of ``trials`` variants has a true Sharpe ratio above
    zero, after correcting for the selection among them and for non-normal returns.

    Bailey, D. H. and López de Prado, M. (2014), "The Deflated Sharpe Ratio: Correcting for
    Selection Bias, Backtest Overfitting and Non-Normality", Journal of Portfolio
    Management 40 (5), 94-107:

        SR0 = sqrt(V) * ((1 - g) * Z(1 - 1/N) + g * Z(1 - 1/(N e)))
        DSR = Phi( (SR - SR0) * sqrt(T - 1) / sqrt(1 - k3 * SR + (k4 - 1) / 4 * SR^2) )

    with ``SR`` the selected variant's Sharpe ratio per bar (not annualised: divide an
    annual one by sqrt(periods per year)), ``V`` the variance of the ``N = trials``
    variants' per-bar Sharpe ratios, ``T`` the number of returns, ``k3`` their skewness,
    ``k4`` their kurtosis (3 for normal returns), ``g`` the Euler-Mascheroni constant,
    ``Z`` the standard normal quantile and ``Phi`` its CDF. ``SR0`` is the Sharpe ratio
    the best of ``N`` unskilled variants is expected to reach. With one trial (or no spread
    between trials) ``SR0`` is 0 and this is the probabilistic Sharpe ratio against 0.

    Floats: a probability of dimensionless statistics, computed with
    ``statistics.NormalDist`` (no Decimal normal distribution exists). None when undefined:
    fewer than two returns, or a non-positive variance term under the root.
    """
    if trials < 1:
        raise ValueError("at least one variant was tried")
    if sharpe_variance < 0:
        raise ValueError("a variance is not negative")
    if observations < 2:
        return None
    normal = NormalDist()
    expected_max = 0.0
    if trials > 1 and sharpe_variance > 0:
        expected_max = math.sqrt(sharpe_variance) * (
            (1 - EULER_GAMMA) * normal.inv_cdf(1 - 1 / trials)
            + EULER_GAMMA * normal.inv_cdf(1 - 1 / (trials * math.e))
        )
    spread = 1 - skewness * sharpe + (kurtosis - 1) / 4 * sharpe**2
    if spread <= 0:
        return None
    z = (sharpe - expected_max) * math.sqrt(observations - 1) / math.sqrt(spread)
    return normal.cdf(z)


def _sum(values: Iterable[Decimal]) -> Decimal:
    """Added in order under ``CONTEXT`` (the loop in C: these run over every bar)."""
    return reduce(CONTEXT.add, values, ZERO)


def _moment(deviations: Sequence[Decimal], power: int) -> Decimal:
    powers = map(CONTEXT.power, deviations, repeat(power))
    return CONTEXT.divide(_sum(powers), len(deviations))


def _annualise(per_bar: Decimal | None, per_year: Decimal) -> Decimal | None:
    return None if per_bar is None else CONTEXT.multiply(per_bar, CONTEXT.sqrt(per_year))


def _cagr(growth: Decimal, periods: int, per_year: Decimal) -> Decimal | None:
    """``growth ^ (P / periods) - 1``: -1 when everything was lost, None with no elapsed
    bar, a negative final equity, or a rate too large for any number to hold (a short run
    annualised: a 1-minute run that grew 1000-fold would compound 525600 times a year)."""
    if periods == 0 or growth < 0:
        return None
    if growth == 0:
        return -ONE
    exponent = CONTEXT.divide(per_year, Decimal(periods))
    try:
        return CONTEXT.subtract(CONTEXT.power(growth, exponent), ONE)
    except Overflow:
        return None


def _sortino(returns: Sequence[Decimal] | None, per_year: Decimal) -> Decimal | None:
    """mean / downside deviation * sqrt(P), the downside deviation being
    ``sqrt(sum(min(r, 0)^2) / n)`` over all ``n`` returns (target 0). None with fewer than
    two returns or no losing bar."""
    if not returns or len(returns) < 2:
        return None
    n = Decimal(len(returns))
    downside = CONTEXT.divide(_sum(CONTEXT.multiply(r, r) for r in returns if r < 0), n)
    if downside == 0:
        return None
    mean = CONTEXT.divide(_sum(returns), n)
    return _annualise(CONTEXT.divide(mean, CONTEXT.sqrt(downside)), per_year)


def _win_rate(trades: Sequence[ClosedTrade]) -> Decimal | None:
    """Share of trades with a positive net pnl (a break-even trade is not a win)."""
    if not trades:
        return None
    return CONTEXT.divide(sum(t.pnl > 0 for t in trades), len(trades))


def _profit_factor(trades: Sequence[ClosedTrade]) -> Decimal | None:
    """Gross profit / gross loss of the trades' net pnl; None without a losing trade."""
    loss = _sum(CONTEXT.minus(t.pnl) for t in trades if t.pnl < 0)
    if loss == 0:
        return None
    return CONTEXT.divide(_sum(t.pnl for t in trades if t.pnl > 0), loss)
