"""Engine, session factory, and the one place that retries serialization failures."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.core.errors import TransientError

T = TypeVar("T")
log = logging.getLogger(__name__)

RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock
MAX_ATTEMPTS = 5


def async_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and select the asyncpg driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def create_engine(url: str, *, pool_size: int = 10, max_overflow: int = 10) -> AsyncEngine:
    engine = create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        # No pre-ping: it costs a round trip per transaction on the hot path. Connections
        # are recycled well before server-side idle timeouts instead.
        pool_recycle=300,
    )
    event.listen(engine.sync_engine, "checkout", _refuse_closed)
    event.listen(engine.sync_engine, "checkin", _close_if_in_transaction)
    return engine


def _refuse_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pooled connection the server ended while it sat idle (a restart, a failover,
    ``pg_terminate_backend``) is known to asyncpg without a round trip: its socket was
    closed. Refused at checkout, the pool replaces it with a new one. Without this it
    would go on being handed out: a raw asyncpg statement's failure (``db.raw``) never
    reaches SQLAlchemy's own disconnect handling, so nothing else would drop it.

    A connection still inside a transaction is refused too (see
    ``_close_if_in_transaction``; checked here as well, as nothing must hand one out)."""
    pg = dbapi_connection.driver_connection
    if pg.is_closed():
        raise DisconnectionError("the server closed this pooled connection")
    if _in_transaction(pg):
        pg.terminate()
        raise DisconnectionError("this pooled connection was left inside a transaction")


def _close_if_in_transaction(dbapi_connection: Any, _record: Any) -> None:
    """A connection comes back to the pool, after its rollback, still inside a
    transaction: a task cancelled between a BEGIN and its answer (asyncpg then turns every
    later BEGIN on it into a savepoint, so no COMMIT on it would commit, and the locks it
    holds would never be let go). Closed at once: PostgreSQL ends that transaction and its
    locks with the connection, and the next checkout replaces it (``_refuse_closed``)."""
    if dbapi_connection is None:
        return
    pg = dbapi_connection.driver_connection
    if not pg.is_closed() and _in_transaction(pg):
        log.warning("a pooled connection came back inside a transaction: closed")
        pg.terminate()


def _in_transaction(pg: Any) -> bool:
    """asyncpg's own view, without a round trip: the server's last word (ReadyForQuery)
    or a transaction block asyncpg still counts as open (``_top_xact``, set before its
    BEGIN is answered)."""
    return bool(pg.is_in_transaction()) or getattr(pg, "_top_xact", None) is not None


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of an error from asyncpg, raw (statements on ``db.raw.driver``) or
    wrapped by SQLAlchemy."""
    orig = getattr(error, "orig", None)
    for candidate in (error, orig, getattr(orig, "__cause__", None)):
        state = getattr(candidate, "sqlstate", None)
        if isinstance(state, str):
            return state
    return None


async def in_transaction(
    sessions: async_sessionmaker[AsyncSession],
    work: Callable[[AsyncSession], Awaitable[T]],
    *,
    around: Callable[[], AbstractAsyncContextManager[object]] = contextlib.nullcontext,
) -> T:
    """Run ``work`` in one transaction, retrying serialization failures and deadlocks.

    ``work`` must be safe to re-run: it starts from scratch on a fresh session.
    ``around()``: a context entered before each attempt and left after its COMMIT or
    ROLLBACK (what must be held until then), with that outcome as its exception.
    """
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            async with around(), sessions() as session, session.begin():
                return await work(session)
        except (DBAPIError, asyncpg.PostgresError) as error:
            if sqlstate(error) not in RETRYABLE_SQLSTATES:
                raise
            log.info(
                "retrying transaction", extra={"attempt": attempt, "sqlstate": sqlstate(error)}
            )
            await asyncio.sleep(0.01 * 2**attempt)
    raise TransientError("The database is busy, try again")
