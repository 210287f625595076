"""Query and subscription resolvers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import UTC, datetime

from strawberry.types import Info

from app.core.errors import ValidationFailed
from db.queries import list_users
from graphql_schema.accounts.types import User, UserConnection
from graphql_schema.gateway.context import Context
from graphql_schema.paging import to_connection

Ctx = Info[Context, None]


def server_time() -> datetime:
    return datetime.now(UTC)


async def me(info: Ctx) -> User | None:
    user_id = info.context.user_id
    if user_id is None:
        return None
    row = await info.context.loaders.user_by_id.load(user_id)
    return User.from_row(row) if row else None


async def users(info: Ctx, first: int = 20, after: str | None = None) -> UserConnection:
    """Admin only: every account, newest first."""
    ctx = info.context
    ctx.require_admin()
    async with ctx.rt.sessions() as session:
        page = await list_users(session, first=first, after=after)
    for _, row in page.items:
        ctx.loaders.user_by_id.prime(row.id, row)
    return to_connection(UserConnection, page, User.from_row)  # type: ignore[return-value]


async def server_time_ticks(
    info: Ctx, every_seconds: int = 1, count: int | None = None
) -> AsyncGenerator[datetime, None]:
    if not 1 <= every_seconds <= 60:
        raise ValidationFailed("everySeconds must be between 1 and 60", field="everySeconds")
    sent = 0
    while count is None or sent < count:
        yield datetime.now(UTC)
        sent += 1
        if count is None or sent < count:
            await asyncio.sleep(every_seconds)
