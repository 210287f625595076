"""The ``copy-trading`` consumer: leader fills become follower orders.

For each batch of the outbox topic ``fills``::

    lock the checkpoint          read() holds the consumer row until the batch ends, so
                                 two workers take turns
    plan + record (commit)       ``copy_planning.record_copies``: PENDING or SKIPPED copies
    place                        ``placement.place_order`` for every PENDING copy (the same
                                 order path as a user's: risk checks, holds), follows
                                 concurrently, one follow's copies in order
    mark + advance (commit)      PLACED with the order id, or SKIPPED with the trading
                                 error's code; then the checkpoint moves

A worker killed anywhere re-reads the same fills; the copies recorded before it died
are not planned again, and a PENDING one is placed again with its stored parameters,
which ``place_order`` answers with the order it already placed (same clientOrderId).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.events import event_log, outbox
from app.runtime import Runtime
from app.social.copy_orders import TOPICS, place_ioc
from app.social.copy_planning import PendingCopy, record_copies, skipped_event
from app.trading.domain.orders import Side
from db.raw import driver
from db.session import in_transaction

CONSUMER = "copy-trading"


@dataclass(frozen=True, slots=True)
class _Outcome:
    copy: PendingCopy
    order_id: int | None
    reason: str | None


async def _place(rt: Runtime, copy: PendingCopy) -> _Outcome:
    ack = await place_ioc(
        rt,
        user_id=copy.follower_id,
        symbol=copy.symbol,
        side=Side(copy.side),
        quantity=copy.quantity,
        price=copy.price,
        client_order_id=copy.client_order_id,
    )
    if not ack.ok:
        return _Outcome(copy, None, ack.code)
    return _Outcome(copy, ack.order_id, None)


async def place_copies(rt: Runtime, copies: Sequence[PendingCopy]) -> list[_Outcome]:
    """Place the copies: follows concurrently (at most COPY_CONCURRENCY at once), the
    copies of one follow one after the other, in the leader's order."""
    by_follow: dict[int, list[PendingCopy]] = defaultdict(list)
    for copy in copies:
        by_follow[copy.follow_id].append(copy)
    gate = asyncio.Semaphore(rt.settings.copy_concurrency)

    async def one_follow(group: list[PendingCopy]) -> list[_Outcome]:
        async with gate:
            return [await _place(rt, copy) for copy in group]

    results = await asyncio.gather(*(one_follow(g) for g in by_follow.values()))
    return [outcome for group in results for outcome in group]


async def _mark(session: AsyncSession, outcomes: Sequence[_Outcome]) -> None:
    connection = await driver(session)
    placed = [o for o in outcomes if o.reason is None]
    if placed:
        await connection.execute(
            "UPDATE copies c SET status = 'PLACED', order_id = v.order_id, updated_at = now()"
            " FROM unnest($1::bigint[], $2::bigint[]) AS v(id, order_id)"
            " WHERE c.id = v.id AND c.status = 'PENDING'",
            [o.copy.id for o in placed],
            [o.order_id for o in placed],
        )
    refused = {o.copy.id: o for o in outcomes if o.reason is not None}
    if not refused:
        return
    skipped = await connection.fetch(
        "UPDATE copies c SET status = 'SKIPPED', reason = v.reason, updated_at = now()"
        " FROM unnest($1::bigint[], $2::text[]) AS v(id, reason)"
        " WHERE c.id = v.id AND c.status = 'PENDING' RETURNING c.id, c.leader_fill_id",
        list(refused),
        [o.reason for o in refused.values()],
    )
    events = []
    for row in sorted(skipped, key=lambda r: r["id"]):
        outcome = refused[row["id"]]
        copy = outcome.copy
        events.append(
            skipped_event(
                copy.follower_id,
                copy.follow_id,
                row["leader_fill_id"],
                copy.symbol,
                copy.side,
                outcome.reason,
            )
        )
    await outbox.write(session, *events)


async def copy_batch(rt: Runtime, *, limit: int | None = None) -> int:
    """One batch of the ``copy-trading`` consumer; the number of events it handled."""
    async with rt.sessions() as lock_session, lock_session.begin():
        events = await event_log.read(
            lock_session, CONSUMER, topics=TOPICS, limit=limit or rt.settings.copy_batch_size
        )
        if events:
            await _copy_fills(rt, events)
        await event_log.advance(lock_session, CONSUMER, events)
    return len(events)


async def _copy_fills(rt: Runtime, events: Sequence[event_log.Event]) -> None:
    """Record the copies of these leader fills, place them, record what came of them."""

    async def record(session: AsyncSession) -> list[PendingCopy]:
        return await record_copies(session, events)

    pending = await in_transaction(rt.sessions, record)
    if not pending:
        return
    outcomes = await place_copies(rt, pending)

    async def mark(session: AsyncSession) -> None:
        await _mark(session, outcomes)

    await in_transaction(rt.sessions, mark)
