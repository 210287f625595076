"""Pure social trading rules: no strawberry, SQLAlchemy, stripe or ccxt."""
