"""Market data: candles per source (the platform's venue, imported files, later exchanges)."""
