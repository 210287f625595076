"""The staking products shipped with the service.

Migration 0003 inserted a frozen copy of this list (migrations are fixed history); the
test suite restores it after each test's truncation with ``restore``.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# The seeded rates apply from this day on (any accrual day).
RATES_EFFECTIVE_FROM = date(2000, 1, 1)

# asset, kind, lock days, APY %, compounding, min amount, max per user, capacity
CATALOGUE: list[tuple[str, str, int | None, str, bool, str, str, str]] = [
    ("USDT", "FLEXIBLE", None, "4", False, "10", "100000", "50000000"),
    ("USDT", "LOCKED", 30, "6", False, "10", "100000", "20000000"),
    ("USDT", "LOCKED", 60, "7", False, "10", "100000", "20000000"),
    ("USDT", "LOCKED", 90, "8", False, "10", "200000", "20000000"),
    ("USDT", "LOCKED", 120, "10", False, "10", "200000", "20000000"),
    ("BTC", "FLEXIBLE", None, "2", True, "0.001", "10", "2000"),
    ("BTC", "LOCKED", 30, "3", False, "0.001", "10", "1000"),
    ("BTC", "LOCKED", 90, "4", False, "0.001", "10", "1000"),
    ("BTC", "LOCKED", 120, "5", False, "0.001", "10", "1000"),
    ("ETH", "FLEXIBLE", None, "3", True, "0.01", "200", "50000"),
    ("ETH", "LOCKED", 30, "4", False, "0.01", "200", "20000"),
    ("ETH", "LOCKED", 60, "4.5", False, "0.01", "200", "20000"),
    ("ETH", "LOCKED", 90, "5.5", False, "0.01", "200", "20000"),
    ("ETH", "LOCKED", 120, "6", False, "0.01", "200", "20000"),
    ("SOL", "FLEXIBLE", None, "5", True, "0.1", "10000", "2000000"),
    ("SOL", "LOCKED", 30, "7", True, "0.1", "10000", "1000000"),
    ("SOL", "LOCKED", 60, "8", True, "0.1", "10000", "1000000"),
    ("SOL", "LOCKED", 90, "10", True, "0.1", "10000", "1000000"),
    ("SOL", "LOCKED", 120, "12", True, "0.1", "20000", "1000000"),
]

# One statement: the products, then their rates matched on (asset, kind, lock days),
# which is unique in the catalogue.
_RESTORE_SQL = text(
    """
    WITH v AS (
        SELECT * FROM unnest(
            CAST(:asset AS text[]), CAST(:kind AS text[]), CAST(:lock_days AS smallint[]),
            CAST(:apy AS numeric[]), CAST(:compounding AS boolean[]),
            CAST(:min_amount AS numeric[]), CAST(:max_per_user AS numeric[]),
            CAST(:capacity AS numeric[])
        ) AS v(asset, kind, lock_days, apy, compounding, min_amount, max_per_user, capacity)
    ), p AS (
        INSERT INTO staking_products
            (asset, kind, lock_days, compounding, min_amount, max_per_user, capacity)
        SELECT asset, kind, lock_days, compounding, min_amount, max_per_user, capacity FROM v
        RETURNING id, asset, kind, lock_days
    )
    INSERT INTO staking_product_rates (product_id, effective_from, apy)
    SELECT p.id, CAST(:effective_from AS date), v.apy
    FROM p JOIN v ON v.asset = p.asset AND v.kind = p.kind
                 AND v.lock_days IS NOT DISTINCT FROM p.lock_days
    """
)


def product_rows() -> list[dict[str, object]]:
    return [
        {
            "asset": asset,
            "kind": kind,
            "lock_days": lock_days,
            "apy": Decimal(apy),
            "compounding": compounding,
            "min_amount": Decimal(minimum),
            "max_per_user": Decimal(maximum),
            "capacity": Decimal(capacity),
        }
        for asset, kind, lock_days, apy, compounding, minimum, maximum, capacity in CATALOGUE
    ]


async def restore(connection: AsyncConnection) -> None:
    """Insert the catalogue and its rates (after a truncation): one statement."""
    rows = product_rows()
    columns = {key: [row[key] for row in rows] for key in rows[0]}
    await connection.execute(_RESTORE_SQL, {**columns, "effective_from": RATES_EFFECTIVE_FROM})
