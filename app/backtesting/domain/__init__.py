"""The pure rules of backtesting: the metrics of a run (no I/O, Decimal only)."""
