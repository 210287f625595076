"""Backtest types: the backtest node, its metrics, equity points and trades, inputs and results."""
