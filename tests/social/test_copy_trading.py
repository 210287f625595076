"""Copy trading end to end: leaders and follows made through GraphQL, leader orders placed
through GraphQL, the copy worker (its background job, or ``python -m app copy-worker``
killed with SIGKILL and restarted), copies read back through GraphQL."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import update

from app.social import copy_trading, follow_close
from app.social.copy_placement import CONSUMER
from app.social.follow_positions import POSITIONS_CONSUMER
from app.trading.domain.orders import Side, TimeInForce
from db.models import Follow, User
from tests.support import GraphQLClient, app_processes, gid, pk
from tests.support.trading import (
    D,
    eventually,
    funded_user,
    limit,
    place,
    rows,
    scalar,
    trade_at,
    trader,
)

BUY, SELL = Side.BUY, Side.SELL
ROOT = Path(__file__).resolve().parents[2]

BECOME = """
mutation { becomeLeader(displayName: "Lea", profitSharePercent: "10") {
  __typename ... on LeaderPayload { leader { id } } ... on Error { code message } } }
"""
FOLLOW = """
mutation($leader: ID!, $allocation: Decimal!, $mode: FollowMode!, $fixed: Decimal,
         $ratio: Decimal, $maxOrder: Decimal, $maxPosition: Decimal, $symbols: [String!],
         $stopLoss: Decimal, $close: Boolean! = false) {
  followLeader(leaderId: $leader, allocation: $allocation, mode: $mode, fixedAmount: $fixed,
               ratio: $ratio, maxOrderNotional: $maxOrder, maxPositionPerAsset: $maxPosition,
               allowedSymbols: $symbols, stopLossPercent: $stopLoss,
               closePositionsOnStopLoss: $close) {
    __typename ... on FollowPayload { follow { id } } ... on Error { code message }
  }
}
"""
PLACE = """
mutation($input: PlaceOrderInput!) { placeOrder(input: $input) {
  __typename ... on OrderPayload { order { id status filledQuantity } }
  ... on Error { code message } } }
"""
COPIES = """
query($follow: ID!, $first: Int! = 20, $after: String) {
  copies(followId: $follow, first: $first, after: $after) {
    edges { node {
      id status reason side quantity price clientOrderId
      leaderFill { side price quantity }
      market { symbol }
      order { clientOrderId side type timeInForce status quantity price filledQuantity
              fills { side price quantity } }
    } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
FOLLOW_STATUS = "query($id: ID!) { follow(id: $id) { status pauseReason } }"
UNFOLLOW = """
mutation($id: ID!) { unfollowLeader(id: $id, closePositions: true) {
  __typename ... on UnfollowPayload { closingOrders { clientOrderId side quantity status } }
  ... on Error { code } } }
"""


async def leader(api: GraphQLClient, rt, email: str, **balances: str) -> tuple[int, str]:
    uid, token = await trader(api, rt, email, **balances)
    async with rt.sessions() as session, session.begin():
        await session.execute(update(User).where(User.id == uid).values(kyc_level=1))
    body = (await api.data(BECOME, token=token))["becomeLeader"]
    assert body["__typename"] == "LeaderPayload", body
    return uid, token


async def follower(
    api: GraphQLClient, rt, email: str, leader_id: int, *, usdt: str = "1000", **params
) -> tuple[int, str, int]:
    """A funded follower following ``leader_id``: (user id, token, follow id)."""
    uid, token = await trader(api, rt, email, USDT=usdt)
    variables = {"leader": gid("Leader", leader_id), **params}
    body = (await api.data(FOLLOW, variables, token=token))["followLeader"]
    assert body["__typename"] == "FollowPayload", body
    return uid, token, pk(body["follow"]["id"])


async def order(api: GraphQLClient, token: str, side: str, quantity: str, price: str, **kw) -> dict:
    variables = {
        "input": {
            "symbol": "BTC/USDT",
            "side": side,
            "type": "LIMIT",
            "quantity": quantity,
            "price": price,
            **kw,
        }
    }
    body = (await api.data(PLACE, variables, token=token))["placeOrder"]
    assert body["__typename"] == "OrderPayload", body
    return body["order"]


async def caught_up(rt) -> bool:
    """Both copy consumers have read every fill committed so far."""
    behind = await scalar(
        rt,
        "SELECT count(*) FROM outbox o WHERE o.topic = 'fills' AND NOT EXISTS ("
        " SELECT 1 FROM event_consumers c WHERE c.name = ANY($1::text[])"
        " AND (o.txid, o.id) <= (c.last_txid, c.last_id)"
        " HAVING count(*) = cardinality($1::text[]))",
        [CONSUMER, POSITIONS_CONSUMER],
    )
    return behind == 0


async def copy_all(rt) -> None:
    """Run the copy worker's job until it has handled every fill (and the fills of the
    orders it placed)."""

    async def step() -> bool:
        await copy_trading.run_once(rt)
        return await caught_up(rt)

    assert await eventually(step, within=15, interval=0.02), "the copy worker did not catch up"


async def copies_of(api: GraphQLClient, token: str, follow_id: int) -> list[dict]:
    body = await api.data(COPIES, {"follow": gid("Follow", follow_id)}, token=token)
    return [edge["node"] for edge in body["copies"]["edges"]]


async def follow_position(rt, follow_id: int, currency: str = "BTC") -> tuple[Decimal, ...]:
    found = await rows(
        rt,
        "SELECT quantity, cost, realized_pnl FROM follow_positions"
        " WHERE follow_id = $1 AND currency = $2",
        follow_id,
        currency,
    )
    return tuple(found[0]) if found else (D(0), D(0), D(0))


async def skipped_events(rt) -> list[dict]:
    found = await rows(
        rt, "SELECT user_id, payload FROM outbox WHERE topic = 'social.copy_skipped' ORDER BY id"
    )
    return [{"user": r["user_id"], **r["payload"]} for r in found]


# --- the three modes ------------------------------------------------------------------------


async def test_three_modes_copy_exact_quantities_and_mirror_a_partial_close(api, rt, engines):
    maker = await funded_user(rt, "maker", BTC="10", USDT="10000")
    await place(rt, maker, limit(SELL, "5", "100"))
    # 1000.2 USDT: after buying 1 BTC at 100 (taker fee 0.2) the leader's equity is
    # 900 USDT + 1 BTC at 100 = 1000, so the buy used a tenth of it.
    leader_id, leader_token = await leader(api, rt, "lea@example.com", USDT="1000.2")
    a, a_token, a_follow = await follower(
        api, rt, "a@example.com", leader_id, allocation="500", mode="FIXED_AMOUNT", fixed="50"
    )
    b, b_token, b_follow = await follower(
        api, rt, "b@example.com", leader_id, allocation="500", mode="FIXED_RATIO", ratio="0.25"
    )
    c, c_token, c_follow = await follower(
        api, rt, "c@example.com", leader_id, allocation="1000", mode="EQUITY_PROPORTIONAL"
    )

    bought = await order(api, leader_token, "BUY", "1", "100", timeInForce="IOC")
    assert bought["status"] == "FILLED"
    await copy_all(rt)

    expected = {a_follow: "0.5000", b_follow: "0.2500", c_follow: "1.0000"}
    for follow_id, token in ((a_follow, a_token), (b_follow, b_token), (c_follow, c_token)):
        (copy,) = await copies_of(api, token, follow_id)
        assert copy["status"] == "PLACED" and copy["reason"] is None
        assert copy["leaderFill"] == {"side": "BUY", "price": "100", "quantity": "1"}
        assert copy["market"] == {"symbol": "BTC/USDT"}
        assert copy["clientOrderId"].startswith(f"copy-{follow_id}-")
        assert copy["order"] == {
            "clientOrderId": copy["clientOrderId"],
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "IOC",
            "status": "FILLED",
            "quantity": expected[follow_id],
            "price": "101.00",  # the leader's 100 plus the default 1 % slippage tolerance
            "filledQuantity": expected[follow_id],
            "fills": [{"side": "BUY", "price": "100.00", "quantity": expected[follow_id]}],
        }
        quantity, cost, realized = await follow_position(rt, follow_id)
        assert quantity == D(expected[follow_id])
        assert cost == D(expected[follow_id]) * D("100.2")  # price + 0.2 % taker fee
        assert realized == 0

    # the leader sells 40 % of its position: each follower sells 40 % of its copy
    bidder = await funded_user(rt, "bidder", USDT="10000")
    await place(rt, bidder, limit(BUY, "5", "100"))
    sold = await order(api, leader_token, "SELL", "0.4", "100", timeInForce="IOC")
    assert sold["status"] == "FILLED"
    await copy_all(rt)
    closes = {a_follow: "0.2000", b_follow: "0.1000", c_follow: "0.4000"}
    for follow_id, token in ((a_follow, a_token), (b_follow, b_token), (c_follow, c_token)):
        newest, _ = await copies_of(api, token, follow_id)
        assert newest["side"] == "SELL" and newest["status"] == "PLACED"
        assert newest["order"]["quantity"] == closes[follow_id]
        assert newest["order"]["price"] == "99.00"  # 100 less 1 %
        assert newest["order"]["filledQuantity"] == closes[follow_id]
        quantity, _, realized = await follow_position(rt, follow_id)
        assert quantity == D(expected[follow_id]) - D(closes[follow_id])
        # sold at 100 less 0.2 % fee what cost 100.2 each: 0.4 per unit lost
        assert realized == -D(closes[follow_id]) * D("0.4")
    # every copy order is the follower's only order, and only one per leader fill
    for uid in (a, b, c):
        assert await scalar(rt, "SELECT count(*) FROM orders WHERE user_id = $1", uid) == 2
    assert await skipped_events(rt) == []


async def test_caps_and_filters_clip_or_skip_with_their_reasons(api, rt, engines):
    maker = await funded_user(rt, "maker", BTC="10", USDT="10000")
    await place(rt, maker, limit(SELL, "5", "100"))
    leader_id, leader_token = await leader(api, rt, "lea@example.com", USDT="5000")
    follows = {}
    specs = {
        "eth-only": {"mode": "FIXED_AMOUNT", "fixed": "50", "symbols": ["ETH/USDT"]},
        "max-order": {"mode": "FIXED_AMOUNT", "fixed": "50", "maxOrder": "30"},
        "max-position": {"mode": "FIXED_AMOUNT", "fixed": "50", "maxPosition": "70"},
        "allocation": {"mode": "FIXED_AMOUNT", "fixed": "50", "allocation": "60"},
        "tiny": {"mode": "FIXED_RATIO", "ratio": "0.001"},
        "broke": {"mode": "FIXED_AMOUNT", "fixed": "50"},
    }
    for name, params in specs.items():
        follows[name] = await follower(
            api, rt, f"{name}@example.com", leader_id, **{"allocation": "500", **params}
        )
    # "broke" locks its money in a resting bid after following
    _, broke_token, _ = follows["broke"]
    await order(api, broke_token, "BUY", "10", "95")

    await order(api, leader_token, "BUY", "1", "100", timeInForce="IOC")
    await copy_all(rt)
    await order(api, leader_token, "BUY", "1", "100", timeInForce="IOC")
    await copy_all(rt)

    async def outcome(name: str) -> list[tuple]:
        _, token, follow_id = follows[name]
        found = await copies_of(api, token, follow_id)
        return [
            (c["status"], c["reason"], c["order"] and c["order"]["quantity"])
            for c in reversed(found)
        ]

    assert await outcome("eth-only") == [("SKIPPED", "SYMBOL_NOT_ALLOWED", None)] * 2
    assert await outcome("max-order") == [("PLACED", None, "0.3000")] * 2  # clipped to 30 USDT
    # 70 USDT per asset: 50, then the 20 left
    assert await outcome("max-position") == [("PLACED", None, "0.5000"), ("PLACED", None, "0.2000")]
    # 60 USDT allocated: 50, then what is left of it (cost 50.1 with the fee: 9.9)
    assert await outcome("allocation") == [("PLACED", None, "0.5000"), ("PLACED", None, "0.0990")]
    assert await outcome("tiny") == [("SKIPPED", "BELOW_MINIMUM", None)] * 2  # 0.1 USDT
    assert await outcome("broke") == [("SKIPPED", "INSUFFICIENT_FUNDS", None)] * 2

    events = await skipped_events(rt)
    assert sorted(
        (e["user"], e["followId"], e["reason"], e["symbol"], e["side"]) for e in events
    ) == sorted(
        (follows[name][0], follows[name][2], reason, "BTC/USDT", "BUY")
        for name, reason in (
            ("eth-only", "SYMBOL_NOT_ALLOWED"),
            ("tiny", "BELOW_MINIMUM"),
            ("broke", "INSUFFICIENT_FUNDS"),
        )
        for _ in range(2)
    )


async def test_only_trades_opened_after_following_are_mirrored(api, rt, engines):
    maker = await funded_user(rt, "maker", BTC="10", USDT="10000")
    await place(rt, maker, limit(SELL, "5", "100"))
    await place(rt, maker, limit(BUY, "5", "99"))
    leader_id, leader_token = await leader(api, rt, "lea@example.com", USDT="1000")
    await order(api, leader_token, "BUY", "1", "100", timeInForce="IOC")  # before anyone follows
    _, token, follow_id = await follower(
        api, rt, "late@example.com", leader_id, allocation="500", mode="FIXED_AMOUNT", fixed="50"
    )
    await order(api, leader_token, "SELL", "1", "99", timeInForce="IOC")
    await copy_all(rt)
    (copy,) = await copies_of(api, token, follow_id)  # the buy was before the follow
    assert (copy["side"], copy["status"], copy["reason"]) == ("SELL", "SKIPPED", "NOTHING_TO_CLOSE")


async def test_a_portfolio_stop_loss_pauses_the_follow_and_closes_its_positions(api, rt, engines):
    maker = await funded_user(rt, "maker", BTC="10", USDT="10000")
    taker = await funded_user(rt, "taker", BTC="10", USDT="10000")
    await place(rt, maker, limit(SELL, "1", "100"))
    leader_id, leader_token = await leader(api, rt, "lea@example.com", USDT="1000")
    _, token, follow_id = await follower(
        api,
        rt,
        "careful@example.com",
        leader_id,
        allocation="100",
        mode="FIXED_AMOUNT",
        fixed="50",
        stopLoss="10",
        close=True,
    )
    await order(api, leader_token, "BUY", "0.1", "100", timeInForce="IOC")
    await copy_all(rt)
    assert (await follow_position(rt, follow_id))[0] == D("0.5")

    # the price falls: at 82 the copy (cost 50.1) is worth 41, a loss of 9.1 (< 10 % of 100)
    for price in ("91", "82"):
        await trade_at(rt, maker, taker, price, "0.1")
    await copy_all(rt)
    status = await api.data(FOLLOW_STATUS, {"id": gid("Follow", follow_id)}, token=token)
    assert status["follow"] == {"status": "ACTIVE", "pauseReason": None}

    bidder = await funded_user(rt, "bidder", USDT="10000")
    await place(rt, bidder, limit(BUY, "1", "80"))  # who buys the closed position
    hit = await place(rt, taker, limit(SELL, "0.1", "80", time_in_force=TimeInForce.IOC))
    assert hit.status == "FILLED"  # at 80: 0.5 x 80 - 50.1 = -10.1, the stop-loss
    await copy_all(rt)
    status = await api.data(FOLLOW_STATUS, {"id": gid("Follow", follow_id)}, token=token)
    assert status["follow"] == {"status": "PAUSED", "pauseReason": "STOP_LOSS"}
    paused = await rows(
        rt, "SELECT user_id, payload FROM outbox WHERE topic = 'social.follow_paused'"
    )
    assert [dict(r["payload"]) for r in paused] == [
        {
            "followId": follow_id,
            "reason": "STOP_LOSS",
            "leaderName": "Lea",  # becomeLeader(displayName: "Lea")
            "positionsClosed": True,
        }
    ]
    # its position was sold (at the bid of 80) and the loss realized
    assert await eventually(lambda: _position_closed(rt, follow_id))
    quantity, cost, realized = await follow_position(rt, follow_id)
    assert (quantity, cost) == (0, 0)
    assert realized == D("0.5") * D("79.84") - D("50.1")  # 80 less the 0.2 % fee

    # paused: the leader's next buy is not copied
    await place(rt, maker, limit(SELL, "1", "81"))
    await order(api, leader_token, "BUY", "0.1", "81", timeInForce="IOC")
    await copy_all(rt)
    assert len(await copies_of(api, token, follow_id)) == 1


async def _position_closed(rt, follow_id: int) -> bool:
    await copy_all(rt)
    return (await follow_position(rt, follow_id))[0] == 0


async def test_unfollow_with_close_positions_sells_what_the_follow_holds_once(api, rt, engines):
    maker = await funded_user(rt, "maker", BTC="10", USDT="10000")
    await place(rt, maker, limit(SELL, "2", "100"))
    leader_id, leader_token = await leader(api, rt, "lea@example.com", USDT="1000")
    uid, token, follow_id = await follower(
        api, rt, "f@example.com", leader_id, allocation="500", mode="FIXED_RATIO", ratio="0.5"
    )
    await order(api, leader_token, "BUY", "1", "100", timeInForce="IOC")
    await copy_all(rt)
    bidder = await funded_user(rt, "bidder", USDT="10000")
    await place(rt, bidder, limit(BUY, "2", "100"))
    body = await api.data(UNFOLLOW, {"id": gid("Follow", follow_id)}, token=token)
    closing = body["unfollowLeader"]["closingOrders"]
    assert closing == [
        {"clientOrderId": f"close-{follow_id}-BTC-1", "side": "SELL", "quantity": "0.5000",
         "status": "FILLED"}
    ]  # fmt: skip
    # closing again (before or after its fills are applied) sells nothing more
    assert await follow_close.close_follow_positions(rt, follow_id=follow_id) == []
    await copy_all(rt)
    assert await follow_close.close_follow_positions(rt, follow_id=follow_id) == []
    assert (await follow_position(rt, follow_id))[0] == 0
    sells = await scalar(
        rt, "SELECT count(*) FROM orders WHERE user_id = $1 AND side = 'SELL'", uid
    )
    assert sells == 1


async def test_copies_are_the_followers_alone(api, rt, engines):
    leader_id, leader_token = await leader(api, rt, "lea@example.com", USDT="1000")
    _, _, follow_id = await follower(
        api, rt, "f@example.com", leader_id, allocation="100", mode="FIXED_RATIO", ratio="1"
    )
    body = await api(COPIES, {"follow": gid("Follow", follow_id)}, token=leader_token)
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    body = await api(COPIES, {"follow": "nonsense"}, token=leader_token)
    assert body["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED"


# --- the worker as its own process, killed mid-batch -------------------------------------


WORKER_ENV = {
    "LOG_JSON": "false",
    "LOG_LEVEL": "WARNING",
    "SEED_DEMO_DATA": "false",
    "ENV": "test",
    "COPY_CONCURRENCY": "2",
    "COPY_POLL_SECONDS": "0.02",
}


@pytest.fixture
def copy_worker(rt, tmp_path) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    with app_processes(rt, tmp_path, "copy-worker", WORKER_ENV) as start:
        yield start


async def test_a_worker_killed_mid_batch_and_restarted_misses_no_copy_and_doubles_none(
    api, rt, engines, copy_worker, tmp_path
):
    followers = 24
    maker = await funded_user(rt, "maker", BTC="100", USDT="100000")
    await place(rt, maker, limit(SELL, "50", "100"))
    leader_id, leader_token = await leader(api, rt, "lea@example.com", USDT="10000")
    follow_ids = []
    for i in range(followers):
        uid = await funded_user(rt, f"f{i}", USDT="1000")
        follow_ids.append(await _insert_follow(rt, uid, leader_id))

    worker = copy_worker("first")
    await order(api, leader_token, "BUY", "1", "100", timeInForce="IOC")
    await order(api, leader_token, "BUY", "1", "100", timeInForce="IOC")

    async def mid_batch() -> bool:
        placed = await scalar(rt, "SELECT count(*) FROM orders WHERE client_order_id LIKE 'copy-%'")
        return 0 < placed < 2 * followers

    caught = await eventually(mid_batch, within=20, interval=0.005)
    assert caught, (
        (tmp_path / "first.log").read_text(),
        await rows(rt, "SELECT client_order_id, status FROM orders"),
        await rows(rt, "SELECT * FROM event_consumers"),
        await rows(rt, "SELECT count(*) FROM copies"),
        worker.poll(),
    )
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    assert await scalar(rt, "SELECT count(*) FROM orders WHERE client_order_id LIKE 'copy-%'") < (
        2 * followers
    )

    copy_worker("second")

    async def done() -> bool:
        return await caught_up(rt) and not await scalar(
            rt, "SELECT count(*) FROM copies WHERE status = 'PENDING'"
        )

    assert await eventually(done, within=30, interval=0.05)
    copies = await rows(rt, "SELECT follow_id, status, order_id, quantity FROM copies")
    assert len(copies) == 2 * followers  # one per follow and leader fill: none missing
    assert {c["status"] for c in copies} == {"PLACED"}
    assert sorted(c["follow_id"] for c in copies) == sorted(follow_ids * 2)
    orders = await rows(
        rt,
        "SELECT o.id, o.user_id, o.quantity, o.status FROM orders o"
        " WHERE o.client_order_id LIKE 'copy-%'",
    )
    assert len(orders) == 2 * followers  # and no order twice
    assert {o["id"] for o in orders} == {c["order_id"] for c in copies}
    assert {(o["quantity"], o["status"]) for o in orders} == {(D("0.5"), "FILLED")}
    positions = await rows(rt, "SELECT quantity FROM follow_positions")
    assert [p["quantity"] for p in positions] == [D(1)] * followers  # each fill applied once


async def _insert_follow(rt, follower_id: int, leader_id: int) -> int:
    async with rt.sessions() as session, session.begin():
        row = Follow(
            follower_id=follower_id,
            leader_id=leader_id,
            mode="FIXED_AMOUNT",
            allocation=D(500),
            fixed_amount=D(50),
        )
        session.add(row)
        await session.flush()
        return row.id


async def test_copy_worker_background_job_copies_on_its_own(api, rt, engines):
    """The job the server registers (app.background) copies without being driven."""
    from app.background import PeriodicJobs

    maker = await funded_user(rt, "maker", BTC="10", USDT="10000")
    await place(rt, maker, limit(SELL, "5", "100"))
    leader_id, leader_token = await leader(api, rt, "lea@example.com", USDT="1000")
    _, token, follow_id = await follower(
        api, rt, "f@example.com", leader_id, allocation="500", mode="FIXED_RATIO", ratio="0.1"
    )
    jobs = PeriodicJobs(rt)
    jobs.add("copy-trading", 0.02, copy_trading.run_once)
    jobs.start()
    try:
        await order(api, leader_token, "BUY", "1", "100", timeInForce="IOC")

        async def copied() -> bool:
            return await caught_up(rt) and bool(await scalar(rt, "SELECT count(*) FROM copies"))

        assert await eventually(copied, within=10)
        (copy,) = await copies_of(api, token, follow_id)
        assert (copy["status"], copy["order"]["filledQuantity"]) == ("PLACED", "0.1000")
    finally:
        await jobs.stop()
    await asyncio.sleep(0)
