"""The bot service on the live venue (real PostgreSQL, every market's engine running):
a bot's budget moves into a sub-account of its own, its orders are placed as that
sub-account through the ordinary placement, its steps are stored with their decisions
and commands, and a stopped bot gives its money back."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.bots import bots, runner
from app.bots.domain.dca_settings import DcaSettings
from app.bots.domain.errors import BotNotFound, BotStopped
from app.bots.domain.grid_settings import GridSettings
from app.bots.domain.machines import BotSpec
from app.bots.domain.runtime import BotKind
from app.core.errors import InsufficientFunds, ValidationFailed
from app.trading import commands
from app.trading.domain.orders import Side
from app.venues.live import LiveVenue
from db.models import Bot, BotCommand, BotDecision, User
from tests.support.money import balances
from tests.support.trading import FAST_ENGINE, D, funded_user, limit, running_engines

SYMBOL = "BTC/USDT"


@pytest.fixture
async def engines(rt, monkeypatch):
    monkeypatch.setattr(rt, "settings", rt.settings.model_copy(update=FAST_ENGINE))
    async with running_engines(rt) as engines:
        yield engines


@pytest.fixture
async def market(rt, engines):
    """BTC/USDT with a last price of 90000 and asks resting from 90100 up."""
    maker = LiveVenue(rt, user_id=await funded_user(rt, "bot_maker", BTC="10", USDT="1000000"))
    taker = LiveVenue(rt, user_id=await funded_user(rt, "bot_taker", BTC="10", USDT="1000000"))
    await maker.submit(
        symbol=SYMBOL, client_order_id="m0", request=limit(Side.SELL, "0.01", "90000")
    )
    await taker.submit(
        symbol=SYMBOL, client_order_id="t0", request=limit(Side.BUY, "0.01", "90000")
    )
    for n, price in enumerate(("90100", "90200", "90300")):
        await maker.submit(
            symbol=SYMBOL, client_order_id=f"ask{n}", request=limit(Side.SELL, "1", price)
        )
    return maker


async def _spec(rt, kind: BotKind, settings, name: str = "my bot") -> BotSpec:
    async with rt.sessions() as session:
        markets = await bots.markets_for(session, [SYMBOL])
    return BotSpec(kind, name, settings, markets)


def grid(**kw) -> GridSettings:
    values = dict(lower=D("86000"), upper=D("94000"), levels=5, investment=D("1000"))
    values.update(kw)
    return GridSettings(**values)


async def _commands(rt, bot_id: int) -> list[BotCommand]:
    async with rt.sessions() as session:
        rows = await session.scalars(
            select(BotCommand).where(BotCommand.bot_id == bot_id).order_by(BotCommand.id)
        )
        return list(rows)


async def test_a_grid_bot_is_funded_from_its_owner_and_rests_its_orders_as_its_sub_account(
    rt, market
):
    owner = await funded_user(rt, "grid_owner", USDT="5000")
    created = await bots.create_bot(rt, user_id=owner, spec=await _spec(rt, BotKind.GRID, grid()))
    bot = await bots.get_bot(rt, user_id=owner, bot_id=created.bot.id)
    assert bot.status == "RUNNING" and bot.steps >= 1
    assert created.webhook_secret is None
    mine = await balances(rt, owner)
    assert mine["USDT"] == (D("4000"), D("0"))  # the budget went to the sub-account
    async with rt.sessions() as session:
        account = await session.get(User, bot.account_id)
    assert account.owner_id == owner and account.password_hash == "!"
    open_orders = await LiveVenue(rt, user_id=bot.account_id).open_orders()
    sent = await _commands(rt, bot.id)
    assert [(c.kind, c.ack_code) for c in sent if c.sent_at is None or c.ack_code] == []
    assert {o.client_order_id for o in open_orders} <= {c.client_order_id for c in sent}
    assert all(o.client_order_id.startswith(f"bot:{bot.id}:") for o in open_orders)
    assert any(o.side is Side.BUY for o in open_orders)
    async with rt.sessions() as session:
        decisions = await session.scalar(
            select(func.count()).select_from(BotDecision).where(BotDecision.bot_id == bot.id)
        )
    assert decisions >= len(sent)


async def test_stopping_cancels_its_orders_and_gives_the_money_back(rt, market):
    owner = await funded_user(rt, "stop_owner", USDT="5000")
    created = await bots.create_bot(rt, user_id=owner, spec=await _spec(rt, BotKind.GRID, grid()))
    bot_id = created.bot.id
    sub = created.bot.account_id
    before = await balances(rt, owner)
    stopped = await bots.stop_bot(rt, user_id=owner, bot_id=bot_id, close_position=True)
    assert stopped.status == "STOPPED" and stopped.released_at is not None
    assert await LiveVenue(rt, user_id=sub).open_orders() == ()
    left = await balances(rt, sub)
    assert all(total == (0, 0) for total in left.values())
    after = await balances(rt, owner)
    # everything the sub-account had is back (what the opening buy bought, sold again)
    assert after["USDT"][0] > before["USDT"][0]
    with pytest.raises(BotStopped):
        await bots.stop_bot(rt, user_id=owner, bot_id=bot_id, close_position=False)


async def test_an_owner_without_the_budget_gets_insufficient_funds_and_nothing_is_written(
    rt, market
):
    owner = await funded_user(rt, "poor_owner", USDT="10")
    async with rt.sessions() as session:
        users_before = await session.scalar(select(func.count()).select_from(User))
    with pytest.raises(InsufficientFunds):
        await bots.create_bot(rt, user_id=owner, spec=await _spec(rt, BotKind.GRID, grid()))
    async with rt.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Bot)) == 0
        assert await session.scalar(select(func.count()).select_from(User)) == users_before
    assert (await balances(rt, owner))["USDT"] == (D("10"), D("0"))


async def test_bad_settings_are_refused_before_anything_is_written(rt, market):
    owner = await funded_user(rt, "bad_owner", USDT="5000")
    with pytest.raises(ValidationFailed) as refused:
        await bots.create_bot(
            rt, user_id=owner, spec=await _spec(rt, BotKind.GRID, grid(lower=D("94000")))
        )
    assert refused.value.field == "upper"
    with pytest.raises(ValidationFailed):
        await bots.create_bot(
            rt, user_id=owner, spec=await _spec(rt, BotKind.GRID, grid(), name="\x00bad")
        )


async def test_a_dca_deal_buys_at_market_then_rests_its_take_profit_and_safety_orders(rt, market):
    owner = await funded_user(rt, "dca_owner", USDT="5000")
    settings = DcaSettings(
        base_order=D("500"), safety_order=D("500"), max_safety_orders=2,
        max_active_safety_orders=2, price_deviation=D("0.02"),
    )  # fmt: skip
    created = await bots.create_bot(rt, user_id=owner, spec=await _spec(rt, BotKind.DCA, settings))
    sub = created.bot.account_id
    held = await balances(rt, sub)
    assert held["BTC"][0] + held["BTC"][1] > 0  # the base order bought at the asks
    resting = await LiveVenue(rt, user_id=sub).open_orders()
    sides = sorted(o.side.value for o in resting)
    assert sides == ["BUY", "BUY", "SELL"]  # two safety orders, one take-profit
    # the take-profit sells exactly what the base order bought
    (tp,) = [o for o in resting if o.side is Side.SELL]
    assert tp.quantity == held["BTC"][0] + held["BTC"][1]


async def test_another_users_bot_is_not_found(rt, market):
    owner = await funded_user(rt, "owner_a", USDT="5000")
    other = await funded_user(rt, "owner_b", USDT="5000")
    created = await bots.create_bot(rt, user_id=owner, spec=await _spec(rt, BotKind.GRID, grid()))
    with pytest.raises(BotNotFound):
        await bots.stop_bot(rt, user_id=other, bot_id=created.bot.id, close_position=False)
    with pytest.raises(BotNotFound):
        await bots.get_bot(rt, user_id=other, bot_id=created.bot.id)


async def test_the_owners_kill_switch_pauses_its_bots_and_cancels_their_orders(rt, market):
    owner = await funded_user(rt, "kill_owner", USDT="5000")
    created = await bots.create_bot(rt, user_id=owner, spec=await _spec(rt, BotKind.GRID, grid()))
    sub = created.bot.account_id
    assert await LiveVenue(rt, user_id=sub).open_orders()
    await commands.set_trading_enabled(rt, user_id=owner, enabled=False)
    assert await LiveVenue(rt, user_id=sub).open_orders() == ()
    bot = await bots.get_bot(rt, user_id=owner, bot_id=created.bot.id)
    assert bot.paused
    # the sub-account cannot trade while its owner's switch is off
    ack = await LiveVenue(rt, user_id=sub).submit(
        symbol=SYMBOL, client_order_id="manual", request=limit(Side.BUY, "0.001", "80000")
    )
    assert ack.code == "TRADING_DISABLED"


async def test_a_crash_between_a_step_and_its_sends_places_each_order_once(rt, market):
    owner = await funded_user(rt, "crash_owner", USDT="5000")
    created = await bots.create_bot(rt, user_id=owner, spec=await _spec(rt, BotKind.GRID, grid()))
    bot_id = created.bot.id
    sent = await _commands(rt, bot_id)
    # as if the process died after the step committed: its commands are unsent again
    async with rt.sessions() as session, session.begin():
        for command in await session.scalars(select(BotCommand).where(BotCommand.bot_id == bot_id)):
            command.sent_at = None
    await runner.send_commands(rt, [bot_id])
    orders = await LiveVenue(rt, user_id=created.bot.account_id).open_orders()
    placed = [c for c in sent if c.kind == "PLACE" and c.order_id is not None]
    assert len({o.client_order_id for o in orders}) == len(orders)
    again = {c.client_order_id: c.order_id for c in await _commands(rt, bot_id)}
    assert all(again[c.client_order_id] == c.order_id for c in placed)


async def test_bots_created_at_once_never_spend_more_than_the_owner_has(rt, market):
    """Five grids of 1,000 at once on 3,500: exactly three are funded, the others are
    refused whole, and each funded bot holds its own budget (in its own sub-account)."""
    import asyncio

    owner = await funded_user(rt, "busy_owner", USDT="3500")
    spec = await _spec(rt, BotKind.GRID, grid())
    results = await asyncio.gather(
        *(bots.create_bot(rt, user_id=owner, spec=spec) for _ in range(5)),
        return_exceptions=True,
    )
    made = [r for r in results if isinstance(r, bots.Created)]
    refused = [r for r in results if isinstance(r, InsufficientFunds)]
    assert (len(made), len(refused)) == (3, 2), results
    assert (await balances(rt, owner))["USDT"] == (D("500"), D("0"))
    for created in made:
        held = await balances(rt, created.bot.account_id)
        assert held["USDT"][0] + held["USDT"][1] + held.get("BTC", (0, 0))[0] > 0
        assert held["USDT"][0] + held["USDT"][1] <= D("1000")
    async with rt.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Bot)) == 3
