"""Backtests survive the process running them, on real PostgreSQL: a run is claimed under a
lease; a backtest whose process stopped (its lease expired) is claimed by the resume job
and run again to the same stored result as an uninterrupted run; a live lease is never
taken, also by another runtime (its own engine: another process as far as the database
can tell) while the run waits, because it is renewed; two runtimes claiming the same
backtests run each once; one out of attempts ends FAILED; a graceful stop hands a run back.

A claimed run is held up by giving it an executor whose one thread is busy: it stays
RUNNING, claimed and loaded, until the test lets it go."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from app.backtesting import backtests, lifecycle, runs
from app.backtesting.domain import specs
from app.core.settings import Settings
from app.events import topics
from app.runtime import Runtime, build_runtime
from db.raw import driver
from tests.backtesting.test_backtests import HOURS, finished, import_candles, request
from tests.support.trading import eventually, funded_user, rows

PROGRESS_TOPIC = topics.BACKTEST_PROGRESS.named()
RESULT = {
    "points": "SELECT at, price, cash, position, equity FROM backtest_equity_points"
    " WHERE backtest_id = $1 ORDER BY id",
    "trades": "SELECT opened_at, closed_at, quantity, entry_value, exit_value, fees, pnl"
    " FROM backtest_trades WHERE backtest_id = $1 ORDER BY id",
    "decisions": "SELECT at, candle, action, client_order_id, side, type, quantity, price,"
    " reason, outcome FROM backtest_decisions WHERE backtest_id = $1 ORDER BY id",
    "row": "SELECT status, reason, metrics, market, candles_done, candles_total"
    " FROM backtests WHERE id = $1",
}


@pytest.fixture
async def other_rt(settings: Settings) -> AsyncIterator[Runtime]:
    """A second runtime: its own engine and connections, as another server has."""
    assert settings.database_url and settings.redis_url
    runtime = build_runtime(
        settings, database_url=settings.database_url, redis_url=settings.redis_url
    )
    yield runtime
    await runtime.aclose()


@pytest.fixture
def busy() -> Iterator[tuple[ThreadPoolExecutor, threading.Event]]:
    """An executor whose one thread is busy until the event is set."""
    pool, release = ThreadPoolExecutor(1), threading.Event()
    pool.submit(release.wait)
    yield pool, release
    release.set()
    pool.shutdown()


async def stored(rt: Runtime, backtest_id: int) -> dict[str, list[tuple[Any, ...]]]:
    return {
        name: [tuple(r) for r in await rows(rt, sql, backtest_id)] for name, sql in RESULT.items()
    }


async def sql(rt: Runtime, statement: str, *args: Any) -> None:
    async with rt.sessions() as session, session.begin():
        await (await driver(session)).execute(statement, *args)


async def row_of(rt: Runtime, backtest_id: int) -> backtests.Backtest:
    async with rt.sessions() as session:
        row = await session.get(backtests.Backtest, backtest_id)
    assert row is not None
    return row


async def claimed_and_loaded(rt: Runtime, backtest_id: int) -> backtests.Backtest:
    async def loaded() -> backtests.Backtest | None:
        row = await row_of(rt, backtest_id)
        return row if row.status == "RUNNING" and row.candles_total else None

    row = await eventually(loaded, within=10)
    assert row is not None, "the backtest was not claimed"
    return row


async def progress_events(rt: Runtime, backtest_id: int) -> list[tuple[str, int]]:
    events = await rows(
        rt, "SELECT payload FROM outbox WHERE topic = $1 ORDER BY id", PROGRESS_TOPIC
    )
    return [
        (e["payload"]["status"], e["payload"]["candlesDone"])
        for e in events
        if e["payload"]["id"] == backtest_id
    ]


async def test_a_run_whose_process_stopped_is_run_again_by_the_job_to_the_same_result(
    rt, other_rt, tmp_path, busy
):
    await import_candles(rt, tmp_path)
    uid = await funded_user(rt, "quant")
    reference = await backtests.start_backtest(rt, user_id=uid, request=request())
    assert (await finished(rt, reference.id)).status == "DONE"
    row = await backtests.queue_backtest(rt, user_id=uid, request=request())
    # another server claims it, loads its candles, and stops before the end (as a crash:
    # its task ends, nothing is handed back)
    executor, _ = busy
    crashed = asyncio.create_task(backtests.execute(other_rt, row.id, executor=executor))
    left = await claimed_and_loaded(rt, row.id)
    crashed.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await crashed
    left = await row_of(rt, row.id)
    assert (left.status, left.attempts, left.candles_total) == ("RUNNING", 1, HOURS)
    assert left.lease_owner and left.lease_owner.startswith(lifecycle.PROCESS)
    assert await backtests.resume_backtests(rt) == 0  # its lease still holds
    # ... until it expires (LEASE later, without renewal)
    await sql(rt, "UPDATE backtests SET lease_expires_at = now() - interval '1 s' WHERE id = $1",
              row.id)  # fmt: skip
    assert await backtests.resume_backtests(rt) == 1
    done = await finished(rt, row.id)
    assert (done.status, done.attempts, done.lease_owner, done.lease_expires_at) == (
        "DONE", 2, None, None,
    )  # fmt: skip
    assert await stored(rt, row.id) == await stored(rt, reference.id)
    assert len((await stored(rt, row.id))["decisions"]) > 0
    # the events: the first attempt's, then the second from 0 up to DONE
    events = await progress_events(rt, row.id)
    assert events[:2] == [("QUEUED", 0), ("RUNNING", 0)]
    again = events.index(("RUNNING", 0), 2)
    counts = [done for _, done in events[again:]]
    assert counts == sorted(counts) and events[-1] == ("DONE", HOURS)
    assert sum(1 for status, _ in events[again:] if status == "RUNNING") >= 10


async def test_a_live_lease_is_not_taken_and_a_run_out_of_attempts_fails(rt, tmp_path):
    await import_candles(rt, tmp_path, n=50)
    uid = await funded_user(rt, "quant")
    live = await backtests.queue_backtest(rt, user_id=uid, request=request())
    spent = await backtests.queue_backtest(rt, user_id=uid, request=request())
    await sql(rt, "UPDATE backtests SET status = 'RUNNING', lease_owner = 'elsewhere:1:ab',"
                  " lease_expires_at = now() + interval '1 min', attempts = 1 WHERE id = $1",
              live.id)  # fmt: skip
    await sql(rt, "UPDATE backtests SET status = 'RUNNING', lease_owner = 'elsewhere:1:cd',"
                  " lease_expires_at = now() - interval '1 s', attempts = $2 WHERE id = $1",
              spent.id, lifecycle.MAX_ATTEMPTS)  # fmt: skip
    assert await backtests.resume_backtests(rt) == 0
    assert not await backtests.execute(rt, live.id)
    kept = await row_of(rt, live.id)
    assert (kept.status, kept.lease_owner, kept.attempts) == ("RUNNING", "elsewhere:1:ab", 1)
    failed = await row_of(rt, spent.id)
    assert failed.status == "FAILED" and failed.lease_owner is None
    assert failed.reason == f"Stopped {lifecycle.MAX_ATTEMPTS} times before finishing" \
        " (the server running it went away)"  # fmt: skip
    assert (await progress_events(rt, spent.id))[-1] == ("FAILED", 0)
    assert (await stored(rt, spent.id))["points"] == []


async def test_two_runtimes_claiming_the_same_backtests_run_each_once(rt, other_rt, tmp_path):
    await import_candles(rt, tmp_path)
    uid = await funded_user(rt, "quant")
    queued = [
        (
            await backtests.queue_backtest(
                rt, user_id=uid, request=request(settings=specs.simulation_settings(seed=n))
            )
        ).id
        for n in range(4)
    ]
    ran = await asyncio.gather(
        *(backtests.execute(runtime, i) for i in queued for runtime in (rt, other_rt))
    )
    assert [ran[2 * n] + ran[2 * n + 1] for n in range(4)] == [1, 1, 1, 1], ran
    for backtest_id in queued:
        done = await row_of(rt, backtest_id)
        assert (done.status, done.attempts) == ("DONE", 1), done.reason
        result = await stored(rt, backtest_id)
        assert len(result["points"]) == HOURS  # nothing written twice
    events = await rows(rt, "SELECT payload FROM outbox WHERE topic = $1", PROGRESS_TOPIC)
    assert sum(1 for e in events if e["payload"]["status"] == "DONE") == 4


async def test_a_lease_is_renewed_while_the_run_waits_so_another_runtime_never_takes_it(
    rt, other_rt, tmp_path, busy
):
    await import_candles(rt, tmp_path)
    uid = await funded_user(rt, "quant")
    row = await backtests.queue_backtest(rt, user_id=uid, request=request())
    executor, release = busy
    lease = timedelta(seconds=2)
    held = asyncio.create_task(backtests.execute(rt, row.id, executor=executor, length=lease))
    await claimed_and_loaded(rt, row.id)
    taken = []
    for _ in range(40):  # two lease lengths: another server's job, again and again
        taken.append(await backtests.resume_backtests(other_rt))
        await asyncio.sleep(0.1)
    release.set()
    assert await held is True
    assert taken == [0] * 40
    done = await row_of(rt, row.id)
    assert (done.status, done.attempts) == ("DONE", 1), done.reason


async def test_a_graceful_stop_hands_its_runs_back(rt, tmp_path, busy):
    await import_candles(rt, tmp_path)
    uid = await funded_user(rt, "quant")
    row = await backtests.queue_backtest(rt, user_id=uid, request=request())
    executor, release = busy
    worker = runs.BacktestWorker(backtests.run_inputs, executor=executor)
    worker.submit(rt, row.id)
    await claimed_and_loaded(rt, row.id)
    await worker.stop(grace_seconds=10)
    back = await row_of(rt, row.id)
    assert (back.status, back.attempts, back.lease_owner) == ("QUEUED", 0, None)
    assert (await progress_events(rt, row.id))[-1] == ("QUEUED", 0)
    release.set()
    assert await backtests.resume_backtests(rt) == 1  # the next server's job
    done = await finished(rt, row.id)
    assert (done.status, done.attempts) == ("DONE", 1), done.reason


async def test_a_run_that_lost_its_lease_writes_nothing(rt, other_rt, tmp_path, busy):
    await import_candles(rt, tmp_path)
    uid = await funded_user(rt, "quant")
    row = await backtests.queue_backtest(rt, user_id=uid, request=request())
    executor, release = busy
    # a server claims it, then stalls past its lease (a long pause, a network partition)
    stalled = asyncio.create_task(backtests.execute(other_rt, row.id, executor=executor))
    await claimed_and_loaded(rt, row.id)
    await sql(rt, "UPDATE backtests SET lease_expires_at = now() - interval '1 s' WHERE id = $1",
              row.id)  # fmt: skip
    assert await backtests.resume_backtests(rt) == 1  # another server takes over
    done = await finished(rt, row.id)
    result = await stored(rt, row.id)
    release.set()  # the stalled run goes on, to its end: it may not write
    assert await stalled is True
    assert (await row_of(rt, row.id)).attempts == done.attempts == 2
    assert await stored(rt, row.id) == result
    assert len(result["points"]) == HOURS
