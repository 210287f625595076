"""The leaderboard query: parse, call one service, map."""

from __future__ import annotations

from strawberry.types import Info

from app.social import leaderboard
from app.social.domain.leaderboard import Period
from graphql_schema.gateway.context import Context
from graphql_schema.paging import to_connection
from graphql_schema.social.leaderboard import LeaderboardConnection, LeaderboardEntry
from graphql_schema.social.statistics import LeaderboardPeriod, LeaderboardSort

Ctx = Info[Context, None]


async def leaderboard_query(
    info: Ctx,
    period: LeaderboardPeriod = LeaderboardPeriod.ALL,
    sort_by: LeaderboardSort = LeaderboardSort.ROI,
    first: int = 20,
    after: str | None = None,
) -> LeaderboardConnection:
    """Leaders with enough trades in the period, ranked (MAX_DRAWDOWN: smallest first;
    the others: largest first; nulls last; ties by leader). Recomputed periodically."""
    page = await leaderboard.leaderboard_page(
        info.context.rt,
        period=Period(period.value),
        sort_by=leaderboard.SortBy(sort_by.value),
        first=first,
        after=after,
    )
    return to_connection(LeaderboardConnection, page, LeaderboardEntry.from_entry)  # type: ignore[return-value]
