"""Reading the outbox as an event log, with a checkpoint per consumer.

Outbox ids are taken when a row is inserted, not when its transaction commits, so a
consumer that remembered "the last id I saw" would skip an event whose transaction
committed after a later one. Each row also records its transaction id (``txid``);
events are read in (txid, id) order and only below a horizon: the oldest transaction
still running in this snapshot, all of which below it have ended, and every event
written later has a larger txid. The checkpoint is the (txid, id) of the last event
handled, so a consumer that restarts resumes exactly there.

Transaction ids are shared by every database of the server, so plain
``pg_snapshot_xmin`` would let a long transaction in ANOTHER database (a report, a
forgotten psql session) stall every consumer here. The horizon therefore skips the
running transactions that ``pg_stat_activity`` shows in other databases; one it cannot
place (hidden by privileges, or ended meanwhile) still counts, which is only ever
slower, never wrong.

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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.raw import driver
from db.session import in_transaction

_READ = """
WITH checkpoint AS MATERIALIZED (
    SELECT last_txid, last_id FROM event_consumers WHERE name = $1 FOR UPDATE
), snap AS (
    SELECT pg_current_snapshot() AS s
), elsewhere AS (
    SELECT backend_xid::text::bigint AS xid FROM pg_stat_activity
    WHERE backend_xid IS NOT NULL AND datname IS DISTINCT FROM current_database()
), horizon AS (
    SELECT coalesce(
        (SELECT min(x::text::bigint) FROM snap, pg_snapshot_xip(snap.s) AS x
         WHERE x::text::bigint % 4294967296 NOT IN (SELECT xid FROM elsewhere)),
        (SELECT pg_snapshot_xmax(s)::text::bigint FROM snap)
    ) AS txid
)
SELECT h.txid AS horizon, c.last_txid AS checkpoint_txid, c.last_id AS checkpoint_id,
       o.id, o.txid, o.topic, o.user_id, o.payload, o.created_at
FROM checkpoint c CROSS JOIN horizon h
LEFT JOIN LATERAL (
    SELECT o.id, o.txid, o.topic, o.user_id, o.payload, o.created_at
    FROM outbox o
    WHERE (o.txid, o.id) > (c.last_txid, c.last_id)
      AND o.txid < h.txid
      AND o.topic = ANY($2::text[])
    ORDER BY o.txid, o.id
    LIMIT $3
) o ON true
"""
# The checkpoint and the horizon are parameters of the lateral scan, so the index on
# (txid, id) is entered at the checkpoint: joined as plain tables, the planner was free to
# scan the index from its start and filter, which it did (every event ever written, read
# on every poll).

_CREATE = "INSERT INTO event_consumers (name) VALUES ($1) ON CONFLICT (name) DO NOTHING"
_LAST_ID = 2**63 - 1

# A consumer that finds nothing of its topics moves its checkpoint up to the horizon
# when it lags this many transaction ids behind, so it does not read the same events of
# other topics poll after poll; closer than that an idle poll writes nothing.
IDLE_ADVANCE_TXIDS = 1000


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    txid: int
    topic: str
    user_id: int | None
    payload: dict[str, Any]
    created_at: datetime


class Events(list[Event]):
    """What ``read`` found, in order, and how far it looked: ``checkpoint`` is where the
    consumer stood, ``seen_up_to`` the (txid, id) below which nothing of its topics is
    left unread once these are handled."""

    checkpoint: tuple[int, int]
    seen_up_to: tuple[int, int]


async def read(
    session: AsyncSession, consumer: str, *, topics: Sequence[str], limit: int = 500
) -> Events:
    """The next events of ``topics`` after ``consumer``'s checkpoint (its row is created
    at the start of the log on first use and stays locked until the transaction ends)."""
    connection = await driver(session)
    rows = await connection.fetch(_READ, consumer, list(topics), limit)
    if not rows:  # first use
        await connection.execute(_CREATE, consumer)
        rows = await connection.fetch(_READ, consumer, list(topics), limit)
    first = rows[0]
    events = Events(
        Event(
            id=row["id"],
            txid=row["txid"],
            topic=row["topic"],
            user_id=row["user_id"],
            payload=row["payload"] if isinstance(row["payload"], dict) else _json(row["payload"]),
            created_at=row["created_at"],
        )
        for row in rows
        if row["id"] is not None
    )
    events.checkpoint = (first["checkpoint_txid"], first["checkpoint_id"])
    if len(events) < limit:  # everything of these topics below the horizon is here
        events.seen_up_to = (first["horizon"] - 1, _LAST_ID)
    else:
        events.seen_up_to = (events[-1].txid, events[-1].id)
    return events


async def advance(
    session: AsyncSession,
    consumer: str,
    events: Events,
    *,
    idle_advance_txids: int = IDLE_ADVANCE_TXIDS,
) -> None:
    """Moves ``consumer``'s checkpoint past ``events`` (as ``read`` returned them) and
    past the events of other topics that read looked at."""
    target = events.seen_up_to
    if target <= events.checkpoint:
        return
    if not events and target[0] - events.checkpoint[0] < idle_advance_txids:
        return
    connection = await driver(session)
    await connection.execute(
        "UPDATE event_consumers SET last_txid = $2, last_id = $3, updated_at = now()"
        " WHERE name = $1",
        consumer,
        *target,
    )


async def drain(
    sessions: async_sessionmaker[AsyncSession],
    batch: Callable[[AsyncSession], Awaitable[tuple[int, int]]],
    *,
    size: int,
) -> int:
    """A consumer's job: ``batch`` (reads up to ``size`` events, handles them, advances
    the checkpoint; returns (events read, things done)) one transaction after another
    until a batch comes back short; the things done in all."""
    done = 0
    while True:
        read, made = await in_transaction(sessions, batch)
        done += made
        if read < size:
            return done


def _json(value: str) -> dict[str, Any]:
    return json.loads(value)
