"""Outbox: events written in the transaction of the change, relayed to Redis after."""

from __future__ import annotations

import json
import logging
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.pubsub import publish
from db.models import OutboxEvent
from db.raw import driver

log = logging.getLogger(__name__)


async def emit(
    session: AsyncSession, *, topic: str, user_id: int | None, payload: dict[str, Any]
) -> None:
    connection = await driver(session)
    await connection.execute(
        "INSERT INTO outbox (topic, user_id, payload) VALUES ($1, $2, $3::jsonb)",
        topic,
        user_id,
        json.dumps(payload, default=str),
    )


def channel(prefix: str, topic: str, user_id: int | None) -> str:
    """One builder for every pub/sub channel name."""
    return f"{prefix}events:{topic}" + (f":user:{user_id}" if user_id is not None else "")


async def relay_batch(
    sessions: async_sessionmaker[AsyncSession], redis: Redis, *, prefix: str, limit: int = 200
) -> int:
    """Publish the oldest unpublished events and mark them; safe with several relays
    (SKIP LOCKED). At-least-once: an event may be published twice if we crash between
    publish and commit; subscribers dedupe on the event id."""
    async with sessions() as session, session.begin():
        events = (
            await session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.published_at.is_(None))
                .order_by(OutboxEvent.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for event in events:
            message = json.dumps(
                {"id": event.id, "topic": event.topic, "payload": event.payload}, default=str
            )
            await publish(redis, channel(prefix, event.topic, event.user_id), message)
        if events:
            await session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id.in_([e.id for e in events]))
                .values(published_at=func.now())
            )
    return len(events)
