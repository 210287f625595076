"""Leaders: the profile a user publishes so others can follow (and copy) them.

Reads here; the write path (become, update, stop, invite) follows below the reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Follow, Leader

LIVE_FOLLOW = ("ACTIVE", "PAUSED")


@dataclass(frozen=True)
class LeaderView:
    """A leader's row with its live followers (follows ACTIVE or PAUSED) and the assets
    under copy (the sum of their allocations, in the follows' quote currency)."""

    row: Leader
    follower_count: int
    assets_under_copy: Decimal


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
