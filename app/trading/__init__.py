"""Trading: markets, placement and commands, reads, the matching engine, the market maker."""
