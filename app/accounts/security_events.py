"""The security event trail of each account: logins, two-factor changes, password
resets, API key changes, withdrawals.

``record_security_event`` adds one row in the caller's transaction, so the event
commits or rolls back together with what it describes. The client address and user
agent come from the request being served (set by the GraphQL view), the request id
from the logging context.

"""

from __future__ import annotations

from contextvars import ContextVar
from enum import StrEnum
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.logs import request_id_var
from app.runtime import Runtime
from db.models import SecurityEvent
from db.queries import Page, keyset_page
from db.session import in_transaction

client_ip_var: ContextVar[str | None] = ContextVar("client_ip", default=None)
user_agent_var: ContextVar[str | None] = ContextVar("user_agent", default=None)
_MAX_USER_AGENT = 300


class SecurityEventKind(StrEnum):
    LOGIN_SUCCEEDED = "LOGIN_SUCCEEDED"
    LOGIN_FAILED = "LOGIN_FAILED"
    TWO_FACTOR_ENABLED = "TWO_FACTOR_ENABLED"
    TWO_FACTOR_DISABLED = "TWO_FACTOR_DISABLED"
    PASSWORD_RESET_REQUESTED = "PASSWORD_RESET_REQUESTED"
    PASSWORD_RESET = "PASSWORD_RESET"
    PASSWORD_CHANGED = "PASSWORD_CHANGED"
    EMAIL_CHANGE_REQUESTED = "EMAIL_CHANGE_REQUESTED"
    EMAIL_CHANGED = "EMAIL_CHANGED"
    API_KEY_CREATED = "API_KEY_CREATED"
    API_KEY_REVOKED = "API_KEY_REVOKED"
    WITHDRAWAL_REQUESTED = "WITHDRAWAL_REQUESTED"
    WITHDRAWAL_APPROVED = "WITHDRAWAL_APPROVED"
    DEPOSIT_HELD_FOR_REVIEW = "DEPOSIT_HELD_FOR_REVIEW"  # the provider paid another amount


async def record_security_event(
    session: AsyncSession,
    *,
    user_id: int | None,
    kind: SecurityEventKind,
    details: dict[str, Any] | None = None,
) -> None:
    """One event row in the caller's transaction. ``details`` must be JSON-serialisable
    and never hold secrets (no passwords, codes or tokens)."""
    user_agent = user_agent_var.get()
    await session.execute(
        insert(SecurityEvent).values(
            user_id=user_id,
            kind=kind.value,
            ip_address=client_ip_var.get(),
            user_agent=user_agent[:_MAX_USER_AGENT] if user_agent else None,
            details=details or {},
            request_id=request_id_var.get(),
        )
    )


async def record_in_own_transaction(
    rt: Runtime,
    *,
    user_id: int | None,
    kind: SecurityEventKind,
    details: dict[str, Any] | None = None,
) -> None:
    """For events about something that did not happen (a failed login): the caller's
    transaction rolled back, so the event needs one of its own."""

    async def work(session: AsyncSession) -> None:
        await record_security_event(session, user_id=user_id, kind=kind, details=details)

    await in_transaction(rt.sessions, work)


async def list_security_events(
    session: AsyncSession, *, user_id: int | None, first: int, after: str | None
) -> Page[SecurityEvent]:
    """Newest first; one user's, or everyone's when ``user_id`` is None (admins)."""
    statement = select(SecurityEvent)
    if user_id is not None:
        statement = statement.where(SecurityEvent.user_id == user_id)
    return await keyset_page(
        session, statement, key=SecurityEvent.id, first=first, after=after, descending=True
    )
