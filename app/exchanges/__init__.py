"""Connected exchange accounts: users' own accounts at external exchanges, reached
through ccxt (``ccxt_edge``: the one module that imports it)."""
