"""What fills set off (``app.risk.triggers``, the ``risk-triggers`` consumer): a loss
limit moves the user's state, cancels their orders, sells their positions or cools them
down; every transition is recorded with its reason and notified; a limit that nears its
threshold warns once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from app.risk import status, triggers
from app.risk.domain.errors import RiskHalted, RiskReducing
from app.risk.domain.limits import Action, LimitKind
from app.risk.domain.states import Scope
from app.trading.domain.orders import Side
from tests.risk.support import set_limit
from tests.support.trading import (
    D,
    eventually,
    funded_user,
    limit,
    place,
    reload,
    rows,
    scalar,
    trade_at,
    wallet,
)
from tests.support.withdrawing import Pinned

BUY, SELL = Side.BUY, Side.SELL


async def state(rt, uid: int) -> str | None:
    return await scalar(
        rt, "SELECT state FROM risk_states WHERE scope = 'USER' AND scope_id = $1", uid
    )


async def notes(rt, uid: int) -> list:
    return await rows(
        rt, "SELECT title, priority, body FROM notifications WHERE user_id = $1 ORDER BY id", uid
    )


async def test_a_daily_loss_halts_and_cancels_the_open_orders(rt, engines):
    maker = await funded_user(rt, "maker", BTC="2")
    uid = await funded_user(rt, "trader", USDT="1000")
    other = await funded_user(rt, "other", USDT="1000")
    await set_limit(rt, uid, LimitKind.DAILY_LOSS, 5, Action.CANCEL_ORDERS)
    await trade_at(rt, maker, uid, "100", "0.5")
    resting = await place(rt, uid, limit(SELL, "0.2", "110"))
    assert await triggers.run_once(rt) > 0
    assert await state(rt, uid) == "ACTIVE"  # 0.1 USD of fees lost: below 5
    await trade_at(rt, maker, other, "95", "0.1")
    await trade_at(rt, maker, other, "86", "0.1")  # BTC now at 86: 0.5 x 14 + fee lost
    await triggers.run_once(rt)
    assert await state(rt, uid) == "HALTED"
    assert await eventually(lambda: _canceled(rt, resting.id))
    with pytest.raises(RiskHalted) as caught:
        await place(rt, uid, limit(SELL, "0.1", "90"))
    assert "DAILY_LOSS of 5 USD (USER" in caught.value.message
    (transition,) = await rows(rt, "SELECT * FROM risk_transitions WHERE scope_id = $1", uid)
    assert (transition["from_state"], transition["to_state"], transition["actor_id"]) == (
        "ACTIVE",
        "HALTED",
        None,
    )
    assert transition["reason"].startswith("DAILY_LOSS of 5 USD (USER")
    assert "reached (7.1" in transition["reason"]
    (note,) = await notes(rt, uid)
    assert (note["title"], note["priority"]) == ("Risk limit reached", "CRITICAL")
    assert "open orders are being canceled" in note["body"]
    seen = await status.risk_status(rt, user_id=uid)
    (mine,) = [v for v in seen.scopes if v.status.ref.scope is Scope.USER]
    ((usage,),) = [mine.limits]
    assert (usage.value, usage.reached, mine.state.value) == (D("7.1"), True, "HALTED")
    await triggers.run_once(rt)  # nothing new: no second transition, no second note
    assert await scalar(rt, "SELECT count(*) FROM risk_transitions") == 1
    assert len(await notes(rt, uid)) == 1


async def _canceled(rt, order_id: int) -> bool:
    return (await reload(rt, order_id)).status == "CANCELED"


async def test_a_limit_near_its_threshold_warns_once_a_day(rt, engines):
    maker = await funded_user(rt, "maker", BTC="2")
    uid = await funded_user(rt, "trader", USDT="1000")
    other = await funded_user(rt, "other", USDT="1000")
    await set_limit(rt, uid, LimitKind.DRAWDOWN, 10, Action.BLOCK_ENTRIES, warn_ratio=D("0.5"))
    await trade_at(rt, maker, uid, "100", "0.5")
    await trade_at(rt, maker, other, "95", "0.1")
    await trade_at(rt, maker, other, "88", "0.1")  # 6 + fee down from the peak
    await triggers.run_once(rt)
    assert await state(rt, uid) == "ACTIVE"
    (note,) = await notes(rt, uid)
    assert (note["title"], note["priority"]) == ("Risk limit near", "MEDIUM")
    assert "DRAWDOWN of 10 USD" in note["body"]
    await trade_at(rt, maker, other, "89", "0.1")
    await triggers.run_once(rt)
    assert len(await notes(rt, uid)) == 1


async def test_blocking_entries_leaves_the_way_out_open(rt, engines):
    maker = await funded_user(rt, "maker", BTC="2")
    uid = await funded_user(rt, "trader", USDT="1000")
    other = await funded_user(rt, "other", USDT="1000")
    await set_limit(rt, uid, LimitKind.WEEKLY_LOSS, 3, Action.BLOCK_ENTRIES)
    await trade_at(rt, maker, uid, "100", "0.5")
    resting = await place(rt, uid, limit(SELL, "0.1", "109"))
    await trade_at(rt, maker, other, "92", "0.1")
    await triggers.run_once(rt)
    assert await state(rt, uid) == "REDUCING"
    assert (await reload(rt, resting.id)).status == "OPEN"  # nothing canceled
    with pytest.raises(RiskReducing):
        await place(rt, uid, limit(BUY, "0.1", "92"))
    assert (await place(rt, uid, limit(SELL, "0.1", "99"))).status == "OPEN"
    (note,) = await notes(rt, uid)
    assert note["priority"] == "HIGH" and "only orders that reduce" in note["body"]


async def test_consecutive_losses_cool_down_then_trading_comes_back(rt, engines):
    maker = await funded_user(rt, "maker", BTC="2")
    uid = await funded_user(rt, "trader", USDT="1000")
    buyer = await funded_user(rt, "buyer", USDT="1000")
    await set_limit(rt, uid, LimitKind.CONSECUTIVE_LOSSES, 1, Action.COOL_DOWN, cooldown_seconds=60)
    await trade_at(rt, maker, uid, "100", "0.5")
    await triggers.run_once(rt)
    await trade_at(rt, uid, buyer, "96", "0.2")  # a losing close
    await triggers.run_once(rt)
    assert await state(rt, uid) == "HALTED"
    until = await scalar(rt, "SELECT cooldown_until FROM risk_states WHERE scope_id = $1", uid)
    assert until is not None
    with pytest.raises(RiskHalted):
        await place(rt, uid, limit(SELL, "0.1", "99"))
    rt.clock = Pinned(until + timedelta(seconds=1))
    assert (await place(rt, uid, limit(SELL, "0.1", "99"))).status == "OPEN"  # over
    assert await triggers.expire_cool_downs(rt) == 1
    assert await state(rt, uid) == "ACTIVE"
    trail = await rows(rt, "SELECT from_state, to_state, reason FROM risk_transitions ORDER BY id")
    assert [(t["from_state"], t["to_state"]) for t in trail] == [
        ("ACTIVE", "HALTED"),
        ("HALTED", "ACTIVE"),
    ]
    assert trail[0]["reason"].startswith("CONSECUTIVE_LOSSES of 1 LOSSES")
    assert trail[1]["reason"] == "cool-down over"


async def test_reduce_to_flat_sells_the_positions(rt, engines):
    maker = await funded_user(rt, "maker", BTC="2")
    uid = await funded_user(rt, "trader", USDT="1000")
    other = await funded_user(rt, "other", USDT="1000")
    await set_limit(rt, uid, LimitKind.DAILY_LOSS, 5, Action.REDUCE_TO_FLAT)
    await trade_at(rt, maker, uid, "100", "0.5")
    resting = await place(rt, uid, limit(SELL, "0.2", "110"))
    await trade_at(rt, maker, other, "95", "0.1")
    await trade_at(rt, maker, other, "86", "0.1")
    await place(rt, other, limit(BUY, "1", "85"))  # the bid the sale meets
    await triggers.run_once(rt)
    assert await state(rt, uid) == "REDUCING"
    assert (await reload(rt, resting.id)).status == "CANCELED"
    assert await wallet(rt, uid, "BTC") == (D(0), D(0))
    sold = await rows(
        rt, "SELECT type, side, status, filled_quantity FROM orders WHERE user_id = $1"
        " AND client_order_id LIKE 'risk-flat-%'", uid,
    )  # fmt: skip
    assert [tuple(r) for r in sold] == [("MARKET", "SELL", "FILLED", D("0.5"))]
    (note,) = await notes(rt, uid)
    assert "positions are being sold" in note["body"]


async def test_a_halt_and_concurrent_placements_take_turns(rt, engines):
    """While the consumer halts the trader (and cancels their orders), placements keep
    coming: each either committed before the halt (and is canceled by it) or is refused
    after it; none slips in between and stays open."""
    maker = await funded_user(rt, "maker", BTC="2")
    uid = await funded_user(rt, "trader", USDT="1000")
    other = await funded_user(rt, "other", USDT="1000")
    await set_limit(rt, uid, LimitKind.DAILY_LOSS, 5, Action.CANCEL_ORDERS)
    await trade_at(rt, maker, uid, "100", "0.5")
    await trade_at(rt, maker, other, "95", "0.1")
    await trade_at(rt, maker, other, "86", "0.1")
    buys = [place(rt, uid, limit(BUY, "0.1", str(80 + n % 5))) for n in range(30)]
    got = await asyncio.gather(*buys[:12], triggers.run_once(rt), *buys[12:],
                               return_exceptions=True)  # fmt: skip
    answers = [type(a).__name__ for i, a in enumerate(got) if i != 12]
    assert set(answers) <= {"Order", "RiskHalted"}, answers
    assert await state(rt, uid) == "HALTED"

    async def none_open() -> bool:
        live = await scalar(
            rt, "SELECT count(*) FROM orders WHERE user_id = $1 AND status = 'OPEN'", uid
        )
        return live == 0

    assert await eventually(none_open)
