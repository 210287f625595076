"""Notification and price alert queries, mutations and the live subscription."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from decimal import Decimal

import strawberry
from strawberry.types import Info

from app.events import topics
from app.notifications import notifications, price_alerts
from app.notifications.rules import AlertDirection, AlertStatus, Priority
from graphql_schema.gateway.context import Context
from graphql_schema.ids import node_pk
from graphql_schema.notifications.types import (
    CreatePriceAlertResult,
    DeletePriceAlertPayload,
    DeletePriceAlertResult,
    MarkNotificationsReadPayload,
    MarkNotificationsReadResult,
    NotificationConnection,
    NotificationNode,
    NotificationPreferences,
    NotificationPriority,
    PriceAlertConnection,
    PriceAlertDirection,
    PriceAlertNode,
    PriceAlertPayload,
    PriceAlertStatus,
    UpdateNotificationPreferencesResult,
)
from graphql_schema.paging import to_connection
from resolvers.common import attempt, stream_events

Ctx = Info[Context, None]
NOTIFICATION = "Notification"
PRICE_ALERT = "PriceAlert"


def _preferences(priorities: list[Priority]) -> NotificationPreferences:
    return NotificationPreferences(
        email_priorities=[NotificationPriority(p.value) for p in priorities]
    )


# --- notifications ----------------------------------------------------------------------


async def my_notifications(
    info: Ctx, first: int = 20, after: str | None = None, unread_only: bool = False
) -> NotificationConnection:
    """Your notifications, newest first."""
    ctx = info.context
    user = ctx.require_user()
    async with ctx.rt.sessions() as session:
        page = await notifications.list_notifications(
            session, user_id=user.id, first=first, after=after, unread_only=unread_only
        )
    return to_connection(NotificationConnection, page, NotificationNode.from_row)  # type: ignore[return-value]


async def unread_notification_count(info: Ctx) -> int:
    ctx = info.context
    user = ctx.require_user()
    async with ctx.rt.sessions() as session:
        return await notifications.unread_count(session, user_id=user.id)


async def mark_notifications_read(
    info: Ctx,
    ids: list[strawberry.ID] | None = None,
    all: bool | None = None,
) -> MarkNotificationsReadResult:
    """Mark some of your notifications (``ids``) or ``all: true`` of them read."""

    async def call() -> notifications.MarkedRead:
        return await notifications.mark_read(
            info.context.rt,
            user_id=info.context.user_id,
            ids=None if ids is None else [node_pk(i, NOTIFICATION, field="ids") for i in ids],
            all=all,
        )

    return await attempt(
        call(), lambda r: MarkNotificationsReadPayload(marked=r.marked, unread_count=r.unread)
    )


async def notification_preferences(info: Ctx) -> NotificationPreferences:
    ctx = info.context
    user = ctx.require_user()
    async with ctx.rt.sessions() as session:
        return _preferences(await notifications.get_email_priorities(session, user_id=user.id))


async def update_notification_preferences(
    info: Ctx, email_priorities: list[NotificationPriority]
) -> UpdateNotificationPreferencesResult:
    """Which priorities you also receive by email (an empty list: none)."""
    call = notifications.set_email_priorities(
        info.context.rt,
        user_id=info.context.user_id,
        priorities=[Priority(p.value) for p in email_priorities],
    )
    return await attempt(call, _preferences)


async def notification_updates(info: Ctx) -> AsyncGenerator[NotificationNode, None]:
    """Your new notifications, as they are created."""
    user = info.context.require_user()
    async for node in stream_events(
        info, topics.NOTIFICATIONS, NotificationNode.from_event, user_id=user.id
    ):
        yield node


# --- price alerts -----------------------------------------------------------------------


async def my_price_alerts(
    info: Ctx,
    status: PriceAlertStatus | None = None,
    first: int = 20,
    after: str | None = None,
) -> PriceAlertConnection:
    """Your price alerts (active and triggered unless ``status`` says), newest first."""
    ctx = info.context
    user = ctx.require_user()
    async with ctx.rt.sessions() as session:
        page = await price_alerts.list_price_alerts(
            session,
            user_id=user.id,
            status=AlertStatus(status.value) if status else None,
            first=first,
            after=after,
        )
    return to_connection(PriceAlertConnection, page, PriceAlertNode.from_row)  # type: ignore[return-value]


async def create_price_alert(
    info: Ctx, symbol: str, direction: PriceAlertDirection, price: Decimal
) -> CreatePriceAlertResult:
    """Be notified (PRICE, HIGH) once, on the first trade at or above (ABOVE) or at or
    below (BELOW) ``price``."""
    call = price_alerts.create_price_alert(
        info.context.rt,
        user_id=info.context.user_id,
        symbol=symbol,
        direction=AlertDirection(direction.value),
        price=price,
    )

    def payload(created: price_alerts.CreatedAlert) -> PriceAlertPayload:
        info.context.loaders.market_by_id.prime(created.market.id, created.market)
        return PriceAlertPayload(price_alert=PriceAlertNode.from_row(created.alert))

    return await attempt(call, payload)


async def delete_price_alert(info: Ctx, id: strawberry.ID) -> DeletePriceAlertResult:
    """Delete one of your price alerts."""

    async def call() -> int:
        return await price_alerts.delete_price_alert(
            info.context.rt,
            user_id=info.context.user_id,
            alert_id=node_pk(id, PRICE_ALERT, field="id"),
        )

    return await attempt(call(), lambda _: DeletePriceAlertPayload(deleted_id=id))
