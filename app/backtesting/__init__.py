"""Backtesting: the result metrics of a simulated run and its HTML report.

``compute_metrics(curve, trades, interval=...)`` turns an equity curve (one
``EquityPoint`` per bar) and the ``ClosedTrade``s into a ``BacktestMetrics``;
``deflated_sharpe_ratio(...)`` corrects a sweep's best Sharpe ratio for the number of
variants tried; ``write_report(path, metrics, curve, trades, ...)`` writes the HTML report
(matplotlib is imported only when a report is drawn)."""

from app.backtesting.domain.metrics import (
    BacktestMetrics,
    ClosedTrade,
    Drawdown,
    EquityPoint,
    ReturnStatistics,
    compute_metrics,
    deflated_sharpe_ratio,
    periods_per_year,
)

__all__ = [
    "BacktestMetrics",
    "ClosedTrade",
    "Drawdown",
    "EquityPoint",
    "ReturnStatistics",
    "compute_metrics",
    "deflated_sharpe_ratio",
    "periods_per_year",
]
