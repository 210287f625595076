"""Pure risk rules: no strawberry, SQLAlchemy, stripe or ccxt."""
