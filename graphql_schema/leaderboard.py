"""Leaderboard types: a leader's statistics over a period, and the ranked connection.

Ratios are ``Decimal`` fractions (0.25 is 25 %), PnL in USD, assets under copy in the
follows' quote currency (USDT). See app/services/leaderboard.py for how each is computed."""

from __future__ import annotations

from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry import relay
from strawberry.types import Info

from app.services.leaderboard import LeaderboardEntry as EntryRow
from app.services.leaderboard import LeaderStats

if TYPE_CHECKING:
    from graphql_schema.social import Leader


@strawberry.enum
class LeaderboardPeriod(Enum):
    D7 = "D7"
    D30 = "D30"
    D90 = "D90"
    ALL = "ALL"


@strawberry.enum
class LeaderboardSort(Enum):
    ROI = "ROI"
    PNL = "PNL"
    WIN_RATE = "WIN_RATE"
    SHARPE = "SHARPE"
    SORTINO = "SORTINO"
    MAX_DRAWDOWN = "MAX_DRAWDOWN"
    FOLLOWERS = "FOLLOWERS"
    AUM = "AUM"


@strawberry.type
class LeaderStatistics:
    """A leader's figures over one period, as last computed by the leaderboard job."""

    period: LeaderboardPeriod
    roi: Decimal | None = strawberry.field(
        description="Compounded daily returns (deposits and withdrawals removed); null "
        "without two daily closes."
    )
    pnl: Decimal = strawberry.field(description="Equity change minus net deposits (USD).")
    win_rate: Decimal | None = strawberry.field(
        description="Winning closing trades / closing trades; null without any."
    )
    max_drawdown: Decimal | None = strawberry.field(
        description="The largest fall from a peak of the return curve, a fraction."
    )
    sharpe: Decimal | None = strawberry.field(description="Annualised (x sqrt 365).")
    sortino: Decimal | None = strawberry.field(description="Annualised (x sqrt 365).")
    followers: int = strawberry.field(description="Follows ACTIVE or PAUSED.")
    assets_under_copy: Decimal = strawberry.field(description="Their allocations (USDT).")
    trades: int = strawberry.field(description="Fills in the period.")
    ranked: bool = strawberry.field(
        description="Enough trades in the period to appear on the leaderboard."
    )
    leader_id: strawberry.Private[int]

    @classmethod
    def from_stats(cls, s: LeaderStats) -> LeaderStatistics:
        return cls(**_fields(s))


def _fields(s: LeaderStats) -> dict[str, object]:
    def plain(value: Decimal | None) -> Decimal | None:
        return None if value is None else value.normalize()

    return {
        "period": LeaderboardPeriod(s.period.value),
        "roi": plain(s.roi),
        "pnl": s.pnl.normalize(),
        "win_rate": plain(s.win_rate),
        "max_drawdown": plain(s.max_drawdown),
        "sharpe": plain(s.sharpe),
        "sortino": plain(s.sortino),
        "followers": s.followers,
        "assets_under_copy": s.aum.normalize(),
        "trades": s.trades,
        "ranked": s.ranked,
        "leader_id": s.leader_id,
    }


@strawberry.type
class LeaderboardEntry(LeaderStatistics):
    rank: int = strawberry.field(description="Position in this order, from 1.")

    @strawberry.field
    async def leader(
        self, info: Info
    ) -> Annotated[Leader, strawberry.lazy("graphql_schema.social")]:
        from graphql_schema.social import Leader

        view = await info.context.loaders.leader_by_id.load(self.leader_id)
        return Leader.from_view(view)

    @classmethod
    def from_entry(cls, entry: EntryRow) -> LeaderboardEntry:
        return cls(rank=entry.rank, **_fields(entry.stats))  # type: ignore[arg-type]


@strawberry.type
class LeaderboardConnection(relay.Connection[LeaderboardEntry]):
    """Ranked leaders (ACTIVE, PUBLIC, enough trades in the period), paged by cursor."""
