"""Following through GraphQL: every bad input is a typed error that changes nothing,
pause/resume/unfollow (with closing positions), who sees a follow, and the copy
statistics checked against hand-computed numbers with a constant statement count."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import update

from app.social.domain.social import (
    FollowMode,
    FollowParameters,
    InvalidFollowParameters,
    validate_follow,
)
from app.social.follows import merge_parameters
from app.trading.domain.orders import Side
from db.models import Copy, EquitySnapshot, Follow, FollowPosition, Leader, Market
from tests.social.test_leaders import insert_leader
from tests.support import gid
from tests.support.money import fund, user_id, verified_user
from tests.support.trading import (
    D,
    funded_user,
    limit,
    place,
    rows,
    running_engines,
    scalar,
    trade_at,
)

FOLLOW_FIELDS = """
  id status pauseReason mode createdAt endedAt followerName
  leader { id displayName followerCount assetsUnderCopy }
  parameters { quote allocation mode fixedAmount ratio maxOrderNotional maxPositionPerAsset
               allowedSymbols slippageTolerance stopLossPercent closePositionsOnStopLoss }
"""
FOLLOW = """
mutation($leader: ID!, $allocation: Decimal!, $mode: FollowMode!, $fixedAmount: Decimal,
         $ratio: Decimal, $maxOrderNotional: Decimal, $maxPositionPerAsset: Decimal,
         $allowedSymbols: [String!], $slippageTolerance: Decimal! = "0.01",
         $stopLossPercent: Decimal, $close: Boolean! = false) {
  followLeader(leaderId: $leader, allocation: $allocation, mode: $mode,
               fixedAmount: $fixedAmount, ratio: $ratio, maxOrderNotional: $maxOrderNotional,
               maxPositionPerAsset: $maxPositionPerAsset, allowedSymbols: $allowedSymbols,
               slippageTolerance: $slippageTolerance, stopLossPercent: $stopLossPercent,
               closePositionsOnStopLoss: $close) {
    __typename
    ... on FollowPayload { follow { FIELDS } }
    ... on Error { code message }
    ... on InvalidFollowParameters { field }
    ... on UnknownMarket { field }
  }
}
""".replace("FIELDS", FOLLOW_FIELDS)
UPDATE = """
mutation($id: ID!, $allocation: Decimal, $mode: FollowMode, $ratio: Decimal,
         $fixedAmount: Decimal, $maxOrderNotional: Decimal, $allowedSymbols: [String!]) {
  updateFollow(id: $id, allocation: $allocation, mode: $mode, ratio: $ratio,
               fixedAmount: $fixedAmount, maxOrderNotional: $maxOrderNotional,
               allowedSymbols: $allowedSymbols) {
    __typename
    ... on FollowPayload { follow { parameters { allocation mode fixedAmount ratio
                                                 maxOrderNotional allowedSymbols } } }
    ... on Error { code }
    ... on InvalidFollowParameters { field }
  }
}
"""
STATUS_FIELDS = (
    "__typename ... on FollowPayload { follow { status pauseReason } } ... on Error { code }"
)
PAUSE = "mutation($id: ID!) { pauseFollow(id: $id) { " + STATUS_FIELDS + " } }"
RESUME = "mutation($id: ID!) { resumeFollow(id: $id) { " + STATUS_FIELDS + " } }"
UNFOLLOW = """
mutation($id: ID!, $close: Boolean! = false) {
  unfollowLeader(id: $id, closePositions: $close) {
    __typename
    ... on UnfollowPayload { follow { status endedAt }
                             closingOrders { side type quantity status timeInForce } }
    ... on Error { code }
  }
}
"""
ONE = "query($id: ID!) { follow(id: $id) { id status } node(id: $id) { id } }"
STATISTICS = """
  statistics { copiedCount skippedCount skippedByReason { reason count } allocationUsed
               realizedPnl unrealizedPnl pnl roi fidelity }
"""
MY_FOLLOWS = """
query($first: Int!, $status: [FollowStatus!]) {
  myFollows(first: $first, status: $status) {
    edges { node { id status leader { displayName followerCount } STATISTICS } }
    pageInfo { hasNextPage }
  }
}
""".replace("STATISTICS", STATISTICS)
MY_FOLLOWERS = "{ myFollowers(first: 10) { edges { node { id followerName status } } } }"


async def counts(rt) -> tuple[int, int]:
    return (
        await scalar(rt, "SELECT count(*) FROM follows"),
        await scalar(rt, "SELECT count(*) FROM outbox WHERE topic LIKE 'social.%'"),
    )


async def person(gql, rt, name: str, **balances: str) -> tuple[int, str]:
    token = (await verified_user(gql, rt, f"{name}@example.com", handle=name))["accessToken"]
    uid = await user_id(rt, f"{name}@example.com")
    for currency, amount in balances.items():
        await fund(rt, uid, currency, amount)
    return uid, token


@pytest.fixture
async def cast(gql, rt) -> dict:
    """A leader (minimum allocation 100), a follower with 1000 USDT, a stopped leader."""
    leader, leader_token = await person(gql, rt, "lead")
    await insert_leader(rt, leader, display_name="Lead", minimum_allocation=Decimal(100))
    follower, token = await person(gql, rt, "fol", USDT="1000")
    stopped = await funded_user(rt, "stopped")
    await insert_leader(rt, stopped, status="STOPPED")
    plain = await funded_user(rt, "plain")
    return {
        "leader": leader,
        "leader_token": leader_token,
        "follower": follower,
        "token": token,
        "stopped": stopped,
        "plain": plain,
    }


def follow_vars(cast: dict, **overrides) -> dict:
    return {
        "leader": gid("Leader", cast["leader"]),
        "allocation": "500",
        "mode": "EQUITY_PROPORTIONAL",
        **overrides,
    }


async def follow(gql, cast: dict, token: str | None = None, **overrides) -> dict:
    data = await gql.data(FOLLOW, follow_vars(cast, **overrides), token=token or cast["token"])
    return data["followLeader"]


async def test_follow_a_leader_stores_parameters_and_tells_the_leader(gql, rt, cast) -> None:
    result = await follow(
        gql,
        cast,
        allocation="400.5",
        mode="FIXED_RATIO",
        ratio="0.5",
        maxOrderNotional="50",
        maxPositionPerAsset="200",
        allowedSymbols=["btc/usdt", "ETH/USDT", "BTC/USDT"],
        slippageTolerance="0.1",
        stopLossPercent="100",
        close=True,
    )
    assert result["__typename"] == "FollowPayload", result
    node = result["follow"]
    assert node["status"] == "ACTIVE" and node["pauseReason"] is None
    assert node["mode"] == "FIXED_RATIO" and node["endedAt"] is None
    assert node["followerName"] == "Carol"  # the display name tests register with
    assert node["leader"] == {
        "id": gid("Leader", cast["leader"]),
        "displayName": "Lead",
        "followerCount": 1,
        "assetsUnderCopy": "400.5",
    }
    assert node["parameters"] == {
        "quote": "USDT",
        "allocation": "400.5",
        "mode": "FIXED_RATIO",
        "fixedAmount": None,
        "ratio": "0.5",
        "maxOrderNotional": "50",
        "maxPositionPerAsset": "200",
        "allowedSymbols": ["BTC/USDT", "ETH/USDT"],
        "slippageTolerance": "0.1",
        "stopLossPercent": "100",
        "closePositionsOnStopLoss": True,
    }
    (event,) = await rows(
        rt, "SELECT topic, user_id, payload FROM outbox WHERE topic LIKE 'social.%'"
    )
    follow_pk = int(await scalar(rt, "SELECT id FROM follows"))
    assert event["topic"] == "social.new_follower"
    assert event["user_id"] == cast["leader"]
    assert event["payload"] == {"followId": follow_pk, "followerId": cast["follower"]}
    # No hold: the allocation stays available until copies are placed.
    assert await scalar(
        rt,
        "SELECT balance FROM ledger_accounts WHERE user_id=$1 AND currency='USDT'"
        " AND kind='AVAILABLE'",
        cast["follower"],
    ) == Decimal(1000)


BAD_PARAMETERS = [
    ({"allocation": "0"}, "InvalidFollowParameters", "allocation"),
    ({"allocation": "-5"}, "InvalidFollowParameters", "allocation"),
    ({"mode": "FIXED_RATIO"}, "InvalidFollowParameters", "ratio"),
    ({"mode": "FIXED_RATIO", "ratio": "0"}, "InvalidFollowParameters", "ratio"),
    ({"mode": "FIXED_RATIO", "ratio": "-1"}, "InvalidFollowParameters", "ratio"),
    ({"mode": "FIXED_AMOUNT"}, "InvalidFollowParameters", "fixedAmount"),
    ({"mode": "FIXED_AMOUNT", "fixedAmount": "0"}, "InvalidFollowParameters", "fixedAmount"),
    ({"fixedAmount": "10"}, "InvalidFollowParameters", "fixedAmount"),  # not this mode's
    ({"maxOrderNotional": "0"}, "InvalidFollowParameters", "maxOrderNotional"),
    ({"maxPositionPerAsset": "-1"}, "InvalidFollowParameters", "maxPositionPerAsset"),
    ({"allowedSymbols": []}, "InvalidFollowParameters", "allowedSymbols"),
    ({"allowedSymbols": ["BTC/USDT", "DOGE/USDT"]}, "UnknownMarket", "allowedSymbols"),
    ({"slippageTolerance": "0.1000001"}, "InvalidFollowParameters", "slippageTolerance"),
    ({"slippageTolerance": "-0.01"}, "InvalidFollowParameters", "slippageTolerance"),
    ({"stopLossPercent": "0"}, "InvalidFollowParameters", "stopLossPercent"),
    ({"stopLossPercent": "100.01"}, "InvalidFollowParameters", "stopLossPercent"),
    ({"allocation": "99.99"}, "BelowMinimumAllocation", "allocation"),
    ({"allocation": "1000.01"}, "InsufficientFunds", "allocation"),
]


async def test_bad_parameters_are_typed_errors_and_change_nothing(gql, rt, cast) -> None:
    before = await counts(rt)
    for overrides, typename, field in BAD_PARAMETERS:
        result = await follow(gql, cast, **overrides)
        assert result["__typename"] == typename, (overrides, result)
        assert result.get("field", field) == field, (overrides, result)
        assert await counts(rt) == before, overrides


async def test_who_may_follow_whom(gql, rt, cast) -> None:
    before = await counts(rt)

    async def refused(token: str | None = None, **overrides) -> str:
        result = await follow(gql, cast, token, **overrides)
        assert await counts(rt) == before
        return result["code"]

    assert await refused(leader=gid("Leader", cast["follower"])) == "CANNOT_FOLLOW_SELF"
    assert await refused(leader=gid("Leader", cast["plain"])) == "NOT_A_LEADER"
    assert await refused(leader=gid("Leader", 999999)) == "NOT_A_LEADER"
    assert await refused(leader=gid("Market", cast["leader"])) == "VALIDATION_FAILED"
    assert await refused(leader=gid("Leader", cast["stopped"])) == "LEADER_STOPPED"
    # An ACTIVE leader may not follow anyone (a STOPPED one may).
    await fund(rt, cast["leader"], "USDT", "1000")
    other, _ = await person(gql, rt, "other")
    await insert_leader(rt, other)
    assert (
        await refused(cast["leader_token"], leader=gid("Leader", other)) == "LEADER_CANNOT_FOLLOW"
    )

    first = await follow(gql, cast)
    assert first["__typename"] == "FollowPayload"
    before = await counts(rt)
    assert await refused(allocation="100") == "ALREADY_FOLLOWING"
    anonymous = await gql.data(FOLLOW, follow_vars(cast))
    assert anonymous["followLeader"]["code"] == "UNAUTHENTICATED"
    assert await counts(rt) == before


async def test_update_follow_validates_and_merges(gql, rt, cast) -> None:
    created = (await follow(gql, cast, mode="FIXED_AMOUNT", fixedAmount="25"))["follow"]
    fid = created["id"]

    async def update(**variables) -> dict:
        return (await gql.data(UPDATE, {"id": fid, **variables}, token=cast["token"]))[
            "updateFollow"
        ]

    row_before = await rows(rt, "SELECT * FROM follows")
    for variables, code, field in [
        ({"ratio": "2"}, "INVALID_FOLLOW_PARAMETERS", "ratio"),  # FIXED_AMOUNT has no ratio
        ({"mode": "FIXED_RATIO"}, "INVALID_FOLLOW_PARAMETERS", "ratio"),
        ({"mode": "FIXED_RATIO", "ratio": "0"}, "INVALID_FOLLOW_PARAMETERS", "ratio"),
        ({"fixedAmount": "-1"}, "INVALID_FOLLOW_PARAMETERS", "fixedAmount"),
        ({"allocation": "2000"}, "INSUFFICIENT_FUNDS", None),
        ({"allocation": "50"}, "BELOW_MINIMUM_ALLOCATION", None),
        ({"allocation": None}, "INVALID_FOLLOW_PARAMETERS", "allocation"),
        ({"allowedSymbols": ["XRP/USDT"]}, "UNKNOWN_MARKET", None),
    ]:
        result = await update(**variables)
        assert result["code"] == code, (variables, result)
        assert result.get("field", field) == field
    assert await rows(rt, "SELECT * FROM follows") == row_before

    switched = await update(mode="FIXED_RATIO", ratio="1.5", maxOrderNotional="75")
    assert switched["follow"]["parameters"] == {
        "allocation": "500",
        "mode": "FIXED_RATIO",
        "fixedAmount": None,  # the old mode's parameter is dropped
        "ratio": "1.5",
        "maxOrderNotional": "75",
        "allowedSymbols": None,
    }
    cleared = await update(maxOrderNotional=None, allocation="600", allowedSymbols=["sol/usdt"])
    assert cleared["follow"]["parameters"]["maxOrderNotional"] is None
    assert cleared["follow"]["parameters"]["allocation"] == "600"
    assert cleared["follow"]["parameters"]["allowedSymbols"] == ["SOL/USDT"]

    _, other_token = await person(gql, rt, "intruder", USDT="1000")
    foreign = await gql.data(UPDATE, {"id": fid, "allocation": "150"}, token=other_token)
    assert foreign["updateFollow"]["code"] == "NOT_FOUND"


def test_merging_parameters_keeps_what_is_not_given() -> None:
    current = FollowParameters(
        allocation=D(100), mode=FollowMode.FIXED_AMOUNT, fixed_amount=D(10), max_order_notional=D(5)
    )
    merged = merge_parameters(current, {"mode": FollowMode.EQUITY_PROPORTIONAL})
    assert merged.fixed_amount is None and merged.max_order_notional == D(5)
    with pytest.raises(TypeError):
        merge_parameters(current, {"nonsense": 1})
    with pytest.raises(InvalidFollowParameters):
        validate_follow(merge_parameters(current, {"mode": FollowMode.FIXED_RATIO}))


async def test_pause_resume_unfollow(gql, rt, cast) -> None:
    fid = (await follow(gql, cast))["follow"]["id"]
    token = cast["token"]

    async def call(document: str, key: str, who: str = token, **variables) -> dict:
        return (await gql.data(document, {"id": fid, **variables}, token=who))[key]

    assert await call(RESUME, "resumeFollow") == {
        "__typename": "FollowStatusConflict",
        "code": "FOLLOW_STATUS_CONFLICT",
    }
    paused = await call(PAUSE, "pauseFollow")
    assert paused["follow"] == {"status": "PAUSED", "pauseReason": "USER"}
    assert (await call(PAUSE, "pauseFollow"))["code"] == "FOLLOW_STATUS_CONFLICT"
    # Someone else's follow does not exist for them; the leader cannot pause it either.
    assert (await call(PAUSE, "pauseFollow", cast["leader_token"]))["code"] == "NOT_FOUND"
    resumed = await call(RESUME, "resumeFollow")
    assert resumed["follow"] == {"status": "ACTIVE", "pauseReason": None}

    # The copy worker pauses on a stop-loss; resuming clears it.
    async with rt.sessions() as session, session.begin():
        await session.execute(update(Follow).values(status="PAUSED", pause_reason="STOP_LOSS"))
    assert (await call(RESUME, "resumeFollow"))["follow"]["pauseReason"] is None

    # A stopped leader: the follow stays, pausing works, resuming is refused.
    await call(PAUSE, "pauseFollow")
    async with rt.sessions() as session, session.begin():
        await session.execute(update(Leader).values(status="STOPPED"))
    assert (await call(RESUME, "resumeFollow"))["code"] == "LEADER_STOPPED"
    assert await scalar(rt, "SELECT status FROM follows") == "PAUSED"

    done = await call(UNFOLLOW, "unfollowLeader")
    assert done["follow"]["status"] == "STOPPED" and done["follow"]["endedAt"] is not None
    assert done["closingOrders"] == []
    assert (await call(UNFOLLOW, "unfollowLeader"))["code"] == "FOLLOW_STATUS_CONFLICT"
    assert (await call(RESUME, "resumeFollow"))["code"] == "FOLLOW_STATUS_CONFLICT"
    # A STOPPED follow does not block following the same leader again (once it leads).
    async with rt.sessions() as session, session.begin():
        await session.execute(update(Leader).values(status="ACTIVE"))
    assert (await follow(gql, cast))["__typename"] == "FollowPayload"


async def test_visibility_of_a_follow(gql, rt, cast) -> None:
    fid = (await follow(gql, cast))["follow"]["id"]
    mine = await gql.data(ONE, {"id": fid}, token=cast["token"])
    assert mine == {"follow": {"id": fid, "status": "ACTIVE"}, "node": {"id": fid}}
    as_leader = await gql.data(ONE, {"id": fid}, token=cast["leader_token"])
    assert as_leader["follow"]["id"] == fid
    _, stranger = await person(gql, rt, "stranger")
    assert await gql.data(ONE, {"id": fid}, token=stranger) == {"follow": None, "node": None}

    followers = await gql.data(MY_FOLLOWERS, token=cast["leader_token"])
    assert followers["myFollowers"]["edges"] == [
        {"node": {"id": fid, "followerName": "Carol", "status": "ACTIVE"}}
    ]
    assert (await gql.data(MY_FOLLOWERS, token=stranger))["myFollowers"]["edges"] == []
    assert (await gql.data(MY_FOLLOWS, {"first": 5}, token=stranger))["myFollows"]["edges"] == []


async def test_unfollow_with_close_positions_sells_what_the_follow_holds(gql, rt, cast) -> None:
    follower = cast["follower"]
    await fund(rt, follower, "BTC", "0.01")
    fid = (await follow(gql, cast))["follow"]["id"]
    follow_pk = int(await scalar(rt, "SELECT id FROM follows"))
    async with rt.sessions() as session, session.begin():
        session.add(
            FollowPosition(follow_id=follow_pk, currency="BTC", quantity=D("0.002"), cost=D(180))
        )
    maker = await funded_user(rt, "maker", BTC="1", USDT="100000")
    taker = await funded_user(rt, "taker", BTC="1", USDT="100000")
    async with running_engines(rt):
        await trade_at(rt, maker, taker, "90000", "0.001")  # the last price
        await place(rt, taker, limit(Side.BUY, "0.01", "90000"))  # a bid to sell into
        done = (await gql.data(UNFOLLOW, {"id": fid, "close": True}, token=cast["token"]))[
            "unfollowLeader"
        ]
    assert done["follow"]["status"] == "STOPPED"
    assert done["closingOrders"] == [
        {
            "side": "SELL",
            "type": "LIMIT",
            "quantity": "0.0020",
            "status": "FILLED",
            "timeInForce": "IOC",
        }
    ]


# --- statistics ----------------------------------------------------------------------------


async def _leader_fills(rt, n: int) -> list[int]:
    """At least ``n`` fill ids (copies reference a real leader fill)."""
    maker = await funded_user(rt, "fmaker", BTC="1")
    taker = await funded_user(rt, "ftaker", USDT="100000")
    async with running_engines(rt):
        for _ in range((n + 1) // 2):
            await trade_at(rt, maker, taker, "90000", "0.001")
    return [r["id"] for r in await rows(rt, "SELECT id FROM fills ORDER BY id")]


async def _insert_follow(rt, follower: int, leader: int, allocation: str, created_at) -> int:
    async with rt.sessions() as session, session.begin():
        row = Follow(
            follower_id=follower,
            leader_id=leader,
            mode="EQUITY_PROPORTIONAL",
            allocation=D(allocation),
            created_at=created_at,
            updated_at=created_at,
        )
        session.add(row)
        await session.flush()
        return row.id


async def test_statistics_against_hand_computed_numbers(gql, rt, cast) -> None:
    fills = await _leader_fills(rt, 6)
    btc = await scalar(rt, "SELECT id FROM markets WHERE symbol = 'BTC/USDT'")
    t0 = rt.now() - timedelta(days=3)
    leader, follower = cast["leader"], cast["follower"]
    fid = await _insert_follow(rt, follower, leader, "1000", t0)
    idle = await _insert_follow(rt, follower, cast["stopped"], "200", t0)
    async with rt.sessions() as session, session.begin():
        for i, (status, reason) in enumerate(
            [
                ("PLACED", None),
                ("PLACED", None),
                ("PLACED", None),
                ("SKIPPED", "MAX_POSITION_REACHED"),
                ("SKIPPED", "SYMBOL_NOT_ALLOWED"),
                ("PENDING", None),  # not placed yet: neither copied nor skipped
            ]
        ):
            session.add(
                Copy(
                    follow_id=fid,
                    leader_fill_id=fills[i],
                    status=status,
                    reason=reason,
                    market_id=btc,
                    side="BUY",
                )
            )
        session.add(
            Copy(
                follow_id=idle,
                leader_fill_id=fills[0],
                status="SKIPPED",
                reason="SYMBOL_NOT_ALLOWED",
                market_id=btc,
                side="BUY",
            )
        )
        for currency, quantity, cost, realized in [
            ("BTC", "2", "150", "10"),  # at 100: worth 200, +50 unrealized
            ("ETH", "0", "0", "-4"),  # closed: only realized
            ("SOL", "1", "20", "0"),  # no trade on SOL/USDT yet: counted at cost
        ]:
            session.add(
                FollowPosition(
                    follow_id=fid,
                    currency=currency,
                    quantity=D(quantity),
                    cost=D(cost),
                    realized_pnl=D(realized),
                )
            )
        await session.execute(
            update(Market).where(Market.symbol == "BTC/USDT").values(last_price=D(100))
        )
        await session.execute(
            update(Market).where(Market.symbol == "SOL/USDT").values(last_price=None)
        )
        # The leader's equity: 2000 when the follow started (the last snapshot before
        # it), 2200 at the latest: +10 %. The older 1000 does not count.
        for at, equity in [
            (t0 - timedelta(days=1), "1000"),
            (t0 - timedelta(hours=1), "2000"),
            (t0 + timedelta(days=1), "2100"),
            (t0 + timedelta(days=2), "2200"),
        ]:
            session.add(EquitySnapshot(user_id=leader, taken_at=at, equity_usd=D(equity)))

    data = await gql.data(MY_FOLLOWS, {"first": 10}, token=cast["token"])
    by_id = {e["node"]["id"]: e["node"] for e in data["myFollows"]["edges"]}
    assert by_id[gid("Follow", fid)]["statistics"] == {
        "copiedCount": 3,
        "skippedCount": 2,
        "skippedByReason": [
            {"reason": "MAX_POSITION_REACHED", "count": 1},
            {"reason": "SYMBOL_NOT_ALLOWED", "count": 1},
        ],
        "allocationUsed": "170.000000",  # 150 + 20
        "realizedPnl": "6.000000",  # 10 - 4
        "unrealizedPnl": "50.000000",  # 2 x 100 - 150
        "pnl": "56.000000",
        "roi": "0.056",  # 56 / 1000
        "fidelity": "0.56",  # 0.056 / 0.1
    }
    assert by_id[gid("Follow", idle)]["statistics"] == {
        "copiedCount": 0,
        "skippedCount": 1,
        "skippedByReason": [{"reason": "SYMBOL_NOT_ALLOWED", "count": 1}],
        "allocationUsed": "0.000000",
        "realizedPnl": "0.000000",
        "unrealizedPnl": "0.000000",
        "pnl": "0.000000",
        "roi": "0",
        "fidelity": None,  # no equity snapshots of that leader
    }
    stopped = await gql.data(MY_FOLLOWS, {"first": 10, "status": ["STOPPED"]}, token=cast["token"])
    assert stopped["myFollows"]["edges"] == []


async def test_my_follows_statement_count_does_not_grow_with_n(
    gql, rt, cast, sql_statements
) -> None:
    fills = await _leader_fills(rt, 2)
    btc = await scalar(rt, "SELECT id FROM markets WHERE symbol = 'BTC/USDT'")
    follower = cast["follower"]
    for i in range(8):
        leader = await funded_user(rt, f"l{i}")
        await insert_leader(rt, leader)
        fid = await _insert_follow(rt, follower, leader, "100", rt.now())
        async with rt.sessions() as session, session.begin():
            session.add(
                Copy(
                    follow_id=fid,
                    leader_fill_id=fills[0],
                    status="PLACED",
                    market_id=btc,
                    side="BUY",
                )
            )
            session.add(FollowPosition(follow_id=fid, currency="BTC", quantity=D(1), cost=D(5)))
            session.add(EquitySnapshot(user_id=leader, taken_at=rt.now(), equity_usd=D(100)))
    seen = {}
    for n in (2, 8):
        sql_statements.reset()
        data = await gql.data(MY_FOLLOWS, {"first": n}, token=cast["token"])
        assert len(data["myFollows"]["edges"]) == n
        assert all(e["node"]["statistics"]["copiedCount"] == 1 for e in data["myFollows"]["edges"])
        seen[n] = sql_statements.count
    assert seen[2] == seen[8], seen
