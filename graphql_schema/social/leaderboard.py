"""Leaderboard types: the ranked connection of leaders and their statistics (see
``graphql_schema.social.statistics``)."""

from __future__ import annotations

import strawberry
from strawberry import relay
from strawberry.types import Info

from app.social.leaderboard import LeaderboardEntry as EntryRow
from graphql_schema.social.statistics import LeaderStatistics, _fields
from graphql_schema.social.types import Leader


@strawberry.type
class LeaderboardEntry(LeaderStatistics):
    rank: int = strawberry.field(description="Position in this order, from 1.")

    @strawberry.field
    async def leader(self, info: Info) -> Leader:
        view = await info.context.loaders.leader_by_id.load(self.leader_id)
        return Leader.from_view(view)

    @classmethod
    def from_entry(cls, entry: EntryRow) -> LeaderboardEntry:
        return cls(rank=entry.rank, **_fields(entry.stats))  # type: ignore[arg-type]


@strawberry.type
class LeaderboardConnection(relay.Connection[LeaderboardEntry]):
    """Ranked leaders (ACTIVE, PUBLIC, enough trades in the period), paged by cursor."""
