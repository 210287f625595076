"""The pure rules of backtesting: strategies, the runner and the metrics of a run (no I/O,
Decimal only)."""
