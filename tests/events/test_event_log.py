"""The outbox read as an event log: nothing committed late is skipped, and a transaction
left open in another database does not hold consumers back."""

from __future__ import annotations

import asyncio
import json
import os

import asyncpg

from app.events import event_log, outbox
from db.raw import driver

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


async def _checkpoint(rt, consumer: str) -> tuple[int, int, int]:
    async with rt.sessions() as session:
        row = await (await driver(session)).fetchrow(
            "SELECT last_txid, last_id, xmin::text::bigint AS version FROM event_consumers"
            " WHERE name = $1",
            consumer,
        )
    return row["last_txid"], row["last_id"], row["version"]


async def _emit_other(rt, count: int) -> None:
    async with rt.sessions() as session, session.begin():
        for n in range(count):
            await outbox.emit(session, topic="test.other", user_id=None, payload={"n": n})


async def test_a_consumer_of_a_quiet_topic_moves_past_the_events_of_others(rt):
    assert await _read(rt, "quiet") == []
    await _emit_other(rt, 5)
    before = await _checkpoint(rt, "quiet")
    assert await _read(rt, "quiet") == []  # close behind the horizon: an idle poll writes nothing
    assert await _checkpoint(rt, "quiet") == before
    async with rt.sessions() as session, session.begin():
        events = await event_log.read(session, "quiet", topics=(TOPIC,))
        await event_log.advance(session, "quiet", events, idle_advance_txids=0)
    after = await _checkpoint(rt, "quiet")
    async with rt.sessions() as session:
        newest = await (await driver(session)).fetchval("SELECT max(txid) FROM outbox")
    assert after[:2] > (newest, 0)  # past the other topic's events
    await _emit(rt, 9)
    assert await _read(rt, "quiet") == [9]  # and nothing of its own topic is skipped


async def test_a_read_starts_at_the_checkpoint_not_at_the_start_of_the_log(rt):
    await _emit_other(rt, 300)
    await _emit(rt, 1)
    assert await _read(rt, "scan") == [1]
    await _emit(rt, 2)
    # the new event is read once no transaction that began before it is still open (until
    # then the scan finds none), so look again until it does
    for attempt in range(200):
        async with rt.sessions() as session, session.begin():
            connection = await driver(session)
            if not attempt:
                await connection.execute("ANALYZE outbox")
            plan = await connection.fetchval(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + event_log._READ, "scan", [TOPIC], 500
            )
        scanned = sum(
            node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
            for node in _nodes((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])
            if node.get("Relation Name") == "outbox"
        )
        if scanned:
            break
        await asyncio.sleep(0.05)
    assert 1 <= scanned <= 5  # the event after the checkpoint, not the 300 before it


def _nodes(node: dict) -> list[dict]:
    return [node, *(n for child in node.get("Plans", ()) for n in _nodes(child))]
