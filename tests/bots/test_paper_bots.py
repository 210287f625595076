"""Paper bots (real PostgreSQL, every market's engine running): a bot created with
``paper=True`` runs the same machine on a paper account of its own, funded with play
money; its orders rest on that account's simulated venue, never on the live book; the
live market's trades fill them (``app.paper.live``), and the bots job steps the bot on
its paper account's events and on trades that reach its band. The owner's real balances
never move."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from app.bots import bots, runner, worker
from app.bots.domain.dca_settings import DcaSettings
from app.bots.domain.grid_settings import GridSettings
from app.bots.domain.machines import BotSpec
from app.bots.domain.rebalance import Holding, RebalanceSettings, RebalanceTrigger, Target
from app.bots.domain.runtime import BotKind
from app.core.errors import ValidationFailed
from app.paper import accounts as paper_accounts
from app.paper import live
from db.models import Bot, BotCommand, PaperAccount
from db.session import in_transaction
from tests.support.money import balances
from tests.support.trading import (
    FAST_ENGINE,
    D,
    funded_user,
    rows,
    running_engines,
    scalar,
    trade_at,
)

SYMBOL = "BTC/USDT"


@pytest.fixture
async def engines(rt, monkeypatch):
    monkeypatch.setattr(rt, "settings", rt.settings.model_copy(update=FAST_ENGINE))
    async with running_engines(rt) as engines:
        yield engines


@pytest.fixture
async def market(rt, engines) -> tuple[int, int]:
    """BTC/USDT last traded at 90000, with nothing resting: (maker, taker), who trade
    with each other."""
    maker = await funded_user(rt, "maker", BTC="10")
    taker = await funded_user(rt, "taker", USDT="1000000")
    await trade_at(rt, maker, taker, "90000", "0.01")
    await worker.run_once(rt)  # the events so far concern no bot
    await live.run_once(rt)
    return maker, taker


async def _create(rt, owner: int, kind: BotKind, settings, symbols=(SYMBOL,), **kw) -> Bot:
    async with rt.sessions() as session:
        markets = await bots.markets_for(session, list(symbols))
    spec = BotSpec(kind, "paper bot", settings, markets, **kw)
    return (await bots.create_bot(rt, user_id=owner, spec=spec, paper=True)).bot


def grid(**kw) -> GridSettings:
    values = dict(lower=D("86000"), upper=D("94000"), levels=5, investment=D("1000"))
    values.update(kw)
    return GridSettings(**values)


async def paper_orders(rt, bot: Bot, *statuses: str) -> list:
    return await rows(
        rt,
        "SELECT o.client_order_id, o.side, o.type, o.price, o.quantity, o.status"
        " FROM paper_orders o JOIN paper_accounts a ON a.id = o.paper_account_id"
        " AND a.generation = o.generation"
        " WHERE a.id = $1 AND o.status = ANY($2::text[]) ORDER BY o.id",
        bot.paper_account_id, list(statuses or ("NEW", "OPEN", "PARTIALLY_FILLED")),
    )  # fmt: skip


async def paper_fills(rt, bot: Bot) -> list:
    return await rows(
        rt,
        "SELECT client_order_id, side, price, quantity FROM paper_fills"
        " WHERE paper_account_id = $1 ORDER BY id",
        bot.paper_account_id,
    )


async def live_bot_orders(rt) -> int:
    return await scalar(rt, "SELECT count(*) FROM orders WHERE client_order_id LIKE 'bot:%'")


async def paper_balances(rt, bot: Bot) -> dict:
    async with rt.sessions() as session:
        account = await session.get(PaperAccount, bot.paper_account_id)
        return {
            b.currency: (b.available, b.held)
            for b in await paper_accounts.balances_of(session, account)
        }


async def test_a_paper_grid_rests_its_orders_on_its_paper_account_and_none_on_the_live_book(
    rt, market
):
    owner = await funded_user(rt, "grid_owner", USDT="5000")
    before = await balances(rt, owner)
    bot = await _create(rt, owner, BotKind.GRID, grid())
    assert bot.account_id is None and bot.paper_account_id is not None
    async with rt.sessions() as session:
        account = await session.get(PaperAccount, bot.paper_account_id)
    assert account.user_id == owner and account.starting_balances == {"USDT": "1000"}
    resting = await paper_orders(rt, bot)
    assert {o["side"] for o in resting} == {"BUY", "SELL"}
    assert all(o["client_order_id"].startswith(f"bot:{bot.id}:") for o in resting)
    # the levels above the start price got their coins from one opening buy, on paper
    assert [f["side"] for f in await paper_fills(rt, bot)] == ["BUY"]
    assert await live_bot_orders(rt) == 0
    assert await balances(rt, owner) == before
    async with rt.sessions() as session:
        unsent = await session.scalars(
            select(BotCommand).where(BotCommand.bot_id == bot.id, BotCommand.sent_at.is_(None))
        )
        assert list(unsent) == []


async def test_a_live_trade_through_its_buy_fills_it_on_paper_and_the_bot_sells_a_line_up(
    rt, market
):
    maker, taker = market
    owner = await funded_user(rt, "grid_filled", USDT="5000")
    before = await balances(rt, owner)
    bot = await _create(rt, owner, BotKind.GRID, grid())
    buys = [o for o in await paper_orders(rt, bot) if o["side"] == "BUY"]
    top = max(buys, key=lambda o: o["price"])
    sells_before = {
        o["client_order_id"] for o in await paper_orders(rt, bot) if o["side"] == "SELL"
    }
    # the live market trades through the bot's top buy (which is not on the live book)
    await trade_at(rt, maker, taker, str(top["price"] - 100), "0.01")
    await worker.run_once(rt)  # the trade reached the bot's band: a step, nothing filled yet
    assert await live.run_once(rt) >= 1  # the paper account takes the trade: its buy fills
    assert top["client_order_id"] in {f["client_order_id"] for f in await paper_fills(rt, bot)}
    # its paper account's events wake the bot, which sells that level a line up, on paper
    assert await worker.run_once(rt) >= 1
    after = await paper_orders(rt, bot)
    new_sells = [
        (o["price"], o["quantity"])
        for o in after
        if o["side"] == "SELL" and o["client_order_id"] not in sells_before
    ]
    assert new_sells == [(top["price"] + 2000, top["quantity"])]
    assert top["client_order_id"] not in {o["client_order_id"] for o in after}
    assert await live_bot_orders(rt) == 0
    assert await balances(rt, owner) == before


async def test_stopping_a_paper_bot_cancels_its_paper_orders_and_releases_nothing(rt, market):
    owner = await funded_user(rt, "grid_stop", USDT="5000")
    before = await balances(rt, owner)
    bot = await _create(rt, owner, BotKind.GRID, grid())
    assert await paper_orders(rt, bot)
    stopped = await bots.stop_bot(rt, user_id=owner, bot_id=bot.id, close_position=True)
    assert stopped.status == "STOPPED" and stopped.released_at is None
    assert await paper_orders(rt, bot) == []
    # what the opening buy bought is sold again, on paper: the play money stays there
    held = await paper_balances(rt, bot)
    assert held["BTC"] == (0, 0) and 0 < held["USDT"][0] < D("1000")
    assert await balances(rt, owner) == before
    assert await live_bot_orders(rt) == 0
    released = "SELECT id FROM journal_entries WHERE reference = $1"
    assert not await rows(rt, released, f"bot:{bot.id}")


async def test_a_paper_dca_bot_buys_at_market_on_paper_then_rests_its_orders_there(rt, market):
    owner = await funded_user(rt, "dca_owner")  # no real money at all
    settings = DcaSettings(
        base_order=D("500"), safety_order=D("500"), max_safety_orders=2,
        max_active_safety_orders=2, price_deviation=D("0.02"),
    )  # fmt: skip
    bot = await _create(rt, owner, BotKind.DCA, settings)
    (fill,) = await paper_fills(rt, bot)
    assert (fill["side"], fill["price"]) == ("BUY", D("90000"))  # the last trade's price
    resting = await paper_orders(rt, bot)
    assert sorted(o["side"] for o in resting) == ["BUY", "BUY", "SELL"]
    (tp,) = [o for o in resting if o["side"] == "SELL"]
    assert tp["quantity"] == fill["quantity"]  # the take-profit sells what the base bought
    assert await live_bot_orders(rt) == 0
    assert all(total == (0, 0) for total in (await balances(rt, owner)).values())


async def test_a_trade_reaching_its_band_wakes_a_paper_bot(rt, market):
    """A DCA deal's stop-loss: the live trade is the only thing that wakes the bot (its
    paper account is not advanced), and it sells on paper at that trade's price."""
    maker, taker = market
    owner = await funded_user(rt, "dca_stop")
    settings = DcaSettings(
        base_order=D("500"), safety_order=D("500"), max_safety_orders=0,
        max_active_safety_orders=0, price_deviation=D("0.02"), stop_loss=D("0.05"),
    )  # fmt: skip
    bot = await _create(rt, owner, BotKind.DCA, settings)
    (bought,) = await paper_fills(rt, bot)
    await worker.run_once(rt)
    await trade_at(rt, maker, taker, "85000", "0.01")  # below 90000 x 0.95
    assert await worker.run_once(rt) >= 1
    sold = [f for f in await paper_fills(rt, bot) if f["side"] == "SELL"]
    assert [(f["price"], f["quantity"]) for f in sold] == [(D("85000"), bought["quantity"])]


async def test_a_paper_rebalance_bot_is_funded_with_its_allocation_as_play_money(rt, market):
    owner = await funded_user(rt, "rebalance_owner")
    allocation = (Holding("BTC", D("0.01")), Holding("USDT", D("1000")))
    bot = await _create(rt, owner, BotKind.REBALANCE, rebalance(), allocation=allocation)
    async with rt.sessions() as session:
        account = await session.get(PaperAccount, bot.paper_account_id)
    assert account.starting_balances == {"BTC": "0.01", "USDT": "1000"}
    assert all(total == (0, 0) for total in (await balances(rt, owner)).values())


def rebalance(*weights: tuple[str, str]) -> RebalanceSettings:
    weights = weights or (("BTC", "0.5"),)
    return RebalanceSettings(
        quote="USDT",
        targets=(*(Target(a, D(w)) for a, w in weights), Target("USDT", D("0.5"))),
        trigger=RebalanceTrigger.THRESHOLD,
        threshold=D("0.05"),
    )


async def test_a_paper_bot_trades_one_market_and_the_paper_limits_name_the_paper_flag(rt, market):
    owner = await funded_user(rt, "limits_owner")
    with pytest.raises(ValidationFailed) as refused:
        await _create(rt, owner, BotKind.GRID, grid(investment=D("20000000")))
    assert refused.value.field == "paper"
    with pytest.raises(ValidationFailed) as refused:
        await _create(
            rt, owner, BotKind.REBALANCE, rebalance(("BTC", "0.25"), ("ETH", "0.25")),
            symbols=(SYMBOL, "ETH/USDT"), allocation=(Holding("USDT", D("1000")),),
        )  # fmt: skip
    assert refused.value.field == "paper"
    assert await scalar(rt, "SELECT count(*) FROM bots") == 0
    assert await scalar(rt, "SELECT count(*) FROM paper_accounts") == 0


@pytest.mark.parametrize("end", ["reset", "close"])
async def test_orders_a_reset_or_a_close_of_its_paper_account_ended_end_for_the_bot(
    rt, market, end
):
    owner = await funded_user(rt, f"grid_{end}")
    bot = await _create(rt, owner, BotKind.GRID, grid())
    assert await paper_orders(rt, bot)
    change = {"reset": paper_accounts.reset_account, "close": paper_accounts.close_account}
    await change[end](rt, user_id=owner, paper_account_id=bot.paper_account_id)
    # the orders it had there will never trade: the bot is told they ended, and can stop
    stopped = await bots.stop_bot(rt, user_id=owner, bot_id=bot.id, close_position=False)
    assert stopped.status == "STOPPED"
    if end == "reset":
        assert await paper_orders(rt, bot) == []  # none in the new run either


async def test_a_batch_of_live_and_paper_bots_costs_the_same_statements_for_any_number(
    rt, market, sql_statements, statements
):
    """Each venue's orders are read for all its bots at once (and their fills)."""
    owner = await funded_user(rt, "batch_owner", USDT="10000")
    live_bots, paper_bots = [], []
    async with rt.sessions() as session:
        markets = await bots.markets_for(session, [SYMBOL])
    for n in range(3):
        spec = BotSpec(BotKind.GRID, f"bot {n}", grid(), markets)
        live_bots.append((await bots.create_bot(rt, user_id=owner, spec=spec)).bot.id)
        paper_bots.append((await _create(rt, owner, BotKind.GRID, grid())).id)

    async def cost(ids: list[int]) -> int:
        sql_statements.reset()
        statements.clear()
        stepped = await in_transaction(
            rt.sessions, lambda session: runner.step_bots(session, ids, now=rt.now())
        )
        assert sorted(stepped.bots) == sorted(ids)
        await asyncio.sleep(0)
        return sql_statements.count + len(statements)

    one_each = await cost([live_bots[0], paper_bots[0]])
    assert await cost(live_bots + paper_bots) == one_each
    assert await cost(paper_bots) == await cost(paper_bots[:1])
