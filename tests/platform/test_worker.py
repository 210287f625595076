"""``python -m app worker``: the background jobs in a process of their own, beside servers
run with BACKGROUND_JOBS_ENABLED=false."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from app.events import outbox
from db.raw import driver
from tests.support import app_processes
from tests.support.trading import funded_user

WORKER_ENV = {
    "LOG_JSON": "false",
    "LOG_LEVEL": "WARNING",
    "SEED_DEMO_DATA": "false",
    "ENV": "test",
    "OUTBOX_RELAY_INTERVAL_SECONDS": "0.05",
    "NOTIFICATIONS_INTERVAL_SECONDS": "0.05",
}


@pytest.fixture
def worker(rt, tmp_path) -> Iterator[Callable[[str], object]]:
    with app_processes(rt, tmp_path, "worker", WORKER_ENV) as start:
        yield start


async def test_the_worker_relays_the_outbox_and_runs_the_event_consumers(rt, worker):
    receiver = await funded_user(rt, "receiver")
    async with rt.sessions() as session, session.begin():
        await outbox.emit(
            session,
            topic="transfer.received",
            user_id=receiver,
            payload={"transferId": 1, "currency": "USDT", "amount": "5", "senderId": receiver},
        )
    async with rt.reads() as session:
        connection = await driver(session)
        assert await connection.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    worker("worker")

    async def done() -> tuple[int, int]:
        async with rt.reads() as session:
            connection = await driver(session)
            unpublished = await connection.fetchval(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL"
                " AND topic = 'transfer.received'"
            )
            notified = await connection.fetchval(
                "SELECT count(*) FROM notifications WHERE user_id = $1 AND title = $2",
                receiver,
                "Transfer received",
            )
        return unpublished, notified

    for _ in range(300):  # the process starts, then each job runs within its interval
        if await done() == (0, 1):
            break
        await asyncio.sleep(0.1)
    assert await done() == (0, 1)  # relayed, and notified exactly once
