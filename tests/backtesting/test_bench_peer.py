"""The backtest benchmark's cross-check (``python -m bench backtest``) on a small generated
series: our runner in backtesting.py's mode and backtesting.py itself, running the same two
strategies, make the same executions (candle, side, price, quantity). No timing."""

from __future__ import annotations

from datetime import timedelta

from bench.backtest_peer import generated, identical_trades


def test_our_runner_and_backtesting_py_make_the_same_executions():
    candles = generated(5_000, timedelta(minutes=1), seed=3)
    assert identical_trades(candles) == {"DCA": [], "MA 10/30": [], "MA 50/200": []}
