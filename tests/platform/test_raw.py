"""Raw asyncpg statements on a session's connection belong to the session's transaction."""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy import func, select, text

from db.models import OutboxEvent
from db.raw import driver
from db.session import create_engine, create_sessionmaker, in_transaction


async def _count(rt) -> int:
    async with rt.sessions() as session:
        return await session.scalar(select(func.count()).select_from(OutboxEvent))


async def test_a_raw_first_statement_is_rolled_back_with_the_session(rt):
    async with rt.sessions() as session:
        async with session.begin():
            connection = await driver(session)
            await connection.execute(
                "INSERT INTO outbox (topic, payload) VALUES ('t', '{}'::jsonb)"
            )
            await session.rollback()
    assert await _count(rt) == 0


async def test_a_raw_statement_commits_with_the_session(rt):
    async with rt.sessions() as session, session.begin():
        connection = await driver(session)
        await connection.execute("INSERT INTO outbox (topic, payload) VALUES ('t', '{}'::jsonb)")
        await session.execute(text("SELECT 1"))
    assert await _count(rt) == 1


async def test_a_deadlock_raised_by_a_raw_statement_is_retried(rt):
    """Two transactions lock two rows in opposite orders with raw statements: PostgreSQL
    breaks the deadlock by failing one (asyncpg's own error, not SQLAlchemy's), and
    ``in_transaction`` runs that one again; both end up done, each exactly once."""
    async with rt.sessions() as session, session.begin():
        connection = await driver(session)
        await connection.execute(
            "INSERT INTO outbox (topic, payload) VALUES ('a', '{}'::jsonb), ('b', '{}'::jsonb)"
        )
    both_locked_one = asyncio.Barrier(2)
    attempts: list[str] = []

    def work(first: str, second: str):
        async def run(session):
            attempts.append(first)
            connection = await driver(session)
            lock = "SELECT id FROM outbox WHERE topic = $1 FOR UPDATE"
            await connection.execute(lock, first)
            if len(attempts) <= 2:  # the first attempts meet; a retry goes straight on
                await both_locked_one.wait()
            await connection.execute(lock, second)
            await connection.execute(
                "INSERT INTO outbox (topic, payload) VALUES ($1, '{}'::jsonb)", f"done-{first}"
            )

        return run

    await asyncio.gather(
        in_transaction(rt.sessions, work("a", "b")), in_transaction(rt.sessions, work("b", "a"))
    )
    assert sorted(attempts) == ["a", "a", "b"] or sorted(attempts) == ["a", "b", "b"]
    async with rt.sessions() as session:
        done = await (await driver(session)).fetch(
            "SELECT topic FROM outbox WHERE topic LIKE 'done-%' ORDER BY topic"
        )
    assert [r["topic"] for r in done] == ["done-a", "done-b"]


async def test_a_pooled_connection_the_server_ended_is_replaced_at_checkout(rt, settings):
    """The server ends an idle pooled connection (a restart, pg_terminate_backend): the
    next session gets a new one, also when its first statement is raw (which SQLAlchemy's
    own disconnect handling never sees)."""
    engine = create_engine(settings.database_url, pool_size=1, max_overflow=0)
    sessions = create_sessionmaker(engine)
    try:
        async with sessions() as session:
            pg = await driver(session)
            pid = await pg.fetchval("SELECT pg_backend_pid()")
        async with rt.sessions() as session:
            assert await session.scalar(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        for _ in range(200):  # until asyncpg has read the end of the socket
            if pg.is_closed():
                break
            await asyncio.sleep(0.01)
        assert pg.is_closed()

        async with sessions() as session, session.begin():
            now_pid = await (await driver(session)).fetchval("SELECT pg_backend_pid()")
        assert now_pid != pid
    finally:
        await engine.dispose()


_IN_TRANSACTION = """
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid()
      AND state IN ('idle in transaction', 'idle in transaction (aborted)')
"""


async def test_a_session_cancelled_at_any_moment_leaves_no_transaction_open(rt, settings):
    """A request cancelled mid-statement (a client gone, the execution timeout) may be cut
    between asyncpg's BEGIN and its answer: SQLAlchemy then returns a connection to the
    pool that PostgreSQL still holds in a transaction, whose later BEGINs asyncpg turns into
    savepoints, so that every COMMIT on it commits nothing and its locks are never let go
    (a test's INSERT waited on one for ever). Such a connection is dropped, at checkin or
    at the latest at checkout: every write after the cancellations commits, and no
    connection is left idle in a transaction."""
    engine = create_engine(settings.database_url, pool_size=2, max_overflow=0)
    sessions = create_sessionmaker(engine)

    async def write(topic: str) -> None:
        async with sessions() as session, session.begin():
            await (await driver(session)).execute("SELECT 1")  # raw first: BEGIN is sent here
            await session.execute(
                text("INSERT INTO outbox (topic, payload) VALUES (:t, '{}'::jsonb)"), {"t": topic}
            )

    try:
        handed_out = []
        for cut in range(600):  # cut after 0 to 3 ms, in steps of 10 µs, twice
            task = asyncio.create_task(write(f"cut-{cut}"))
            await asyncio.sleep(cut % 300 / 100_000)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            async with engine.connect() as connection:  # the next checkout
                pg = (await connection.get_raw_connection()).driver_connection
                if pg.is_in_transaction():
                    handed_out.append(cut)
        for n in range(4):  # through both pooled connections, twice
            await write(f"after-{n}")
        async with rt.sessions() as session:
            after = await session.scalar(
                select(func.count())
                .select_from(OutboxEvent)
                .where(OutboxEvent.topic.like("after-%"))
            )
        assert handed_out == []
        assert after == 4
        # a connection closed on a cut leaves the server a moment later (under load, not
        # always before the next line): none may stay in a transaction
        assert await _eventually_none_in_transaction(rt)
    finally:
        await engine.dispose()


async def _eventually_none_in_transaction(rt) -> bool:
    for _ in range(200):
        async with rt.sessions() as session:
            if not await session.scalar(text(_IN_TRANSACTION)):
                return True
        await asyncio.sleep(0.05)
    return False
