"""Leader statistics types: a leader's statistics over a period, and the periods and
orders they are ranked by.

Ratios are ``Decimal`` fractions (0.25 is 25 %), PnL in USD, assets under copy in the
follows' quote currency (USDT). See app/social/leaderboard.py for how each is computed."""

from __future__ import annotations

from decimal import Decimal

import strawberry

from app.social.domain.leaderboard import Period
from app.social.leaderboard import LeaderStats, SortBy
from graphql_schema.enums import derived_enum

LeaderboardPeriod = derived_enum(Period, name="LeaderboardPeriod")
LeaderboardSort = derived_enum(SortBy, name="LeaderboardSort")


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
