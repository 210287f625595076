"""A leader's bots are copied like the leader's manual trades: a bot trades as a
sub-account of its owner, and copy trading takes the sub-account's fills as the
leader's."""

from __future__ import annotations

from datetime import UTC, datetime

from app.bots import bots, worker
from app.bots.domain import codec
from app.bots.domain.alerts import Alert, AlertAction
from app.bots.domain.machines import BotSpec
from app.bots.domain.runtime import BotKind
from app.bots.domain.signal_bot import SignalSettings
from app.trading.domain.orders import Side
from db.models import BotAlert
from tests.social.test_copy_trading import copies_of, copy_all, follower, leader
from tests.support.trading import D, funded_user, limit, place, rows


async def test_a_leaders_bot_trade_is_copied_like_a_manual_one(api, rt, engines):
    maker = await funded_user(rt, "maker", BTC="10", USDT="10000")
    taker = await funded_user(rt, "taker", USDT="10000")
    await place(rt, maker, limit(Side.SELL, "5", "100"))
    await place(rt, taker, limit(Side.BUY, "0.1", "100"))  # the last price: 100
    leader_id, _ = await leader(api, rt, "lea@example.com", USDT="1000")
    _, token, follow_id = await follower(
        api, rt, "f@example.com", leader_id, allocation="500", mode="FIXED_AMOUNT", fixed="50"
    )
    async with rt.sessions() as session:
        markets = await bots.markets_for(session, ["BTC/USDT"])
    settings = SignalSettings(amount=D("100"), budget=D("200"))
    created = await bots.create_bot(
        rt, user_id=leader_id, spec=BotSpec(BotKind.SIGNAL, "signals", settings, markets)
    )
    now = datetime.now(UTC)
    alert = Alert("go", AlertAction.BUY, symbol="BTCUSDT", time=now)
    async with rt.sessions() as session, session.begin():
        session.add(
            BotAlert(
                bot_id=created.bot.id, alert_id="go", alert=codec.to_json(alert), received_at=now
            )
        )
    await worker.run_once(rt)
    await copy_all(rt)

    (copy,) = await copies_of(api, token, follow_id)
    assert copy["status"] == "PLACED"
    # the bot bought what 100 USDT pays for at the worst price 101 with the 0.2 % taker
    # fee, to the lot: 100 / (101 * 1.002) = 0.98814 -> 0.9881, filled at 100
    assert copy["leaderFill"] == {"side": "BUY", "price": "100", "quantity": "0.9881"}
    assert copy["order"]["quantity"] == "0.5000"  # the follower's fixed 50 USDT at 100
    assert copy["order"]["status"] == "FILLED"


async def test_a_leaders_paper_bot_is_never_copied(api, rt, engines):
    """A paper bot trades play money on its own paper account: nothing of it reaches the
    fills copy trading reads, so its trades are never copied."""
    maker = await funded_user(rt, "maker", BTC="10", USDT="10000")
    taker = await funded_user(rt, "taker", USDT="10000")
    await place(rt, maker, limit(Side.SELL, "5", "100"))
    await place(rt, taker, limit(Side.BUY, "0.1", "100"))  # the last price: 100
    leader_id, _ = await leader(api, rt, "lea@example.com", USDT="1000")
    _, token, follow_id = await follower(
        api, rt, "f@example.com", leader_id, allocation="500", mode="FIXED_AMOUNT", fixed="50"
    )
    async with rt.sessions() as session:
        markets = await bots.markets_for(session, ["BTC/USDT"])
    settings = SignalSettings(amount=D("100"), budget=D("200"))
    created = await bots.create_bot(
        rt, user_id=leader_id, spec=BotSpec(BotKind.SIGNAL, "signals", settings, markets),
        paper=True,
    )  # fmt: skip
    now = datetime.now(UTC)
    alert = Alert("go", AlertAction.BUY, symbol="BTCUSDT", time=now)
    async with rt.sessions() as session, session.begin():
        session.add(
            BotAlert(
                bot_id=created.bot.id, alert_id="go", alert=codec.to_json(alert), received_at=now
            )
        )
    await worker.run_once(rt)
    await copy_all(rt)

    bought = await rows(
        rt, "SELECT side, quantity FROM paper_fills WHERE paper_account_id = $1",
        created.bot.paper_account_id,
    )  # fmt: skip
    assert [(f["side"], f["quantity"]) for f in bought] == [("BUY", D("0.9881"))]
    assert await copies_of(api, token, follow_id) == []
