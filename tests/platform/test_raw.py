"""Raw asyncpg statements on a session's connection belong to the session's transaction."""

from __future__ import annotations

import asyncio

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
