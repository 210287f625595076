"""Backtests as a service: a user asks for one (``start_backtest``), it is checked and
stored QUEUED, then run in the background; its status, progress, metrics, equity points,
trades and decisions are read back (``get_backtest``, ``list_backtests``, ``*_pages``).

A backtest is: the user, the strategy (kind + parameters, JSON), the symbol, the source
(``file:<name>``, ``exchange:<name>`` or ``VENUE``), the interval, the period [start, end),
the simulation settings (path mode, volume share, latency, slippage, seed), the fees,
the starting balance (the quote currency) and the risk limits it trades under (checked as
``setRiskLimit`` checks them, ``specs.backtest_limits``; their refusals and transitions are
stored with the result). The market spec is the platform market's when
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

Lifecycle (``lifecycle``): QUEUED -> RUNNING -> DONE, or FAILED with a reason. A run is
claimed under a lease, renewed while it runs. The server that stored a backtest starts it
at once (``worker()``: one per event loop, at most ``runs.MAX_RUNNING`` at once, the pure,
CPU-bound run in a thread pool); the ``resume_backtests`` job of every server claims what
is still QUEUED and what a server that stopped left RUNNING (its lease expired) and runs it
again from the start: runs are deterministic, so the stored result is the one an
uninterrupted run gives. While it runs, progress (candles done of the total) is written to
its row ``runs.PROGRESS_STEPS`` times, each with an outbox event on
``topics.BACKTEST_PROGRESS`` for its owner (the ``backtestProgress`` subscription); each
change of status has one too.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.backtesting import lifecycle, runs
from app.backtesting.domain import specs
from app.backtesting.domain.evaluation import venue_candles
from app.backtesting.leader_history import check_replayable, leader_history
from app.backtesting.lifecycle import LEASE, QUEUED
from app.core.errors import NotFound, ValidationFailed
from app.marketdata import reads
from app.marketdata.domain.candles import VENUE, interval_named, parse_source, parse_symbol
from app.risk.domain.limits import Limit
from app.runtime import Runtime
from app.social.domain.social import FOLLOW_QUOTE, FollowMode
from app.trading import markets
from app.trading.domain.errors import UnknownMarket
from app.trading.domain.orders import MarketSpec
from db.models import (
    Backtest,
    BacktestDecision,
    BacktestEquityPoint,
    BacktestRiskEvent,
    BacktestTrade,
)
from db.queries import Page, PageKey, keyset_page, keyset_pages

MAX_CANDLES = 100_000  # candles in one backtest's period
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
    limits: tuple[Limit, ...] = ()  # risk limits (``specs.backtest_limits``: checked)


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
        bar=interval.step, limits=request.limits,
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
    row = await queue_backtest(rt, user_id=user_id, request=request)
    worker().submit(rt, row.id)
    return row


async def queue_backtest(rt: Runtime, *, user_id: int, request: BacktestRequest) -> Backtest:
    """Check the request and store the backtest QUEUED (run by whoever claims it)."""
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
            risk_limits=specs.limits_json(checked.limits),
            candles_total=0,
            candles_done=0,
            attempts=0,
        )
        session.add(row)
        await session.flush()
        await lifecycle.emit(session, row)
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
        specs.limits_from_json(row.risk_limits),
    )


async def run_inputs(session: AsyncSession, row: Backtest) -> specs.RunInputs:
    """What the stored backtest runs on (``runs.Prepare``)."""
    return await load_inputs(session, request_of(row))


async def execute(
    rt: Runtime, backtest_id: int, *, executor: Executor | None = None, length: timedelta = LEASE
) -> bool:
    """Claim the backtest and run it to DONE (or FAILED) here (True); False when it is not
    there to claim (finished, or running under another process's live lease)."""
    return await runs.execute(rt, backtest_id, prepare=run_inputs, executor=executor, length=length)


async def resume_backtests(rt: Runtime) -> int:
    """The periodic job: claim queued backtests and those whose process stopped (lease
    expired), as many as this process has room for, and run them; how many it took."""
    return await worker().resume(rt)


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


async def decision_pages(
    session: AsyncSession, wanted: Sequence[PageKey]
) -> list[Page[BacktestDecision]]:
    """Pages of backtests' decisions (``PageKey.parent``: the backtest), in order made."""
    return await keyset_pages(session, BacktestDecision, parent=BacktestDecision.backtest_id,
                              key=BacktestDecision.id, wanted=wanted)  # fmt: skip


async def equity_point_pages(
    session: AsyncSession, wanted: Sequence[PageKey]
) -> list[Page[BacktestEquityPoint]]:
    """Pages of backtests' equity points, in time order."""
    return await keyset_pages(session, BacktestEquityPoint, parent=BacktestEquityPoint.backtest_id,
                              key=BacktestEquityPoint.id, wanted=wanted)  # fmt: skip


async def trade_pages(
    session: AsyncSession, wanted: Sequence[PageKey]
) -> list[Page[BacktestTrade]]:
    """Pages of backtests' round trips, in time order."""
    return await keyset_pages(session, BacktestTrade, parent=BacktestTrade.backtest_id,
                              key=BacktestTrade.id, wanted=wanted)  # fmt: skip


async def risk_event_pages(
    session: AsyncSession, wanted: Sequence[PageKey]
) -> list[Page[BacktestRiskEvent]]:
    """Pages of backtests' risk events (refusals, transitions), in the order they happened."""
    return await keyset_pages(session, BacktestRiskEvent, parent=BacktestRiskEvent.backtest_id,
                              key=BacktestRiskEvent.id, wanted=wanted)  # fmt: skip


async def backtests_by_ids(session: AsyncSession, ids: Sequence[int]) -> dict[int, Backtest]:
    rows = await session.scalars(select(Backtest).where(Backtest.id.in_(ids)))
    return {r.id: r for r in rows}


# --- the background worker ---------------------------------------------------------------


_WORKERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, runs.BacktestWorker] = (
    weakref.WeakKeyDictionary()
)


def worker() -> runs.BacktestWorker:
    """The running event loop's worker."""
    loop = asyncio.get_running_loop()
    if loop not in _WORKERS:
        _WORKERS[loop] = runs.BacktestWorker(run_inputs)
    return _WORKERS[loop]


async def stop_worker(grace_seconds: float = 10) -> None:
    """Stop the running event loop's worker, if any: its runs hand their backtests back
    (QUEUED, for the next server); a later ``worker()`` is a new one."""
    stopping = _WORKERS.pop(asyncio.get_running_loop(), None)
    if stopping is not None:
        await stopping.stop(grace_seconds)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)
