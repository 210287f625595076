"""Pure trading rules (orders, matching, market making): no strawberry, SQLAlchemy, stripe or
ccxt."""
