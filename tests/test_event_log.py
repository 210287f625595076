"""The outbox read as an event log: nothing committed late is skipped, and a transaction
left open in another database does not hold consumers back."""

from __future__ import annotations

import os

import asyncpg

from app.services import event_log, outbox

TOPIC = "test.event"


async def _emit(rt, number: int) -> None:
    async with rt.sessions() as session, session.begin():
        await outbox.emit(session, topic=TOPIC, user_id=None, payload={"n": number})


async def _read(rt, consumer: str = "test") -> list[int]:
    async with rt.sessions() as session, session.begin():
        events = await event_log.read(session, consumer, topics=(TOPIC,))
        await event_log.advance(session, consumer, events)
    return [e.payload["n"] for e in events]


async def test_an_event_committed_after_a_later_one_is_not_skipped(rt):
    await _emit(rt, 1)
    assert await _read(rt) == [1]
    async with rt.sessions() as early, early.begin():
        await outbox.emit(early, topic=TOPIC, user_id=None, payload={"n": 2})  # not committed
        await _emit(rt, 3)  # a later transaction commits first
        assert await _read(rt) == []  # 3 waits for 2: reading it now would skip 2 for good
    assert await _read(rt) == [2, 3]
    assert await _read(rt) == []  # the checkpoint moved past both


async def test_a_consumer_resumes_at_its_checkpoint_and_consumers_are_independent(rt):
    for n in range(3):
        await _emit(rt, n)
    async with rt.sessions() as session, session.begin():
        first = await event_log.read(session, "a", topics=(TOPIC,), limit=2)
        await event_log.advance(session, "a", first)
    assert [e.payload["n"] for e in first] == [0, 1]
    async with rt.sessions() as session, session.begin():  # rolled back: no advance
        await event_log.read(session, "a", topics=(TOPIC,))
    assert await _read(rt, "a") == [2]
    assert await _read(rt, "b") == [0, 1, 2]
    assert await _read(rt, "a") == [] and await _read(rt, "b") == []


async def test_an_open_transaction_in_another_database_does_not_stall_consumers(rt):
    other = await asyncpg.connect(os.environ["DATABASE_URL"])  # the server's admin database
    try:
        async with other.transaction():
            await other.fetchval("SELECT pg_current_xact_id()")  # holds a transaction id
            await _emit(rt, 7)
            assert await _read(rt) == [7]
    finally:
        await other.close()
