"""Moving a scope's state: lock its row, apply the event through the one table
(``app.risk.domain.states.apply``), record the transition with its reason and who made
it. Every change of state goes through ``move``, in the caller's transaction.

A USER (or FOLLOW, BOT) scope is changed with its user's row locked (FOR NO KEY UPDATE,
as the placement locks it; a bot's: its owner's, which its placements lock too): the
change and any placement of that user take turns. A MARKET or PLATFORM scope is changed
under its scope lock (``lock_scopes``, exclusive; every placement holds it shared): the
change and the placements in those markets take turns too.

``scope_pnl`` is a P&L scope's realised and unrealised profit now (USD): a user's
positions and their sub-accounts' (live bots'), a bot's sub-account's, a follow's copy
positions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.risk.domain.pnl import Marks
from app.risk.domain.states import ADMIN_SCOPES, RiskState, Scope, ScopeRef, StateEvent, apply
from app.risk.sql import (
    BOT_PNL_SQL,
    FOLLOW_PNL_SQL,
    LOCK_SCOPES_SQL,
    LOCK_STATES_SQL,
    MAKE_STATES_SQL,
    PNL_SQL,
    TRANSITION_SQL,
)
from db.raw import driver

PNL_SCOPES = frozenset({Scope.USER, Scope.BOT, Scope.FOLLOW})
_PNL_SQL = {Scope.USER: PNL_SQL, Scope.BOT: BOT_PNL_SQL, Scope.FOLLOW: FOLLOW_PNL_SQL}
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Moved:
    ref: ScopeRef
    before: RiskState
    after: RiskState
    reason: str
    transition_id: int
    at: datetime


async def lock_scopes(session: AsyncSession, refs: Iterable[ScopeRef]) -> None:
    """The MARKET and PLATFORM scopes among ``refs``, locked exclusive until the commit
    (``app.risk.sql.SCOPE_LOCK``): after the placements that read them, before those that
    will. Taken before anything else the caller locks."""
    keys = sorted({ref.id for ref in refs if ref.scope in ADMIN_SCOPES})
    if keys:
        await (await driver(session)).execute(LOCK_SCOPES_SQL, keys)


async def lock_states(session: AsyncSession, refs: Iterable[ScopeRef]) -> dict[ScopeRef, Any]:
    """The state rows of ``refs`` (made ACTIVE where missing), locked in key order (a
    market's or the platform's after its scope lock, ``lock_scopes``)."""
    await lock_scopes(session, refs)
    connection = await driver(session)
    keys = sorted(set(refs))
    scopes, ids = [k.scope.value for k in keys], [k.id for k in keys]
    await connection.execute(MAKE_STATES_SQL, scopes, ids)
    rows = await connection.fetch(LOCK_STATES_SQL, scopes, ids)
    return {ScopeRef(Scope(r["scope"]), r["scope_id"]): r for r in rows}


async def move(
    session: AsyncSession,
    ref: ScopeRef,
    current: RiskState,
    event: StateEvent,
    *,
    reason: str,
    limit_id: int | None = None,
    actor_id: int | None = None,
    cooldown_until: datetime | None = None,
) -> Moved:
    """Apply ``event`` to the locked scope (``RiskStateConflict`` if the table has no
    such transition) and record it."""
    after = apply(current, event)
    connection = await driver(session)
    await connection.execute(
        "UPDATE risk_states SET state = $3, since = now(), cooldown_until = $4, reason = $5,"
        " limit_id = $6, updated_at = now() WHERE scope = $1 AND scope_id = $2",
        ref.scope.value,
        ref.id,
        after.value,
        cooldown_until if after is RiskState.HALTED else None,
        reason,
        limit_id,
    )
    row = await connection.fetchrow(
        TRANSITION_SQL,
        ref.scope.value,
        ref.id,
        current.value,
        after.value,
        reason,
        limit_id,
        actor_id,
    )
    return Moved(ref, current, after, reason, row["id"], row["at"])


def marks_of(row: Any) -> Marks | None:
    """A state row's P&L marks (None until first seen)."""
    if row["marks_day"] is None:
        return None
    return Marks(
        day=row["marks_day"],
        day_start=row["day_start_pnl"],
        week_start=row["week_start_pnl"],
        peak=row["peak_pnl"],
        realised=row["realised_pnl"],
        pnl=row["last_pnl"],
        consecutive_losses=row["consecutive_losses"],
    )


async def save_marks(session: AsyncSession, ref: ScopeRef, marks: Marks) -> None:
    connection = await driver(session)
    await connection.execute(
        "UPDATE risk_states SET marks_day = $3, day_start_pnl = $4, week_start_pnl = $5,"
        " peak_pnl = $6, realised_pnl = $7, last_pnl = $8, consecutive_losses = $9,"
        " updated_at = now() WHERE scope = $1 AND scope_id = $2",
        ref.scope.value,
        ref.id,
        marks.day,
        marks.day_start,
        marks.week_start,
        marks.peak,
        marks.realised,
        marks.pnl,
        marks.consecutive_losses,
    )


async def scope_pnl(
    session: AsyncSession, refs: Iterable[ScopeRef]
) -> dict[ScopeRef, tuple[Decimal, Decimal]]:
    """(P&L, realised part) of each of ``refs`` (USER, BOT, FOLLOW), USD; (0, 0) for a
    scope without positions. One statement per kind of scope."""
    by_scope: dict[Scope, list[int]] = {}
    for ref in refs:
        by_scope.setdefault(ref.scope, []).append(ref.id)
    connection = await driver(session)
    out: dict[ScopeRef, tuple[Decimal, Decimal]] = {}
    for scope, ids in sorted(by_scope.items()):
        for ref_id in ids:
            out[ScopeRef(scope, ref_id)] = (ZERO, ZERO)
        for r in await connection.fetch(_PNL_SQL[scope], sorted(set(ids))):
            key = r["user_id"] if scope is Scope.USER else r["scope_id"]
            out[ScopeRef(scope, key)] = (r["pnl"], r["realised"])
    return out


async def start_marks(session: AsyncSession, ref: ScopeRef, now: datetime) -> None:
    """A P&L scope's marks from its P&L of now, unless it has them: a P&L limit set
    before the scope's next fill measures from the moment it was set."""
    row = (await lock_states(session, [ref]))[ref]
    if marks_of(row) is not None:
        return
    pnl, realised = (await scope_pnl(session, [ref]))[ref]
    await save_marks(session, ref, Marks.start(now=now, pnl=pnl, realised=realised))
