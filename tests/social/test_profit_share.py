"""Profit sharing: a follower's realized copy profit above the high-water mark pays the
leader its share through the ledger, once per day, seen by both sides through GraphQL;
a follower short of funds pays what it has and the rest at the next settlement."""

from __future__ import annotations

from datetime import date, timedelta

from app.notifications.notifications import notify_from_events
from app.social import profit_share
from app.trading import commands
from app.trading.domain.orders import Side
from tests.social.test_copy_trading import (
    copy_all,
    follow_position,
    follower,
    leader,
    order,
)
from tests.support import gid
from tests.support.trading import D, funded_user, limit, place, rows, scalar, wallet

BUY, SELL = Side.BUY, Side.SELL
DAY = date(2026, 11, 21)
SETTLEMENTS = """
query($role: ProfitShareRole) {
  profitShareSettlements(role: $role) { edges { node {
    role period amount currency realizedPnl highWaterMarkBefore highWaterMarkAfter
    follow { id }
  } } }
}
"""


# bought 0.5 at 100 (cost 50.1 with the fee), sold at 109 (54.5 less 0.109): 4.291
REALIZED = D("4.291")
SHARE = D("0.4291")  # the leader's 10 %


async def _profitable_follow(api, rt, usdt: str) -> tuple[int, str, int, str, int]:
    """A leader (10 % share) and a follower whose copy made REALIZED: (leader id, leader
    token, follower id, follower token, follow id)."""
    maker = await funded_user(rt, "maker", BTC="10", USDT="10000")
    bidder = await funded_user(rt, "bidder", USDT="10000")
    await place(rt, maker, limit(SELL, "1.5", "100"))  # the leader's 1, the follower's 0.5
    leader_id, leader_token = await leader(api, rt, "lea@example.com", USDT="1000")
    uid, token, follow_id = await follower(
        api, rt, "f@example.com", leader_id, usdt=usdt, allocation=usdt, mode="FIXED_AMOUNT",
        fixed="50",
    )  # fmt: skip
    await order(api, leader_token, "BUY", "1", "100", timeInForce="IOC")
    await copy_all(rt)
    await place(rt, bidder, limit(BUY, "2", "109"))
    await order(api, leader_token, "SELL", "1", "109", timeInForce="IOC")
    await copy_all(rt)
    assert await follow_position(rt, follow_id) == (0, 0, REALIZED), await rows(
        rt, "SELECT status, reason, side, quantity, price FROM copies"
    )
    return leader_id, leader_token, uid, token, follow_id


async def test_the_leader_share_moves_through_the_ledger_once_per_day(api, rt, engines):
    leader_id, leader_token, uid, token, follow_id = await _profitable_follow(api, rt, "1000")
    leader_before = (await wallet(rt, leader_id, "USDT"))[0]
    follower_before = (await wallet(rt, uid, "USDT"))[0]

    assert await profit_share.settle_profit_shares(rt, period=DAY) == 1
    assert await profit_share.settle_profit_shares(rt, period=DAY) == 0  # once a day
    assert (await wallet(rt, leader_id, "USDT"))[0] == leader_before + SHARE
    assert (await wallet(rt, uid, "USDT"))[0] == follower_before - SHARE
    (entry,) = await rows(
        rt,
        "SELECT e.kind, s.amount, s.entry_id = e.id AS linked FROM profit_share_settlements s"
        " JOIN journal_entries e ON e.id = s.entry_id",
    )
    assert (entry["kind"], entry["amount"], entry["linked"]) == ("PROFIT_SHARE", SHARE, True)
    assert await scalar(rt, "SELECT high_water_mark FROM follows WHERE id = $1", follow_id) == (
        REALIZED
    )
    # no new profit: the next day settles nothing
    assert await profit_share.settle_profit_shares(rt, period=DAY + timedelta(days=1)) == 0

    expected = {
        "period": DAY.isoformat(),
        "amount": "0.429100",  # SHARE at USDT's 6 places
        "currency": "USDT",
        "realizedPnl": "4.291000",  # REALIZED
        "highWaterMarkBefore": "0.000000",
        "highWaterMarkAfter": "4.291000",
        "follow": {"id": gid("Follow", follow_id)},
    }
    for who, role in ((leader_token, "LEADER"), (token, "FOLLOWER")):
        body = await api.data(SETTLEMENTS, token=who)
        assert [e["node"] for e in body["profitShareSettlements"]["edges"]] == [
            {"role": role, **expected}
        ]
        other = "FOLLOWER" if role == "LEADER" else "LEADER"
        body = await api.data(SETTLEMENTS, {"role": other}, token=who)
        assert body["profitShareSettlements"]["edges"] == []
    events = await rows(
        rt, "SELECT user_id, payload FROM outbox WHERE topic = 'social.profit_share' ORDER BY id"
    )
    assert sorted((e["user_id"], e["payload"]["role"], e["payload"]["amount"]) for e in events) == (
        sorted([(leader_id, "LEADER", str(SHARE)), (uid, "FOLLOWER", str(SHARE))])
    )
    # and each party is told, from those events
    await notify_from_events(rt)
    told = await rows(
        rt,
        "SELECT user_id, title FROM notifications WHERE title LIKE 'Profit share%' ORDER BY id",
    )
    assert sorted((n["user_id"], n["title"]) for n in told) == sorted(
        [(leader_id, "Profit share received"), (uid, "Profit share paid")]
    )


async def test_a_short_follower_pays_what_it_has_and_the_rest_later(api, rt, engines):
    leader_id, _, uid, token, follow_id = await _profitable_follow(api, rt, "60")
    # the follower's money goes into a resting bid: little is left available
    await order(api, token, "BUY", "0.64", "100")
    available = (await wallet(rt, uid, "USDT"))[0]
    assert 0 < available < SHARE

    assert await profit_share.settle_profit_shares(rt, period=DAY) == 1
    mark = await scalar(rt, "SELECT high_water_mark FROM follows WHERE id = $1", follow_id)
    assert mark == available * 10  # raised only by the profit the payment covers
    assert (await wallet(rt, uid, "USDT"))[0] == 0
    # nothing available the next day: the day is settled with nothing paid
    assert await profit_share.settle_profit_shares(rt, period=DAY + timedelta(days=1)) == 1
    # once the bid is canceled, the third day charges the rest
    (bid,) = await rows(rt, "SELECT id FROM orders WHERE user_id = $1 AND status = 'OPEN'", uid)
    await commands.cancel_order(rt, user_id=uid, order_id=bid["id"])
    assert await profit_share.settle_profit_shares(rt, period=DAY + timedelta(days=2)) == 1
    paid = await rows(rt, "SELECT period, amount FROM profit_share_settlements ORDER BY period")
    assert [p["amount"] for p in paid] == [available, 0, SHARE - available]
    assert sum(p["amount"] for p in paid) == SHARE
    assert await scalar(rt, "SELECT high_water_mark FROM follows WHERE id = $1", follow_id) == (
        REALIZED
    )
    leader_events = await scalar(
        rt,
        "SELECT count(*) FROM outbox WHERE topic = 'social.profit_share' AND user_id = $1",
        leader_id,
    )
    assert leader_events == 2  # a day that paid nothing tells nobody
