"""Pure account rules: no strawberry, SQLAlchemy, stripe or ccxt."""
