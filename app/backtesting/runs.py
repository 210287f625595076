"""Running a claimed backtest (``app.backtesting.lifecycle``): from its first candle to DONE,
or FAILED with a reason, writing only while its lease holds it.

``execute`` claims one backtest and runs it; ``BacktestWorker`` runs the backtests of one
event loop: at most ``MAX_RUNNING`` at once, the pure, CPU-bound run in a thread pool of
that size so the event loop keeps serving. While a run goes on, its lease is renewed every
third of its length (``renewing``), and its progress (candles done of the total) is written
``PROGRESS_STEPS`` times, each with its event. The result (metrics, equity points, trades,
decisions and risk events) is written in one transaction with DONE: a run stopped earlier
leaves none of it, so running it again doubles nothing.

A run ends early (``Stop``) when its lease is lost (another process took the backtest: it
writes nothing more), when its process stops gracefully (the backtest is handed back,
``lifecycle.release``) or when its task is cancelled (as in a crash: the lease lapses).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum
from functools import partial
from typing import Any, NamedTuple

from sqlalchemy.ext.asyncio import AsyncSession

from app.backtesting import lifecycle
from app.backtesting.domain import specs
from app.backtesting.domain.evaluation import evaluate, metrics_json
from app.backtesting.domain.metrics import BacktestResult
from app.backtesting.domain.runner import RunResult
from app.backtesting.lifecycle import DONE, FAILED, LEASE, Lease
from app.core.errors import UserError
from app.core.waits import within
from app.runtime import Runtime
from db.models import (
    Backtest,
    BacktestDecision,
    BacktestEquityPoint,
    BacktestRiskEvent,
    BacktestTrade,
)
from db.raw import Arrays, driver

log = logging.getLogger(__name__)

MAX_RUNNING = 2  # backtests running at once per server process (event loop)
PROGRESS_STEPS = 20  # progress written every 5 % of the candles
INSERT_BATCH = 5_000

# the inputs of a backtest's run, from its row
Prepare = Callable[[AsyncSession, Backtest], Awaitable[specs.RunInputs]]


class StopReason(Enum):
    LOST = "lease lost"  # another process runs it now
    STOPPING = "process stopping"  # handed back
    CANCELLED = "cancelled"  # as a crash: the lease lapses


class Stop:
    """Why a run should end before its last candle: set in the event loop, read by the
    run's thread after each candle."""

    def __init__(self) -> None:
        self.reason: StopReason | None = None
        self._flag = threading.Event()
        self._event = asyncio.Event()

    def set(self, reason: StopReason) -> None:
        if self.reason is None:
            self.reason = reason
        self._flag.set()
        self._event.set()

    def is_set(self) -> bool:
        return self._flag.is_set()

    async def wait(self) -> None:
        await self._event.wait()


class Abandoned(Exception):
    """The run ended before its last candle (``Stop``)."""


async def execute(
    rt: Runtime,
    backtest_id: int,
    *,
    prepare: Prepare,
    executor: Executor | None = None,
    stop: Stop | None = None,
    length: timedelta = LEASE,
) -> bool:
    """Claim the backtest and run it (True); False when it is not there to claim (done,
    or running under another process's lease)."""
    async with rt.sessions() as session, session.begin():
        leases = await lifecycle.claim(
            session, limit=1, backtest_id=backtest_id, started_at=rt.now(), length=length
        )
    if not leases:
        return False
    stop = stop or Stop()
    async with renewing(rt, leases[0], stop):
        await run_claimed(rt, leases[0], prepare=prepare, executor=executor, stop=stop)
    return True


@contextlib.asynccontextmanager
async def renewing(rt: Runtime, lease: Lease, stop: Stop) -> AsyncIterator[None]:
    """The lease renewed every third of its length while the block runs; ``stop`` set
    (LOST) when it no longer holds."""
    ended = asyncio.Event()
    task = asyncio.create_task(_renew(rt, lease, stop, ended), name=f"lease-{lease.backtest_id}")
    try:
        yield
    finally:
        ended.set()  # the task ends at once, never cancelled inside a statement
        await asyncio.shield(task)


async def _renew(rt: Runtime, lease: Lease, stop: Stop, ended: asyncio.Event) -> None:
    every = lease.length.total_seconds() / 3
    while not await within(ended.wait(), every):
        try:
            async with rt.sessions() as session, session.begin():
                held = await lifecycle.renew(session, lease)
        except Exception:  # the database away a moment: try again; the lease may lapse
            log.warning("backtest lease not renewed", exc_info=True,
                        extra={"backtest_id": lease.backtest_id})  # fmt: skip
            continue
        if not held:
            stop.set(StopReason.LOST)
            return


async def run_claimed(
    rt: Runtime, lease: Lease, *, prepare: Prepare, executor: Executor | None, stop: Stop
) -> None:
    """Run a claimed backtest from its first candle to DONE (or FAILED)."""
    try:
        if stop.is_set():
            raise Abandoned
        async with rt.reads() as session:
            row = await session.get(Backtest, lease.backtest_id)
            if row is None:
                raise Abandoned  # deleted meanwhile
            inputs = await prepare(session, row)
        market = specs.market_json(inputs.market)
        if not await _set(rt, lease, candles_total=len(inputs.candles), market=market):
            raise Abandoned
        run = await _run_reporting(rt, lease, inputs, executor, stop)
        evaluated = evaluate(run)
    except Abandoned:
        if stop.reason is StopReason.STOPPING:
            await _change(rt, lease, _released)
        return
    except (UserError, ValueError) as error:
        await _fail(rt, lease, str(error))
        return
    except Exception:
        log.exception("backtest failed", extra={"backtest_id": lease.backtest_id})
        await _fail(rt, lease, "internal error")
        return
    await _finish(rt, lease, run, evaluated)


async def _run_reporting(
    rt: Runtime, lease: Lease, inputs: specs.RunInputs, executor: Executor | None, stop: Stop
) -> RunResult:
    """The pure run in ``executor``; each progress step it reaches written here."""
    loop = asyncio.get_running_loop()
    steps: asyncio.Queue[int] = asyncio.Queue()
    total, reached = len(inputs.candles), [0]

    def report(done: int) -> None:  # in the executor's thread
        if stop.is_set():
            raise Abandoned
        step = done * PROGRESS_STEPS // total
        if step > reached[0] and done < total:
            reached[0] = step
            loop.call_soon_threadsafe(steps.put_nowait, done)

    future = loop.run_in_executor(executor, partial(specs.run, inputs, report))
    stopped = asyncio.ensure_future(stop.wait())
    getter: asyncio.Future[int] = asyncio.ensure_future(steps.get())
    try:
        while not future.done():
            waits: set[asyncio.Future[Any]] = {future, getter, stopped}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                await _progress(rt, lease, stop, getter.result())
                getter = asyncio.ensure_future(steps.get())
            if stop.is_set() and not future.done():
                raise Abandoned  # a run not started never starts; one running ends
    except asyncio.CancelledError:
        stop.set(StopReason.CANCELLED)
        raise
    finally:
        getter.cancel()
        stopped.cancel()
        if not future.cancel() and not future.cancelled():
            future.exception()  # seen: raised again below, or dropped with the run
    result = await future
    while not steps.empty():  # the steps reached while the last one was being written
        await _progress(rt, lease, stop, steps.get_nowait())
    return result


async def _progress(rt: Runtime, lease: Lease, stop: Stop, done: int) -> None:
    if not await _set(rt, lease, candles_done=done):
        stop.set(StopReason.LOST)


Change = Callable[[AsyncSession, Backtest], Awaitable[None]]


async def _change(rt: Runtime, lease: Lease, change: Change) -> bool:
    """``change`` made to the backtest's row, with its event, if ``lease`` still holds it."""
    async with rt.sessions() as session, session.begin():
        row = await lifecycle.locked_if_held(session, lease)
        if row is None:
            return False
        await change(session, row)
        await session.flush()
        await lifecycle.emit(session, row)
    return True


async def _set(rt: Runtime, lease: Lease, **values: Any) -> bool:
    async def assign(_: AsyncSession, row: Backtest) -> None:
        for name, value in values.items():
            setattr(row, name, value)

    return await _change(rt, lease, assign)


async def _released(_: AsyncSession, row: Backtest) -> None:
    lifecycle.release(row)


async def _fail(rt: Runtime, lease: Lease, reason: str) -> None:
    async def failed(_: AsyncSession, row: Backtest) -> None:
        lifecycle.end(row, FAILED, at=rt.now(), reason=reason[:500])

    await _change(rt, lease, failed)


async def _finish(rt: Runtime, lease: Lease, run: RunResult, evaluated: BacktestResult) -> None:
    async def done(session: AsyncSession, row: Backtest) -> None:
        connection = await driver(session)
        for sql, arrays, items in (
            (_POINTS_SQL, POINTS, run.equity),
            (_TRADES_SQL, TRADES, run.trades),
            (_DECISIONS_SQL, DECISIONS, run.decisions),
            (_RISK_EVENTS_SQL, RISK_EVENTS, run.risk_events),
        ):
            rows = [arrays.row(**{f: _plain(getattr(i, f)) for f in arrays.fields}) for i in items]
            for at in range(0, len(rows), INSERT_BATCH):
                batch = rows[at : at + INSERT_BATCH]
                await connection.execute(sql, row.id, *arrays.arrays(batch))
        lifecycle.end(row, DONE, at=rt.now())
        row.candles_done = row.candles_total
        row.metrics = metrics_json(evaluated.metrics)

    if not await _change(rt, lease, done):
        log.info("backtest finished after its lease was lost: not stored",
                 extra={"backtest_id": lease.backtest_id})  # fmt: skip


def _plain(value: object) -> object:
    return value.value if isinstance(value, Enum) else value


# The rows of a run's result, by the columns' names (those of the run's own types).
class PointRow(NamedTuple):
    at: datetime
    price: Decimal
    cash: Decimal
    position: Decimal
    equity: Decimal


class TradeRow(NamedTuple):
    opened_at: datetime
    closed_at: datetime
    quantity: Decimal
    entry_value: Decimal
    exit_value: Decimal
    fees: Decimal
    pnl: Decimal


class DecisionRow(NamedTuple):
    at: datetime
    candle: int
    action: str
    client_order_id: str
    side: str | None
    type: str | None
    quantity: Decimal | None
    price: Decimal | None
    reason: str
    outcome: str


class RiskEventRow(NamedTuple):
    at: datetime
    candle: int
    action: str
    state: str
    limit_kind: str | None
    value: Decimal | None
    client_order_id: str | None
    reason: str


POINTS = Arrays("app.backtesting.runs.POINTS", PointRow, BacktestEquityPoint)
TRADES = Arrays("app.backtesting.runs.TRADES", TradeRow, BacktestTrade)
DECISIONS = Arrays("app.backtesting.runs.DECISIONS", DecisionRow, BacktestDecision)
RISK_EVENTS = Arrays("app.backtesting.runs.RISK_EVENTS", RiskEventRow, BacktestRiskEvent)


def _insert(table: str, arrays: Arrays) -> str:
    return f"""
        INSERT INTO {table} (backtest_id, {arrays.names})
        SELECT $1, * FROM unnest({arrays.parameters(2)})
    """  # noqa: S608 (no input in the text: table and column names)


_POINTS_SQL = _insert("backtest_equity_points", POINTS)
_TRADES_SQL = _insert("backtest_trades", TRADES)
_DECISIONS_SQL = _insert("backtest_decisions", DECISIONS)
_RISK_EVENTS_SQL = _insert("backtest_risk_events", RISK_EVENTS)


class BacktestWorker:
    """The backtests of one event loop: at most ``limit`` running, their runs in a thread
    pool of that size (or ``executor``)."""

    def __init__(
        self, prepare: Prepare, limit: int = MAX_RUNNING, *, executor: Executor | None = None
    ) -> None:
        self._prepare = prepare
        self._limit = limit
        self._slots = asyncio.Semaphore(limit)
        self._pool = None if executor else ThreadPoolExecutor(limit, thread_name_prefix="backtest")
        self._executor = executor or self._pool
        self._tasks: set[asyncio.Task[None]] = set()
        self._by_id: dict[int, asyncio.Task[None]] = {}
        self._stops: set[Stop] = set()
        self._stopping = False

    @property
    def room(self) -> int:
        """How many more backtests it would start at once."""
        return 0 if self._stopping else max(self._limit - len(self._tasks), 0)

    def submit(self, rt: Runtime, backtest_id: int) -> None:
        """A backtest just queued: claimed when a slot is free (unless taken by then)."""
        self._spawn(self._claim_and_run(rt, backtest_id), backtest_id)

    async def resume(self, rt: Runtime, *, length: timedelta = LEASE) -> int:
        """Claim as many backtests as there is room for (queued, or left by a process
        that stopped) and start them; how many."""
        room = self.room
        if room == 0:
            return 0
        async with rt.sessions() as session, session.begin():
            leases = await lifecycle.claim(session, limit=room, started_at=rt.now(), length=length)
        for lease in leases:
            self._spawn(self._run_claimed(rt, lease), lease.backtest_id)
        return len(leases)

    async def stop(self, grace_seconds: float = 10) -> None:
        """Runs end at their next candle and hand their backtests back; what is still
        busy after ``grace_seconds`` is cancelled (its lease lapses)."""
        self._stopping = True
        for stop in self._stops:
            stop.set(StopReason.STOPPING)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace_seconds)
        for task in self._tasks:
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def wait(self, backtest_id: int) -> None:
        """Until the run of ``backtest_id`` started here has ended (at once when none is)."""
        task = self._by_id.get(backtest_id)
        if task is not None:
            await asyncio.shield(task)

    def _spawn(self, work: Awaitable[None], backtest_id: int) -> None:
        task = asyncio.ensure_future(self._guarded(work, backtest_id))
        self._tasks.add(task)
        self._by_id[backtest_id] = task

        def ended(done: asyncio.Task[None]) -> None:
            self._tasks.discard(done)
            if self._by_id.get(backtest_id) is done:
                del self._by_id[backtest_id]

        task.add_done_callback(ended)

    async def _guarded(self, work: Awaitable[None], backtest_id: int) -> None:
        try:
            await work
        except Exception:  # the row could not even be marked FAILED
            log.exception("backtest worker failed", extra={"backtest_id": backtest_id})

    async def _claim_and_run(self, rt: Runtime, backtest_id: int) -> None:
        async with self._slots:
            with self._stop() as stop:
                if not stop.is_set():
                    await execute(rt, backtest_id, prepare=self._prepare,
                                  executor=self._executor, stop=stop)  # fmt: skip

    async def _run_claimed(self, rt: Runtime, lease: Lease) -> None:
        with self._stop() as stop:
            async with renewing(rt, lease, stop), self._slots:  # held while it waits
                await run_claimed(rt, lease, prepare=self._prepare,
                                  executor=self._executor, stop=stop)  # fmt: skip

    @contextlib.contextmanager
    def _stop(self) -> Iterator[Stop]:
        stop = Stop()
        if self._stopping:
            stop.set(StopReason.STOPPING)
        self._stops.add(stop)
        try:
            yield stop
        finally:
            self._stops.discard(stop)
