"""Backtests as a service: a user asks for one (``start_backtest``), it is checked and
stored QUEUED, then run in the background in this process; its status, progress, metrics,
equity points and trades are read back (``get_backtest``, ``list_*``).

A backtest is: the user, the strategy (kind + parameters, JSON), the symbol, the source
(``file:<name>``, ``exchange:<name>`` or ``VENUE``), the interval, the period [start, end),
the simulation settings (path mode, volume share, latency, slippage, seed), the fees and
the starting balance (the quote currency). The market spec is the platform market's when
the symbol is one of ours (its tick, lot and fees), else one derived from the candles
(``specs.derived_market``: 0.1 % fees unless given); the spec used is stored with it.

Checks before anything is written (``ValidationFailed`` with the field, or
``UnknownMarket`` for the venue's own candles of a symbol that is no market): a bad
source, symbol or interval; ``to`` not after ``from``; a period of more than
``MAX_CANDLES`` candles of the interval; no candle in the period; bad parameters
(``specs``). A copy-trading what-if (``specs.CopyLeaderParameters``) runs on the venue's
own candles (``source`` VENUE) of a market quoted in the follows' currency, and replays only
a leader the user may replay (``leader_history.check_replayable``: ``NotALeader``); the
leader's fills are loaded with the candles, when it runs.

Lifecycle: QUEUED -> RUNNING -> DONE, or FAILED with a reason. While it runs, progress
(candles done of the total) is written to its row ``PROGRESS_STEPS`` times, each with an
outbox event on ``topics.BACKTEST_PROGRESS`` for its owner (the ``backtestProgress``
subscription); QUEUED, RUNNING, DONE and FAILED each have one too.

Execution: an asyncio task per backtest in the server process, at most ``MAX_RUNNING`` at
once per event loop; the pure, CPU-bound run goes to a thread pool of that size so the
event loop keeps serving (``execute`` takes any ``concurrent.futures.Executor``). A
backtest left QUEUED or RUNNING by a process that stopped is not resumed (yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.backtesting.domain import specs
from app.backtesting.domain.evaluation import evaluate, metrics_json, venue_candles
from app.backtesting.domain.metrics import BacktestResult
from app.backtesting.domain.runner import RunResult
from app.backtesting.leader_history import check_replayable, leader_history
from app.core.errors import NotFound, UserError, ValidationFailed
from app.events import outbox, topics
from app.marketdata import reads
from app.marketdata.domain.candles import VENUE, interval_named, parse_source, parse_symbol
from app.runtime import Runtime
from app.social.domain.social import FOLLOW_QUOTE, FollowMode
from app.trading import markets
from app.trading.domain.errors import UnknownMarket
from app.trading.domain.orders import MarketSpec
from db.models import Backtest, BacktestEquityPoint, BacktestTrade
from db.queries import Page, keyset_page
from db.raw import driver

log = logging.getLogger(__name__)

MAX_CANDLES = 100_000  # candles in one backtest's period
MAX_RUNNING = 2  # backtests running at once per server process (event loop)
PROGRESS_STEPS = 20  # progress written every 5 % of the candles
QUEUED, RUNNING, DONE, FAILED = "QUEUED", "RUNNING", "DONE", "FAILED"
INSERT_BATCH = 5_000
DEFAULT_SETTINGS = specs.SimulationSettings()


@dataclass(frozen=True, slots=True)
class BacktestRequest:
    strategy: specs.StrategyParameters
    symbol: str
    source: str
    interval: str
    start: datetime
    end: datetime
    settings: specs.SimulationSettings = DEFAULT_SETTINGS
    balance: Decimal = Decimal(10_000)
    maker_fee: Decimal | None = None
    taker_fee: Decimal | None = None


async def check_request(
    session: AsyncSession, request: BacktestRequest, *, viewer_id: int | None = None
) -> BacktestRequest:
    """The request with its source and symbol in canonical form; a ``UserError`` for
    anything that cannot run. ``viewer_id``: who asks (None: the command line, which may
    replay public leaders only)."""
    source, symbol = parse_source(request.source), parse_symbol(request.symbol)
    interval = interval_named(request.interval)
    if request.end <= request.start:
        raise ValidationFailed("to must be after from", field="to")
    if interval.periods(request.start, request.end) > MAX_CANDLES:
        raise ValidationFailed(f"At most {MAX_CANDLES} candles per backtest", field="from")
    specs.check_balance(request.balance)
    specs.check_fee(request.maker_fee, "makerFee")
    specs.check_fee(request.taker_fee, "takerFee")
    checked = replace(request, source=source, symbol=symbol)
    if isinstance(request.strategy, specs.CopyLeaderParameters):
        await _check_copy(session, request.strategy, source, symbol, viewer_id)
    if source == VENUE:
        await markets.market_by_symbol(session, symbol)  # UnknownMarket
    if not await _has_candles(session, checked):
        raise ValidationFailed(f"No {symbol} candles from {source} in this period", field="from")
    return checked


async def _check_copy(
    session: AsyncSession,
    strategy: specs.CopyLeaderParameters,
    source: str,
    symbol: str,
    viewer_id: int | None,
) -> None:
    if source != VENUE:
        raise ValidationFailed("A copy what-if replays the venue's own history", field="source")
    if symbol.split("/")[1] != FOLLOW_QUOTE:
        raise ValidationFailed(f"Copies are made on {FOLLOW_QUOTE} markets", field="symbol")
    await check_replayable(session, viewer_id=viewer_id, leader_id=strategy.leader_id)


async def _has_candles(session: AsyncSession, request: BacktestRequest) -> bool:
    async with contextlib.aclosing(_stream(session, request)) as found:
        async for _ in found:
            return True
    return False


def _stream(session: AsyncSession, request: BacktestRequest):  # type: ignore[no-untyped-def]
    return reads.stream_candles(
        session,
        source=request.source,
        symbol=request.symbol,
        interval=request.interval,
        start=request.start,
        end=request.end,
    )


async def load_inputs(session: AsyncSession, request: BacktestRequest) -> specs.RunInputs:
    """The candles of the (checked) request and the market spec to run them on."""
    interval = interval_named(request.interval)
    candles = tuple(venue_candles([c async for c in _stream(session, request)], interval))
    market = await _market(session, request, candles)
    strategy = request.strategy
    if isinstance(strategy, specs.CopyLeaderParameters):
        history = await leader_history(
            session,
            leader_id=strategy.leader_id,
            symbol=request.symbol,
            start=request.start,
            end=request.end,
            with_equity=strategy.follow.mode is FollowMode.EQUITY_PROPORTIONAL,
        )
        strategy = strategy.with_history(history)
    return specs.RunInputs(
        strategy, candles, market, {market.quote: request.balance}, request.settings,
        bar=interval.step,
    )  # fmt: skip


async def _market(
    session: AsyncSession, request: BacktestRequest, candles: Sequence[specs.Candle]
) -> MarketSpec:
    try:
        spec = (await markets.market_by_symbol(session, request.symbol)).spec
    except UnknownMarket:
        return specs.derived_market(
            request.symbol, candles, maker_fee=request.maker_fee, taker_fee=request.taker_fee
        )
    return replace(
        spec,
        maker_fee=spec.maker_fee if request.maker_fee is None else request.maker_fee,
        taker_fee=spec.taker_fee if request.taker_fee is None else request.taker_fee,
    )


# --- the service -------------------------------------------------------------------------


async def start_backtest(rt: Runtime, *, user_id: int, request: BacktestRequest) -> Backtest:
    """Check the request, store the backtest QUEUED and start it in the background."""
    async with rt.sessions() as session, session.begin():
        checked = await check_request(session, request, viewer_id=user_id)
        row = Backtest(
            user_id=user_id,
            status=QUEUED,
            strategy=checked.strategy.kind.value,
            parameters=checked.strategy.as_json(),
            symbol=checked.symbol,
            source=checked.source,
            interval=checked.interval,
            start=checked.start,
            end=checked.end,
            settings=specs.settings_json(checked.settings),
            balances={checked.symbol.split("/")[1]: str(checked.balance)},
            fees={"maker": _text(checked.maker_fee), "taker": _text(checked.taker_fee)},
            candles_total=0,
            candles_done=0,
        )
        session.add(row)
        await session.flush()
        await _emit(session, row)
    worker().submit(rt, row.id)
    return row


def request_of(row: Backtest) -> BacktestRequest:
    [(_currency, balance)] = row.balances.items()
    return BacktestRequest(
        specs.parameters_from_json(row.strategy, row.parameters),
        row.symbol,
        row.source,
        row.interval,
        row.start,
        row.end,
        specs.settings_from_json(row.settings),
        Decimal(balance),
        _decimal(row.fees["maker"]),
        _decimal(row.fees["taker"]),
    )


async def execute(rt: Runtime, backtest_id: int, *, executor: Executor | None = None) -> None:
    """Run a QUEUED backtest to DONE (or FAILED), writing its progress as it goes."""
    async with rt.sessions() as session, session.begin():
        row = await session.get(Backtest, backtest_id, with_for_update=True)
        if row is None or row.status != QUEUED:
            return
        row.status, row.started_at = RUNNING, rt.now()
        request = request_of(row)
    try:
        async with rt.reads() as session:
            inputs = await load_inputs(session, request)
        await _set(rt, backtest_id, candles_total=len(inputs.candles),
                   market=specs.market_json(inputs.market))  # fmt: skip
        run = await _run_reporting(rt, backtest_id, inputs, executor)
        evaluated = evaluate(run)
    except (UserError, ValueError) as error:
        await _fail(rt, backtest_id, str(error))
        return
    except Exception:
        log.exception("backtest failed", extra={"backtest_id": backtest_id})
        await _fail(rt, backtest_id, "internal error")
        return
    await _finish(rt, backtest_id, run, evaluated)


async def _run_reporting(
    rt: Runtime, backtest_id: int, inputs: specs.RunInputs, executor: Executor | None
) -> RunResult:
    """The pure run in ``executor``; each progress step it reaches written here."""
    loop = asyncio.get_running_loop()
    steps: asyncio.Queue[int] = asyncio.Queue()
    total, reached = len(inputs.candles), [0]

    def report(done: int) -> None:  # in the executor's thread
        step = done * PROGRESS_STEPS // total
        if step > reached[0] and done < total:
            reached[0] = step
            loop.call_soon_threadsafe(steps.put_nowait, done)

    future = loop.run_in_executor(executor, partial(specs.run, inputs, report))
    while not future.done():
        getter = asyncio.ensure_future(steps.get())
        await asyncio.wait({future, getter}, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            await _set(rt, backtest_id, candles_done=getter.result())
        else:
            getter.cancel()
    result = await future
    while not steps.empty():  # the steps reached while the last one was being written
        await _set(rt, backtest_id, candles_done=steps.get_nowait())
    return result


async def _set(rt: Runtime, backtest_id: int, **values: Any) -> None:
    async with rt.sessions() as session, session.begin():
        row = await session.get(Backtest, backtest_id, with_for_update=True)
        if row is None:
            return  # deleted meanwhile
        for name, value in values.items():
            setattr(row, name, value)
        await session.flush()
        await _emit(session, row)


async def _fail(rt: Runtime, backtest_id: int, reason: str) -> None:
    await _set(rt, backtest_id, status=FAILED, reason=reason[:500],
               finished_at=rt.now())  # fmt: skip


_POINTS = """
    INSERT INTO backtest_equity_points (backtest_id, at, price, cash, position, equity)
    SELECT $1, * FROM unnest($2::timestamptz[], $3::numeric[], $4::numeric[],
                             $5::numeric[], $6::numeric[])
"""
_TRADES = """
    INSERT INTO backtest_trades (backtest_id, opened_at, closed_at, quantity, entry_value,
                                 exit_value, fees, pnl)
    SELECT $1, * FROM unnest($2::timestamptz[], $3::timestamptz[], $4::numeric[],
                             $5::numeric[], $6::numeric[], $7::numeric[], $8::numeric[])
"""


async def _finish(rt: Runtime, backtest_id: int, run: RunResult, evaluated: BacktestResult) -> None:
    async with rt.sessions() as session, session.begin():
        row = await session.get(Backtest, backtest_id, with_for_update=True)
        if row is None:
            return
        connection = await driver(session)
        for at in range(0, len(run.equity), INSERT_BATCH):
            batch = run.equity[at : at + INSERT_BATCH]
            await connection.execute(
                _POINTS, backtest_id, [p.at for p in batch], [p.price for p in batch],
                [p.cash for p in batch], [p.position for p in batch], [p.equity for p in batch],
            )  # fmt: skip
        for at in range(0, len(run.trades), INSERT_BATCH):
            trades = run.trades[at : at + INSERT_BATCH]
            await connection.execute(
                _TRADES, backtest_id, [t.opened_at for t in trades],
                [t.closed_at for t in trades], [t.quantity for t in trades],
                [t.entry_value for t in trades], [t.exit_value for t in trades],
                [t.fees for t in trades], [t.pnl for t in trades],
            )  # fmt: skip
        row.status, row.finished_at = DONE, rt.now()
        row.candles_done = row.candles_total
        row.metrics = metrics_json(evaluated.metrics)
        await session.flush()
        await _emit(session, row)


def progress_payload(row: Backtest) -> topics.BacktestProgress:
    """What the ``backtestProgress`` subscription receives."""
    return topics.BacktestProgress(
        backtest_id=row.id,
        status=row.status,
        reason=row.reason,
        candles_done=row.candles_done,
        candles_total=row.candles_total,
    )


async def _emit(session: AsyncSession, row: Backtest) -> None:
    await outbox.write(session, topics.backtest_progress(row.user_id, progress_payload(row)))


# --- reads -------------------------------------------------------------------------------


async def get_backtest(session: AsyncSession, *, user_id: int, backtest_id: int) -> Backtest:
    """One of the user's backtests; ``NotFound`` for another user's."""
    row = await session.get(Backtest, backtest_id)
    if row is None or row.user_id != user_id:
        raise NotFound("You have no backtest with that id", field="id")
    return row


async def list_backtests(
    session: AsyncSession, *, user_id: int, first: int, after: str | None
) -> Page[Backtest]:
    """The user's backtests, newest first."""
    statement = select(Backtest).where(Backtest.user_id == user_id)
    return await keyset_page(
        session, statement, key=Backtest.id, first=first, after=after, descending=True
    )


async def list_equity_points(
    session: AsyncSession, *, backtest_id: int, first: int, after: str | None
) -> Page[BacktestEquityPoint]:
    """A backtest's equity points, in time order."""
    statement = select(BacktestEquityPoint).where(BacktestEquityPoint.backtest_id == backtest_id)
    return await keyset_page(
        session, statement, key=BacktestEquityPoint.id, first=first, after=after
    )


async def list_trades(
    session: AsyncSession, *, backtest_id: int, first: int, after: str | None
) -> Page[BacktestTrade]:
    """A backtest's round trips, in time order."""
    statement = select(BacktestTrade).where(BacktestTrade.backtest_id == backtest_id)
    return await keyset_page(session, statement, key=BacktestTrade.id, first=first, after=after)


async def backtests_by_ids(session: AsyncSession, ids: Sequence[int]) -> dict[int, Backtest]:
    rows = await session.scalars(select(Backtest).where(Backtest.id.in_(ids)))
    return {r.id: r for r in rows}


# --- the background worker ---------------------------------------------------------------


class BacktestWorker:
    """Backtests of one event loop: at most ``limit`` running, their runs in a thread pool."""

    def __init__(self, limit: int = MAX_RUNNING) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._executor = ThreadPoolExecutor(limit, thread_name_prefix="backtest")
        self._tasks: dict[int, asyncio.Task[None]] = {}

    def submit(self, rt: Runtime, backtest_id: int) -> None:
        task = asyncio.create_task(self._run(rt, backtest_id), name=f"backtest-{backtest_id}")
        self._tasks[backtest_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(backtest_id, None))

    async def wait(self, backtest_id: int) -> None:
        """Until the backtest submitted here has ended (at once when none is running)."""
        task = self._tasks.get(backtest_id)
        if task is not None:
            await asyncio.shield(task)

    async def _run(self, rt: Runtime, backtest_id: int) -> None:
        async with self._slots:
            try:
                await execute(rt, backtest_id, executor=self._executor)
            except Exception:  # the row could not even be marked FAILED
                log.exception("backtest worker failed", extra={"backtest_id": backtest_id})


_WORKERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BacktestWorker] = (
    weakref.WeakKeyDictionary()
)


def worker() -> BacktestWorker:
    """The running event loop's worker."""
    loop = asyncio.get_running_loop()
    if loop not in _WORKERS:
        _WORKERS[loop] = BacktestWorker()
    return _WORKERS[loop]


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)
