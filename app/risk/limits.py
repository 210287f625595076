"""Setting, removing and resetting: the people's side of the risk engine.

    set_limit     a user sets a limit of their own scopes (ORDER and USER: themselves,
                  FOLLOW: a follow of theirs, BOT: a bot of theirs that trades); an
                  admin one of a MARKET or of the PLATFORM, audited. One limit per
                  kind and scope: setting it again replaces it.
    remove_limit  the same people take one away (a state it caused stays until reset)
    reset         a scope back to ACTIVE: the user's own scopes need a fresh two-factor
                  code (the user set those limits; a stolen session alone cannot lift
                  them), a market's or the platform's an admin (audited)
    set_state     an admin moves a market or the platform by hand (REDUCING, HALTED),
                  audited

Each runs in one transaction; a change to a user's scope holds the user's row lock
(FOR NO KEY UPDATE), the one every placement of theirs takes first, so a placement sees
the limits and states as they were before the change or after it, never half. A change
to a market's or the platform's holds its scope lock, exclusive, which every placement
in that market holds shared (``app.risk.sql.SCOPE_LOCK``): the same holds for them. A bot's
scope is changed by its owner, with the owner's row locked: every placement of the
bot's sub-account locks its owner's row too (``app.trading.sql.TRADERS_SQL``).
Another's follow or bot, or one that does not exist, is ``NotFound`` alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import audit
from app.accounts.accounts import consume_second_factor
from app.core.errors import (
    InvalidTwoFactorCode,
    NotAuthenticated,
    NotFound,
    TwoFactorNotEnabled,
    TwoFactorRequired,
)
from app.risk import transitions
from app.risk.domain.errors import InvalidRiskLimit, RiskLimitNotFound
from app.risk.domain.limits import (
    AFTER_FILLS_KINDS,
    DEFAULT_WARN_RATIO,
    Action,
    LimitKind,
    check_limit,
)
from app.risk.domain.states import (
    ADMIN_SCOPES,
    PLATFORM_ID,
    RiskState,
    Scope,
    ScopeRef,
    ScopeStatus,
    StateEvent,
)
from app.risk.gate import status_of
from app.runtime import Runtime
from app.trading import markets
from db.models import Bot, Follow, RiskLimit, User
from db.models import RiskState as RiskStateRow
from db.queries import lock_user
from db.session import in_transaction


@dataclass(frozen=True, slots=True)
class Target:
    """Which scope a request names: its kind, and for a FOLLOW or MARKET which one."""

    scope: Scope
    follow_id: int | None = None
    symbol: str | None = None
    bot_id: int | None = None


@dataclass(frozen=True, slots=True)
class LimitRequest:
    target: Target
    kind: LimitKind
    threshold: Decimal
    action: Action = Action.BLOCK_ENTRIES
    warn_ratio: Decimal = DEFAULT_WARN_RATIO
    cooldown_seconds: int | None = None


async def resolve(session: AsyncSession, user_id: int | None, target: Target) -> ScopeRef:
    """The scope ``target`` names, if ``user_id`` may change it: an admin a MARKET or the
    PLATFORM, a user their own ORDER, USER, FOLLOW and BOT scopes (``NotFound`` for
    another's follow or bot, ``Forbidden`` for a non-admin at an admin scope)."""
    if user_id is None:
        raise NotAuthenticated()
    scope = target.scope
    if scope in ADMIN_SCOPES:
        await audit.require_admin(session, user_id)
        if scope is Scope.PLATFORM:
            return ScopeRef(scope, PLATFORM_ID)
        if not target.symbol:
            raise InvalidRiskLimit("Name the market: symbol", field="symbol")
        market = await markets.market_by_symbol(session, target.symbol)
        return ScopeRef(scope, market.id)
    if scope is Scope.FOLLOW:
        follower = await session.scalar(
            select(Follow.follower_id).where(Follow.id == (target.follow_id or 0))
        )
        if follower != user_id:
            raise NotFound("You have no such follow", field="followId")
        return ScopeRef(scope, int(target.follow_id or 0))
    if scope is Scope.BOT:
        return ScopeRef(scope, await _own_bot(session, user_id, target.bot_id or 0))
    return ScopeRef(scope, user_id)


async def _own_bot(session: AsyncSession, user_id: int, bot_id: int) -> int:
    """``bot_id`` if it is a bot of ``user_id``'s that trades (a sub-account: a paper
    bot's play money has no risk scope)."""
    row = (
        await session.execute(select(Bot.user_id, Bot.account_id).where(Bot.id == bot_id))
    ).one_or_none()
    if row is None or row.user_id != user_id:
        raise NotFound("You have no such bot", field="botId")
    if row.account_id is None:
        raise InvalidRiskLimit("A paper bot trades play money: it has no limits", field="botId")
    return bot_id


async def _lock_owner(session: AsyncSession, user_id: int, ref: ScopeRef) -> User | None:
    """A user's scope changes with the user's row locked (as placements lock it); a
    market's or the platform's under its scope lock (``transitions.lock_scopes``)."""
    if ref.scope in ADMIN_SCOPES:
        await transitions.lock_scopes(session, [ref])
        return None
    return await lock_user(session, user_id)


def _audit_target(ref: ScopeRef) -> str:
    return f"risk:{ref.scope.value.lower()}:{ref.id}"


async def set_limit(rt: Runtime, *, user_id: int | None, request: LimitRequest) -> RiskLimit:
    """Set (or replace) the ``kind`` limit of the scope; ``InvalidRiskLimit`` naming the
    field for one that cannot be set."""
    check_limit(
        scope=request.target.scope,
        kind=request.kind,
        threshold=request.threshold,
        action=request.action,
        warn_ratio=request.warn_ratio,
        cooldown_seconds=request.cooldown_seconds,
    )

    async def work(session: AsyncSession) -> RiskLimit:
        ref = await resolve(session, user_id, request.target)
        assert user_id is not None
        await _lock_owner(session, user_id, ref)
        values: dict[str, Any] = {
            "threshold": request.threshold,
            "action": request.action.value,
            "warn_ratio": request.warn_ratio,
            "cooldown_seconds": request.cooldown_seconds,
            "set_by": user_id,
            "requires_two_factor": ref.scope not in ADMIN_SCOPES,
        }
        statement = (
            insert(RiskLimit)
            .values(scope=ref.scope.value, scope_id=ref.id, kind=request.kind.value, **values)
            .on_conflict_do_update(
                index_elements=["scope", "scope_id", "kind"],
                set_={**values, "updated_at": rt.now()},
            )
            .returning(RiskLimit)
        )
        row = (
            await session.scalars(statement, execution_options={"populate_existing": True})
        ).one()
        if ref.scope in transitions.PNL_SCOPES and request.kind in AFTER_FILLS_KINDS:
            await transitions.start_marks(session, ref, rt.now())
        if ref.scope in ADMIN_SCOPES:
            await audit.record(
                session,
                actor_id=user_id,
                action="risk.limit_set",
                target=_audit_target(ref),
                details={
                    "kind": request.kind.value,
                    "threshold": str(request.threshold),
                    "action": request.action.value,
                    "warnRatio": str(request.warn_ratio),
                    "cooldownSeconds": request.cooldown_seconds,
                },
            )
        return row

    return await in_transaction(rt.sessions, work)


async def _own_limit(session: AsyncSession, user_id: int | None, limit_id: int) -> RiskLimit:
    if user_id is None:
        raise NotAuthenticated()
    row = await session.get(RiskLimit, limit_id)
    if row is None:
        raise RiskLimitNotFound(field="id")
    scope = Scope(row.scope)
    if scope in ADMIN_SCOPES:
        await audit.require_admin(session, user_id)
    elif scope is Scope.FOLLOW:
        follower = await session.scalar(select(Follow.follower_id).where(Follow.id == row.scope_id))
        if follower != user_id:
            raise RiskLimitNotFound(field="id")
    elif scope is Scope.BOT:
        owner = await session.scalar(select(Bot.user_id).where(Bot.id == row.scope_id))
        if owner != user_id:
            raise RiskLimitNotFound(field="id")
    elif row.scope_id != user_id:
        raise RiskLimitNotFound(field="id")
    return row


async def remove_limit(rt: Runtime, *, user_id: int | None, limit_id: int) -> RiskLimit:
    """Take a limit away (what it made of the scope's state stays until a reset)."""

    async def work(session: AsyncSession) -> RiskLimit:
        row = await _own_limit(session, user_id, limit_id)
        assert user_id is not None
        ref = ScopeRef(Scope(row.scope), row.scope_id)
        await _lock_owner(session, user_id, ref)
        await session.execute(delete(RiskLimit).where(RiskLimit.id == row.id))
        if ref.scope in ADMIN_SCOPES:
            await audit.record(
                session,
                actor_id=user_id,
                action="risk.limit_removed",
                target=_audit_target(ref),
                details={"kind": row.kind, "threshold": str(row.threshold)},
            )
        return row

    return await in_transaction(rt.sessions, work)


async def _second_factor(
    rt: Runtime, session: AsyncSession, user: User, totp_code: str | None
) -> None:
    if user.totp_secret is None:
        raise TwoFactorNotEnabled("Turn on two-factor authentication to reset a risk state")
    if not totp_code:
        raise TwoFactorRequired(field="totpCode")
    if not await consume_second_factor(rt=rt, session=session, user=user, code=totp_code):
        raise InvalidTwoFactorCode(field="totpCode")


async def reset(
    rt: Runtime, *, user_id: int | None, target: Target, totp_code: str | None = None
) -> ScopeStatus:
    """The scope back to ACTIVE (``RiskStateConflict`` if it is ACTIVE already), its P&L
    measured from now on: a user's own scope with a two-factor code, a market's or the
    platform's by an admin (audited)."""

    async def work(session: AsyncSession) -> ScopeStatus:
        ref = await resolve(session, user_id, target)
        assert user_id is not None
        owner = await _lock_owner(session, user_id, ref)
        if owner is not None:
            await _second_factor(rt, session, owner, totp_code)
        row = (await transitions.lock_states(session, [ref]))[ref]
        moved = await transitions.move(
            session,
            ref,
            RiskState(row["state"]),
            StateEvent.RESET,
            reason="reset by hand",
            actor_id=user_id,
        )
        marks = transitions.marks_of(row)
        if marks is not None:
            await transitions.save_marks(session, ref, marks.restart())
        if ref.scope in ADMIN_SCOPES:
            await audit.record(
                session,
                actor_id=user_id,
                action="risk.reset",
                target=_audit_target(ref),
                details={"from": moved.before.value, "to": moved.after.value},
            )
        return ScopeStatus(ref, moved.after, since=moved.at, reason=moved.reason)

    return await in_transaction(rt.sessions, work)


_EVENTS = {RiskState.REDUCING: StateEvent.REDUCE, RiskState.HALTED: StateEvent.HALT}


async def set_state(
    rt: Runtime, *, actor_id: int | None, target: Target, state: RiskState, reason: str
) -> ScopeStatus:
    """Admin: a market or the platform to REDUCING or HALTED by hand (``reset`` brings
    it back), audited. ``RiskStateConflict`` for a move the table does not have."""
    if target.scope not in ADMIN_SCOPES:
        raise InvalidRiskLimit("Only a market or the platform is set by hand", field="scope")
    if state not in _EVENTS:
        raise InvalidRiskLimit("Use resetRisk to make a scope ACTIVE", field="state")
    reason = reason.strip()[:200] or "set by an admin"

    async def work(session: AsyncSession) -> ScopeStatus:
        ref = await resolve(session, actor_id, target)
        assert actor_id is not None
        row = (await transitions.lock_states(session, [ref]))[ref]
        moved = await transitions.move(
            session, ref, RiskState(row["state"]), _EVENTS[state], reason=reason, actor_id=actor_id
        )
        await audit.record(
            session,
            actor_id=actor_id,
            action="risk.state",
            target=_audit_target(ref),
            details={"from": moved.before.value, "to": moved.after.value, "reason": reason},
        )
        return ScopeStatus(ref, moved.after, since=moved.at, reason=reason)

    return await in_transaction(rt.sessions, work)


async def state_of(session: AsyncSession, ref: ScopeRef) -> ScopeStatus:
    """A scope's stored state (ACTIVE without a row)."""
    row = await session.get(RiskStateRow, (ref.scope.value, ref.id))
    if row is None:
        return ScopeStatus(ref)
    return status_of(
        {
            "scope": row.scope,
            "scope_id": row.scope_id,
            "state": row.state,
            "since": row.since,
            "cooldown_until": row.cooldown_until,
            "reason": row.reason,
            "limit_id": row.limit_id,
        }
    )
