"""The glue between the parts of a backtest (pure): market data candles into the simulated
venue's candles, and a run's equity points and round trips into the metrics' inputs.

    venue_candles    ``app.marketdata`` candles (open time, OHLCV) -> ``paths.Candle``s
                     of the interval (the venue needs each candle's close time; a
                     calendar month's is the next month's open)
    equity_curve     one metrics ``EquityPoint`` per runner point: the equity at the
                     candle's close, the close (the buy-and-hold benchmark runs from the
                     first close to the last) and ``in_market`` = a position is held at
                     the close (exposure: the share of candles closed holding the base)
    closed_trades    each round trip as a long ``ClosedTrade``: entry and exit prices are
                     the average fill prices (values / quantity), pnl net of both legs' fees
    evaluate         the metrics of a run (``metrics.backtest_result``), fees paid being
                     all the run's fills' fees (an open position's buys included)
    metrics_json     the metrics as JSON of exact strings, and back (``metrics_from_json``)

The curve's first point is the first candle's close: with a latency of one candle or
more no order has filled by then, so it is the starting equity (valued at that close).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields, is_dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from app.backtesting.domain.metrics import (
    CONTEXT,
    BacktestMetrics,
    BacktestResult,
    ClosedTrade,
    Drawdown,
    EquityPoint,
    ReturnStatistics,
    backtest_result,
)
from app.backtesting.domain.runner import EquityCurve, RunResult, Trade
from app.marketdata.domain.candles import Candle as StoredCandle
from app.marketdata.domain.candles import Interval
from app.venues.domain.paths import Candle


def venue_candles(candles: Iterable[StoredCandle], interval: timedelta | Interval) -> list[Candle]:
    def length(c: StoredCandle) -> timedelta:
        return interval if isinstance(interval, timedelta) else interval.length(c.open_time)

    return [
        Candle(c.open_time, c.open, c.high, c.low, c.close, c.volume, length(c)) for c in candles
    ]


def equity_curve(run: RunResult) -> list[EquityPoint]:
    if isinstance(run.equity, EquityCurve):  # its rows, without making each point twice
        return [
            EquityPoint(at, equity, price, position > 0)
            for at, price, _cash, position, equity in run.equity.rows
        ]
    return [EquityPoint(p.at, p.equity, p.price, p.position > 0) for p in run.equity]


def closed_trade(trade: Trade) -> ClosedTrade:
    return ClosedTrade(
        entry_at=trade.opened_at,
        exit_at=trade.closed_at,
        side="long",
        quantity=trade.quantity,
        entry_price=CONTEXT.divide(trade.entry_value, trade.quantity),
        exit_price=CONTEXT.divide(trade.exit_value, trade.quantity),
        pnl=trade.pnl,
        fees=trade.fees,
    )


def closed_trades(run: RunResult) -> list[ClosedTrade]:
    return [closed_trade(t) for t in run.trades]


def evaluate(run: RunResult) -> BacktestResult:
    """The run's metrics, curve and trades (``ValueError`` for a run without candles)."""
    return backtest_result(
        equity_curve(run), closed_trades(run), interval=run.interval, fees_paid=run.fees
    )


def metrics_json(metrics: BacktestMetrics) -> dict[str, Any]:
    """The metrics as JSON: Decimals as their exact strings, times in ISO 8601, None as
    null; ``metrics_from_json`` gives back equal metrics."""
    return _encode(metrics)  # type: ignore[no-any-return]


def metrics_from_json(values: Mapping[str, Any]) -> BacktestMetrics:
    return _decode(BacktestMetrics, values)  # type: ignore[no-any-return]


def _encode(value: Any) -> Any:
    if is_dataclass(value):
        return {f.name: _encode(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


_NESTED = {"Drawdown": Drawdown, "ReturnStatistics": ReturnStatistics}


def _decode(cls: type, values: Mapping[str, Any]) -> Any:
    found: dict[str, Any] = {}
    for f in fields(cls):
        kind, value = str(f.type), values[f.name]
        if value is None:
            found[f.name] = None
        elif kind in _NESTED:
            found[f.name] = _decode(_NESTED[kind], value)
        elif kind.startswith("Decimal"):
            found[f.name] = Decimal(value)
        elif kind.startswith("datetime"):
            found[f.name] = datetime.fromisoformat(value)
        else:
            found[f.name] = value
    return cls(**found)
