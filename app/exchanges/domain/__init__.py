"""Pure: the exchange catalogue, key permissions, markets mapped to ``MarketSpec``, the
sealing of API secrets, and the errors (no ccxt, SQLAlchemy or strawberry here)."""
