"""Raw asyncpg statements on a session's connection belong to the session's transaction."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select, text

from db.models import OutboxEvent
from db.raw import driver
from db.session import in_transaction


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
