"""The admin audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry import relay
from strawberry.scalars import JSON
from strawberry.types import Info

from db.models import AuditLog as AuditLogRow
from graphql_schema.accounts.types import User


@strawberry.type
class AuditEntry:
    """One admin action."""

    id: strawberry.ID
    action: str = strawberry.field(description='What was done, e.g. "withdrawal.approve".')
    target: str = strawberry.field(description='What it was done to, e.g. "withdrawal:42".')
    details: JSON
    request_id: str | None
    created_at: datetime
    actor_id: strawberry.Private[int]

    @strawberry.field
    async def actor(self, info: Info) -> User | None:
        row = await info.context.loaders.user_by_id.load(self.actor_id)
        return User.from_row(row) if row is not None and info.context.can_see_user(row.id) else None

    @classmethod
    def from_row(cls, row: AuditLogRow) -> AuditEntry:
        details: Any = row.details
        return cls(
            id=strawberry.ID(str(row.id)),
            action=row.action,
            target=row.target,
            details=details,
            request_id=row.request_id,
            created_at=row.created_at,
            actor_id=row.actor_user_id,
        )


@strawberry.type
class AuditEntryEdge:
    cursor: str
    node: AuditEntry


@strawberry.type
class AuditEntryConnection:
    edges: list[AuditEntryEdge]
    page_info: relay.PageInfo
