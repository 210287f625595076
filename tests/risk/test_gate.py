"""The risk check in the placement transaction, on real PostgreSQL: concurrent
placements against a trades-per-day or an exposure limit pass exactly as many as the
limit allows, states refuse what they refuse, and the check costs no statement of its
own."""

from __future__ import annotations

import asyncio

import pytest

from app.risk.domain.errors import RiskHalted, RiskLimitReached, RiskReducing
from app.risk.domain.limits import LimitKind
from app.risk.domain.states import RiskState, Scope, ScopeRef
from app.risk.limits import Target
from app.trading import commands
from app.trading.domain.errors import TooManyOpenOrders
from app.trading.domain.orders import Side
from tests.risk.support import execute, force_state, kinds, make_admin, set_limit
from tests.support.trading import (
    D,
    funded_user,
    limit,
    market_id,
    place,
    scalar,
)

BUY, SELL = Side.BUY, Side.SELL


async def test_concurrent_placements_pass_exactly_the_trades_per_day(rt, engines):
    uid = await funded_user(rt, "busy", USDT="100000")
    await set_limit(rt, uid, LimitKind.TRADES_PER_DAY, 7)
    calls = [place(rt, uid, limit(BUY, "0.1", str(90 + n % 5))) for n in range(30)]
    got = await asyncio.gather(*calls, return_exceptions=True)
    assert kinds(got) == ["Order"] * 7 + ["RiskLimitReached"] * 23
    assert await scalar(rt, "SELECT count(*) FROM orders WHERE user_id = $1", uid) == 7
    refused = next(a for a in got if isinstance(a, RiskLimitReached))
    assert "TRADES_PER_DAY of 7 ORDERS (USER" in refused.message
    assert refused.field == "quantity"
    again = await asyncio.gather(
        place(rt, uid, limit(SELL, "0.1", "101")), return_exceptions=True
    )  # a reducing order counts too
    assert kinds(again) == ["RiskLimitReached"]


async def test_concurrent_buys_pass_exactly_the_asset_exposure(rt, engines):
    uid = await funded_user(rt, "buyer", USDT="100000")
    # each order: 0.1 BTC at 100 = 10 USD of BTC being bought; 85 USD admits 8
    await set_limit(rt, uid, LimitKind.ASSET_EXPOSURE, 85)
    calls = [place(rt, uid, limit(BUY, "0.1", "100")) for _ in range(25)]
    got = await asyncio.gather(*calls, return_exceptions=True)
    assert kinds(got) == ["Order"] * 8 + ["RiskLimitReached"] * 17
    assert await scalar(rt, "SELECT count(*) FROM orders WHERE user_id = $1", uid) == 8


async def test_exposure_counts_what_is_held_and_a_sell_reduces_it(rt, engines):
    uid = await funded_user(rt, "holder", USDT="1000", BTC="1")  # 1 BTC at the reference
    price = await scalar(rt, "SELECT usd_price FROM reference_prices WHERE currency = 'BTC'")
    await set_limit(rt, uid, LimitKind.TOTAL_EXPOSURE, price + 6)
    with pytest.raises(RiskLimitReached):
        await place(rt, uid, limit(BUY, "0.1", "100"))  # +10 USD of BTC
    assert (await place(rt, uid, limit(BUY, "0.06", "100"))).status == "OPEN"  # +6
    assert (await place(rt, uid, limit(SELL, "0.5", "110"))).status == "OPEN"


async def test_a_halted_user_places_nothing_and_a_reducing_one_only_sells(rt, engines):
    uid = await funded_user(rt, "careful", USDT="1000", BTC="1")
    await force_state(rt, ScopeRef(Scope.USER, uid), RiskState.REDUCING, "DAILY_LOSS reached")
    with pytest.raises(RiskReducing) as caught:
        await place(rt, uid, limit(BUY, "0.1", "100"))
    assert "DAILY_LOSS reached" in caught.value.message
    assert (await place(rt, uid, limit(SELL, "0.1", "110"))).status == "OPEN"
    await force_state(rt, ScopeRef(Scope.USER, uid), RiskState.HALTED, "by hand")
    for order in (limit(BUY, "0.1", "100"), limit(SELL, "0.1", "110")):
        with pytest.raises(RiskHalted):
            await place(rt, uid, order)
    other = await funded_user(rt, "other", USDT="1000")
    assert (await place(rt, other, limit(BUY, "0.1", "100"))).status == "OPEN"


async def test_a_market_halt_and_platform_limits_are_an_admins(rt, engines):
    admin = await make_admin(rt)
    uid = await funded_user(rt, "trader", USDT="100000")
    await set_limit(rt, admin, LimitKind.ORDER_NOTIONAL, 50, target=Target(Scope.PLATFORM))
    with pytest.raises(RiskLimitReached) as caught:
        await place(rt, uid, limit(BUY, "1", "100"))
    assert "ORDER_NOTIONAL of 50 USD (PLATFORM)" in caught.value.message
    assert (await place(rt, uid, limit(BUY, "0.4", "100"))).status == "OPEN"
    btc = await market_id(rt)
    await force_state(rt, ScopeRef(Scope.MARKET, btc), RiskState.HALTED, "maintenance")
    with pytest.raises(RiskHalted):
        await place(rt, uid, limit(BUY, "0.1", "100"))
    assert (await place(rt, uid, limit(BUY, "0.01", "2990"), symbol="ETH/USDT")).status == "OPEN"
    actions = await scalar(rt, "SELECT array_agg(action ORDER BY id) FROM audit_log")
    assert actions == ["risk.limit_set"]


async def test_the_platforms_own_limits_still_come_first(rt, engines, monkeypatch):
    monkeypatch.setattr(
        rt, "settings", rt.settings.model_copy(update={"trading_max_open_orders": 1})
    )
    uid = await funded_user(rt, "trader", USDT="1000")
    await set_limit(rt, uid, LimitKind.TRADES_PER_DAY, 1)
    await place(rt, uid, limit(BUY, "0.1", "99"))
    with pytest.raises(TooManyOpenOrders):
        await place(rt, uid, limit(BUY, "0.1", "98"))


async def test_the_check_is_part_of_the_markets_statement(rt, engines, statements):
    uid = await funded_user(rt, "trader", USDT="1000")
    await set_limit(rt, uid, LimitKind.TRADES_PER_DAY, 10)
    await asyncio.sleep(0)
    statements.clear()
    await place(rt, uid, limit(BUY, "0.1", "99"))
    await asyncio.sleep(0)
    risky = [s for s in statements if "risk_limits" in s]
    assert len(risky) == 1 and "FROM markets m" in risky[0]
    quiet = await funded_user(rt, "quiet", USDT="1000")
    statements.clear()
    await place(rt, quiet, limit(BUY, "0.1", "99"))
    await asyncio.sleep(0)
    assert len([s for s in statements if "risk_limits" in s]) == 1


async def test_without_risk_checks_the_markets_statement_reads_no_risk(rt, engines, statements):
    uid = await funded_user(rt, "trader", USDT="1000")
    await set_limit(rt, uid, LimitKind.TRADES_PER_DAY, 1)
    rt.risk_checks = False
    try:
        statements.clear()
        for price in ("99", "98"):
            await place(rt, uid, limit(BUY, "0.1", price))
        await asyncio.sleep(0)
        assert not [s for s in statements if "risk_limits" in s]
    finally:
        rt.risk_checks = True
    with pytest.raises(RiskLimitReached):
        await place(rt, uid, limit(BUY, "0.1", "97"))


async def test_a_stale_market_refuses_entries(rt, engines):
    uid = await funded_user(rt, "trader", USDT="1000", BTC="1")
    seller = await funded_user(rt, "seller", BTC="1")
    await place(rt, seller, limit(SELL, "0.1", "100"))
    await place(rt, uid, limit(BUY, "0.1", "100"))  # a trade now
    await set_limit(rt, uid, LimitKind.STALE_MARKET_DATA, 60)
    assert (await place(rt, uid, limit(BUY, "0.1", "99"))).status == "OPEN"
    await execute(rt, "UPDATE fills SET created_at = now() - interval '2 minutes'")
    with pytest.raises(RiskLimitReached):
        await place(rt, uid, limit(BUY, "0.1", "98"))
    assert (await place(rt, uid, limit(SELL, "0.1", "105"))).status == "OPEN"


async def test_a_follow_scope_binds_its_copy_orders_only(rt, engines):
    uid = await funded_user(rt, "follower", USDT="1000")
    await force_state(rt, ScopeRef(Scope.FOLLOW, 42), RiskState.HALTED, "follow stopped")
    with pytest.raises(RiskHalted) as caught:
        await place(rt, uid, limit(BUY, "0.1", "99"), client_order_id="copy-42-7")
    assert "FOLLOW 42" in caught.value.message
    assert (await place(rt, uid, limit(BUY, "0.1", "99"), client_order_id="copy-43-7")).id
    assert (await place(rt, uid, limit(BUY, "0.1", "99"), client_order_id="mine-42")).id


async def test_amendments_meet_the_states(rt, engines):
    uid = await funded_user(rt, "trader", USDT="1000", BTC="1")
    buy = await place(rt, uid, limit(BUY, "0.1", "99"))
    sell = await place(rt, uid, limit(SELL, "0.1", "105"))
    await force_state(rt, ScopeRef(Scope.USER, uid), RiskState.REDUCING, "losses")
    with pytest.raises(RiskReducing):
        await commands.amend_order(rt, user_id=uid, order_id=buy.id, price=None, quantity=D("0.2"))
    smaller = await commands.amend_order(
        rt, user_id=uid, order_id=buy.id, price=None, quantity=D("0.06")
    )
    assert smaller.quantity == D("0.06")
    grown = await commands.amend_order(
        rt, user_id=uid, order_id=sell.id, price=None, quantity=D("0.2")
    )
    assert grown.quantity == D("0.2")  # selling BTC for USDT reduces exposure
    await force_state(rt, ScopeRef(Scope.USER, uid), RiskState.HALTED, "by hand")
    with pytest.raises(RiskHalted):
        await commands.amend_order(rt, user_id=uid, order_id=sell.id, price=None, quantity=D("0.1"))
    canceled = await commands.cancel_order(rt, user_id=uid, order_id=sell.id)
    assert canceled.status == "CANCELED"  # cancels stay open
