"""Paper trading: accounts that trade on the simulated venue against live prices, with a
book of their own (``domain/session.py`` the pure part; ``ledger``, ``accounts``,
``orders``, ``order_lists``, ``live`` the use cases; ``feed`` the events a step writes)."""
