"""Pure domain logic: no strawberry, SQLAlchemy, stripe or ccxt imports here."""
