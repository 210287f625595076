"""Helpers for the risk engine's tests: a scope's state by hand, an admin, a statement."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from app.risk import transitions
from app.risk.domain.states import RiskState, ScopeRef, event_towards
from app.runtime import Runtime
from db.models import User
from db.raw import driver
from tests.support.trading import funded_user


async def force_state(rt: Runtime, ref: ScopeRef, state: RiskState, reason: str) -> None:
    """Move ``ref`` to ``state`` through the one writer (as a trigger would)."""
    async with rt.sessions() as session, session.begin():
        row = (await transitions.lock_states(session, [ref]))[ref]
        await transitions.move(
            session, ref, RiskState(row["state"]), event_towards(state), reason=reason
        )


async def make_admin(rt: Runtime, name: str = "root") -> int:
    uid = await funded_user(rt, name)
    async with rt.sessions() as session, session.begin():
        await session.execute(update(User).where(User.id == uid).values(role="ADMIN"))
    return uid


async def execute(rt: Runtime, sql: str, *args: Any) -> None:
    async with rt.sessions() as session, session.begin():
        await (await driver(session)).execute(sql, *args)
