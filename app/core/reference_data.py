"""Reference data shipped with the service (inserted by migration 0002)."""

from __future__ import annotations

from decimal import Decimal

CURRENCIES = [
    # code, name, kind, scale, min_withdrawal, withdrawal_fee
    ("USD", "US Dollar", "FIAT", 2, "10", "1"),
    ("USDT", "Tether USD", "CRYPTO", 6, "10", "1"),
    ("BTC", "Bitcoin", "CRYPTO", 8, "0.0005", "0.0002"),
    ("ETH", "Ether", "CRYPTO", 8, "0.005", "0.001"),
    ("SOL", "Solana", "CRYPTO", 9, "0.1", "0.01"),
]

# Decimal places of each currency's smallest unit: the ``currencies.scale`` column, which
# migration 0002 fills from CURRENCIES (tests/platform/test_project.py keeps the two the same).
CURRENCY_SCALES = {code: scale for code, _, _, scale, _, _ in CURRENCIES}

REFERENCE_PRICES_USD = {"USD": "1", "USDT": "1", "BTC": "90000", "ETH": "3000", "SOL": "150"}

# level: (daily deposit limit USD, daily withdrawal limit USD)
KYC_LIMITS = {0: ("2000", "0"), 1: ("20000", "20000"), 2: ("1000000", "1000000")}

# symbol, tick size, lot size, minimum notional (quote), maker fee, taker fee, reference
# price (quote). Every tick x lot is a whole number of the quote currency's minor unit.
MARKETS = [
    ("BTC/USDT", "0.01", "0.0001", "5", "0.001", "0.002", "90000"),
    ("ETH/USDT", "0.01", "0.0001", "5", "0.001", "0.002", "3000"),
    ("SOL/USDT", "0.001", "0.001", "5", "0.001", "0.002", "150"),
    ("ETH/BTC", "0.00001", "0.001", "0.0001", "0.001", "0.002", "0.03333"),
    ("BTC/USD", "1", "0.01", "10", "0.001", "0.002", "90000"),
]


def market_rows() -> list[dict[str, object]]:
    return [
        {
            "symbol": symbol,
            "base": symbol.split("/")[0],
            "quote": symbol.split("/")[1],
            "tick_size": Decimal(tick),
            "lot_size": Decimal(lot),
            "min_notional": Decimal(minimum),
            "maker_fee": Decimal(maker),
            "taker_fee": Decimal(taker),
            "status": "OPEN",
            "reference_price": Decimal(reference),
        }
        for symbol, tick, lot, minimum, maker, taker, reference in MARKETS
    ]


def currency_rows() -> list[dict[str, object]]:
    return [
        {
            "code": code,
            "name": name,
            "kind": kind,
            "scale": scale,
            "min_withdrawal": Decimal(min_withdrawal),
            "withdrawal_fee": Decimal(fee),
            "enabled": True,
        }
        for code, name, kind, scale, min_withdrawal, fee in CURRENCIES
    ]


def price_rows() -> list[dict[str, object]]:
    return [{"currency": c, "usd_price": Decimal(p)} for c, p in REFERENCE_PRICES_USD.items()]


def kyc_limit_rows() -> list[dict[str, object]]:
    return [
        {"level": level, "daily_deposit_usd": Decimal(d), "daily_withdrawal_usd": Decimal(w)}
        for level, (d, w) in KYC_LIMITS.items()
    ]
