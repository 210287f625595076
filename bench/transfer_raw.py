"""The floor: a plain asyncpg transaction that moves money between two balance rows.

Per transfer: BEGIN, a guarded debit (``balance >= x``) and a credit, rows in id order,
COMMIT; a refused debit rolls back. The rows live in a scratch table, ``bench_raw_balances``,
created for the run and dropped after it; the app's tables are not touched."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import partial

import asyncpg

from bench.closed_loop import WarmedRun, run_after_warmup
from bench.transfer_plan import Order, Party

TABLE = "bench_raw_balances"
_CREATE = f"""
    CREATE TABLE {TABLE} (
        id bigint PRIMARY KEY,
        balance numeric(38, 18) NOT NULL CHECK (balance >= 0)
    )"""
_DEBIT = f"UPDATE {TABLE} SET balance = balance - $2 WHERE id = $1 AND balance >= $2"
_CREDIT = f"UPDATE {TABLE} SET balance = balance + $2 WHERE id = $1"
_TOTALS = (
    f"SELECT sum(balance) AS total, count(*) FILTER (WHERE balance < 0) AS negative FROM {TABLE}"
)


@dataclass(frozen=True, slots=True)
class RawCheck:
    total_before: Decimal
    total_after: Decimal
    negative_rows: int


class _Refused(Exception):
    """The guarded debit matched no row: roll the transaction back."""


def asyncpg_dsn(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def run_raw(
    database_url: str,
    parties: Sequence[Party],
    *,
    warmup: Sequence[Order],
    orders: Sequence[Order],
    concurrency: int,
    opening_balance: Decimal,
) -> tuple[WarmedRun, RawCheck]:
    pool = await asyncpg.create_pool(
        asyncpg_dsn(database_url), min_size=concurrency, max_size=concurrency
    )
    try:
        await _create_table(pool, parties, opening_balance)
        before = await pool.fetchval(f"SELECT sum(balance) FROM {TABLE}")
        senders = [partial(_transfer, pool)] * concurrency
        runs = await run_after_warmup(warmup, orders, senders)
        after = await pool.fetchrow(_TOTALS)
        return runs, RawCheck(before, after["total"], after["negative"])
    finally:
        await pool.execute(f"DROP TABLE IF EXISTS {TABLE}")
        await pool.close()


async def _create_table(
    pool: asyncpg.Pool, parties: Sequence[Party], opening_balance: Decimal
) -> None:
    await pool.execute(f"DROP TABLE IF EXISTS {TABLE}")
    await pool.execute(_CREATE)
    await pool.executemany(
        f"INSERT INTO {TABLE} (id, balance) VALUES ($1, $2)",
        [(p.user_id, opening_balance) for p in parties],
    )


async def _transfer(pool: asyncpg.Pool, order: Order) -> str:
    legs = sorted([(order.sender.user_id, _DEBIT), (order.recipient.user_id, _CREDIT)])
    try:
        async with pool.acquire() as connection, connection.transaction():
            for row_id, statement in legs:
                if await connection.execute(statement, row_id, order.amount) == "UPDATE 0":
                    raise _Refused
    except _Refused:
        return "insufficient"
    return "ok"
