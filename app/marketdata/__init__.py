"""Market data: candles and trades per source (the platform's venue, imported files, later
exchanges)."""
