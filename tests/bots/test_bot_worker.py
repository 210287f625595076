"""The bots job (``app.bots.worker.run_once``) on the live venue: a bot is stepped when
its orders change, when a trade reaches its band, when an alert is queued for it, and
when a crash left its commands unsent; nothing else steps it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from app.bots import bots, worker
from app.bots.domain import codec
from app.bots.domain.alerts import Alert, AlertAction
from app.bots.domain.grid_settings import AtBounds, GridSettings
from app.bots.domain.machines import BotSpec
from app.bots.domain.runtime import BotKind
from app.bots.domain.signal_bot import SignalSettings
from app.trading.domain.orders import Side
from app.venues.live import LiveVenue
from db.models import Bot, BotAlert, BotCommand, BotDecision
from tests.support.money import balances
from tests.support.trading import FAST_ENGINE, D, funded_user, limit, running_engines

SYMBOL = "BTC/USDT"


@pytest.fixture
async def engines(rt, monkeypatch):
    monkeypatch.setattr(rt, "settings", rt.settings.model_copy(update=FAST_ENGINE))
    async with running_engines(rt) as engines:
        yield engines


@pytest.fixture
async def desk(rt, engines) -> LiveVenue:
    """BTC/USDT last traded at 90000; the desk trades against the bots."""
    desk = LiveVenue(rt, user_id=await funded_user(rt, "desk", BTC="10", USDT="1000000"))
    other = LiveVenue(rt, user_id=await funded_user(rt, "other", BTC="10", USDT="1000000"))
    await desk.submit(
        symbol=SYMBOL, client_order_id="d0", request=limit(Side.SELL, "0.01", "90000")
    )
    await other.submit(
        symbol=SYMBOL, client_order_id="o0", request=limit(Side.BUY, "0.01", "90000")
    )
    await worker.run_once(rt)  # the events so far concern no bot
    return desk


async def _create(rt, kind: BotKind, settings, owner: int) -> Bot:
    async with rt.sessions() as session:
        markets = await bots.markets_for(session, [SYMBOL])
    created = await bots.create_bot(rt, user_id=owner, spec=BotSpec(kind, "b", settings, markets))
    return created.bot


def grid(**kw) -> GridSettings:
    values = dict(lower=D("86000"), upper=D("94000"), levels=5, investment=D("1000"))
    values.update(kw)
    return GridSettings(**values)


async def test_a_fill_of_a_grid_buy_wakes_the_bot_which_sells_that_level_one_line_up(rt, desk):
    owner = await funded_user(rt, "grid_worker", USDT="5000")
    bot = await _create(rt, BotKind.GRID, grid(), owner)
    venue = LiveVenue(rt, user_id=bot.account_id)
    buys = sorted(
        (o for o in await venue.open_orders() if o.side is Side.BUY), key=lambda o: -o.price
    )
    top_buy = buys[0]
    sells_before = {o.client_order_id for o in await venue.open_orders() if o.side is Side.SELL}
    await desk.submit(
        symbol=SYMBOL,
        client_order_id="hit",
        request=limit(Side.SELL, str(top_buy.quantity), str(top_buy.price)),
    )
    assert await worker.run_once(rt) >= 1
    after = await venue.open_orders()
    new_sells = [o for o in after if o.side is Side.SELL and o.client_order_id not in sells_before]
    assert [(o.price, o.quantity) for o in new_sells] == [(top_buy.price + 2000, top_buy.quantity)]
    assert top_buy.client_order_id not in {o.client_order_id for o in after}


async def test_a_trade_below_a_stopping_grid_stops_it(rt, desk):
    owner = await funded_user(rt, "grid_bounds", USDT="5000")
    bot = await _create(rt, BotKind.GRID, grid(at_bounds=AtBounds.STOP), owner)
    venue = LiveVenue(rt, user_id=bot.account_id)
    buys = [o for o in await venue.open_orders() if o.side is Side.BUY]
    bidder = LiveVenue(rt, user_id=await funded_user(rt, "bidder", USDT="100000"))
    await bidder.submit(
        symbol=SYMBOL, client_order_id="low", request=limit(Side.BUY, "0.01", "85000")
    )
    # the desk sells through every bot buy and trades below the grid
    await desk.submit(symbol=SYMBOL, client_order_id="dump", request=limit(Side.SELL, "1", "85000"))
    for _ in range(3):
        await worker.run_once(rt)
    assert buys and await venue.open_orders() == ()
    assert (await bots.get_bot(rt, user_id=owner, bot_id=bot.id)).status == "STOPPED"
    assert all(total == (0, 0) for total in (await balances(rt, bot.account_id)).values())


async def test_an_idle_bot_is_not_stepped(rt, desk):
    owner = await funded_user(rt, "idle", USDT="5000")
    bot = await _create(rt, BotKind.GRID, grid(), owner)
    await worker.run_once(rt)  # its orders' acceptance: a step, which places nothing
    steps = (await bots.get_bot(rt, user_id=owner, bot_id=bot.id)).steps
    assert await worker.run_once(rt) == 0
    assert (await bots.get_bot(rt, user_id=owner, bot_id=bot.id)).steps == steps


async def test_a_queued_alert_is_acted_on_once(rt, desk):
    await desk.submit(symbol=SYMBOL, client_order_id="ask", request=limit(Side.SELL, "1", "90100"))
    owner = await funded_user(rt, "signals", USDT="5000")
    bot = await _create(
        rt, BotKind.SIGNAL, SignalSettings(amount=D("450"), budget=D("1000")), owner
    )
    now = datetime.now(UTC)
    alert = Alert("tv-1", AlertAction.BUY, symbol="BTCUSDT", time=now)
    async with rt.sessions() as session, session.begin():
        session.add(
            BotAlert(bot_id=bot.id, alert_id="tv-1", alert=codec.to_json(alert), received_at=now)
        )
    await worker.run_once(rt)
    held = await balances(rt, bot.account_id)
    # 450 USDT at the worst price (90000 + 1 %), rounded down to the lot of 0.0001
    assert held["BTC"][0] == D("0.0049")
    async with rt.sessions() as session:
        left = await session.scalars(select(BotAlert.processed_at).where(BotAlert.bot_id == bot.id))
        assert all(at is not None for at in left)
    await worker.run_once(rt)
    assert (await balances(rt, bot.account_id))["BTC"] == held["BTC"]


async def test_commands_a_crash_left_unsent_are_sent_by_the_job(rt, desk):
    owner = await funded_user(rt, "crashed", USDT="5000")
    bot = await _create(rt, BotKind.GRID, grid(), owner)
    venue = LiveVenue(rt, user_id=bot.account_id)
    before = {o.client_order_id for o in await venue.open_orders()}
    # as if the process had died after storing a step: its commands unsent, orders gone
    from app.trading import commands

    await commands.cancel_all_orders(rt, user_id=bot.account_id, symbol=SYMBOL)
    async with rt.sessions() as session, session.begin():
        await session.execute(
            update(BotCommand).where(BotCommand.bot_id == bot.id).values(sent_at=None)
        )
    await worker.run_once(rt)
    sent = {c for c in (await _sent(rt, bot.id))}
    assert before <= sent
    assert all(s is not None for s in await _sent_at(rt, bot.id))


async def _sent(rt, bot_id: int) -> list[str]:
    async with rt.sessions() as session:
        return list(
            await session.scalars(
                select(BotCommand.client_order_id).where(BotCommand.bot_id == bot_id)
            )
        )


async def _sent_at(rt, bot_id: int) -> list:
    async with rt.sessions() as session:
        return list(
            await session.scalars(select(BotCommand.sent_at).where(BotCommand.bot_id == bot_id))
        )


async def test_decisions_say_why(rt, desk):
    owner = await funded_user(rt, "reasons", USDT="5000")
    bot = await _create(rt, BotKind.GRID, grid(), owner)
    async with rt.sessions() as session:
        rows = (
            await session.scalars(select(BotDecision).where(BotDecision.bot_id == bot.id))
        ).all()
    assert rows and all(r.reason for r in rows)
    assert {r.action for r in rows} >= {"GRID_STARTED", "PLACE"}
