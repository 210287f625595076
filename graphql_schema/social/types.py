"""Social trading types: leaders, follows and their statistics, the inputs and payloads
of the social mutations.

Amounts are ``Decimal`` strings in the follow's quote currency (USDT)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, TypeAlias

import strawberry
from strawberry import relay
from strawberry.types import Info

from app.social.domain import social
from app.social.domain.leaderboard import Period
from app.social.follows import FollowStatistics as StatisticsView
from app.social.leaders import LeaderView
from db.models import Follow as FollowRow
from graphql_schema.enums import derived_enum
from graphql_schema.errors import (
    AlreadyFollowing,
    AlreadyLeader,
    BelowMinimumAllocation,
    CannotFollowSelf,
    FollowStatusConflict,
    InsufficientFunds,
    InvalidFollowParameters,
    InviteRequired,
    LeaderCannotFollow,
    LeaderIneligible,
    LeaderNotInviteOnly,
    LeaderStopped,
    NotALeader,
    NotAuthenticated,
    NotFound,
    ProfitShareOutOfRange,
    RecipientNotFound,
    UnknownMarket,
    ValidationFailed,
)
from graphql_schema.ids import node_keys
from graphql_schema.social.statistics import LeaderboardPeriod, LeaderStatistics
from graphql_schema.trading.types import OrderNode
from graphql_schema.wallets.types import amount_in

LeaderVisibility = derived_enum(social.Visibility, name="LeaderVisibility")
LeaderStatus = derived_enum(social.LeaderStatus, name="LeaderStatus")


@strawberry.type(name="Leader")
class Leader(relay.Node):
    """A trader others can follow. Its id is the leader's user id. STOPPED: no new copies
    (followers keep their positions)."""

    id: relay.NodeID[int]
    display_name: str
    bio: str
    profit_share_percent: Decimal = strawberry.field(
        description="The leader's share of a follower's realized profit, 0 to 30 (%)."
    )
    minimum_allocation: Decimal = strawberry.field(description="The smallest allocation (USDT).")
    visibility: LeaderVisibility
    status: LeaderStatus
    created_at: datetime
    follower_count: int = strawberry.field(description="Follows ACTIVE or PAUSED.")
    assets_under_copy: Decimal = strawberry.field(
        description="The sum of those follows' allocations (USDT)."
    )

    @classmethod
    def from_view(cls, view: LeaderView) -> Leader:
        row = view.row
        return cls(
            id=row.user_id,
            display_name=row.display_name,
            bio=row.bio,
            profit_share_percent=row.profit_share_percent.normalize(),
            minimum_allocation=row.minimum_allocation.normalize(),
            visibility=LeaderVisibility(row.visibility),
            status=LeaderStatus(row.status),
            created_at=row.created_at,
            follower_count=view.follower_count,
            assets_under_copy=view.assets_under_copy.normalize(),
        )

    @strawberry.field(
        description="Figures over a period as the leaderboard job last computed them; "
        "null before its first run."
    )
    async def statistics(
        self, info: Info, period: LeaderboardPeriod = LeaderboardPeriod.ALL
    ) -> LeaderStatistics | None:
        key = (self.id, Period(period.value))
        stats = await info.context.loaders.leader_stats_by_key.load(key)
        return LeaderStatistics.from_stats(stats) if stats is not None else None

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Leader | None]:
        views = await info.context.loaders.leader_by_id.load_many(node_keys(node_ids))
        return [cls.from_view(v) if v is not None else None for v in views]


FollowMode = derived_enum(
    social.FollowMode,
    name="FollowMode",
    values={
        "FIXED_AMOUNT": "fixedAmount per order.",
        "FIXED_RATIO": "ratio x leader quantity.",
        "EQUITY_PROPORTIONAL": "The fraction of the allocation the leader used of their equity.",
    },
)


FollowStatus = derived_enum(social.FollowStatus, name="FollowStatus")


@strawberry.type
class FollowParameters:
    """Sizing and caps; amounts in ``quote``."""

    quote: str
    allocation: Decimal
    mode: FollowMode
    fixed_amount: Decimal | None
    ratio: Decimal | None
    max_order_notional: Decimal | None
    max_position_per_asset: Decimal | None = strawberry.field(
        description="The most one asset may be worth, at cost."
    )
    allowed_symbols: list[str] | None = strawberry.field(description="Null: every market.")
    slippage_tolerance: Decimal = strawberry.field(
        description="A fraction of the leader's price, 0 to 0.1."
    )
    stop_loss_percent: Decimal | None = strawberry.field(
        description="Pause when the loss reaches this % of the allocation."
    )
    close_positions_on_stop_loss: bool


@strawberry.type
class SkipCount:
    reason: str
    count: int


@strawberry.type
class FollowStatistics:
    """Amounts in the follow's quote currency."""

    copied_count: int
    skipped_count: int
    skipped_by_reason: list[SkipCount]
    allocation_used: Decimal = strawberry.field(description="Cost of the open positions.")
    realized_pnl: Decimal
    unrealized_pnl: Decimal = strawberry.field(description="At the markets' last prices.")
    pnl: Decimal
    roi: Decimal | None = strawberry.field(description="pnl / allocation.")
    fidelity: Decimal | None = strawberry.field(
        description="roi divided by the leader's return since the follow started (equity "
        "snapshots); null when that is unknown or zero."
    )

    @classmethod
    def from_view(cls, view: StatisticsView, quote: str) -> FollowStatistics:
        return cls(
            copied_count=view.copied,
            skipped_count=view.skipped,
            skipped_by_reason=[SkipCount(reason=r, count=n) for r, n in view.skipped_by_reason],
            allocation_used=amount_in(quote, view.allocation_used),
            realized_pnl=amount_in(quote, view.realized_pnl),
            unrealized_pnl=amount_in(quote, view.unrealized_pnl),
            pnl=amount_in(quote, view.pnl),
            roi=_plain(view.roi) if view.roi is not None else None,
            fidelity=_plain(view.fidelity) if view.fidelity is not None else None,
        )


def _exchange_account_gid(pk: int | None) -> strawberry.ID | None:
    return None if pk is None else strawberry.ID(str(relay.GlobalID("ExchangeAccount", str(pk))))


def _plain(value: Decimal) -> Decimal:
    return value.normalize() if value else Decimal(0)


def _optional(value: Decimal | None) -> Decimal | None:
    return None if value is None else _plain(value)


@strawberry.type(name="Follow")
class Follow(relay.Node):
    """One follower copying one leader. Visible to the follower and the leader."""

    id: relay.NodeID[int]
    status: FollowStatus
    pause_reason: str | None = strawberry.field(description="USER or STOP_LOSS when PAUSED.")
    mode: FollowMode
    parameters: FollowParameters
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    exchange_account_id: strawberry.ID | None = strawberry.field(
        description="The ExchangeAccount of yours its copies go to; null: the platform."
    )
    leader_id: strawberry.Private[int]
    follower_id: strawberry.Private[int]

    @strawberry.field
    async def leader(self, info: Info) -> Leader:
        view = await info.context.loaders.leader_by_id.load(self.leader_id)
        return Leader.from_view(view)

    @strawberry.field(description="The follower's display name.")
    async def follower_name(self, info: Info) -> str:
        user = await info.context.loaders.user_by_id.load(self.follower_id)
        return user.display_name if user is not None else ""

    @strawberry.field
    async def statistics(self, info: Info) -> FollowStatistics:
        view = await info.context.loaders.follow_statistics_by_id.load(self.id)
        return FollowStatistics.from_view(view, self.parameters.quote)

    @classmethod
    def from_row(cls, row: FollowRow) -> Follow:
        mode = FollowMode(row.mode)
        return cls(
            id=row.id,
            status=FollowStatus(row.status),
            pause_reason=row.pause_reason,
            mode=mode,
            parameters=FollowParameters(
                quote=row.quote,
                allocation=_plain(row.allocation),
                mode=mode,
                fixed_amount=_optional(row.fixed_amount),
                ratio=_optional(row.ratio),
                max_order_notional=_optional(row.max_order_notional),
                max_position_per_asset=_optional(row.max_position_per_asset),
                allowed_symbols=list(row.allowed_symbols) if row.allowed_symbols else None,
                slippage_tolerance=_plain(row.slippage_tolerance),
                stop_loss_percent=_optional(row.stop_loss_percent),
                close_positions_on_stop_loss=row.close_on_stop_loss,
            ),
            created_at=row.created_at,
            updated_at=row.updated_at,
            ended_at=row.ended_at,
            exchange_account_id=_exchange_account_gid(row.exchange_account_id),
            leader_id=row.leader_id,
            follower_id=row.follower_id,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Follow | None]:
        ctx = info.context
        rows = await ctx.loaders.follow_by_id.load_many(node_keys(node_ids))
        return [cls.from_row(r) if r is not None and can_see_follow(ctx, r) else None for r in rows]


def can_see_follow(ctx: Any, row: FollowRow) -> bool:
    """The follower and the leader (and admins) see a follow."""
    return ctx.can_see_user(row.follower_id) or ctx.user_id == row.leader_id


@strawberry.type
class FollowConnection(relay.Connection[Follow]):
    """Follows, newest first, paged by keyset cursor."""


# --- payloads -----------------------------------------------------------------------------


@strawberry.type
class LeaderPayload:
    leader: Leader


@strawberry.type
class InviteFollowerPayload:
    leader: Leader
    invited: str = strawberry.field(description="The handle or email you invited.")


@strawberry.type
class FollowPayload:
    follow: Follow


@strawberry.type
class UnfollowPayload:
    follow: Follow
    closing_orders: list[OrderNode] = strawberry.field(
        description="Orders selling the follow's positions (closePositions: true)."
    )


# --- results ------------------------------------------------------------------------------

_PROFILE_ERRORS = ValidationFailed | NotAuthenticated | ProfitShareOutOfRange
BecomeLeaderResult: TypeAlias = Annotated[
    LeaderPayload | _PROFILE_ERRORS | LeaderIneligible | AlreadyLeader,
    strawberry.union("BecomeLeaderResult"),
]
UpdateLeaderProfileResult: TypeAlias = Annotated[
    LeaderPayload | _PROFILE_ERRORS | NotALeader, strawberry.union("UpdateLeaderProfileResult")
]
StopLeadingResult: TypeAlias = Annotated[
    LeaderPayload | NotAuthenticated | NotALeader, strawberry.union("StopLeadingResult")
]
InviteFollowerResult: TypeAlias = Annotated[
    InviteFollowerPayload
    | ValidationFailed
    | NotAuthenticated
    | NotALeader
    | LeaderNotInviteOnly
    | RecipientNotFound,
    strawberry.union("InviteFollowerResult"),
]
_PARAMETER_ERRORS = (
    ValidationFailed
    | NotAuthenticated
    | InvalidFollowParameters
    | UnknownMarket
    | BelowMinimumAllocation
    | InsufficientFunds
)
FollowLeaderResult: TypeAlias = Annotated[
    FollowPayload
    | _PARAMETER_ERRORS
    | CannotFollowSelf
    | NotALeader
    | InviteRequired
    | LeaderStopped
    | AlreadyFollowing
    | LeaderCannotFollow
    | NotFound,
    strawberry.union("FollowLeaderResult"),
]
UpdateFollowResult: TypeAlias = Annotated[
    FollowPayload | _PARAMETER_ERRORS | NotFound | FollowStatusConflict,
    strawberry.union("UpdateFollowResult"),
]
FollowStatusResult: TypeAlias = Annotated[
    FollowPayload
    | ValidationFailed
    | NotAuthenticated
    | NotFound
    | FollowStatusConflict
    | LeaderStopped,
    strawberry.union("FollowStatusResult"),
]
UnfollowLeaderResult: TypeAlias = Annotated[
    UnfollowPayload | ValidationFailed | NotAuthenticated | NotFound | FollowStatusConflict,
    strawberry.union("UnfollowLeaderResult"),
]
