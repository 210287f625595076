"""The leaderboard job over seeded equity snapshots and fills, and the ``leaderboard``
query through GraphQL: ranking per sort, who is ranked, caching and invalidation."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from itertools import count
from typing import Any

import pytest

from app.runtime import Runtime, utcnow
from app.social.leaderboard import recompute_leaderboard
from db.raw import driver
from tests.support import gid
from tests.support.money import fund
from tests.support.trading import funded_user, market_id, rows, scalar

LEADERBOARD = """
query($period: LeaderboardPeriod! = ALL, $sortBy: LeaderboardSort! = ROI, $first: Int! = 5,
      $after: String) {
  leaderboard(period: $period, sortBy: $sortBy, first: $first, after: $after) {
    edges { cursor node { rank roi pnl winRate maxDrawdown sharpe sortino followers
                          assetsUnderCopy trades leader { id displayName } } }
    pageInfo { hasNextPage hasPreviousPage endCursor }
  }
}
"""
NAMES_ONLY = """
query($sortBy: LeaderboardSort! = ROI, $first: Int! = 5, $after: String) {
  leaderboard(sortBy: $sortBy, first: $first, after: $after) {
    edges { cursor node { rank leader { displayName } } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
_trade_ids = count(1)


async def write(rt: Runtime, sql: str, *args: Any) -> Any:
    """Run one statement in its own committed transaction; its first value."""
    async with rt.sessions() as session, session.begin():
        return await (await driver(session)).fetchval(sql, *args)


async def make_leader(
    rt: Runtime, name: str, *, status: str = "ACTIVE", visibility: str = "PUBLIC"
) -> int:
    uid = await funded_user(rt, name)
    await write(
        rt,
        "INSERT INTO leaders (user_id, display_name, profit_share_percent, minimum_allocation,"
        " visibility, status) VALUES ($1, $2, 10, 0, $3, $4) RETURNING user_id",
        uid,
        name,
        visibility,
        status,
    )
    return uid


async def closes(rt: Runtime, uid: int, now: datetime, *equities: str) -> None:
    """One snapshot per day, the last at ``now``, plus an earlier one each day that the
    close (the day's last) must win over: earlier the same UTC day, whatever the time
    (3 h before, or halfway since midnight when that is nearer: at 00:10 a snapshot 3 h
    before would be the previous day's last, its close)."""
    days = len(equities)
    for i, equity in enumerate(equities):
        at = now - timedelta(days=days - 1 - i)
        midnight = at.replace(hour=0, minute=0, second=0, microsecond=0)
        earlier = max(at - timedelta(hours=3), midnight + (at - midnight) / 2)
        for taken_at, value in ((earlier, "1"), (at, equity)):
            await write(
                rt,
                "INSERT INTO equity_snapshots (user_id, taken_at, equity_usd) VALUES ($1, $2, $3)"
                " RETURNING 1",
                uid,
                taken_at,
                Decimal(value),
            )


async def round_trips(rt: Runtime, uid: int, at: datetime, *, wins: int, losses: int) -> None:
    """Per win: BUY 1 @ 100 then SELL 1 @ 110; per loss: SELL at 90 (2 fills each)."""
    market = await market_id(rt)
    order = await write(
        rt,
        "INSERT INTO orders (user_id, market_id, client_order_id, request_hash, side, type,"
        " time_in_force, status, quantity, book_price) VALUES ($1, $2, $3, '-', 'BUY', 'LIMIT',"
        " 'GTC', 'FILLED', 1000, 100) RETURNING id",
        uid,
        market,
        f"seed-{next(_trade_ids)}",
    )
    entry = await write(rt, "INSERT INTO journal_entries (kind) VALUES ('TRADE') RETURNING id")
    prices = ["110"] * wins + ["90"] * losses
    for price in prices:
        for side, quote in (("BUY", "100"), ("SELL", price)):
            await write(
                rt,
                "INSERT INTO fills (market_id, trade_id, seq, order_id, user_id, side, liquidity,"
                " price, quantity, quote_amount, fee, fee_currency, entry_id, created_at)"
                " VALUES ($1, $2, 1, $3, $4, $5, 'MAKER', $6, 1, $6, 0, 'USDT', $7, $8)"
                " RETURNING id",
                market,
                next(_trade_ids),
                order,
                uid,
                side,
                Decimal(quote),
                entry,
                at,
            )


async def follow(rt: Runtime, leader: int, allocation: str, status: str = "ACTIVE") -> None:
    follower = await funded_user(rt, f"follower{next(_trade_ids)}")
    await write(
        rt,
        "INSERT INTO follows (follower_id, leader_id, mode, allocation, fixed_amount, status)"
        " VALUES ($1, $2, 'FIXED_AMOUNT', $3, 10, $4) RETURNING id",
        follower,
        leader,
        Decimal(allocation),
        status,
    )


@pytest.fixture
async def board(rt: Runtime) -> dict[str, int]:
    """Three ranked leaders with different strengths, one below the minimum of trades,
    one STOPPED and one INVITE_ONLY (both would rank first by ROI). Alpha's last day
    includes a 1,000 USDT deposit that must not count as profit."""
    ids = {
        "alpha": await make_leader(rt, "alpha"),
        "bravo": await make_leader(rt, "bravo"),
        "charlie": await make_leader(rt, "charlie"),
        "delta": await make_leader(rt, "delta"),
        "stopped": await make_leader(rt, "stopped", status="STOPPED"),
        "private": await make_leader(rt, "private", visibility="INVITE_ONLY"),
    }
    await fund(rt, ids["alpha"], "USDT", "1000")  # the deposit, now
    now = utcnow() + timedelta(seconds=1)
    rt.clock = lambda: now
    # returns: alpha +10 %, +5 %, +10 %; bravo -10 %, +10 %, +5 %;
    # charlie +2 %, -1.96 %, +5 %; delta +100 %, 0, 0
    await closes(rt, ids["alpha"], now, "1000", "1100", "1155", "2270.5")  # 1270.5 + 1000
    await closes(rt, ids["bravo"], now, "10000", "9000", "9900", "10395")
    await closes(rt, ids["charlie"], now, "1000", "1020", "1000", "1050")
    for name in ("delta", "stopped", "private"):
        await closes(rt, ids[name], now, "1000", "2000", "2000", "2000")
    day_ago = now - timedelta(hours=20)
    await round_trips(rt, ids["alpha"], day_ago, wins=2, losses=1)  # 6 trades, 2/3
    await round_trips(rt, ids["bravo"], day_ago, wins=1, losses=2)  # 6 trades, 1/3
    await round_trips(rt, ids["charlie"], day_ago, wins=2, losses=1)  # 6 trades ...
    await round_trips(rt, ids["charlie"], day_ago, wins=0, losses=1)  # ... +2: 8, 2/4
    await round_trips(rt, ids["delta"], day_ago, wins=2, losses=0)  # 4 trades: not ranked
    for name in ("stopped", "private"):
        await round_trips(rt, ids[name], day_ago, wins=3, losses=0)
    await follow(rt, ids["alpha"], "500")
    await follow(rt, ids["bravo"], "100")
    await follow(rt, ids["bravo"], "200", status="PAUSED")
    await follow(rt, ids["charlie"], "1000", status="STOPPED")  # not live: not counted
    return ids


async def names(gql, sort_by: str, first: int = 5, **variables) -> list[str]:
    data = await gql.data(NAMES_ONLY, {"sortBy": sort_by, "first": first, **variables})
    return [e["node"]["leader"]["displayName"] for e in data["leaderboard"]["edges"]]


async def test_the_job_ranks_leaders_by_each_statistic(gql, rt, board):
    assert await recompute_leaderboard(rt) == 6 * 4  # every leader, every period
    expected = {
        "ROI": ["alpha", "charlie", "bravo"],  # 0.2169, 0.05, 0.0395
        "PNL": ["bravo", "alpha", "charlie"],  # 395, 270.5, 50
        "WIN_RATE": ["alpha", "charlie", "bravo"],  # 2/3, 2/4, 1/3
        "SHARPE": ["alpha", "charlie", "bravo"],  # 46.49, 9.19, 3.06
        "SORTINO": ["charlie", "bravo", "alpha"],  # 28.35, 5.52, null (no losing day)
        "MAX_DRAWDOWN": ["alpha", "charlie", "bravo"],  # 0, 0.0196, 0.1 (smallest first)
        "FOLLOWERS": ["bravo", "alpha", "charlie"],  # 2 (ACTIVE + PAUSED), 1, 0
        "AUM": ["alpha", "bravo", "charlie"],  # 500, 300, 0
    }
    for sort_by, order in expected.items():
        assert await names(gql, sort_by) == order, sort_by


async def test_entries_carry_the_statistics_and_a_deposit_is_not_profit(gql, rt, board):
    await recompute_leaderboard(rt)
    data = await gql.data(LEADERBOARD, {"sortBy": "ROI", "first": 1})
    (edge,) = data["leaderboard"]["edges"]
    node = edge["node"]
    # alpha: 1000 -> 1100 -> 1155 -> 1270.5 by trading, + 1000 deposited on the last day.
    # PnL = 2270.5 - 1000 - 1000 = 270.5 (not 1270.5). The deposit counts as capital from
    # the start of its day: last return (2270.5 - 1155 - 1000) / (1155 + 1000) = 115.5/2155,
    # ROI = 1.1 x 1.05 x 2270.5/2155 - 1 = 2622.4275/2155 - 1 = 0.2169037122969837587...
    assert node["roi"] == "0.216903712296983759" and node["pnl"] == "270.5"
    assert node["winRate"] == "0.666666666666666667"  # 2 winning sells of 3
    assert (node["maxDrawdown"], node["sortino"], node["trades"]) == ("0", None, 6)
    # returns 0.1, 0.05, 0.053596287703...: mean 0.067865429234, sample sd 0.027864...,
    # x sqrt(365) = 46.4929629200672648...
    assert node["sharpe"] == "46.492962920067264895"
    assert (node["followers"], node["assetsUnderCopy"], node["rank"]) == (1, "500", 1)
    assert node["leader"]["displayName"] == "alpha"
    assert data["leaderboard"]["pageInfo"]["hasNextPage"] is True


async def test_below_minimum_trades_stopped_and_invite_only_leaders_are_not_listed(gql, rt, board):
    """delta has 4 trades (< LEADERBOARD_MIN_TRADES = 5): computed but not ranked. A
    STOPPED leader takes no followers and an INVITE_ONLY one is not public: neither is
    advertised, whatever their figures."""
    await recompute_leaderboard(rt)
    for period in ("D7", "D30", "D90", "ALL"):
        data = await gql.data(LEADERBOARD, {"period": period})
        listed = [e["node"]["leader"]["displayName"] for e in data["leaderboard"]["edges"]]
        assert sorted(listed) == ["alpha", "bravo", "charlie"], period
    delta = await rows(
        rt, "SELECT ranked, trades, roi FROM leader_stats WHERE leader_id = $1", board["delta"]
    )
    assert {(r["ranked"], r["trades"], r["roi"]) for r in delta} == {(False, 4, Decimal(1))}


async def test_periods_use_the_days_they_cover(gql, rt, board):
    """In D7 only the trades of the last 7 days count: older ones make alpha unranked."""
    await write(
        rt,
        "UPDATE fills SET created_at = created_at - interval '10 days' WHERE user_id = $1",
        board["alpha"],
    )
    await recompute_leaderboard(rt)
    assert await names(gql, "ROI") == ["alpha", "charlie", "bravo"]  # ALL
    d7 = await gql.data(NAMES_ONLY.replace("sortBy: $sortBy", "period: D7, sortBy: $sortBy"))
    assert [e["node"]["leader"]["displayName"] for e in d7["leaderboard"]["edges"]] == [
        "charlie",
        "bravo",
    ]


async def test_cursor_paging_continues_the_ranking(gql, rt, board):
    await recompute_leaderboard(rt)
    first = await gql.data(NAMES_ONLY, {"sortBy": "PNL", "first": 2})
    page = first["leaderboard"]
    assert [e["node"]["rank"] for e in page["edges"]] == [1, 2]
    assert page["pageInfo"]["hasNextPage"] is True
    rest = await gql.data(
        NAMES_ONLY, {"sortBy": "PNL", "first": 2, "after": page["pageInfo"]["endCursor"]}
    )
    edges = rest["leaderboard"]["edges"]
    assert [(e["node"]["rank"], e["node"]["leader"]["displayName"]) for e in edges] == [
        (3, "charlie")
    ]
    assert rest["leaderboard"]["pageInfo"]["hasNextPage"] is False
    # nulls last, then by leader id: alpha's null Sortino is the last page
    sortino = await gql.data(NAMES_ONLY, {"sortBy": "SORTINO", "first": 2})
    after = sortino["leaderboard"]["pageInfo"]["endCursor"]
    assert await names(gql, "SORTINO", first=5, after=after) == ["alpha"]


@pytest.mark.parametrize(
    "variables",
    [
        {"first": 101},
        {"first": -1},
        {"after": "!!notacursor"},
        {"after": "WyJBTEwiLCAiUk9JIiwgMSwgIjEiLCAxXQ=="},  # ["ALL","ROI",1,"1",1] for PNL
    ],
)
async def test_bad_paging_arguments_are_typed_errors(gql, rt, variables):
    body = await gql(NAMES_ONLY, {"sortBy": "PNL", **variables})
    assert body["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED"
    assert body["errors"][0]["extensions"]["field"] in {"first", "after"}


async def _cache_keys(rt: Runtime) -> list[bytes]:
    pattern = rt.redis_key("leaderboard", "*", "*", "*", "*", "*")
    return [key async for key in rt.redis.scan_iter(match=pattern)]


async def test_cached_and_uncached_answers_are_equal(gql, rt, board, sql_statements):
    await recompute_leaderboard(rt)
    for sort_by in ("ROI", "SORTINO", "FOLLOWERS"):
        variables = {"sortBy": sort_by, "first": 2}
        sql_statements.reset()
        uncached = await gql.data(LEADERBOARD, variables)
        with_query = sql_statements.count
        cached = await gql.data(LEADERBOARD, variables)
        assert cached == uncached
        # the cached answer skips the leaderboard statement (leaders still load)
        assert sql_statements.count - with_query == with_query - 1
        after = uncached["leaderboard"]["pageInfo"]["endCursor"]
        next_uncached = await gql.data(LEADERBOARD, {**variables, "after": after})
        assert await gql.data(LEADERBOARD, {**variables, "after": after}) == next_uncached
    assert len(await _cache_keys(rt)) == 6


async def test_a_recompute_invalidates_the_cache(gql, rt, board):
    await recompute_leaderboard(rt)
    before = await names(gql, "ROI")
    assert before == ["alpha", "charlie", "bravo"]
    # charlie's equity doubles on a new close; until the job runs, the cached page stays
    later = rt.now() + timedelta(minutes=1)
    rt.clock = lambda: later
    await write(
        rt,
        "INSERT INTO equity_snapshots (user_id, taken_at, equity_usd) VALUES ($1, $2, 2100)"
        " RETURNING 1",
        board["charlie"],
        later,
    )
    assert await names(gql, "ROI") == before
    await recompute_leaderboard(rt)
    assert await names(gql, "ROI") == ["charlie", "alpha", "bravo"]  # ROI 1.1 now


async def test_statement_count_does_not_grow_with_page_size(gql, rt, board, sql_statements):
    await recompute_leaderboard(rt)
    counts = []
    for first in (1, 3):
        await rt.redis.incr(rt.redis_key("leaderboard", "generation"))  # uncached each time
        sql_statements.reset()
        data = await gql.data(LEADERBOARD, {"sortBy": "PNL", "first": first})
        assert len(data["leaderboard"]["edges"]) == first
        counts.append(sql_statements.count)
    assert counts[0] == counts[1]


async def test_the_job_writes_every_leader_once_per_period_and_again_on_rerun(rt, board):
    assert await recompute_leaderboard(rt) == 24
    assert await recompute_leaderboard(rt) == 24
    assert await scalar(rt, "SELECT count(*) FROM leader_stats") == 24
    charlie = await rows(
        rt,
        "SELECT period, win_rate, followers, aum FROM leader_stats WHERE leader_id = $1",
        board["charlie"],
    )
    # 2 winning sells of 4 closing; its only follow is STOPPED
    assert {(r["win_rate"], r["followers"], r["aum"]) for r in charlie} == {
        (Decimal("0.5"), 0, Decimal(0))
    }


LEADER_STATS = """
query($id: ID!) { leader(id: $id) { displayName
  week: statistics(period: D7) { period roi pnl trades ranked followers assetsUnderCopy }
  all: statistics { period trades ranked } } }
"""


async def test_a_leader_shows_its_statistics_ranked_or_not(gql, rt, board):
    delta = gid("Leader", board["delta"])
    before = await gql.data(LEADER_STATS, {"id": delta})
    assert before["leader"]["week"] is None  # the job has not run yet
    await recompute_leaderboard(rt)
    data = (await gql.data(LEADER_STATS, {"id": delta}))["leader"]
    # 1000 -> 2000 -> 2000 -> 2000: ROI 1, PnL 1000; 4 trades < 5: not ranked
    assert data["week"] == {
        "period": "D7",
        "roi": "1",
        "pnl": "1000",
        "trades": 4,
        "ranked": False,
        "followers": 0,
        "assetsUnderCopy": "0",
    }
    assert data["all"] == {"period": "ALL", "trades": 4, "ranked": False}
