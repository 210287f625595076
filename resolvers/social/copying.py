"""Copy trading queries: a follow's copies and the profit share settlements."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from app.core.errors import NotFound
from app.social import copy_trading, profit_share
from graphql_schema.gateway.context import Context
from graphql_schema.ids import node_pk
from graphql_schema.paging import to_connection
from graphql_schema.social.copying import (
    CopyConnection,
    CopyNode,
    ProfitShareRole,
    ProfitShareSettlementConnection,
    ProfitShareSettlementNode,
)

Ctx = Info[Context, None]


async def copies(
    info: Ctx, follow_id: strawberry.ID, first: int = 20, after: str | None = None
) -> CopyConnection:
    """A follow's copies, newest first: each leader fill, the order placed for it and
    that order's fills, or why it was skipped. Only the follower sees them."""
    ctx = info.context
    ctx.require_user()
    pk = node_pk(follow_id, "Follow", field="followId")
    follow = await ctx.loaders.follow_by_id.load(pk)
    if follow is None or not ctx.can_see_user(follow.follower_id):
        raise NotFound("There is no such follow of yours", field="followId")
    async with ctx.rt.sessions() as session:
        page = await copy_trading.list_copies(session, follow_id=pk, first=first, after=after)
    return to_connection(CopyConnection, page, CopyNode.from_row)  # type: ignore[return-value]


async def profit_share_settlements(
    info: Ctx, first: int = 20, after: str | None = None, role: ProfitShareRole | None = None
) -> ProfitShareSettlementConnection:
    """Profit share settlements where you are the leader, the follower (``role``) or
    either, newest first."""
    user = info.context.require_user()
    async with info.context.rt.sessions() as session:
        page = await profit_share.list_settlements(
            session,
            user_id=user.id,
            role=role.value if role else None,
            first=first,
            after=after,
        )
    return to_connection(  # type: ignore[return-value]
        ProfitShareSettlementConnection, page, ProfitShareSettlementNode.from_row
    )
