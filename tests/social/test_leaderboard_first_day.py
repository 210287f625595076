"""A leader's first days on the leaderboard: with no close before the first deposit, the
statistics run from that deposit, so a first day's loss shows (negative PnL, ROI, a
drawdown) and ranks below a leader who broke even. Across UTC days: the deposit is two
days before the job's clock."""

from __future__ import annotations

from datetime import timedelta

from app.runtime import utcnow
from app.social.leaderboard import recompute_leaderboard
from tests.social.test_leaderboard import closes, make_leader, round_trips
from tests.support.money import fund

BOARD = """
query($period: LeaderboardPeriod!, $sortBy: LeaderboardSort!) {
  leaderboard(period: $period, sortBy: $sortBy, first: 10) {
    edges { node { rank pnl roi maxDrawdown leader { displayName } } }
  }
}"""


async def board(gql, period: str, sort_by: str) -> list[dict]:
    data = await gql.data(BOARD, {"period": period, "sortBy": sort_by})
    return [
        {**e["node"], "leader": e["node"]["leader"]["displayName"]}
        for e in data["leaderboard"]["edges"]
    ]


async def test_a_first_day_loss_shows_and_ranks_below_breaking_even(gql, rt):
    names = ("newbie", "loser", "flat")
    ids = {name: await make_leader(rt, name) for name in names}
    for uid in ids.values():
        await fund(rt, uid, "USDT", "1000")  # the first deposit, now (day D)
    now = utcnow() + timedelta(days=2)  # the job runs on day D + 2
    rt.clock = lambda: now
    await closes(rt, ids["newbie"], now, "800")  # one close: day D + 2
    await closes(rt, ids["loser"], now, "900", "950")  # days D + 1 and D + 2
    await closes(rt, ids["flat"], now, "1000")
    for uid in ids.values():
        await round_trips(rt, uid, now - timedelta(hours=1), wins=2, losses=1)  # ranked
    await recompute_leaderboard(rt)
    for period in ("ALL", "D7"):
        assert await board(gql, period, "PNL") == [
            {"rank": 1, "pnl": "0", "roi": "0", "maxDrawdown": "0", "leader": "flat"},
            # 1000 -> 900 (-10 %) -> 950 (+5.55 %): PnL -50, ROI -5 %
            {"rank": 2, "pnl": "-50", "roi": "-0.05", "maxDrawdown": "0.1", "leader": "loser"},
            {"rank": 3, "pnl": "-200", "roi": "-0.2", "maxDrawdown": "0.2", "leader": "newbie"},
        ], period
    assert [e["leader"] for e in await board(gql, "ALL", "ROI")] == ["flat", "loser", "newbie"]
    by_drawdown = await board(gql, "ALL", "MAX_DRAWDOWN")
    assert [e["leader"] for e in by_drawdown] == ["flat", "loser", "newbie"]
