"""Loss triggers of the BOT and FOLLOW scopes (``app.risk.triggers``): a bot's limit
watches its sub-account's P&L and moves that bot's state only (its orders canceled, its
holdings sold, its owner told); a follow's watches the follow's copy positions and
stops, cancels and closes that follow's copies only."""

from __future__ import annotations

import pytest

from app.risk import triggers
from app.risk.domain.errors import RiskHalted
from app.risk.domain.limits import Action, LimitKind
from app.risk.domain.states import Scope
from app.risk.limits import Target
from app.trading.domain.orders import Side
from tests.risk.support import canceled, copy_position, fall_to_86, set_limit, state, trading_bot
from tests.support.trading import (
    D,
    eventually,
    funded_user,
    limit,
    place,
    reload,
    rows,
    trade_at,
    wallet,
)

BUY, SELL = Side.BUY, Side.SELL


async def status_of(rt, order_id: int) -> str:
    return (await reload(rt, order_id)).status


async def notes(rt, uid: int) -> list:
    return await rows(
        rt, "SELECT title, priority, body FROM notifications WHERE user_id = $1 ORDER BY id", uid
    )


async def test_a_bots_daily_loss_halts_that_bot_only(rt, engines):
    maker = await funded_user(rt, "maker", BTC="2")
    owner = await funded_user(rt, "owner", USDT="1000")
    bot = await trading_bot(rt, owner, "one", USDT="1000")
    sibling = await trading_bot(rt, owner, "two", USDT="1000")
    target = Target(Scope.BOT, bot_id=bot.id)
    await set_limit(rt, owner, LimitKind.DAILY_LOSS, 5, Action.CANCEL_ORDERS, target)
    await trade_at(rt, maker, bot.account, "100", "0.5")
    resting = await place(rt, bot.account, limit(SELL, "0.2", "110"))
    await triggers.run_once(rt)
    assert await state(rt, Scope.BOT, bot.id) == "ACTIVE"
    await fall_to_86(rt, maker)
    siblings = await place(rt, sibling.account, limit(BUY, "0.1", "81"))
    owners = await place(rt, owner, limit(BUY, "0.1", "80"))
    await triggers.run_once(rt)
    assert await state(rt, Scope.BOT, bot.id) == "HALTED"
    assert await state(rt, Scope.BOT, sibling.id) is None
    assert await state(rt, Scope.USER, owner) is None
    assert await eventually(lambda: canceled(rt, resting.id))
    assert [await status_of(rt, o.id) for o in (siblings, owners)] == ["OPEN", "OPEN"]
    with pytest.raises(RiskHalted) as caught:
        await place(rt, bot.account, limit(SELL, "0.1", "90"))
    assert f"BOT {bot.id} is halted" in caught.value.message
    assert (await place(rt, sibling.account, limit(BUY, "0.1", "82"))).status == "OPEN"
    assert (await place(rt, owner, limit(BUY, "0.1", "82"))).status == "OPEN"
    (transition,) = await rows(rt, "SELECT * FROM risk_transitions")
    assert (transition["scope"], transition["scope_id"], transition["to_state"]) == (
        "BOT",
        bot.id,
        "HALTED",
    )
    assert transition["reason"].startswith(f"DAILY_LOSS of 5 USD (BOT {bot.id}) reached (7.1")
    (note,) = await notes(rt, owner)
    assert (note["title"], note["priority"]) == ("Risk limit reached", "CRITICAL")
    assert f"(BOT {bot.id})" in note["body"]
    assert await notes(rt, bot.account) == []


async def test_a_bots_reduce_to_flat_sells_the_bots_holdings_only(rt, engines):
    maker = await funded_user(rt, "maker", BTC="2")
    owner = await funded_user(rt, "owner", USDT="1000", BTC="1")
    bot = await trading_bot(rt, owner, "one", USDT="1000")
    target = Target(Scope.BOT, bot_id=bot.id)
    await set_limit(rt, owner, LimitKind.DRAWDOWN, 5, Action.REDUCE_TO_FLAT, target)
    await trade_at(rt, maker, bot.account, "100", "0.5")
    await fall_to_86(rt, maker)
    bidder = await funded_user(rt, "bidder", USDT="1000")
    await place(rt, bidder, limit(BUY, "1", "85"))  # the bid the sale meets
    await triggers.run_once(rt)
    assert await state(rt, Scope.BOT, bot.id) == "REDUCING"
    assert await wallet(rt, bot.account, "BTC") == (D(0), D(0))
    assert await wallet(rt, owner, "BTC") == (D(1), D(0))
    sold = await rows(
        rt, "SELECT user_id, side, status FROM orders WHERE client_order_id LIKE 'risk-flat-%'"
    )
    assert [tuple(r) for r in sold] == [(bot.account, "SELL", "FILLED")]


async def test_a_follows_daily_loss_stops_that_follows_copies_only(rt, engines):
    maker = await funded_user(rt, "maker", BTC="2")
    follower = await funded_user(rt, "follower", USDT="1000", BTC="1")
    await trade_at(rt, maker, await funded_user(rt, "first", USDT="100"), "100", "0.1")
    follow = await copy_position(rt, follower, quantity="0.5", cost="50")
    sibling = await copy_position(rt, follower, quantity="0.5", cost="50")
    target = Target(Scope.FOLLOW, follow_id=follow)
    await set_limit(rt, follower, LimitKind.DAILY_LOSS, 5, Action.CANCEL_ORDERS, target)
    await triggers.run_once(rt)
    assert await state(rt, Scope.FOLLOW, follow) == "ACTIVE"
    await fall_to_86(rt, maker)  # the follow's 0.5 BTC: 7 USD down since the limit was set
    copy = await place(rt, follower, limit(BUY, "0.1", "80"), client_order_id=f"copy-{follow}-1")
    siblings = await place(
        rt, follower, limit(BUY, "0.1", "80"), client_order_id=f"copy-{sibling}-1"
    )
    own = await place(rt, follower, limit(BUY, "0.1", "79"))
    await triggers.run_once(rt)
    assert await state(rt, Scope.FOLLOW, follow) == "HALTED"
    assert await state(rt, Scope.FOLLOW, sibling) is None
    assert await state(rt, Scope.USER, follower) is None
    assert await eventually(lambda: canceled(rt, copy.id))
    assert [await status_of(rt, o.id) for o in (siblings, own)] == ["OPEN", "OPEN"]
    with pytest.raises(RiskHalted) as caught:
        await place(rt, follower, limit(BUY, "0.1", "81"), client_order_id=f"copy-{follow}-2")
    assert f"FOLLOW {follow} is halted" in caught.value.message
    placed = await place(rt, follower, limit(BUY, "0.1", "81"), client_order_id=f"copy-{sibling}-2")
    assert placed.status == "OPEN"
    assert (await place(rt, follower, limit(BUY, "0.1", "81"))).status == "OPEN"
    (transition,) = await rows(rt, "SELECT scope, scope_id, reason FROM risk_transitions")
    assert (transition["scope"], transition["scope_id"]) == ("FOLLOW", follow)
    assert transition["reason"].startswith(f"DAILY_LOSS of 5 USD (FOLLOW {follow}) reached (7")
    (note,) = await notes(rt, follower)
    assert f"(FOLLOW {follow})" in note["body"]


async def test_a_follows_reduce_to_flat_closes_that_follows_positions_only(rt, engines):
    maker = await funded_user(rt, "maker", BTC="2")
    follower = await funded_user(rt, "follower", USDT="1000", BTC="1")
    await trade_at(rt, maker, await funded_user(rt, "first", USDT="100"), "100", "0.1")
    follow = await copy_position(rt, follower, quantity="0.4", cost="40")
    await copy_position(rt, follower, quantity="0.5", cost="50")
    target = Target(Scope.FOLLOW, follow_id=follow)
    await set_limit(rt, follower, LimitKind.WEEKLY_LOSS, 5, Action.REDUCE_TO_FLAT, target)
    await fall_to_86(rt, maker)  # 0.4 x 14 = 5.6 down
    bidder = await funded_user(rt, "bidder", USDT="1000")
    await place(rt, bidder, limit(BUY, "1", "86"))  # within the follow's 1 % slippage
    await triggers.run_once(rt)
    assert await state(rt, Scope.FOLLOW, follow) == "REDUCING"
    closes = await rows(
        rt, "SELECT side, quantity, status FROM orders WHERE user_id = $1"
        " AND client_order_id LIKE 'close-%'", follower,
    )  # fmt: skip
    assert [tuple(r) for r in closes] == [("SELL", D("0.4"), "FILLED")]
    assert await wallet(rt, follower, "BTC") == (D("0.6"), D(0))


async def test_an_owners_halt_cancels_their_bots_orders_too(rt, engines):
    maker = await funded_user(rt, "maker", BTC="2")
    owner = await funded_user(rt, "owner", USDT="1000")
    bot = await trading_bot(rt, owner, "one", USDT="1000", BTC="1")
    stranger = await trading_bot(rt, await funded_user(rt, "stranger"), "two", BTC="1")
    await set_limit(rt, owner, LimitKind.DAILY_LOSS, 5, Action.CANCEL_ORDERS, Target(Scope.USER))
    await trade_at(rt, maker, owner, "100", "0.5")
    bots = await place(rt, bot.account, limit(SELL, "0.2", "110"))
    strangers = await place(rt, stranger.account, limit(SELL, "0.2", "109"))
    await fall_to_86(rt, maker)
    await triggers.run_once(rt)
    assert await state(rt, Scope.USER, owner) == "HALTED"
    assert await eventually(lambda: canceled(rt, bots.id))
    assert await status_of(rt, strangers.id) == "OPEN"
    with pytest.raises(RiskHalted):
        await place(rt, bot.account, limit(SELL, "0.1", "90"))
