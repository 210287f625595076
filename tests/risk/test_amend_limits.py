"""Amendments meet the PRE_TRADE limits as a new order would, in their transaction under
the trader's row lock: ORDER_NOTIONAL on the order as amended, the exposure limits on
what it adds; an amendment that only shrinks an order always passes; the order counts
(TRADES_PER_DAY, ORDER_RATE) do not count an amendment."""

from __future__ import annotations

import asyncio

import pytest

from app.risk.domain.errors import RiskHalted, RiskLimitReached
from app.risk.domain.limits import LimitKind
from app.risk.domain.states import RiskState, Scope, ScopeRef
from app.risk.limits import Target
from app.trading import commands
from app.trading.domain.orders import Side
from tests.risk.support import force_state, kinds, set_limit
from tests.support.trading import D, funded_user, limit, place, reload

BUY, SELL = Side.BUY, Side.SELL


async def amend(rt, uid, order_id, *, price=None, quantity=None):
    return await commands.amend_order(
        rt,
        user_id=uid,
        order_id=order_id,
        price=None if price is None else D(price),
        quantity=None if quantity is None else D(quantity),
    )


async def test_order_notional_judges_the_order_as_amended(rt, engines):
    uid = await funded_user(rt, "trader", USDT="1000", BTC="1")
    await set_limit(rt, uid, LimitKind.ORDER_NOTIONAL, 50)
    buy = await place(rt, uid, limit(BUY, "0.4", "100"))  # 40 USD
    with pytest.raises(RiskLimitReached) as caught:
        await amend(rt, uid, buy.id, quantity="0.6")  # 60 USD
    assert "ORDER_NOTIONAL of 50 USD (USER" in caught.value.message
    assert "to 60" in caught.value.message
    with pytest.raises(RiskLimitReached):
        await amend(rt, uid, buy.id, price="130")  # moved: 0.4 at 130 = 52 USD
    assert (await reload(rt, buy.id)).quantity == D("0.4")  # nothing changed
    assert (await amend(rt, uid, buy.id, price="120", quantity="0.4")).book_price == D("120")
    sell = await place(rt, uid, limit(SELL, "0.35", "130"))  # 45.5 USD
    with pytest.raises(RiskLimitReached):  # a sell's size counts as well
        await amend(rt, uid, sell.id, quantity="0.4")  # 52 USD


async def test_exposure_limits_judge_what_an_amendment_adds(rt, engines):
    uid = await funded_user(rt, "buyer", USDT="100000")
    await set_limit(rt, uid, LimitKind.ASSET_EXPOSURE, 85)
    orders = [await place(rt, uid, limit(BUY, "0.1", "100")) for _ in range(8)]  # 80 USD
    assert (await amend(rt, uid, orders[0].id, quantity="0.15")).quantity == D("0.15")  # 85
    with pytest.raises(RiskLimitReached) as caught:
        await amend(rt, uid, orders[1].id, price="101")  # +0.1 USD: 85.1
    assert "ASSET_EXPOSURE of 85 USD" in caught.value.message
    # a lower price adds nothing: the exposure limits do not judge it
    assert (await amend(rt, uid, orders[1].id, price="99")).book_price == D("99")


async def test_an_amendment_that_only_shrinks_always_passes(rt, engines):
    uid = await funded_user(rt, "trader", USDT="100000")
    big = await place(rt, uid, limit(BUY, "0.5", "100"))
    await set_limit(rt, uid, LimitKind.ORDER_NOTIONAL, 10)  # the order is already beyond
    await set_limit(rt, uid, LimitKind.ASSET_EXPOSURE, 10)
    assert (await amend(rt, uid, big.id, quantity="0.4")).quantity == D("0.4")
    with pytest.raises(RiskLimitReached):
        await amend(rt, uid, big.id, price="99", quantity="0.4")  # moved: judged


async def test_amendments_are_not_orders_placed(rt, engines):
    uid = await funded_user(rt, "trader", USDT="100000")
    await set_limit(rt, uid, LimitKind.TRADES_PER_DAY, 2)
    await set_limit(rt, uid, LimitKind.ORDER_RATE, 2)
    first = await place(rt, uid, limit(BUY, "0.1", "100"))
    await place(rt, uid, limit(BUY, "0.1", "99"))
    for quantity in ("0.2", "0.3", "0.4"):
        assert (await amend(rt, uid, first.id, quantity=quantity)).quantity == D(quantity)
    with pytest.raises(RiskLimitReached):
        await place(rt, uid, limit(BUY, "0.1", "98"))


async def test_concurrent_amendments_pass_exactly_the_exposure(rt, engines):
    uid = await funded_user(rt, "racer", USDT="100000")
    orders = [await place(rt, uid, limit(BUY, "0.1", "100")) for _ in range(6)]  # 60 USD
    await set_limit(rt, uid, LimitKind.ASSET_EXPOSURE, 105)
    # each +20 USD: two fit (100), the others would take it to 120 or more
    calls = [amend(rt, uid, o.id, quantity="0.3") for o in orders]
    got = await asyncio.gather(*calls, return_exceptions=True)
    assert kinds(got) == ["Order"] * 2 + ["RiskLimitReached"] * 4


async def test_a_platform_limit_binds_an_amendment(rt, engines):
    from tests.risk.support import make_admin

    admin = await make_admin(rt)
    uid = await funded_user(rt, "trader", USDT="1000")
    buy = await place(rt, uid, limit(BUY, "0.4", "100"))
    await set_limit(rt, admin, LimitKind.ORDER_NOTIONAL, 50, target=Target(Scope.PLATFORM))
    with pytest.raises(RiskLimitReached) as caught:
        await amend(rt, uid, buy.id, quantity="0.6")
    assert "(PLATFORM)" in caught.value.message


async def test_a_follow_scope_binds_the_amendment_of_its_copy_order(rt, engines):
    uid = await funded_user(rt, "follower", USDT="1000")
    copy = await place(rt, uid, limit(BUY, "0.1", "99"), client_order_id="copy-42-7")
    mine = await place(rt, uid, limit(BUY, "0.1", "98"), client_order_id="mine-42")
    await force_state(rt, ScopeRef(Scope.FOLLOW, 42), RiskState.HALTED, "follow stopped")
    with pytest.raises(RiskHalted) as caught:
        await amend(rt, uid, copy.id, quantity="0.2")
    assert "FOLLOW 42" in caught.value.message
    assert (await amend(rt, uid, mine.id, quantity="0.2")).quantity == D("0.2")
