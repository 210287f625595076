"""Periodic background jobs run inside the server process (the outbox relay, pruning).

Each job is a coroutine taking the Runtime; a failing run is logged and retried at the
next tick, so one bad batch never stops the loop. Every job is safe to run in several
processes at once (row locks with SKIP LOCKED, or idempotent deletes)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from app.backtesting.backtests import resume_backtests
from app.bots import worker as bots_worker
from app.core.metrics import JOB_FAILURES, JOB_LAST_SUCCESS
from app.core.waits import within
from app.events import outbox
from app.exchanges import accounts as exchange_accounts
from app.exchanges import cancel_requests as exchange_cancels
from app.exchanges import following as exchange_following
from app.exchanges import order_lists as exchange_order_lists
from app.exchanges import syncs as exchange_syncs
from app.exchanges import triggers as exchange_triggers
from app.exchanges.candle_sync import sync_candles
from app.exchanges.domain.catalogue import ExchangeId
from app.exchanges.streams import OrderStreams
from app.exchanges.trade_streams import TradeStreams
from app.ledger import idempotency
from app.notifications.notifications import email_notifications, notify_from_events
from app.notifications.price_alerts import fire_price_alerts
from app.paper import exchange_feed as paper_exchange_feed
from app.paper import live as paper_live
from app.risk import triggers as risk_triggers
from app.runtime import Runtime
from app.social import copy_trading, profit_share
from app.social.leaderboard import recompute_leaderboard
from app.staking.accrual import accrue_due_days
from app.trading.reads import snapshot_equity

log = logging.getLogger(__name__)

Job = Callable[[Runtime], Awaitable[object]]


async def stop_tasks(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks``, wait until each has finished, and empty the list."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    tasks.clear()


@dataclass
class PeriodicJobs:
    rt: Runtime
    jobs: list[tuple[str, float, Job]] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # what the jobs keep running between their runs, closed at ``stop`` (order streams)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def add(self, name: str, every_seconds: float, job: Job) -> None:
        if every_seconds > 0:
            self.jobs.append((name, every_seconds, job))

    def start(self) -> None:
        for name, every, job in self.jobs:
            self._tasks.append(asyncio.create_task(self._loop(name, every, job), name=name))

    async def stop(self, grace_seconds: float = 10) -> None:
        """Let each job finish the run it is in (a job cancelled inside a statement can
        hand its pooled connection back mid-protocol), then cancel what is still busy."""
        self._stopping.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace_seconds)
        await stop_tasks(self._tasks)
        for close in self.closers:
            await close()

    async def _loop(self, name: str, every: float, job: Job) -> None:
        while not self._stopping.is_set():
            try:
                await job(self.rt)
            except asyncio.CancelledError:
                raise
            except Exception:
                JOB_FAILURES.labels(name).inc()
                log.exception("background job failed", extra={"job": name})
            else:
                JOB_LAST_SUCCESS.labels(name).set(time.time())
            await within(self._stopping.wait(), every)


async def relay_outbox(rt: Runtime) -> int:
    """Publish everything pending, batch after batch."""
    total = 0
    while published := await outbox.relay_batch(
        rt.sessions, rt.redis, prefix=rt.settings.redis_prefix
    ):
        total += published
    return total


async def prune_idempotency_keys(rt: Runtime) -> int:
    cutoff = rt.now() - timedelta(hours=rt.settings.idempotency_key_retention_hours)
    async with rt.sessions() as session, session.begin():
        return await idempotency.prune(session, older_than=cutoff)


async def streamed_markets(rt: Runtime) -> set[tuple[ExchangeId, str]]:
    """The markets whose public trades are followed by stream where the exchange has
    one: those with armed emulated stops, and those of exchange paper accounts."""
    armed = await exchange_triggers.armed_markets(rt)
    return {*armed, *await paper_exchange_feed.markets(rt)}


def default_jobs(rt: Runtime) -> PeriodicJobs:
    jobs = PeriodicJobs(rt)
    jobs.add("outbox-relay", rt.settings.outbox_relay_interval_seconds, relay_outbox)
    jobs.add("idempotency-prune", 3600, prune_idempotency_keys)
    jobs.add("staking-accrual", rt.settings.staking_accrual_interval_seconds, accrue_due_days)
    jobs.add("equity-snapshots", rt.settings.equity_snapshot_interval_seconds, snapshot_equity)
    if rt.settings.copy_worker_enabled:  # else `python -m app copy-worker` runs it
        jobs.add("copy-trading", rt.settings.copy_poll_seconds, copy_trading.run_once)
    jobs.add(
        "profit-share", rt.settings.profit_share_interval_seconds, profit_share.settle_profit_shares
    )
    # the risk engine's fills consumer polls as the copy worker's do (a trigger's latency)
    jobs.add("risk-triggers", rt.settings.copy_poll_seconds, risk_triggers.run_once)
    jobs.add("leaderboard", rt.settings.leaderboard_interval_seconds, recompute_leaderboard)
    jobs.add("notifications", rt.settings.notifications_interval_seconds, notify_from_events)
    jobs.add(
        "notification-emails",
        rt.settings.notification_email_interval_seconds,
        email_notifications,
    )
    jobs.add("price-alerts", rt.settings.price_alerts_interval_seconds, fire_price_alerts)
    jobs.add("paper-ticks", rt.settings.copy_poll_seconds, paper_live.run_once)
    # paper accounts on an exchange's market read its trades at the exchange orders' pace
    jobs.add(
        "paper-exchange-feed",
        rt.settings.exchange_order_poll_seconds,
        paper_exchange_feed.run_once,
    )
    jobs.add("backtests", rt.settings.backtest_resume_interval_seconds, resume_backtests)
    jobs.add("bots", rt.settings.bot_poll_seconds, bots_worker.run_once)
    jobs.add(
        "exchange-recheck",
        rt.settings.exchange_recheck_interval_seconds,
        exchange_accounts.recheck_due,
    )
    jobs.add("exchange-sync", rt.settings.exchange_sync_interval_seconds, exchange_syncs.sync_due)
    streams = OrderStreams()
    if rt.settings.exchange_stream_check_seconds > 0:
        jobs.add("exchange-streams", rt.settings.exchange_stream_check_seconds, streams.supervise)
        jobs.closers.append(streams.aclose)

    async def poll_unstreamed(rt: Runtime) -> int:
        return await exchange_following.poll_live(rt, skip=await streams.skipped(rt))

    jobs.add("exchange-orders", rt.settings.exchange_order_poll_seconds, poll_unstreamed)
    trade_streams = TradeStreams(streamed_markets)
    if rt.settings.exchange_stream_check_seconds > 0:
        jobs.add(
            "exchange-trade-streams",
            rt.settings.exchange_stream_check_seconds,
            trade_streams.supervise,
        )
        jobs.closers.append(trade_streams.aclose)

    async def fire_unstreamed(rt: Runtime) -> int:  # a healthy stream judges its market
        return await exchange_triggers.fire_armed(rt, skip=trade_streams.healthy)

    jobs.add("exchange-triggers", rt.settings.exchange_trigger_poll_seconds, fire_unstreamed)
    jobs.add(
        "exchange-cancels", rt.settings.exchange_trigger_poll_seconds, exchange_cancels.run_once
    )
    jobs.add(
        "exchange-order-lists",
        rt.settings.exchange_trigger_poll_seconds,
        exchange_order_lists.settle_lists,
    )
    jobs.add(
        "exchange-rewrap",
        rt.settings.exchange_recheck_interval_seconds,
        exchange_accounts.rewrap_secrets,
    )
    if rt.settings.exchange_candle_sync:
        jobs.add(
            "exchange-candles", rt.settings.exchange_candle_sync_interval_seconds, sync_candles
        )
    return jobs
