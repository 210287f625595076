"""Backtesting: strategies run over candles on the simulated venue (``domain/runner.py``,
``domain/strategies.py``), the result metrics of a run and its HTML report.

``compute_metrics(curve, trades, interval=...)`` turns an equity curve (one
``EquityPoint`` per bar) and the ``ClosedTrade``s into a ``BacktestMetrics``;
``backtest_result(...)`` bundles them into a ``BacktestResult``;
``deflated_sharpe_ratio(...)`` corrects a sweep's best Sharpe ratio for the number of
variants tried; ``write_report(path, result, ...)`` writes the HTML report (matplotlib is
imported only when a report is drawn)."""

from app.backtesting.domain.metrics import (
    BacktestMetrics,
    BacktestResult,
    ClosedTrade,
    Drawdown,
    EquityPoint,
    ReturnStatistics,
    backtest_result,
    compute_metrics,
    deflated_sharpe_ratio,
    periods_per_year,
)
from app.backtesting.report import SweepSummary, render_report, write_report

__all__ = [
    "BacktestMetrics",
    "BacktestResult",
    "ClosedTrade",
    "Drawdown",
    "EquityPoint",
    "ReturnStatistics",
    "SweepSummary",
    "backtest_result",
    "compute_metrics",
    "deflated_sharpe_ratio",
    "periods_per_year",
    "render_report",
    "write_report",
]
