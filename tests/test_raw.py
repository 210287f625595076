"""Raw asyncpg statements on a session's connection belong to the session's transaction."""

from __future__ import annotations

from sqlalchemy import func, select, text

from db.models import OutboxEvent
from db.raw import driver


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
