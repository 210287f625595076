"""The asyncpg connection under a session's transaction, for hot paths.

SQLAlchemy costs ~100 µs of Python per statement; the money write path runs several
statements per request, so it talks to asyncpg directly (same connection, same
transaction, prepared statements cached by asyncpg). Everything else uses SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession


async def driver(session: AsyncSession) -> Any:
    """The ``asyncpg.Connection`` running ``session``'s current transaction.

    SQLAlchemy's asyncpg adapter sends BEGIN lazily, on its own first statement; a raw
    statement before that would run in autocommit and survive a rollback. So start the
    adapter's transaction here if it has not started (tests/platform/test_raw.py guards this)."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    adapter = raw.dbapi_connection
    if adapter._transaction is None and adapter.isolation_level != "autocommit":
        async with adapter._execute_mutex:
            if adapter._transaction is None:
                await adapter._start_transaction()
    return raw.driver_connection


def columns(rows: Iterable[Sequence[Any]], width: int | None = None) -> list[list[Any]]:
    """Rows as columns: the arrays of one ``unnest`` statement (rather than a statement
    per row). ``width``: how many columns there are, so that no rows give that many
    empty arrays (for a statement that takes them whether or not there are rows)."""
    table = [list(column) for column in zip(*rows, strict=True)]
    if width is not None and not table:
        return [[] for _ in range(width)]
    if width is not None and len(table) != width:
        raise ValueError(f"{len(table)} columns, not {width}")
    return table


def unnest_parameters(first: int, types: Sequence[str]) -> str:
    """``$first::type[], ...``: the array parameters of an ``unnest``."""
    return ", ".join(f"${first + n}::{kind}[]" for n, kind in enumerate(types))
