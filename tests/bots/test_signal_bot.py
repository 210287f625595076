"""The signal bot, step by step: an alert is one order however often it is delivered;
stale alerts, other markets' alerts and alerts it cannot act on are dropped with the
reason; buys stay within the budget; sells within what it holds."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal as D

import pytest

from app.bots.domain.alerts import AlertAction
from app.bots.domain.runtime import Action, StopBot
from app.bots.domain.signal_bot import SignalBot, SignalSettings, alert_scope, validate_signal
from app.core.errors import ValidationFailed
from app.trading.domain.orders import OrderRequest, OrderType, Side
from tests.support.bots import at, fill, fold, signal, then, tick
from tests.support.simulation import SPEC


def signal_bot(**kw: object) -> SignalBot:
    base = SignalSettings(amount=D(100), budget=D(250))
    return SignalBot(bot_id=1, market=SPEC, settings=validate_signal(replace(base, **kw)))  # type: ignore[arg-type]


def test_an_alert_delivered_three_times_places_one_order():
    bot = signal_bot()
    scope = alert_scope("tv-1")
    run = fold(bot, [tick("100")] + [signal(0.001 * k, alert_id="tv-1") for k in range(3)])
    (buy,) = run.placed
    # 100 USDT at the worst price 101.00 with the taker fee: floor(100 / 101.202) = 0.988
    assert buy.client_order_id == f"bot:1:{scope}:1"
    assert buy.request == OrderRequest(
        Side.BUY, OrderType.MARKET, D("0.988"), worst_price=D("101.00")
    )
    assert buy.reason == "alert tv-1: buy 0.988"
    assert run.reasons(Action.ALERT_DROPPED) == ["alert tv-1: alert tv-1 was already received"] * 2
    assert run.state.alerts == 1


def test_the_budget_bounds_buys_in_flight_and_held():
    bot = signal_bot()
    run = fold(bot, [tick("100"), signal(alert_id="a"), signal(alert_id="b")])
    # in flight 0.988 x 101.00 x 1.002 = 99.98...; 250 - that - 0.000001 left for b
    assert [p.request.quantity for p in run.placed] == [D("0.988"), D("0.988")]
    run = then(bot, run, signal(alert_id="c"))
    # 250 - 2 x 99.986... - 0.000001 = 50.02...: floor(50.02 / 101.202) = 0.494
    assert [p.request.quantity for p in run.placed] == [D("0.494")]
    assert run.reasons(Action.ALERT_DROPPED) == []
    run = then(bot, run, signal(alert_id="d"))
    assert run.placed == [] and run.reasons(Action.ALERT_DROPPED) == [
        "alert d: the budget of 250 USDT is spent"
    ]


def test_sell_and_close_sell_what_it_holds():
    bot = signal_bot()
    run = fold(bot, [tick("100"), signal(alert_id="a", amount=D(200))])
    (buy,) = run.placed
    run = then(bot, run, fill(buy.client_order_id, Side.BUY, "100", "1.976", "0.3952"))
    run = then(bot, run, signal(alert_id="s", action=AlertAction.SELL, quantity=D("0.5")))
    assert [(p.request.side, p.request.quantity) for p in run.placed] == [(Side.SELL, D("0.500"))]
    run = then(bot, run, signal(alert_id="c", action=AlertAction.CLOSE))
    assert [(p.request.side, p.request.quantity) for p in run.placed] == [(Side.SELL, D("1.476"))]
    run = then(bot, run, signal(alert_id="c2", action=AlertAction.CLOSE))
    assert run.reasons(Action.ALERT_DROPPED) == ["alert c2: nothing to sell"]


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ({"symbol": "ETHUSDT"}, "for ETHUSDT, not BTC/USDT"),
        ({"time": at(0) - timedelta(minutes=2)}, "alert is 120 s old, over the 60 s allowed"),
    ],
)
def test_alerts_for_other_markets_or_stale_are_dropped(given, why):
    run = fold(signal_bot(), [tick("100"), signal(alert_id="x", **given)])
    assert run.placed == [] and run.reasons(Action.ALERT_DROPPED) == [f"alert x: {why}"]


def test_without_a_market_price_the_alerts_price_is_the_reference():
    run = fold(signal_bot(), [signal(alert_id="x")])
    assert run.reasons(Action.ALERT_DROPPED) == ["alert x: no price yet"]
    run = fold(signal_bot(), [signal(alert_id="x", price=D(50))])
    assert run.placed[0].request.worst_price == D("50.50")


def test_stopped_it_sells_and_drops_later_alerts():
    bot = signal_bot()
    run = fold(bot, [tick("100"), signal(alert_id="a")])
    run = then(bot, run, fill(run.placed[0].client_order_id, Side.BUY, "100", "0.988", "0.2"))
    run = then(bot, run, StopBot(at(1), close_position=True), signal(1, alert_id="b"))
    assert [(p.request.side, p.request.quantity) for p in run.placed] == [(Side.SELL, D("0.988"))]
    assert run.reasons(Action.ALERT_DROPPED) == ["alert b: the bot is stopped"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": D(0)}, "amount"),
        ({"budget": D("1e16")}, "budget"),
        ({"max_lag": timedelta(0)}, "maxLag"),
        ({"max_slippage_bps": 5000}, "maxSlippageBps"),
    ],
)
def test_settings_out_of_range_are_refused_naming_the_field(change, field):
    with pytest.raises(ValidationFailed) as refused:
        signal_bot(**change)
    assert refused.value.field == field
