"""Outbox: events written in the transaction of the change, relayed to Redis after."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.events.pubsub import publish_many
from app.events.topics import Event, channel
from app.events.topics.base import EventRow
from db.models import OutboxEvent
from db.raw import Arrays, driver

log = logging.getLogger(__name__)


async def write(session: AsyncSession, *events: Event) -> None:
    """The catalogue's ``events`` (``app.events.topics``) on the outbox, in the session's
    transaction, in order, in one statement."""
    await _insert(session, [event.row() for event in events])


async def emit(
    session: AsyncSession, *, topic: str, user_id: int | None, payload: dict[str, Any]
) -> None:
    """One event as it is, outside the catalogue (tests and tools; a service writes the
    catalogue's events with ``write``)."""
    await _insert(
        session,
        [EVENTS.row(topic=topic, user_id=user_id, payload=json.dumps(payload, default=str))],
    )


async def _insert(session: AsyncSession, rows: Sequence[EventRow]) -> None:
    if rows:
        await (await driver(session)).execute(_EMIT_SQL, *EVENTS.arrays(rows))


# the arrays of ``insert_sql`` (``Event.row()``): the payload's JSON as text
EVENTS = Arrays("app.events.outbox.EVENTS", EventRow, OutboxEvent, types={"payload": "text"})


def insert_sql(first: int) -> str:
    """The INSERT of events from the arrays of ``EVENTS`` from ``$first`` on, in their
    order: ``write``'s statement, or a CTE of a writer's."""
    return (
        f"INSERT INTO outbox ({', '.join(EVENTS.columns)})"  # noqa: S608 (names, numbers only)
        f" SELECT e.topic, e.user_id, e.payload::jsonb FROM unnest({EVENTS.parameters(first)})"
        f" WITH ORDINALITY AS e({EVENTS.names}, n) ORDER BY n"
    )


_EMIT_SQL = insert_sql(1)


async def relay_batch(
    sessions: async_sessionmaker[AsyncSession], redis: Redis, *, prefix: str, limit: int = 200
) -> int:
    """Publish the oldest unpublished events and mark them; safe with several relays
    (SKIP LOCKED). At-least-once: an event may be published twice if we crash between
    publish and commit; subscribers dedupe on the event id."""
    async with sessions() as session, session.begin():
        connection = await driver(session)
        events = await connection.fetch(_UNPUBLISHED_SQL, limit)
        if events:
            await publish_many(
                redis,
                [
                    (
                        channel(prefix, e["topic"], e["user_id"]),
                        # the stored payload as it is (jsonb's text), not parsed and dumped
                        f'{{"id": {e["id"]}, "topic": {json.dumps(e["topic"])},'
                        f' "payload": {e["payload"]}}}',
                    )
                    for e in events
                ],
            )
            await connection.execute(
                "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
                [e["id"] for e in events],
            )
    return len(events)


_UNPUBLISHED_SQL = """
    SELECT id, topic, user_id, payload::text AS payload FROM outbox
    WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
"""
