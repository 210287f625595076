"""Reading the outbox as an event log, with a checkpoint per consumer.

Outbox ids are taken when a row is inserted, not when its transaction commits, so a
consumer that remembered "the last id I saw" would skip an event whose transaction
committed after a later one. Each row also records its transaction id (``txid``);
events are read in (txid, id) order and only from transactions older than the oldest
one still running (``pg_snapshot_xmin``): all of those have ended, and every event
written later has a larger txid. The checkpoint is the (txid, id) of the last event
handled, so a consumer that restarts resumes exactly there.

Typical use, one transaction per batch so the effects and the checkpoint commit
together::

    async with sessions() as session, session.begin():
        events = await event_log.read(session, "notifications", topics=("fills",))
        ...handle them...
        await event_log.advance(session, "notifications", events)

``read`` locks the consumer's row, so two instances of one consumer take turns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from db.raw import driver

_READ = """
WITH checkpoint AS (
    INSERT INTO event_consumers (name) VALUES ($1)
    ON CONFLICT (name) DO UPDATE SET name = excluded.name
    RETURNING last_txid, last_id
)
SELECT o.id, o.txid, o.topic, o.user_id, o.payload, o.created_at
FROM outbox o, checkpoint c
WHERE (o.txid, o.id) > (c.last_txid, c.last_id)
  AND o.txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
  AND o.topic = ANY($2::text[])
ORDER BY o.txid, o.id
LIMIT $3
"""


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    txid: int
    topic: str
    user_id: int | None
    payload: dict[str, Any]
    created_at: datetime


async def read(
    session: AsyncSession, consumer: str, *, topics: Sequence[str], limit: int = 500
) -> list[Event]:
    """The next events of ``topics`` after ``consumer``'s checkpoint (its row is created
    at the start of the log on first use and stays locked until the transaction ends)."""
    connection = await driver(session)
    rows = await connection.fetch(_READ, consumer, list(topics), limit)
    return [
        Event(
            id=row["id"],
            txid=row["txid"],
            topic=row["topic"],
            user_id=row["user_id"],
            payload=row["payload"] if isinstance(row["payload"], dict) else _json(row["payload"]),
            created_at=row["created_at"],
        )
        for row in rows
    ]


async def advance(session: AsyncSession, consumer: str, events: Sequence[Event]) -> None:
    """Moves ``consumer``'s checkpoint past ``events`` (read in order by ``read``)."""
    if not events:
        return
    last = events[-1]
    connection = await driver(session)
    await connection.execute(
        "UPDATE event_consumers SET last_txid = $2, last_id = $3, updated_at = now()"
        " WHERE name = $1",
        consumer,
        last.txid,
        last.id,
    )


def _json(value: str) -> dict[str, Any]:
    return json.loads(value)
