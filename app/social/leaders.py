"""Leaders: the profile a user publishes so others can follow (and copy) them.

    become_leader          eligibility (``app.social.domain.social.check_eligibility``), then an
                           ACTIVE profile (a STOPPED one is reactivated and updated)
    update_leader_profile  new profile values, same checks on them
    stop_leading           STOPPED: the copy worker copies nothing more; follows stay and
                           followers keep their positions
    invite_follower        lets one user follow an INVITE_ONLY leader

Every write locks the user row first (``lock_user``), as following does: becoming a
leader and following someone cannot interleave for one user."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotAuthenticated, RecipientNotFound, ValidationFailed
from app.runtime import Runtime
from app.social.domain.social import (
    AlreadyLeader,
    EligibilityFacts,
    EligibilityRules,
    LeaderNotInviteOnly,
    LeaderProfile,
    LeaderStatus,
    NotALeader,
    Visibility,
    check_eligibility,
    validate_profile,
)
from app.trading.reads import portfolio
from db.models import Fill, Follow, Leader, LeaderInvite, User
from db.queries import lock_user
from db.session import in_transaction

LIVE_FOLLOW = ("ACTIVE", "PAUSED")


@dataclass(frozen=True)
class LeaderView:
    """A leader's row with its live followers (follows ACTIVE or PAUSED) and the assets
    under copy (the sum of their allocations, in the follows' quote currency)."""

    row: Leader
    follower_count: int
    assets_under_copy: Decimal


# --- reads --------------------------------------------------------------------------------


async def leaders_by_ids(session: AsyncSession, ids: Sequence[int]) -> list[LeaderView | None]:
    """Leaders in the order of ``ids`` (None where missing): two queries for any count."""
    if not ids:
        return []
    rows = (await session.scalars(select(Leader).where(Leader.user_id.in_(ids)))).all()
    live = (
        select(Follow.leader_id, func.count(), func.sum(Follow.allocation))
        .where(Follow.leader_id.in_(ids), Follow.status.in_(LIVE_FOLLOW))
        .group_by(Follow.leader_id)
    )
    totals = {leader_id: (n, aum) for leader_id, n, aum in (await session.execute(live)).all()}
    found = {
        row.user_id: LeaderView(
            row=row,
            follower_count=totals.get(row.user_id, (0, Decimal(0)))[0],
            assets_under_copy=Decimal(totals.get(row.user_id, (0, Decimal(0)))[1]),
        )
        for row in rows
    }
    return [found.get(i) for i in ids]


async def eligibility_facts(session: AsyncSession, user: User) -> EligibilityFacts:
    """What the leader rules look at: equity as the portfolio values it (USD), closed
    trades (the user's SELL fills), live follows of other leaders."""
    equity = (await portfolio(session, user_id=user.id)).equity_usd
    sells = await session.scalar(
        select(func.count()).where(Fill.user_id == user.id, Fill.side == "SELL")
    )
    follows = await session.scalar(
        select(func.count()).where(Follow.follower_id == user.id, Follow.status.in_(LIVE_FOLLOW))
    )
    return EligibilityFacts(
        email_verified=user.email_verified_at is not None,
        kyc_level=user.kyc_level,
        equity_usd=equity,
        closed_trades=sells or 0,
        live_follows=follows or 0,
    )


def rules_of(rt: Runtime) -> EligibilityRules:
    s = rt.settings
    return EligibilityRules(
        min_kyc_level=s.leader_min_kyc_level,
        min_equity_usd=s.leader_min_equity_usd,
        min_closed_trades=s.leader_min_closed_trades,
    )


# --- writes -------------------------------------------------------------------------------


async def _lock(session: AsyncSession, user_id: int | None) -> User:
    user = await lock_user(session, user_id) if user_id is not None else None
    if user is None:
        raise NotAuthenticated()
    return user


async def _own_leader(session: AsyncSession, user_id: int) -> Leader:
    row = await session.get(Leader, user_id, with_for_update=True, populate_existing=True)
    if row is None:
        raise NotALeader("You are not a leader: use becomeLeader")
    return row


def _apply(row: Leader, profile: LeaderProfile) -> None:
    row.display_name = profile.display_name
    row.bio = profile.bio
    row.profit_share_percent = profile.profit_share_percent
    row.minimum_allocation = profile.minimum_allocation
    row.visibility = profile.visibility.value


async def become_leader(rt: Runtime, *, user_id: int | None, profile: LeaderProfile) -> Leader:
    """An ACTIVE leader profile for an eligible user; a STOPPED leader leads again with
    the new profile. ``AlreadyLeader`` while ACTIVE."""
    profile = validate_profile(profile)

    async def work(session: AsyncSession) -> Leader:
        user = await _lock(session, user_id)
        row = await session.get(Leader, user.id, with_for_update=True, populate_existing=True)
        if row is not None and row.status == LeaderStatus.ACTIVE:
            raise AlreadyLeader()
        check_eligibility(await eligibility_facts(session, user), rules_of(rt))
        if row is None:
            row = Leader(user_id=user.id, created_at=rt.now())
            session.add(row)
        _apply(row, profile)
        row.status = LeaderStatus.ACTIVE.value
        row.stopped_at = None
        await session.flush()
        return row

    return await in_transaction(rt.sessions, work)


async def update_leader_profile(
    rt: Runtime, *, user_id: int | None, profile: LeaderProfile
) -> Leader:
    """New profile values (whatever the status). Existing follows keep their allocation
    when the minimum rises; it applies to new follows."""
    profile = validate_profile(profile)

    async def work(session: AsyncSession) -> Leader:
        user = await _lock(session, user_id)
        row = await _own_leader(session, user.id)
        _apply(row, profile)
        await session.flush()
        return row

    return await in_transaction(rt.sessions, work)


async def stop_leading(rt: Runtime, *, user_id: int | None) -> Leader:
    """STOPPED: no new copies and no new follows; followers keep their positions and
    their follows (which copy nothing until the leader leads again)."""

    async def work(session: AsyncSession) -> Leader:
        user = await _lock(session, user_id)
        row = await _own_leader(session, user.id)
        if row.status == LeaderStatus.ACTIVE:
            row.status = LeaderStatus.STOPPED.value
            row.stopped_at = rt.now()
            await session.flush()
        return row

    return await in_transaction(rt.sessions, work)


async def _find_user(session: AsyncSession, handle_or_email: str) -> int:
    needle = handle_or_email.strip().lower().removeprefix("@")
    if not needle:
        raise RecipientNotFound(field="userHandleOrEmail")
    found = await session.scalar(
        select(User.id)
        .where(or_(User.email == needle, User.handle == needle))
        .order_by(User.id)
        .limit(1)
    )
    if found is None:
        raise RecipientNotFound(field="userHandleOrEmail")
    return int(found)


async def invite_follower(rt: Runtime, *, user_id: int | None, handle_or_email: str) -> Leader:
    """Let the user with this handle or email follow you (an INVITE_ONLY leader); inviting
    twice is harmless."""

    async def work(session: AsyncSession) -> Leader:
        user = await _lock(session, user_id)
        row = await _own_leader(session, user.id)
        if row.visibility != Visibility.INVITE_ONLY:
            raise LeaderNotInviteOnly()
        invitee = await _find_user(session, handle_or_email)
        if invitee == user.id:
            raise ValidationFailed("You cannot invite yourself", field="userHandleOrEmail")
        await session.execute(
            insert(LeaderInvite)
            .values(leader_id=user.id, user_id=invitee, created_at=rt.now())
            .on_conflict_do_nothing()
        )
        return row

    return await in_transaction(rt.sessions, work)


async def is_invited(session: AsyncSession, *, leader_id: int, user_id: int) -> bool:
    return (await session.get(LeaderInvite, (leader_id, user_id))) is not None
