"""Social trading queries and mutations: parse, call one service, map."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import strawberry
from strawberry.types import Info

from app.social import follows, leaders
from app.social.domain import social as domain
from db.models import Follow as FollowRow
from db.models import Leader as LeaderRow
from graphql_schema.exchanges.types import EXCHANGE_ACCOUNT
from graphql_schema.gateway.context import Context
from graphql_schema.ids import node_pk, pk_or_none
from graphql_schema.paging import to_connection
from graphql_schema.social.types import (
    BecomeLeaderResult,
    Follow,
    FollowConnection,
    FollowLeaderResult,
    FollowMode,
    FollowPayload,
    FollowStatus,
    FollowStatusResult,
    InviteFollowerPayload,
    InviteFollowerResult,
    Leader,
    LeaderPayload,
    LeaderVisibility,
    StopLeadingResult,
    UnfollowLeaderResult,
    UnfollowPayload,
    UpdateFollowResult,
    UpdateLeaderProfileResult,
    can_see_follow,
)
from graphql_schema.trading.types import order_nodes
from resolvers.common import attempt

Ctx = Info[Context, None]
LEADER = "Leader"
FOLLOW = "Follow"


# --- queries ------------------------------------------------------------------------------


async def _leader(info: Ctx, user_id: int | None) -> Leader | None:
    view = await info.context.loaders.leader_by_id.load(user_id) if user_id else None
    return Leader.from_view(view) if view is not None else None


async def leader(info: Ctx, id: strawberry.ID) -> Leader | None:
    """A leader's public profile (null when there is none)."""
    return await _leader(info, pk_or_none(id, LEADER))


async def my_leader_profile(info: Ctx) -> Leader | None:
    """Your leader profile; null when you never became a leader (or are anonymous)."""
    return await _leader(info, info.context.user_id)


async def follow(info: Ctx, id: strawberry.ID) -> Follow | None:
    """One follow: yours, or one of your followers'; null otherwise."""
    pk = pk_or_none(id, FOLLOW)
    row = await info.context.loaders.follow_by_id.load(pk) if pk is not None else None
    return Follow.from_row(row) if row is not None and can_see_follow(info.context, row) else None


def _follow_connection(info: Ctx, page: Any) -> FollowConnection:
    for _, row in page.items:
        info.context.loaders.follow_by_id.prime(row.id, row)
    return to_connection(FollowConnection, page, Follow.from_row)  # type: ignore[return-value]


async def my_follows(
    info: Ctx,
    first: int = 20,
    after: str | None = None,
    status: list[FollowStatus] | None = None,
) -> FollowConnection:
    """The leaders you follow (or followed), newest first."""
    user = info.context.require_user()
    async with info.context.rt.sessions() as session:
        page = await follows.list_follows(
            session,
            follower_id=user.id,
            statuses=[domain.FollowStatus(s.value) for s in status or ()],
            first=first,
            after=after,
        )
    return _follow_connection(info, page)


async def my_followers(info: Ctx, first: int = 20, after: str | None = None) -> FollowConnection:
    """Leaders: the live (ACTIVE or PAUSED) follows of you, newest first."""
    user = info.context.require_user()
    async with info.context.rt.sessions() as session:
        page = await follows.list_followers(session, leader_id=user.id, first=first, after=after)
    return _follow_connection(info, page)


# --- leaders ------------------------------------------------------------------------------


async def _leader_payload(info: Ctx, row: LeaderRow) -> LeaderPayload:
    view = await info.context.loaders.leader_by_id.load(row.user_id)
    return LeaderPayload(leader=Leader.from_view(view))


def _profile(
    display_name: str,
    bio: str,
    profit_share_percent: Decimal,
    minimum_allocation: Decimal,
    visibility: LeaderVisibility,
) -> domain.LeaderProfile:
    return domain.LeaderProfile(
        display_name=display_name,
        bio=bio,
        profit_share_percent=profit_share_percent,
        minimum_allocation=minimum_allocation,
        visibility=domain.Visibility(visibility.value),
    )


async def _leader_result(info: Ctx, call: Any) -> Any:
    result = await attempt(call, lambda row: row)
    return await _leader_payload(info, result) if isinstance(result, LeaderRow) else result


async def become_leader(
    info: Ctx,
    display_name: str,
    profit_share_percent: Decimal,
    minimum_allocation: Decimal = Decimal(0),
    visibility: LeaderVisibility = LeaderVisibility.PUBLIC,
    bio: str = "",
) -> BecomeLeaderResult:
    """Publish a leader profile (or lead again after stopLeading). LeaderIneligible names
    the first rule you do not meet."""
    profile = _profile(display_name, bio, profit_share_percent, minimum_allocation, visibility)
    call = leaders.become_leader(info.context.rt, user_id=info.context.user_id, profile=profile)
    return await _leader_result(info, call)


async def update_leader_profile(
    info: Ctx,
    display_name: str,
    profit_share_percent: Decimal,
    minimum_allocation: Decimal = Decimal(0),
    visibility: LeaderVisibility = LeaderVisibility.PUBLIC,
    bio: str = "",
) -> UpdateLeaderProfileResult:
    """Replace your leader profile; a new minimum applies to new follows."""
    profile = _profile(display_name, bio, profit_share_percent, minimum_allocation, visibility)
    call = leaders.update_leader_profile(
        info.context.rt, user_id=info.context.user_id, profile=profile
    )
    return await _leader_result(info, call)


async def stop_leading(info: Ctx) -> StopLeadingResult:
    """Nothing more is copied; followers keep their positions and follows."""
    call = leaders.stop_leading(info.context.rt, user_id=info.context.user_id)
    return await _leader_result(info, call)


async def invite_follower(info: Ctx, user_handle_or_email: str) -> InviteFollowerResult:
    """INVITE_ONLY leaders: let this user follow you."""
    call = leaders.invite_follower(
        info.context.rt, user_id=info.context.user_id, handle_or_email=user_handle_or_email
    )
    result = await attempt(call, lambda row: row)
    if not isinstance(result, LeaderRow):
        return result
    payload = await _leader_payload(info, result)
    return InviteFollowerPayload(leader=payload.leader, invited=user_handle_or_email.strip())


# --- following ----------------------------------------------------------------------------


def _follow_payload(row: FollowRow) -> FollowPayload:
    return FollowPayload(follow=Follow.from_row(row))


async def follow_leader(
    info: Ctx,
    leader_id: strawberry.ID,
    allocation: Decimal,
    mode: FollowMode,
    fixed_amount: Decimal | None = None,
    ratio: Decimal | None = None,
    max_order_notional: Decimal | None = None,
    max_position_per_asset: Decimal | None = None,
    allowed_symbols: list[str] | None = None,
    slippage_tolerance: Decimal = domain.DEFAULT_SLIPPAGE,
    stop_loss_percent: Decimal | None = None,
    close_positions_on_stop_loss: bool = False,
    exchange_account_id: strawberry.ID | None = None,
) -> FollowLeaderResult:
    """Copy a leader's trades opened from now on. Amounts in USDT; the allocation must be
    available (no hold: copied orders hold when placed). With exchangeAccountId, the
    copies go to that connected exchange account of yours (ACTIVE), and the allocation
    must be free there."""

    async def call() -> FollowRow:
        params = domain.FollowParameters(
            allocation=allocation,
            mode=domain.FollowMode(mode.value),
            fixed_amount=fixed_amount,
            ratio=ratio,
            max_order_notional=max_order_notional,
            max_position_per_asset=max_position_per_asset,
            allowed_symbols=tuple(allowed_symbols) if allowed_symbols is not None else None,
            slippage_tolerance=slippage_tolerance,
            stop_loss_percent=stop_loss_percent,
            close_positions_on_stop_loss=close_positions_on_stop_loss,
        )
        return await follows.follow_leader(
            info.context.rt,
            user_id=info.context.user_id,
            leader_id=node_pk(leader_id, LEADER, field="leaderId"),
            params=params,
            exchange_account_id=_exchange_account(exchange_account_id),
        )

    return await attempt(call(), _follow_payload)


def _exchange_account(value: strawberry.ID | None) -> int | None:
    if value is None:
        return None
    return node_pk(str(value), EXCHANGE_ACCOUNT, field="exchangeAccountId")


_NOT_NULL = {
    "allocation": "allocation",
    "mode": "mode",
    "close_positions_on_stop_loss": "closePositionsOnStopLoss",
}


async def update_follow(
    info: Ctx,
    id: strawberry.ID,
    allocation: Decimal | None = strawberry.UNSET,
    mode: FollowMode | None = strawberry.UNSET,
    fixed_amount: Decimal | None = strawberry.UNSET,
    ratio: Decimal | None = strawberry.UNSET,
    max_order_notional: Decimal | None = strawberry.UNSET,
    max_position_per_asset: Decimal | None = strawberry.UNSET,
    allowed_symbols: list[str] | None = strawberry.UNSET,
    slippage_tolerance: Decimal | None = strawberry.UNSET,
    stop_loss_percent: Decimal | None = strawberry.UNSET,
    close_positions_on_stop_loss: bool | None = strawberry.UNSET,
    exchange_account_id: strawberry.ID | None = strawberry.UNSET,
) -> UpdateFollowResult:
    """Change the arguments you pass (null clears an optional cap; a null
    exchangeAccountId copies on the platform again); the rest stay. Checked like
    followLeader."""
    given = {
        "allocation": allocation,
        "mode": domain.FollowMode(mode.value) if isinstance(mode, FollowMode) else mode,
        "fixed_amount": fixed_amount,
        "ratio": ratio,
        "max_order_notional": max_order_notional,
        "max_position_per_asset": max_position_per_asset,
        "allowed_symbols": tuple(allowed_symbols) if allowed_symbols else allowed_symbols,
        "slippage_tolerance": slippage_tolerance,
        "stop_loss_percent": stop_loss_percent,
        "close_positions_on_stop_loss": close_positions_on_stop_loss,
    }

    async def call() -> FollowRow:
        changes = {k: v for k, v in given.items() if v is not strawberry.UNSET}
        if exchange_account_id is not strawberry.UNSET:
            changes["exchange_account_id"] = _exchange_account(exchange_account_id)
        for name, field in _NOT_NULL.items():
            if name in changes and changes[name] is None:
                raise domain.InvalidFollowParameters("Cannot be null", field=field)
        return await follows.update_follow(
            info.context.rt,
            user_id=info.context.user_id,
            follow_id=node_pk(id, FOLLOW, field="id"),
            changes=changes,
        )

    return await attempt(call(), _follow_payload)


async def pause_follow(info: Ctx, id: strawberry.ID) -> FollowStatusResult:
    """Stop copying for now; positions stay."""

    async def call() -> FollowRow:
        return await follows.pause_follow(
            info.context.rt, user_id=info.context.user_id, follow_id=node_pk(id, FOLLOW, field="id")
        )

    return await attempt(call(), _follow_payload)


async def resume_follow(info: Ctx, id: strawberry.ID) -> FollowStatusResult:
    """Copy again (also after a stop-loss pause)."""

    async def call() -> FollowRow:
        return await follows.resume_follow(
            info.context.rt, user_id=info.context.user_id, follow_id=node_pk(id, FOLLOW, field="id")
        )

    return await attempt(call(), _follow_payload)


async def unfollow_leader(
    info: Ctx, id: strawberry.ID, close_positions: bool = False
) -> UnfollowLeaderResult:
    """End the follow; with closePositions its positions are sold at market."""

    async def call() -> follows.Unfollowed:
        return await follows.unfollow_leader(
            info.context.rt,
            user_id=info.context.user_id,
            follow_id=node_pk(id, FOLLOW, field="id"),
            close_positions=close_positions,
        )

    async def payload(done: follows.Unfollowed) -> UnfollowPayload:
        return UnfollowPayload(
            follow=Follow.from_row(done.follow),
            closing_orders=await order_nodes(info, done.closing_orders),
        )

    return await attempt(call(), payload)
