"""Social trading queries and mutations: parse, call one service, map."""

from __future__ import annotations

import strawberry
from strawberry.relay.types import GlobalIDValueError
from strawberry.types import Info

from graphql_schema.context import Context
from graphql_schema.social import Leader

Ctx = Info[Context, None]
LEADER = "Leader"


def _pk_or_none(global_id: str, type_name: str) -> int | None:
    try:
        parsed = strawberry.relay.GlobalID.from_id(global_id)
    except GlobalIDValueError:
        return None
    if parsed.type_name != type_name or not parsed.node_id.isdigit():
        return None
    return int(parsed.node_id)


async def leader(info: Ctx, id: strawberry.ID) -> Leader | None:
    """A leader's public profile (null when there is none)."""
    pk = _pk_or_none(id, LEADER)
    view = await info.context.loaders.leader_by_id.load(pk) if pk is not None else None
    return Leader.from_view(view) if view is not None else None


async def my_leader_profile(info: Ctx) -> Leader | None:
    """Your leader profile; null when you never became a leader (or are anonymous)."""
    user_id = info.context.user_id
    view = await info.context.loaders.leader_by_id.load(user_id) if user_id else None
    return Leader.from_view(view) if view is not None else None
