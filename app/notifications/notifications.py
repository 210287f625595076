"""Notifications: created from domain events, read and marked by their owner, emailed.

Creation. The ``notifications`` consumer (``notify_from_events``, a background job)
reads the outbox as an event log (``app.events.event_log``) and, in one transaction
per batch, inserts what each event tells its owner (``app.notifications.rules``) and
advances its checkpoint. A notification's ``source`` names what caused it
("event:<outbox id>", "price-alert:<id>"); UNIQUE (user_id, source) makes a second
consumption of the same event a no-op. Each new notification also goes to the outbox
(topic ``notifications``, user_id = its owner) in the same transaction: the
``notifications`` subscription delivers it live to the owner only.

Email. ``email_notifications`` (another job) sends each committed notification whose
priority the owner chose (``notification_preferences``, default HIGH and CRITICAL) to
their verified address, once: it claims rows with FOR UPDATE SKIP LOCKED, so two
processes never send the same one, and sets ``emailed_at``. The choice in force when a
notification was made counts: one made before the preferences last changed, or more
than ``EMAIL_WITHIN`` ago (mail was down), is not emailed any more.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.adapters.mail import Mail
from app.core.errors import NotAuthenticated, NotFound, ValidationFailed
from app.events import event_log, outbox, topics
from app.notifications import rules
from app.notifications.rules import Draft, Priority
from app.runtime import Runtime
from db.models import Notification
from db.queries import MAX_PAGE_SIZE, Page, keyset_page
from db.raw import driver
from db.session import in_transaction

log = logging.getLogger(__name__)

CONSUMER = "notifications"
EVENT_BATCH = 500
EMAIL_BATCH = 20
EMAIL_WITHIN = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class NewNotification:
    user_id: int
    source: str
    draft: Draft


@dataclass(frozen=True, slots=True)
class MarkedRead:
    marked: int  # were unread, now read
    unread: int  # left unread


# --- creation ---------------------------------------------------------------------------

_INSERT = """
INSERT INTO notifications (user_id, source, type, priority, title, body, link)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                     $6::text[], $7::text[])
ON CONFLICT (user_id, source) DO NOTHING
RETURNING *
"""


async def create_notifications(
    session: AsyncSession, items: Sequence[NewNotification]
) -> list[Notification]:
    """Store ``items`` (those whose source already notified their user are skipped) and
    announce each new one on the outbox, in the session's transaction."""
    if not items:
        return []
    connection = await driver(session)
    drafts = [i.draft for i in items]
    rows = await connection.fetch(
        _INSERT,
        [i.user_id for i in items],
        [i.source for i in items],
        [d.type.value for d in drafts],
        [d.priority.value for d in drafts],
        [d.title for d in drafts],
        [d.body for d in drafts],
        [d.link for d in drafts],
    )
    created = sorted((Notification(**dict(r)) for r in rows), key=lambda n: n.id)
    await outbox.write(session, *(topics.notification(n.user_id, _announced(n)) for n in created))
    return created


def _announced(notification: Notification) -> topics.NewNotification:
    """What the ``notifications`` subscription receives."""
    return topics.NewNotification(
        id=notification.id,
        type=notification.type,
        priority=notification.priority,
        title=notification.title,
        body=notification.body,
        link=notification.link,
        created_at=notification.created_at,
    )


async def notify_from_events(rt: Runtime) -> int:
    """Background job: notifications for every event after the consumer's checkpoint,
    batch after batch; the number created."""
    return await event_log.drain(rt.sessions, _consume_batch, size=EVENT_BATCH)


async def _consume_batch(session: AsyncSession) -> tuple[int, int]:
    events = await event_log.read(session, CONSUMER, topics=rules.EVENT_TOPICS, limit=EVENT_BATCH)
    items = [
        NewNotification(event.user_id, f"event:{event.id}", draft)
        for event in events
        if event.user_id is not None and (draft := _draft(event, event.user_id)) is not None
    ]
    created = await create_notifications(session, items)
    await event_log.advance(session, CONSUMER, events)
    return len(events), len(created)


def _draft(event: event_log.Event, owner: int) -> Draft | None:
    try:
        return rules.from_event(event.topic, owner, event.payload)
    except (KeyError, TypeError, ValueError, ArithmeticError):
        # one malformed event must not stop every notification behind it
        log.exception("event not notified", extra={"event_id": event.id, "topic": event.topic})
        return None


# --- reading and marking ----------------------------------------------------------------


async def list_notifications(
    session: AsyncSession, *, user_id: int, first: int, after: str | None, unread_only: bool
) -> Page[Notification]:
    """The user's notifications, newest first."""
    statement = select(Notification).where(Notification.user_id == user_id)
    if unread_only:
        statement = statement.where(Notification.read_at.is_(None))
    return await keyset_page(
        session, statement, key=Notification.id, first=first, after=after, descending=True
    )


async def unread_count(session: AsyncSession, *, user_id: int) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
    )
    return int(count or 0)


async def mark_read(
    rt: Runtime, *, user_id: int | None, ids: Sequence[int] | None, all: bool | None
) -> MarkedRead:
    """Mark ``ids`` (the user's own, else ``NotFound`` and nothing changes) or ``all``
    the user's notifications read."""
    if user_id is None:
        raise NotAuthenticated()
    if (ids is None) == (not all):
        raise ValidationFailed("Give either ids or all: true", field="ids")
    wanted = sorted(set(ids or ()))
    if ids is not None and not 0 < len(wanted) <= MAX_PAGE_SIZE:
        raise ValidationFailed(f"Give 1 to {MAX_PAGE_SIZE} ids", field="ids")

    async def work(session: AsyncSession) -> MarkedRead:
        connection = await driver(session)
        if ids is None:
            marked = await connection.fetchval(_MARK_ALL, user_id)
        else:
            owned = await connection.fetchval(_COUNT_OWNED, user_id, wanted)
            if owned != len(wanted):
                raise NotFound("You have no notification with one of these ids", field="ids")
            marked = await connection.fetchval(_MARK_IDS, user_id, wanted)
        return MarkedRead(marked=marked, unread=await unread_count(session, user_id=user_id))

    return await in_transaction(rt.sessions, work)


_COUNT_OWNED = "SELECT count(*) FROM notifications WHERE user_id = $1 AND id = ANY($2::bigint[])"
_MARK_IDS = """
WITH marked AS (
    UPDATE notifications SET read_at = now()
    WHERE user_id = $1 AND id = ANY($2::bigint[]) AND read_at IS NULL
    RETURNING 1
)
SELECT count(*) FROM marked
"""
_MARK_ALL = """
WITH marked AS (
    UPDATE notifications SET read_at = now() WHERE user_id = $1 AND read_at IS NULL
    RETURNING 1
)
SELECT count(*) FROM marked
"""


# --- preferences ------------------------------------------------------------------------


async def get_email_priorities(session: AsyncSession, *, user_id: int) -> list[Priority]:
    connection = await driver(session)
    stored = await connection.fetchval(
        "SELECT email_priorities FROM notification_preferences WHERE user_id = $1", user_id
    )
    return rules.email_priorities(
        rules.DEFAULT_EMAIL_PRIORITIES if stored is None else map(Priority, stored)
    )


async def set_email_priorities(
    rt: Runtime, *, user_id: int | None, priorities: Sequence[Priority]
) -> list[Priority]:
    """Which priorities the user also receives by email (an empty list: none)."""
    if user_id is None:
        raise NotAuthenticated()
    chosen = rules.email_priorities(priorities)

    async def work(session: AsyncSession) -> list[Priority]:
        connection = await driver(session)
        await connection.execute(
            "INSERT INTO notification_preferences (user_id, email_priorities) VALUES ($1, $2)"
            " ON CONFLICT (user_id) DO UPDATE"
            " SET email_priorities = excluded.email_priorities, updated_at = now()",
            user_id,
            [p.value for p in chosen],
        )
        return chosen

    return await in_transaction(rt.sessions, work)


# --- email ------------------------------------------------------------------------------

_CLAIM_FOR_EMAIL = """
SELECT n.id, n.title, n.body, n.priority, u.email, u.display_name
FROM notifications n
JOIN users u ON u.id = n.user_id
LEFT JOIN notification_preferences p ON p.user_id = n.user_id
WHERE n.emailed_at IS NULL
  AND n.created_at > now() - $1::interval
  AND u.email_verified_at IS NOT NULL
  AND n.priority = ANY(coalesce(p.email_priorities, $2::text[]))
  AND (p.updated_at IS NULL OR n.created_at >= p.updated_at)
ORDER BY n.id
LIMIT $3
FOR UPDATE OF n SKIP LOCKED
"""


async def email_notifications(rt: Runtime) -> int:
    """Background job: email the notifications their owners want by email; the number
    sent. A failed send is logged and retried on the next run."""
    sent_total = 0
    while True:
        sent, claimed = await _email_batch(rt)
        sent_total += sent
        if sent < claimed or claimed < EMAIL_BATCH:
            return sent_total


async def _email_batch(rt: Runtime) -> tuple[int, int]:
    async with rt.sessions() as session, session.begin():
        connection = await driver(session)
        rows = await connection.fetch(
            _CLAIM_FOR_EMAIL,
            EMAIL_WITHIN,
            [p.value for p in rules.DEFAULT_EMAIL_PRIORITIES],
            EMAIL_BATCH,
        )
        sent: list[int] = []
        for row in rows:
            try:
                await rt.mailer.send(
                    notification_mail(
                        to=row["email"],
                        display_name=row["display_name"],
                        title=row["title"],
                        body=row["body"],
                        priority=row["priority"],
                    )
                )
            except Exception:
                log.exception("notification email not sent", extra={"notification_id": row["id"]})
                break
            sent.append(row["id"])
        if sent:
            await connection.execute(
                "UPDATE notifications SET emailed_at = now() WHERE id = ANY($1::bigint[])", sent
            )
    return len(sent), len(rows)


def notification_mail(*, to: str, display_name: str, title: str, body: str, priority: str) -> Mail:
    return Mail(
        to=to,
        subject=title,
        text=(
            f"Hello {display_name},\n\n{body}\n\n"
            f"You receive {priority} notifications by email; choose which in your"
            " notification preferences.\n"
        ),
    )
