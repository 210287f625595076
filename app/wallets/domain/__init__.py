"""Pure wallet rules: no strawberry, SQLAlchemy, stripe or ccxt."""
