"""Background jobs: the outbox relay publishes to Redis once; old idempotency keys go."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from sqlalchemy import insert, select, update

from app.background import PeriodicJobs, prune_idempotency_keys, relay_outbox
from app.events.outbox import channel
from db.models import IdempotencyKey, OutboxEvent, User


async def _emit(rt, count: int) -> None:
    async with rt.sessions() as session, session.begin():
        await session.execute(
            insert(OutboxEvent),
            [{"topic": "test.event", "user_id": None, "payload": {"n": n}} for n in range(count)],
        )


async def test_relay_publishes_each_event_once_in_order(rt):
    await _emit(rt, 3)
    pubsub = rt.redis.pubsub()
    await pubsub.subscribe(channel(rt.settings.redis_prefix, "test.event", None))
    await pubsub.get_message(timeout=1)  # subscribe confirmation
    assert await relay_outbox(rt) == 3
    received = []
    for _ in range(3):
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
        received.append(json.loads(message["data"]))
    await pubsub.aclose()
    assert [m["payload"]["n"] for m in received] == [0, 1, 2]
    assert len({m["id"] for m in received}) == 3
    assert await relay_outbox(rt) == 0  # nothing left to publish
    async with rt.sessions() as session:
        pending = (
            await session.scalars(select(OutboxEvent).where(OutboxEvent.published_at.is_(None)))
        ).all()
    assert pending == []


async def test_a_failing_job_keeps_its_loop_alive(rt):
    calls = []

    async def flaky(_rt):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")

    jobs = PeriodicJobs(rt)
    jobs.add("flaky", 0.01, flaky)
    jobs.start()
    for _ in range(100):
        if len(calls) >= 3:
            break
        await asyncio.sleep(0.01)
    await jobs.stop()
    assert len(calls) >= 3


async def test_prune_removes_only_keys_past_retention(rt):
    async with rt.sessions() as session, session.begin():
        uid = await session.scalar(
            insert(User)
            .values(email="k@example.com", display_name="K", password_hash="x")
            .returning(User.id)
        )
        await session.execute(
            insert(IdempotencyKey),
            [
                {"user_id": uid, "key": key, "operation": "transfer", "request_hash": "h"}
                for key in ("old", "recent")
            ],
        )
        hours = rt.settings.idempotency_key_retention_hours
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key == "old")
            .values(created_at=rt.now() - timedelta(hours=hours, minutes=1))
        )
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key == "recent")
            .values(created_at=rt.now() - timedelta(hours=hours - 1))
        )
    assert await prune_idempotency_keys(rt) == 1
    async with rt.sessions() as session:
        keys = (await session.scalars(select(IdempotencyKey.key))).all()
    assert keys == ["recent"]
