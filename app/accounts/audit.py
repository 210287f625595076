"""Admin actions: who may act, and the audit log of what they did.

Every admin mutation calls ``require_admin`` and then ``record`` inside its own
transaction, so the audit row commits or rolls back together with the action.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Forbidden, NotAuthenticated
from app.core.logs import request_id_var
from db.models import AuditLog, User
from db.queries import Page, keyset_page


async def require_admin(session: AsyncSession, actor_id: int | None) -> User:
    """The acting admin, read in the caller's transaction (a demoted admin is refused
    even with a still-valid access token)."""
    if actor_id is None:
        raise NotAuthenticated()
    actor = await session.get(User, actor_id)
    if actor is None:
        raise NotAuthenticated()
    if actor.role != "ADMIN":
        raise Forbidden()
    return actor


async def record(
    session: AsyncSession, *, actor_id: int, action: str, target: str, details: dict[str, Any]
) -> None:
    """One audit row: ``action`` like "withdrawal.approve", ``target`` like "withdrawal:42".
    ``details`` must be JSON-serialisable (stringify Decimals)."""
    await session.execute(
        insert(AuditLog).values(
            actor_user_id=actor_id,
            action=action,
            target=target,
            details=details,
            request_id=request_id_var.get(),
        )
    )


async def list_entries(session: AsyncSession, *, first: int, after: str | None) -> Page[AuditLog]:
    """Newest first."""
    return await keyset_page(
        session, select(AuditLog), key=AuditLog.id, first=first, after=after, descending=True
    )
