"""PostgreSQL NOTIFY between the API and the matching engines, wherever they run.

    placement transaction ── NOTIFY engine_wake 'market' ──► the market's engine wakes up
    engine batch          ── NOTIFY engine_applied 'market:seq' ──► API processes waiting
                                                                     for their command

A NOTIFY sent inside a transaction is delivered when (and only if) it commits, so a
waiter learns about an applied command exactly when the engine's results are visible.
Notifications are a shortcut, never the record: a missed one costs at most the poll
interval (engines) or one read of ``markets.applied_seq`` (waiters).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from app.core.waits import within

WAKE_CHANNEL = "engine_wake"
APPLIED_CHANNEL = "engine_applied"
log = logging.getLogger(__name__)


class AppliedWatcher:
    """One LISTEN connection per process; ``wait`` returns once a market's engine has
    applied a command (True), or False after ``timeout``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # The LISTEN connection lives for the process: outside the pool, so it never
        # counts as a checked-out connection nor takes a request's place.
        self._listen_engine = create_async_engine(engine.url, poolclass=NullPool)
        self._connection: AsyncConnection | None = None
        self._lock = asyncio.Lock()
        self._applied: dict[int, int] = {}
        self._synced: set[int] = set()  # markets read since the listener started
        self._waiters: dict[int, list[tuple[int, asyncio.Future[None]]]] = defaultdict(list)
        self._activity = asyncio.Event()  # set by every announcement, cleared by next_applied

    async def wait(self, market_id: int, seq: int, timeout: float) -> bool:  # noqa: ASYNC109
        await self._ensure_listening()
        if self._applied.get(market_id, 0) >= seq:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[market_id].append((seq, future))
        try:
            # The listener is active: everything applied since it started is announced
            # (and recorded in _applied); what was applied before is in the table, read
            # once per market and connection.
            if market_id not in self._synced:
                self._synced.add(market_id)
                if await self._read_applied(market_id) >= seq:
                    return True
            await within(asyncio.shield(future), timeout)
            return future.done() or await self._read_applied(market_id) >= seq
        finally:
            with contextlib.suppress(ValueError):
                self._waiters[market_id].remove((seq, future))

    async def next_applied(self, timeout: float) -> None:  # noqa: ASYNC109
        """Returns when some engine announced an applied batch since the previous call
        (at once if one came meanwhile), or after ``timeout``: a worker's wake-up."""
        await self._ensure_listening()
        await within(self._activity.wait(), timeout)
        self._activity.clear()

    async def _read_applied(self, market_id: int) -> int:
        async with self._engine.connect() as connection:
            value = await connection.scalar(
                text("SELECT applied_seq FROM markets WHERE id = :id"), {"id": market_id}
            )
        self._seen(market_id, int(value or 0))
        return int(value or 0)

    async def _ensure_listening(self) -> None:
        if self._connection is not None and not self._connection.closed:
            return
        async with self._lock:
            if self._connection is not None and not self._connection.closed:
                return
            connection = await self._listen_engine.connect()
            raw = await connection.get_raw_connection()
            driver_connection = raw.driver_connection
            assert driver_connection is not None
            await driver_connection.add_listener(APPLIED_CHANNEL, self._on_notify)
            driver_connection.add_termination_listener(self._on_lost)
            self._connection = connection

    def _on_lost(self, _connection: object) -> None:
        self._connection = None
        self._synced.clear()

    def _on_notify(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        market, _, seq = payload.partition(":")
        self._activity.set()
        self._seen(int(market), int(seq))

    def _seen(self, market_id: int, seq: int) -> None:
        if seq <= self._applied.get(market_id, 0):
            return
        self._applied[market_id] = seq
        for waited, future in self._waiters.get(market_id, ()):
            if waited <= seq and not future.done():
                future.set_result(None)

    def forget(self) -> None:
        """Drop what was seen: sequences start again after the tables were emptied (tests)."""
        self._applied.clear()
        self._synced.clear()

    async def aclose(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None
        await self._listen_engine.dispose()
