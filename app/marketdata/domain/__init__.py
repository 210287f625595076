"""Market data rules, pure: candles, intervals, sources, gaps, aggregation, file layouts,
trades."""
