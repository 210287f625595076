"""Notification and price alert types, their payloads and mutation results."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated, TypeAlias

import strawberry
from strawberry import relay
from strawberry.types import Info

from app.events.topics import NewNotification
from app.notifications import rules
from db.models import Notification as NotificationRow
from db.models import PriceAlert as PriceAlertRow
from graphql_schema.enums import derived_enum
from graphql_schema.errors import (
    NotAuthenticated,
    NotFound,
    PriceOffTick,
    TooManyPriceAlerts,
    UnknownMarket,
    ValidationFailed,
)
from graphql_schema.ids import node_keys
from graphql_schema.trading.markets import MarketNode

NotificationType = derived_enum(rules.NotificationType, name="NotificationType")
NotificationPriority = derived_enum(rules.Priority, name="NotificationPriority")
PriceAlertDirection = derived_enum(rules.AlertDirection, name="PriceAlertDirection")


@strawberry.enum
class PriceAlertStatus(Enum):
    ACTIVE = "ACTIVE"
    TRIGGERED = "TRIGGERED"


@strawberry.type(name="Notification")
class NotificationNode(relay.Node):
    """Something that happened to your account. Visible to its owner only."""

    id: relay.NodeID[int]
    type: NotificationType
    priority: NotificationPriority
    title: str
    body: str
    link: strawberry.ID | None = strawberry.field(
        description="The global ID of the object it is about (an Order, Deposit, Withdrawal,"
        " Transfer, Follow or PriceAlert), if any."
    )
    read: bool
    created_at: datetime

    @classmethod
    def from_row(cls, row: NotificationRow) -> NotificationNode:
        return cls(
            id=row.id,
            type=NotificationType(row.type),
            priority=NotificationPriority(row.priority),
            title=row.title,
            body=row.body,
            link=strawberry.ID(row.link) if row.link else None,
            read=row.read_at is not None,
            created_at=row.created_at,
        )

    @classmethod
    def from_event(cls, p: NewNotification) -> NotificationNode:
        """A new notification, as announced on the outbox."""
        return cls(
            id=p.id,
            type=NotificationType(p.type),
            priority=NotificationPriority(p.priority),
            title=p.title,
            body=p.body,
            link=strawberry.ID(p.link) if p.link else None,
            read=False,
            created_at=p.created_at,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[NotificationNode | None]:
        user_id = info.context.user_id
        rows = await info.context.loaders.notification_by_id.load_many(node_keys(node_ids))
        return [cls.from_row(r) if r is not None and r.user_id == user_id else None for r in rows]


@strawberry.type
class NotificationConnection(relay.Connection[NotificationNode]):
    """Notifications, newest first, paged by keyset cursor."""


@strawberry.type(name="PriceAlert")
class PriceAlertNode(relay.Node):
    """Fires once, with a PRICE notification, on the first trade at or beyond its price."""

    id: relay.NodeID[int]
    direction: PriceAlertDirection
    price: Decimal
    status: PriceAlertStatus
    created_at: datetime
    triggered_at: datetime | None
    market_id: strawberry.Private[int]

    @strawberry.field
    async def market(self, info: Info) -> MarketNode:
        return MarketNode.from_row(await info.context.loaders.market_by_id.load(self.market_id))

    @classmethod
    def from_row(cls, row: PriceAlertRow) -> PriceAlertNode:
        return cls(
            id=row.id,
            direction=PriceAlertDirection(row.direction),
            price=row.price.normalize(),
            status=PriceAlertStatus(row.status),
            created_at=row.created_at,
            triggered_at=row.triggered_at,
            market_id=row.market_id,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[PriceAlertNode | None]:
        user_id = info.context.user_id
        rows = await info.context.loaders.price_alert_by_id.load_many(node_keys(node_ids))
        return [
            cls.from_row(r)
            if r is not None and r.user_id == user_id and r.status != "DELETED"
            else None
            for r in rows
        ]


@strawberry.type
class PriceAlertConnection(relay.Connection[PriceAlertNode]):
    """Price alerts, newest first, paged by keyset cursor."""


@strawberry.type
class MarkNotificationsReadPayload:
    marked: int = strawberry.field(description="How many were unread and are now read.")
    unread_count: int = strawberry.field(description="Your unread notifications left.")


@strawberry.type
class NotificationPreferences:
    email_priorities: list[NotificationPriority] = strawberry.field(
        description="Notifications of these priorities are also sent by email."
    )


@strawberry.type
class PriceAlertPayload:
    price_alert: PriceAlertNode


@strawberry.type
class DeletePriceAlertPayload:
    deleted_id: strawberry.ID


MarkNotificationsReadResult: TypeAlias = Annotated[
    MarkNotificationsReadPayload | ValidationFailed | NotFound | NotAuthenticated,
    strawberry.union("MarkNotificationsReadResult"),
]
UpdateNotificationPreferencesResult: TypeAlias = Annotated[
    NotificationPreferences | NotAuthenticated,
    strawberry.union("UpdateNotificationPreferencesResult"),
]
CreatePriceAlertResult: TypeAlias = Annotated[
    PriceAlertPayload
    | ValidationFailed
    | UnknownMarket
    | PriceOffTick
    | TooManyPriceAlerts
    | NotAuthenticated,
    strawberry.union("CreatePriceAlertResult"),
]
DeletePriceAlertResult: TypeAlias = Annotated[
    DeletePriceAlertPayload | ValidationFailed | NotFound | NotAuthenticated,
    strawberry.union("DeletePriceAlertResult"),
]
