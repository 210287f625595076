"""A market's engine as a process: ownership of the market, the loop, one batch.

Ownership. ``MarketEngine.run`` holds the PostgreSQL advisory lock (ENGINE_LOCK, market
id) on its own connection and does every write on that same connection, so an engine
that lost its connection (and with it the lock) cannot commit anything more. A standby
engine (another process, ``python -m app engine``) retries the lock every
``TRADING_ENGINE_TAKEOVER_SECONDS`` and, once it has it, rebuilds the book from
PostgreSQL (``restore``).

Batches. ``step`` reads the commands after the last one applied, has ``MarketState``
apply them and ``sql.write`` write what they did, in one transaction; if it fails the
in-memory state is thrown away and rebuilt from PostgreSQL, which still holds the state
before the batch. A placement in this process may apply its own commands in its
transaction instead (``apply_placed``, under ``lock``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.background import stop_tasks
from app.core.waits import within
from app.events.engine_signals import WAKE_CHANNEL
from app.runtime import Runtime
from app.trading.domain.matching import OrderBook
from app.trading.domain.orders import epoch_ms
from app.trading.engine import sql
from app.trading.engine.funds import SessionFunds
from app.trading.engine.market import MarketState
from app.trading.markets import market_by_id
from db.raw import driver
from db.session import RETRYABLE_SQLSTATES, sqlstate

# the package's name: what the engines log is found under ``app.trading.engine``
log = logging.getLogger("app.trading.engine")

ENGINE_LOCK = 0x6E67  # advisory lock class: (ENGINE_LOCK, market id)


class StaleEngine(Exception):
    """PostgreSQL no longer matches the engine's memory (the market was reset)."""


class MarketEngine:
    def __init__(self, rt: Runtime, market_id: int) -> None:
        self.rt = rt
        self.market_id = market_id
        self.wake = asyncio.Event()
        self.owner = False  # holds the lock
        self.state: MarketState | None = None  # built by ``restore``
        # Held while the book changes: by ``step``, and by a placement applying its own
        # commands in its transaction (``apply_placed``).
        self.lock = asyncio.Lock()
        # The book may differ from PostgreSQL (not built yet, or a batch that changed it
        # did not commit): ``restore`` before the next batch, no placement applies here.
        self.dirty = True

    @property
    def book(self) -> OrderBook | None:
        return None if self.state is None else self.state.book

    @property
    def applied(self) -> int:
        """The seq of the last command applied (``book.last_seq``)."""
        return 0 if self.state is None else self.state.applied

    # -- the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Own the market (waiting for the lock as a standby) and match until cancelled."""
        settings = self.rt.settings
        while True:
            try:
                async with self.rt.engine.connect() as connection:
                    try:
                        await self._own(connection)
                    finally:
                        # Never return a connection holding the market's lock to the pool.
                        await connection.invalidate()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The failed batch rolled back; the book is rebuilt from PostgreSQL.
                log.exception("matching engine failed", extra={"market": self.market_id})
                self.owner = False
                self.dirty = True
                await asyncio.sleep(settings.trading_engine_takeover_seconds)

    async def _own(self, connection: AsyncConnection) -> None:
        settings = self.rt.settings
        raw = await connection.get_raw_connection()
        pg = raw.driver_connection
        assert pg is not None
        while not await pg.fetchval(  # noqa: ASYNC110 (the lock is in PostgreSQL)
            "SELECT pg_try_advisory_lock($1, $2)", ENGINE_LOCK, self.market_id
        ):
            await asyncio.sleep(settings.trading_engine_takeover_seconds)
        self.owner = True
        # The batch statements run again and again with arrays of other lengths; under the
        # default plan_cache_mode PostgreSQL plans each execution afresh (a custom plan),
        # which cost more than running them. This connection is the engine's alone (never
        # returned to the pool), so the setting stays with it.
        await pg.execute("SET plan_cache_mode = force_generic_plan")

        def on_wake(_c: object, _pid: int, _channel: str, payload: str) -> None:
            if payload == str(self.market_id):
                self.wake.set()

        await pg.add_listener(WAKE_CHANNEL, on_wake)
        try:
            async with self.lock:
                await self.restore(connection)
            while True:
                self.wake.clear()
                busy = await self.step(connection)
                if not busy:
                    await within(self.wake.wait(), settings.trading_engine_poll_seconds)
        finally:
            self.owner = False
            with contextlib.suppress(Exception):
                await pg.remove_listener(WAKE_CHANNEL, on_wake)

    # -- state ------------------------------------------------------------------------

    async def restore(self, connection: AsyncConnection) -> None:
        """The book and the live orders as PostgreSQL has them."""
        async with AsyncSession(bind=connection) as session:
            market = await market_by_id(session, self.market_id)
            pg = await driver(session)
            rows = await pg.fetch(
                sql.LIVE_ORDERS_SQL,
                self.market_id,
            )
            await session.rollback()
        self.state = MarketState.restore(self.market_id, market, rows)
        self.dirty = False

    @property
    def _state(self) -> MarketState:
        assert self.state is not None, "restore first"
        return self.state

    # -- one batch --------------------------------------------------------------------

    async def step(self, connection: AsyncConnection) -> bool:
        """Apply the next batch of commands (and due expiries); whether there was work."""
        async with self.lock:
            if self.dirty:
                await self.restore(connection)
            try:
                return await self._step(connection)
            except BaseException:
                self.dirty = True
                raise

    async def _step(self, connection: AsyncConnection) -> bool:
        limit = self.rt.settings.trading_engine_batch_size
        try:
            async with AsyncSession(bind=connection) as session, session.begin():
                pg = await driver(session)
                commands = await pg.fetch(sql.COMMANDS_SQL, self.market_id, self.applied, limit)
                now_ms = epoch_ms(self.rt.now())
                due = self._state.expiry_due(now_ms)
                if not commands and not due:
                    if (
                        await pg.fetchval(
                            "SELECT applied_seq FROM markets WHERE id = $1", self.market_id
                        )
                        != self.applied
                    ):
                        raise StaleEngine("the market's sequence moved under this engine")
                    return False
                await self._apply(session, commands, now_ms if due else None)
            self._state.forget_final()
            return len(commands) == limit
        except StaleEngine:
            log.warning(
                "market reset under the engine; rebuilding", extra={"market": self.market_id}
            )
            await self.restore(connection)
            return True
        except Exception as error:
            if sqlstate(error) not in RETRYABLE_SQLSTATES:
                raise
            # A deadlock (with another engine over shared accounts) or a serialization
            # failure: the batch rolled back. Rebuild from PostgreSQL and try again,
            # keeping the market.
            log.warning(
                "engine batch rolled back; retrying",
                extra={"market": self.market_id, "sqlstate": sqlstate(error)},
            )
            await self.restore(connection)
            await asyncio.sleep(random.uniform(0, 0.05))  # noqa: S311 (jitter)
            return True

    async def _apply(self, session: AsyncSession, commands: list[Any], due: int | None) -> None:
        """Apply ``commands`` (and the expiries due at ``due``, epoch ms) to the book and
        write what they did, in ``session``'s transaction."""
        pg = await driver(session)
        await self._load(pg, commands)
        batch = await self._state.apply(SessionFunds(session), commands, due)
        await sql.write(pg, session, self._state, batch, self.rt.now())

    async def apply_placed(self, session: AsyncSession, placed: Sequence[Any]) -> None:
        """Apply the commands a placement just stored, in its transaction: ``placed``,
        the rows ``app.trading.sql.PLACE_SQL`` returned for this market (the command's ``seq``,
        ``kind``, ``order_id``, the order as ``ORDER_COLUMNS``), in seq order. The caller
        holds ``self.lock`` and the market's row (no other engine writes the market before
        it commits), and ``markets.applied_seq`` is ``self.applied``. Commands of others
        stored before them are read and applied first. The engine is ``dirty`` until the
        caller reports the commit (``settled``); if it does not commit, ``step`` rebuilds
        the book first."""
        assert self.lock.locked() and not self.dirty
        self.dirty = True
        pg = await driver(session)
        if placed[0]["seq"] == self.applied + 1:
            commands = list(placed)
            for row in placed:
                self._state.remember(row)
        else:  # others' commands came first
            commands = await pg.fetch(
                sql.COMMANDS_SQL, self.market_id, self.applied, placed[-1]["seq"] - self.applied
            )
        now_ms = epoch_ms(self.rt.now())
        await self._apply(session, commands, now_ms if self._state.expiry_due(now_ms) else None)

    def settled(self) -> None:
        """``apply_placed``'s transaction committed: the book is PostgreSQL's again."""
        self._state.forget_final()
        self.dirty = False

    async def _load(self, pg: Any, commands: list[Any]) -> None:
        wanted = {c["order_id"] for c in commands if c["order_id"] is not None}
        wanted -= set(self._state.orders)
        if not wanted:
            return
        rows = await pg.fetch(
            sql.ORDERS_BY_ID_SQL,
            list(wanted),
        )
        for row in rows:
            if row["id"] not in self._state.orders:
                self._state.remember(row)


class EngineSet:
    """One ``MarketEngine`` per market, as tasks of this process."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.engines: dict[int, MarketEngine] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        async with self.rt.engine.connect() as connection:
            markets = await connection.execute(text("SELECT id, symbol FROM markets ORDER BY id"))
            for market_id, symbol in markets:
                self.engines[market_id] = self.rt.matching[symbol] = MarketEngine(
                    self.rt, market_id
                )
        for market_id, engine in self.engines.items():
            self._tasks.append(asyncio.create_task(engine.run(), name=f"engine-{market_id}"))

    async def wait_owned(self, timeout: float = 10) -> None:  # noqa: ASYNC109
        deadline = asyncio.get_running_loop().time() + timeout
        while not all(e.owner and e.book is not None for e in self.engines.values()):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("engines did not take their markets")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.rt.matching.clear()
        await stop_tasks(self._tasks)
