"""Backtests without I/O: strategies and the runner."""
