"""Trading bots: DCA, grid, rebalance and signal bots on one runtime (``domain/``)."""
