"""Social trading types: leaders, follows and their statistics, the inputs and payloads
of the social mutations.

Amounts are ``Decimal`` strings in the follow's quote currency (USDT)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from enum import Enum

import strawberry
from strawberry import relay
from strawberry.types import Info

from app.services.leaders import LeaderView


@strawberry.enum
class LeaderVisibility(Enum):
    PUBLIC = "PUBLIC"
    INVITE_ONLY = "INVITE_ONLY"


@strawberry.enum
class LeaderStatus(Enum):
    ACTIVE = "ACTIVE"
    STOPPED = "STOPPED"


def _ids(node_ids: Iterable[str]) -> list[int]:
    return [int(i) if i.isdigit() else 0 for i in node_ids]


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

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Leader | None]:
        views = await info.context.loaders.leader_by_id.load_many(_ids(node_ids))
        return [cls.from_view(v) if v is not None else None for v in views]
