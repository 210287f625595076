"""A bot's orders under the PRE_TRADE guard: its amendments meet its owner's limits on the
owner's figures (which count the owner's and every bot's orders) and its BOT limits on
its own, as its placements do; the warnings its orders and amendments give go to its
owner (a sub-account reads no notifications), once a day per limit, whoever of the owner
and their bots nears it first."""

from __future__ import annotations

import pytest

from app.risk.domain.errors import RiskLimitReached
from app.risk.domain.limits import LimitKind
from app.risk.domain.states import Scope
from app.risk.limits import Target
from app.trading import commands
from app.trading.domain.orders import Side
from tests.risk.support import set_limit, trading_bot
from tests.support.trading import D, funded_user, limit, place, rows, scalar

BUY = Side.BUY


async def warnings_of(rt, uid):
    return await rows(
        rt,
        "SELECT source, body FROM notifications"
        " WHERE user_id = $1 AND source LIKE 'risk-warning:%' ORDER BY id",
        uid,
    )


async def amend(rt, uid, order_id, quantity):
    return await commands.amend_order(
        rt, user_id=uid, order_id=order_id, price=None, quantity=D(quantity)
    )


async def quantity_of(rt, order_id):
    return await scalar(rt, "SELECT quantity FROM orders WHERE id = $1", order_id)


async def test_a_bots_amendment_meets_its_owners_exposure_and_its_bot_limit(rt, engines):
    owner = await funded_user(rt, "owner", USDT="10000")
    one = await trading_bot(rt, owner, "one", USDT="1000")
    two = await trading_bot(rt, owner, "two", USDT="1000")
    await set_limit(rt, owner, LimitKind.ASSET_EXPOSURE, 50)
    await set_limit(
        rt, owner, LimitKind.ORDER_NOTIONAL, 15, target=Target(Scope.BOT, bot_id=one.id)
    )
    await place(rt, owner, limit(BUY, "0.2", "100"))  # the owner's own 20 USD of BTC
    first = await place(rt, one.account, limit(BUY, "0.1", "100"))  # 30
    second = await place(rt, two.account, limit(BUY, "0.05", "100"))  # 35

    with pytest.raises(RiskLimitReached) as caught:  # + 20: 55, the owner's figures
        await amend(rt, two.account, second.id, "0.25")
    assert f"ASSET_EXPOSURE of 50 USD (USER {owner})" in caught.value.message
    with pytest.raises(RiskLimitReached) as caught:  # 16 USD: its own BOT limit (41 < 50)
        await amend(rt, one.account, first.id, "0.16")
    assert f"ORDER_NOTIONAL of 15 USD (BOT {one.id})" in caught.value.message
    assert (await quantity_of(rt, second.id), await quantity_of(rt, first.id)) == (
        D("0.05"), D("0.1"),
    )  # fmt: skip
    assert await warnings_of(rt, owner) == []  # a refused amendment warns of nothing

    await amend(rt, one.account, first.id, "0.15")  # 15 of 15, and the owner's 40 of 50
    assert await quantity_of(rt, first.id) == D("0.15")
    bodies = sorted(w["body"] for w in await warnings_of(rt, owner))
    assert len(bodies) == 2
    assert f"ASSET_EXPOSURE of 50 USD (USER {owner}) is at 40 (80 %)" in bodies[0]
    assert f"ORDER_NOTIONAL of 15 USD (BOT {one.id}) is at 15 (100 %)" in bodies[1]
    assert await warnings_of(rt, one.account) == []
    await amend(rt, one.account, first.id, "0.12")  # a shrink passes, warns of nothing new
    assert len(await warnings_of(rt, owner)) == 2


async def test_a_bots_near_limit_warning_reaches_its_owner_once(rt, engines):
    owner = await funded_user(rt, "owner", USDT="10000")
    bot = await trading_bot(rt, owner, "one", USDT="1000")
    row = await set_limit(rt, owner, LimitKind.TRADES_PER_DAY, 5)  # warns at 4 (80 %)
    await place(rt, owner, limit(BUY, "0.1", "90"))
    await place(rt, owner, limit(BUY, "0.1", "91"))
    await place(rt, bot.account, limit(BUY, "0.1", "92"))
    assert await warnings_of(rt, owner) == []
    await place(rt, bot.account, limit(BUY, "0.1", "93"))  # the owner's 4th: the bot's
    (warning,) = await warnings_of(rt, owner)
    assert warning["source"] == f"risk-warning:{row.id}:{rt.now().date().isoformat()}"
    assert f"TRADES_PER_DAY of 5 ORDERS (USER {owner}) is at 4 (80 %)" in warning["body"]
    assert await warnings_of(rt, bot.account) == []
    await place(rt, owner, limit(BUY, "0.1", "94"))  # the 5th, the owner's: warned already
    assert len(await warnings_of(rt, owner)) == 1
    assert await warnings_of(rt, bot.account) == []
