"""Warnings for PRE_TRADE limits: when an admitted order (or amendment) takes a figure to
its limit's warning ratio, the trader gets one RISK notification for that limit that day,
written in the placement's transaction with its outbox event; an order far from every
limit writes nothing more, and one near a limit already warned of today neither."""

from __future__ import annotations

import asyncio

from app.risk.domain.limits import LimitKind
from app.risk.domain.states import Scope
from app.risk.limits import Target
from app.trading import commands
from app.trading.domain.orders import Side
from tests.risk.support import make_admin, set_limit
from tests.support.trading import D, funded_user, limit, place, rows

BUY = Side.BUY


async def warnings_of(rt, uid):
    return await rows(
        rt,
        "SELECT source, type, priority, title, body FROM notifications"
        " WHERE user_id = $1 AND source LIKE 'risk-warning:%' ORDER BY id",
        uid,
    )


def writes_notifications(statements) -> int:
    return len([s for s in statements if "INSERT INTO notifications" in s])


async def test_trades_per_day_warns_once_at_its_ratio(rt, engines, statements):
    uid = await funded_user(rt, "busy", USDT="100000")
    row = await set_limit(rt, uid, LimitKind.TRADES_PER_DAY, 5)  # warns at 4 (80 %)
    for price in ("90", "91", "92"):
        await place(rt, uid, limit(BUY, "0.1", price))
    assert await warnings_of(rt, uid) == []
    await asyncio.sleep(0)
    statements.clear()
    await place(rt, uid, limit(BUY, "0.1", "93"))  # the 4th: 80 %
    await asyncio.sleep(0)
    assert writes_notifications(statements) == 1
    (warning,) = await warnings_of(rt, uid)
    assert warning["source"] == f"risk-warning:{row.id}:{rt.now().date().isoformat()}"
    assert (warning["type"], warning["priority"], warning["title"]) == (
        "RISK", "MEDIUM", "Risk limit near",
    )  # fmt: skip
    assert "TRADES_PER_DAY of 5 ORDERS" in warning["body"] and "at 4 (80 %)" in warning["body"]
    outbox = await rows(
        rt, "SELECT payload FROM outbox WHERE topic = 'notifications' AND user_id = $1", uid
    )
    assert len(outbox) == 1
    statements.clear()
    await place(rt, uid, limit(BUY, "0.1", "94"))  # the 5th: warned of today already
    await asyncio.sleep(0)
    assert writes_notifications(statements) == 0
    assert len(await warnings_of(rt, uid)) == 1


async def test_an_order_far_from_every_limit_writes_nothing_more(rt, engines, statements):
    uid = await funded_user(rt, "calm", USDT="100000")
    await set_limit(rt, uid, LimitKind.TRADES_PER_DAY, 100)
    await set_limit(rt, uid, LimitKind.ASSET_EXPOSURE, 1000)
    await asyncio.sleep(0)
    statements.clear()
    await place(rt, uid, limit(BUY, "0.1", "100"))
    await asyncio.sleep(0)
    assert writes_notifications(statements) == 0
    assert await warnings_of(rt, uid) == []


async def test_exposure_near_its_limit_warns_and_a_platform_limit_warns_each_trader(rt, engines):
    admin = await make_admin(rt)
    uid = await funded_user(rt, "buyer", USDT="100000")
    other = await funded_user(rt, "other", USDT="100000")
    await set_limit(rt, uid, LimitKind.ASSET_EXPOSURE, 100)
    await set_limit(rt, admin, LimitKind.ORDER_NOTIONAL, 1000, target=Target(Scope.PLATFORM))
    order = await place(rt, uid, limit(BUY, "0.5", "100"))  # 50 USD: 50 %
    assert await warnings_of(rt, uid) == []
    await commands.amend_order(rt, user_id=uid, order_id=order.id, price=None, quantity=D("0.85"))
    (warning,) = await warnings_of(rt, uid)  # the amendment took it to 85 %
    assert "ASSET_EXPOSURE of 100 USD" in warning["body"]
    third = await funded_user(rt, "third", USDT="100000")
    for trader in (other, third, other):
        await place(rt, trader, limit(BUY, "9", "100"))  # 900 USD: 90 % of the platform's
    for trader in (other, third):
        (warning,) = await warnings_of(rt, trader)
        assert "ORDER_NOTIONAL of 1000 USD (PLATFORM)" in warning["body"]
