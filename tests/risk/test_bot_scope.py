"""The BOT scope in the placement transaction, on real PostgreSQL: a bot trades as a
sub-account of its owner, so its orders meet its own BOT limits and state and its
owner's ORDER and USER ones; the owner's figures count their bots' orders, so neither
one placement at a time nor many at once gets a user past their limits by running bots."""

from __future__ import annotations

import asyncio

import pytest

from app.risk import status
from app.risk.domain.errors import RiskHalted, RiskLimitReached, RiskReducing
from app.risk.domain.limits import LimitKind
from app.risk.domain.states import RiskState, Scope, ScopeRef
from app.risk.limits import Target
from app.trading import commands
from app.trading.domain.errors import TradingDisabled
from app.trading.domain.orders import Side
from tests.risk.support import force_state, kinds, set_limit, trading_bot
from tests.support.trading import (
    D,
    funded_user,
    limit,
    place,
    scalar,
)

BUY, SELL = Side.BUY, Side.SELL


async def orders_of(rt, *users: int) -> int:
    return await scalar(rt, "SELECT count(*) FROM orders WHERE user_id = ANY($1)", list(users))


async def test_a_bots_order_meets_its_bot_limit_and_its_owners_limits(rt, engines):
    owner = await funded_user(rt, "owner", USDT="10000")
    bot = await trading_bot(rt, owner, "one", USDT="1000")
    other = await trading_bot(rt, owner, "two", USDT="1000")
    await set_limit(
        rt, owner, LimitKind.ORDER_NOTIONAL, 50, target=Target(Scope.BOT, bot_id=bot.id)
    )
    with pytest.raises(RiskLimitReached) as caught:
        await place(rt, bot.account, limit(BUY, "0.6", "100"))  # 60 USD
    assert f"ORDER_NOTIONAL of 50 USD (BOT {bot.id})" in caught.value.message
    assert (await place(rt, other.account, limit(BUY, "0.6", "100"))).status == "OPEN"
    assert (await place(rt, owner, limit(BUY, "0.6", "100"))).status == "OPEN"
    assert (await place(rt, bot.account, limit(BUY, "0.4", "100"))).status == "OPEN"

    await set_limit(rt, owner, LimitKind.ORDER_NOTIONAL, 30)
    for account in (bot.account, other.account):
        with pytest.raises(RiskLimitReached) as caught:
            await place(rt, account, limit(BUY, "0.4", "100"))
        assert f"ORDER_NOTIONAL of 30 USD (USER {owner})" in caught.value.message
    assert (await place(rt, other.account, limit(BUY, "0.2", "100"))).status == "OPEN"
    # a stranger's limits bind no one else's bot
    stranger = await funded_user(rt, "stranger", USDT="1000")
    await set_limit(rt, stranger, LimitKind.ORDER_NOTIONAL, 1)
    assert (await place(rt, other.account, limit(BUY, "0.2", "99"))).status == "OPEN"


async def test_the_owners_trades_per_day_counts_their_bots_orders(rt, engines):
    owner = await funded_user(rt, "owner", USDT="10000")
    bot = await trading_bot(rt, owner, "one", USDT="1000")
    other = await trading_bot(rt, owner, "two", USDT="1000")
    await set_limit(rt, owner, LimitKind.TRADES_PER_DAY, 4)
    await set_limit(rt, owner, LimitKind.TRADES_PER_DAY, 1, target=Target(Scope.BOT, bot_id=bot.id))
    await place(rt, owner, limit(BUY, "0.1", "90"))
    await place(rt, bot.account, limit(BUY, "0.1", "91"))
    with pytest.raises(RiskLimitReached) as caught:  # the bot's own: 1 a day
        await place(rt, bot.account, limit(BUY, "0.1", "92"))
    assert f"(BOT {bot.id})" in caught.value.message
    await place(rt, other.account, limit(BUY, "0.1", "93"))
    await place(rt, other.account, limit(BUY, "0.1", "94"))  # the owner's 4th
    for trader in (owner, other.account):
        with pytest.raises(RiskLimitReached) as caught:
            await place(rt, trader, limit(BUY, "0.1", "95"))
        assert f"TRADES_PER_DAY of 4 ORDERS (USER {owner})" in caught.value.message
    assert await orders_of(rt, owner, bot.account, other.account) == 4
    # the status counts them too
    seen = await status.risk_status(rt, user_id=owner)
    by_scope = {v.status.ref: v for v in seen.scopes}
    (usage,) = by_scope[ScopeRef(Scope.USER, owner)].limits
    assert (usage.value, usage.reached) == (D(4), True)
    (usage,) = by_scope[ScopeRef(Scope.BOT, bot.id)].limits
    assert (usage.value, usage.reached) == (D(1), True)


async def test_the_owners_exposure_counts_what_their_bots_hold_and_buy(rt, engines):
    owner = await funded_user(rt, "owner", USDT="10000")
    bot = await trading_bot(rt, owner, "one", USDT="1000", BTC="0.1")
    btc = await scalar(rt, "SELECT usd_price FROM reference_prices WHERE currency = 'BTC'")
    held = btc * D("0.1")
    await set_limit(rt, owner, LimitKind.ASSET_EXPOSURE, held + 25)
    await place(rt, bot.account, limit(BUY, "0.2", "100"))  # + 20
    with pytest.raises(RiskLimitReached) as caught:
        await place(rt, owner, limit(BUY, "0.1", "100"))  # + 10: past it
    assert f"(USER {owner})" in caught.value.message
    assert (await place(rt, owner, limit(BUY, "0.05", "100"))).status == "OPEN"
    assert (await place(rt, bot.account, limit(SELL, "0.05", "150"))).status == "OPEN"


@pytest.fixture
def one_trader_a_transaction(rt, monkeypatch):
    """Each placement in a transaction of its own, several at once: two bots' orders never
    share a transaction (whose row locks would make them take turns anyway)."""
    alone = {"trading_placement_batch": 1, "trading_placement_concurrency": 6}
    monkeypatch.setattr(rt, "settings", rt.settings.model_copy(update=alone))


async def test_concurrent_placements_of_an_owner_and_their_bots_pass_exactly_the_limit(
    rt, engines, one_trader_a_transaction
):
    owner = await funded_user(rt, "owner", USDT="100000")
    bots = [await trading_bot(rt, owner, f"bot{n}", USDT="10000") for n in range(2)]
    traders = [owner, bots[0].account, bots[1].account]
    await set_limit(rt, owner, LimitKind.TRADES_PER_DAY, 7)
    calls = [place(rt, traders[n % 3], limit(BUY, "0.1", str(90 + n % 5))) for n in range(30)]
    got = await asyncio.gather(*calls, return_exceptions=True)
    assert kinds(got) == ["Order"] * 7 + ["RiskLimitReached"] * 23
    assert await orders_of(rt, *traders) == 7


async def test_concurrent_buys_of_bots_pass_exactly_the_owners_exposure(
    rt, engines, one_trader_a_transaction
):
    owner = await funded_user(rt, "owner", USDT="100000")
    bots = [await trading_bot(rt, owner, f"bot{n}", USDT="10000") for n in range(3)]
    await set_limit(rt, owner, LimitKind.ASSET_EXPOSURE, 85)  # 10 USD each: 8 pass
    calls = [place(rt, bots[n % 3].account, limit(BUY, "0.1", "100")) for n in range(24)]
    got = await asyncio.gather(*calls, return_exceptions=True)
    assert kinds(got) == ["Order"] * 8 + ["RiskLimitReached"] * 16
    assert await orders_of(rt, *(b.account for b in bots)) == 8


async def test_states_of_the_owner_and_of_a_bot(rt, engines):
    owner = await funded_user(rt, "owner", USDT="10000", BTC="1")
    bot = await trading_bot(rt, owner, "one", USDT="1000", BTC="1")
    other = await trading_bot(rt, owner, "two", USDT="1000")
    await force_state(rt, ScopeRef(Scope.BOT, bot.id), RiskState.HALTED, "bot losses")
    with pytest.raises(RiskHalted) as caught:
        await place(rt, bot.account, limit(SELL, "0.1", "110"))
    assert f"BOT {bot.id} is halted" in caught.value.message
    assert (await place(rt, other.account, limit(BUY, "0.1", "99"))).status == "OPEN"
    assert (await place(rt, owner, limit(BUY, "0.1", "99"))).status == "OPEN"
    await force_state(rt, ScopeRef(Scope.USER, owner), RiskState.REDUCING, "owner losses")
    with pytest.raises(RiskReducing):
        await place(rt, other.account, limit(BUY, "0.1", "98"))
    await force_state(rt, ScopeRef(Scope.USER, owner), RiskState.HALTED, "by hand")
    with pytest.raises(RiskHalted) as caught:
        await place(rt, other.account, limit(BUY, "0.1", "98"))
    assert f"USER {owner} is halted" in caught.value.message


async def test_a_bots_amendments_meet_its_owners_state(rt, engines):
    owner = await funded_user(rt, "owner", USDT="10000")
    bot = await trading_bot(rt, owner, "one", USDT="1000")
    buy = await place(rt, bot.account, limit(BUY, "0.1", "99"))
    await force_state(rt, ScopeRef(Scope.USER, owner), RiskState.REDUCING, "owner losses")
    with pytest.raises(RiskReducing):
        await commands.amend_order(
            rt, user_id=bot.account, order_id=buy.id, price=None, quantity=D("0.2")
        )


async def test_the_owners_kill_switch_stops_their_bots(rt, engines):
    owner = await funded_user(rt, "owner", USDT="10000")
    bot = await trading_bot(rt, owner, "one", USDT="1000")
    resting = await place(rt, bot.account, limit(BUY, "0.1", "99"))
    await commands.set_trading_enabled(rt, user_id=owner, enabled=False)
    with pytest.raises(TradingDisabled):
        await place(rt, bot.account, limit(BUY, "0.1", "98"))
    with pytest.raises(TradingDisabled):
        await commands.amend_order(
            rt, user_id=bot.account, order_id=resting.id, price=D("97"), quantity=None
        )


async def test_a_bots_placement_reads_its_scopes_in_the_markets_statement(rt, engines, statements):
    owner = await funded_user(rt, "owner", USDT="10000")
    bot = await trading_bot(rt, owner, "one", USDT="1000")
    await set_limit(rt, owner, LimitKind.TRADES_PER_DAY, 10)
    await set_limit(rt, owner, LimitKind.TRADES_PER_DAY, 5, target=Target(Scope.BOT, bot_id=bot.id))
    await place(rt, bot.account, limit(BUY, "0.1", "99"))  # a warm pool
    await asyncio.sleep(0)
    statements.clear()
    await place(rt, bot.account, limit(BUY, "0.1", "98"))
    await asyncio.sleep(0)
    risky = [s for s in statements if "risk_limits" in s or "bots" in s]
    assert len(risky) == 1 and "FROM markets m" in risky[0]
