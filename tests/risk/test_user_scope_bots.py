"""A USER scope's P&L limits count the user's bots (``app.risk.triggers``): a bot trades
as a sub-account of its owner, so what the bot loses is the owner's account losing; the
owner's USER limits fire on it, move the owner's state (which binds the bots' orders),
cancel the bots' orders and, reducing to flat, sell the bots' holdings too. A paper bot
(play money, no sub-account) never counts, and a BOT scope still sees only its bot."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from app.paper import live as paper_live
from app.paper import orders as paper_orders
from app.risk import status, triggers
from app.risk.domain.errors import RiskHalted
from app.risk.domain.limits import Action, LimitKind
from app.risk.domain.states import Scope, ScopeRef
from app.risk.limits import Target
from app.trading.domain.orders import OrderRequest, OrderType, Side
from tests.risk.support import canceled, fall_to_86, paper_bot, set_limit, state, trading_bot
from tests.support.trading import (
    D,
    eventually,
    funded_user,
    limit,
    place,
    rows,
    scalar,
    trade_at,
    wallet,
)

BUY, SELL = Side.BUY, Side.SELL


async def user_figure(rt, owner: int) -> Decimal:
    """The owner's USER limit's figure in ``me.riskStatus``."""
    seen = await status.risk_status(rt, user_id=owner)
    (mine,) = [v for v in seen.scopes if v.status.ref == ScopeRef(Scope.USER, owner)]
    (usage,) = mine.limits
    return usage.value


async def test_a_bots_losses_fire_its_owners_daily_loss(rt, engines):
    maker = await funded_user(rt, "maker", BTC="2")
    owner = await funded_user(rt, "owner", USDT="1000")
    bot = await trading_bot(rt, owner, "one", USDT="1000")
    sibling = await trading_bot(rt, owner, "two", USDT="1000")
    await set_limit(rt, owner, LimitKind.DAILY_LOSS, 5, Action.CANCEL_ORDERS, Target(Scope.USER))
    await trade_at(rt, maker, bot.account, "100", "0.5")  # the bot buys; the owner: nothing
    await triggers.run_once(rt)
    assert await state(rt, Scope.USER, owner) == "ACTIVE"  # the bot's fee: below 5
    await fall_to_86(rt, maker)  # the bot's 0.5 BTC: 7 USD down, nobody of theirs traded
    owners = await place(rt, owner, limit(BUY, "0.1", "80"))
    siblings = await place(rt, sibling.account, limit(BUY, "0.1", "81"))
    await triggers.run_once(rt)
    assert await state(rt, Scope.USER, owner) == "HALTED"
    assert await state(rt, Scope.BOT, bot.id) is None  # no BOT limit: no BOT state moved
    assert await eventually(lambda: canceled(rt, owners.id))
    assert await eventually(lambda: canceled(rt, siblings.id))
    for trader in (owner, bot.account, sibling.account):
        with pytest.raises(RiskHalted) as caught:
            await place(rt, trader, limit(BUY, "0.1", "82"))
        assert f"USER {owner} is halted" in caught.value.message
    (transition,) = await rows(rt, "SELECT scope, scope_id, reason FROM risk_transitions")
    assert (transition["scope"], transition["scope_id"]) == ("USER", owner)
    assert transition["reason"].startswith(f"DAILY_LOSS of 5 USD (USER {owner}) reached (7.1")
    assert await user_figure(rt, owner) == D("7.1")  # the status counts the bot as well
    (note,) = await rows(rt, "SELECT title FROM notifications WHERE user_id = $1", owner)
    assert note["title"] == "Risk limit reached"


async def test_a_fill_of_the_bot_alone_brings_in_its_owners_limits(rt, engines):
    """Without a price move of a market they hold: the bot's own fill is what makes the
    owner's USER limits be looked at."""
    maker = await funded_user(rt, "maker", BTC="2")
    buyer = await funded_user(rt, "buyer", USDT="1000")
    owner = await funded_user(rt, "owner", USDT="1000")
    bot = await trading_bot(rt, owner, "one", USDT="1000")
    target = Target(Scope.USER)
    await set_limit(rt, owner, LimitKind.CONSECUTIVE_LOSSES, 1, Action.BLOCK_ENTRIES, target)
    await trade_at(rt, maker, bot.account, "100", "0.5")
    await triggers.run_once(rt)
    await trade_at(rt, bot.account, buyer, "96", "0.2")  # the bot closes at a loss
    await triggers.run_once(rt)
    assert await state(rt, Scope.USER, owner) == "REDUCING"


async def test_reduce_to_flat_at_user_scope_sells_the_owners_and_the_bots_holdings(rt, engines):
    maker = await funded_user(rt, "maker", BTC="2")
    owner = await funded_user(rt, "owner", USDT="1000", BTC="0.3")  # held, no P&L of its own
    bot = await trading_bot(rt, owner, "one", USDT="1000")
    stranger = await trading_bot(rt, await funded_user(rt, "stranger"), "two", BTC="0.2")
    target = Target(Scope.USER)
    await set_limit(rt, owner, LimitKind.DAILY_LOSS, 5, Action.REDUCE_TO_FLAT, target)
    await trade_at(rt, maker, bot.account, "100", "0.5")
    resting = await place(rt, bot.account, limit(SELL, "0.1", "109"))
    await fall_to_86(rt, maker)
    bidder = await funded_user(rt, "bidder", USDT="1000")
    await place(rt, bidder, limit(BUY, "1", "85"))  # the bid the sales meet
    await triggers.run_once(rt)
    assert await state(rt, Scope.USER, owner) == "REDUCING"
    assert await canceled(rt, resting.id)
    assert await wallet(rt, owner, "BTC") == (D(0), D(0))
    assert await wallet(rt, bot.account, "BTC") == (D(0), D(0))
    assert await wallet(rt, stranger.account, "BTC") == (D("0.2"), D(0))
    transition = await scalar(rt, "SELECT id FROM risk_transitions WHERE scope = 'USER'")
    sold = await rows(
        rt, "SELECT user_id, client_order_id, side, type, status, filled_quantity FROM orders"
        " WHERE client_order_id LIKE 'risk-flat-%' ORDER BY user_id",
    )  # fmt: skip
    assert [tuple(r) for r in sold] == [
        (owner, f"risk-flat-{transition}-BTC", "SELL", "MARKET", "FILLED", D("0.3")),
        (bot.account, f"risk-flat-{transition}-{bot.account}-BTC", "SELL", "MARKET", "FILLED",
         D("0.5")),
    ]  # fmt: skip


async def test_a_paper_bots_losses_never_count(rt, engines):
    maker = await funded_user(rt, "maker", BTC="2")
    other = await funded_user(rt, "watcher", USDT="1000")
    owner = await funded_user(rt, "owner", USDT="1000")
    bot_id = await paper_bot(rt, owner)
    account = await scalar(rt, "SELECT paper_account_id FROM bots WHERE id = $1", bot_id)
    await set_limit(rt, owner, LimitKind.DAILY_LOSS, 5, Action.CANCEL_ORDERS, Target(Scope.USER))
    await trade_at(rt, maker, other, "101", "0.1")  # a live market for the paper venue
    await paper_orders.place_order(
        rt, user_id=owner, paper_account_id=account,
        request=OrderRequest(BUY, OrderType.LIMIT, D("0.5"), price=D("100")),
    )  # fmt: skip
    await trade_at(rt, maker, other, "99", "0.1")  # through the paper bid
    await paper_live.run_once(rt)
    paper_btc = await scalar(
        rt, "SELECT sum(quantity) FROM paper_fills WHERE paper_account_id = $1", account
    )
    assert paper_btc == D("0.5")
    await fall_to_86(rt, maker)  # the paper bot's 0.5 BTC: 7 USD down (play money)
    await trade_at(rt, maker, owner, "86", "0.1")  # the owner's own: only a fee
    await triggers.run_once(rt)
    assert await state(rt, Scope.USER, owner) == "ACTIVE"  # looked at, not fired
    assert await user_figure(rt, owner) < 1


async def test_a_bots_limit_still_sees_only_the_bot(rt, engines):
    maker = await funded_user(rt, "maker", BTC="2")
    owner = await funded_user(rt, "owner", USDT="1000")
    bot = await trading_bot(rt, owner, "one", USDT="1000")
    await set_limit(rt, owner, LimitKind.DAILY_LOSS, 5, Action.BLOCK_ENTRIES, Target(Scope.USER))
    target = Target(Scope.BOT, bot_id=bot.id)
    await set_limit(rt, owner, LimitKind.DAILY_LOSS, 5, Action.CANCEL_ORDERS, target)
    await trade_at(rt, maker, owner, "100", "0.5")  # the owner's own position
    await fall_to_86(rt, maker)
    await trade_at(rt, maker, bot.account, "86", "0.1")  # the bot's: only a fee
    await triggers.run_once(rt)
    assert await state(rt, Scope.USER, owner) == "REDUCING"
    assert await state(rt, Scope.BOT, bot.id) == "ACTIVE"  # looked at, the owner's loss not its
    (transition,) = await rows(rt, "SELECT scope FROM risk_transitions")
    assert transition["scope"] == "USER"


async def test_the_consumers_statements_do_not_grow_with_the_bots(rt, engines, statements):
    maker = await funded_user(rt, "maker", BTC="5")
    few = await funded_user(rt, "few", USDT="1000")
    many = await funded_user(rt, "many", USDT="1000")
    bots = {
        few: [await trading_bot(rt, few, "f0", USDT="100")],
        many: [await trading_bot(rt, many, f"m{n}", USDT="100") for n in range(4)],
    }
    for owner, theirs in bots.items():
        target = Target(Scope.USER)
        await set_limit(rt, owner, LimitKind.DRAWDOWN, 1000, Action.BLOCK_ENTRIES, target)
        for bot in theirs:
            await trade_at(rt, maker, bot.account, "100", "0.1")
    await triggers.run_once(rt)  # a warm pool, the marks started

    async def evaluated(owner: int) -> int:
        await asyncio.sleep(0)
        statements.clear()
        async with rt.sessions() as session, session.begin():
            await triggers.evaluate(rt, session, [b.account for b in bots[owner]])
        await asyncio.sleep(0)
        return len(statements)

    assert await evaluated(few) == await evaluated(many)
    last = await rows(
        rt, "SELECT scope_id, last_pnl FROM risk_states WHERE scope = 'USER' ORDER BY scope_id"
    )
    assert [r["scope_id"] for r in last] == [few, many]
    assert last[1]["last_pnl"] < last[0]["last_pnl"] < 0  # four bots' fees, one bot's
