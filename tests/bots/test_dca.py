"""The DCA bot, step by step on hand-made events (no venue): what it places, with which
client order ids and why, the deal's figures (average entry, breakeven with fees,
realised PnL), take-profit fixed / in steps / trailing, stop-loss, limits on deals and
safety orders, cooldown, start on an alert, stop. Market BTC/USDT: tick 0.01, lot
0.001, maker 0.1 %, taker 0.2 % (fees rounded up to 0.000001 USDT)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest

from app.bots.domain.alerts import AlertAction
from app.bots.domain.dca import DcaBot, DealStatus
from app.bots.domain.dca_settings import (
    StartCondition,
    TakeProfitStep,
    deal_budget,
)
from app.bots.domain.runtime import Action, BotStatus, StopBot, TimerTick
from app.core.errors import ValidationFailed
from app.trading.domain.orders import OrderRequest, OrderStatus, OrderType, Side
from tests.support.bots import at, dca_settings, ended, fill, fold, signal, then, tick
from tests.support.simulation import SPEC

BUY, SELL = Side.BUY, Side.SELL


settings = dca_settings


def dca(**kw: object) -> DcaBot:
    return DcaBot(bot_id=1, market=SPEC, settings=settings(**kw))


def opened(bot: DcaBot, price: str = "100"):
    """A deal whose base order filled at ``price``."""
    run = fold(bot, [tick(price)])
    (base,) = run.placed
    return then(
        bot, run, fill(base.client_order_id, BUY, price, str(base.request.quantity), "0.198")
    )


def test_a_deal_from_base_order_through_a_safety_order_to_its_take_profit():
    bot = dca()
    run = fold(bot, [tick("100")])
    # worst price 100 x 1.01 = 101.00; 100 USDT buys floor(100 / 101) = 0.990
    assert run.placed[0].client_order_id == "bot:1:1:1"
    assert run.placed[0].request == OrderRequest(
        BUY, OrderType.MARKET, D("0.990"), worst_price=D("101.00")
    )
    assert run.placed[0].reason == "deal 1: base order of 100 USDT"

    run = then(bot, run, fill("bot:1:1:1", BUY, "100.00", "0.990", "0.198"))
    placed = [(p.client_order_id, p.request.side, p.request.price, p.request.quantity)
              for p in run.placed]  # fmt: skip
    assert placed == [
        ("bot:1:1:2", SELL, D("101.00"), D("0.990")),  # take-profit: 100 x 1.01
        ("bot:1:1:3", BUY, D("98.00"), D("1.020")),  # 2 % below: 100 / 98 = 1.0204
        ("bot:1:1:4", BUY, D("94.00"), D("1.595")),  # 2 % x (1 + 2): 150 / 94 = 1.5957
    ]
    assert run.reasons(Action.DEAL_OPENED) == ["deal 1: 0.990 bought at 100"]

    # safety order 1 fills: safety order 3 takes its slot; the take-profit is canceled
    run = then(bot, run, fill("bot:1:1:3", BUY, "98.00", "1.020", "0.099960"))
    assert run.canceled == ["bot:1:1:2"]
    assert [(p.client_order_id, p.request.price, p.request.quantity) for p in run.placed] == [
        # 2 % x (1 + 2 + 4) = 14 %: 86.00; 100 x 1.5^2 = 225 / 86 = 2.6162
        ("bot:1:1:5", D("86.00"), D("2.616")),
    ]
    # and replaced once its cancel has ended (so what it sold before is known)
    run = then(bot, run, ended("bot:1:1:2", 1))
    assert [(p.client_order_id, p.request.price, p.request.quantity) for p in run.placed] == [
        # average (99 + 99.96) / 2.010 = 98.985074..., x 1.01 = 99.9749... -> 99.98
        ("bot:1:1:6", D("99.98"), D("2.010")),
    ]
    (deal,) = run.state.deals
    assert deal.average_entry == D("198.96") / D("2.010")
    # cost with fees 199.25796; breakeven selling at the maker fee: / (2.010 x 0.999)
    assert deal.position.cost == D("199.257960")
    assert deal.breakeven(SPEC.maker_fee) == D("199.257960") / D("2.00799")
    assert (deal.safety_placed, deal.safety_filled) == (3, 1)

    # the take-profit sells everything: the safety orders are canceled, then it closes
    run = then(bot, run, fill("bot:1:1:6", SELL, "99.98", "2.010", "0.200960", hours=2))
    assert run.canceled == ["bot:1:1:4", "bot:1:1:5"]
    assert run.state.deals[0].status is DealStatus.CLOSING
    run = then(bot, run, ended("bot:1:1:4", 2), ended("bot:1:1:5", 2))
    assert run.state.deals == ()
    # 200.9598 - 0.20096 received, less the cost 199.25796
    assert run.state.realized_pnl == D("1.500880")
    assert run.state.fees == D("0.198") + D("0.099960") + D("0.200960")
    assert run.reasons(Action.DEAL_CLOSED) == [
        "deal 1 TAKE_PROFIT: bought 2.010 for 198.96000, sold 2.010 for 200.95980,"
        " fees 0.498920, realised 1.50088"
    ]
    # the next deal starts at the next price, with the next step in its id
    run = then(bot, run, tick("100", 3))
    assert [p.client_order_id for p in run.placed] == ["bot:1:2:7"]


def test_a_take_profit_that_sells_while_being_replaced_is_replaced_for_what_is_left():
    bot = dca()
    run = opened(bot)
    # safety order 1 fills: take-profit 2 is to be replaced (2.010 held) ...
    run = then(bot, run, fill("bot:1:1:3", BUY, "98.00", "1.020", "0.099960"))
    assert run.canceled == ["bot:1:1:2"] and run.state.deals[0].tp_dirty
    # ... but it had sold the base order's 0.990 before the cancel: the take-profit began
    # (no more safety orders), and its replacement sells the 1.020 left, not 2.010 (which
    # would have sold base the deal does not hold)
    run = then(bot, run, fill("bot:1:1:2", SELL, "101.00", "0.990", "0.09999"))
    assert run.canceled == ["bot:1:1:4", "bot:1:1:5"]
    assert [(p.client_order_id, p.request.price, p.request.quantity) for p in run.placed] == [
        ("bot:1:1:6", D("99.98"), D("1.020"))
    ]
    (deal,) = run.state.deals
    assert deal.took_profit and deal.tp_done == () and deal.position.quantity == D("1.020")


def test_take_profit_in_steps_splits_the_position():
    steps = (TakeProfitStep(D("0.01"), D("0.5")), TakeProfitStep(D("0.03"), D("0.5")))
    run = opened(dca(take_profit=steps, max_safety_orders=0))
    assert [(p.request.price, p.request.quantity) for p in run.placed] == [
        (D("101.00"), D("0.495")),
        (D("103.00"), D("0.495")),
    ]
    bot = dca(take_profit=steps, max_safety_orders=0)
    run = then(bot, run, fill("bot:1:1:2", SELL, "101.00", "0.495", "0.049995"))
    (deal,) = run.state.deals
    assert deal.status is DealStatus.OPEN and deal.tp_done == (0,) and deal.took_profit
    assert deal.position.quantity == D("0.495")
    run = then(bot, run, fill("bot:1:1:3", SELL, "103.00", "0.495", "0.050985"))
    assert run.state.deals == () and run.state.deals_closed == 1


def test_the_first_take_profit_fill_cancels_the_safety_orders():
    steps = (TakeProfitStep(D("0.01"), D("0.5")), TakeProfitStep(D("0.03"), D("0.5")))
    bot = dca(take_profit=steps)
    run = opened(bot)
    run = then(bot, run, fill("bot:1:1:2", SELL, "101.00", "0.2", "0.0202", remaining="0.295"))
    assert run.canceled == ["bot:1:1:4", "bot:1:1:5"]  # the two safety orders
    assert run.placed == []


def test_trailing_take_profit_sells_at_market_after_the_high_falls_back():
    bot = dca(take_profit=(TakeProfitStep(D("0.02"), D(1)),), trailing_deviation=D("0.01"))
    run = opened(bot)
    assert [p.request.side for p in run.placed] == [BUY, BUY]  # no resting take-profit
    run = then(bot, run, tick("101.5", 1), tick("102.5", 2), tick("104", 3), tick("103", 4))
    assert run.placed == [] and run.state.deals[0].peak == D("104")
    run = then(bot, run, tick("102.9", 5))  # 104 x 0.99 = 102.96
    assert run.canceled == ["bot:1:1:2", "bot:1:1:3"]
    (close,) = run.placed
    # worst price 102.9 x 0.99 = 101.871 -> up to the tick 101.88
    assert close.request == OrderRequest(
        SELL, OrderType.MARKET, D("0.990"), worst_price=D("101.88")
    )
    assert close.reason.startswith("deal 1: price 102.9 fell 0.01 below its high 104")


def test_stop_loss_cancels_and_sells_at_market_and_retries_what_is_left():
    bot = dca(stop_loss=D("0.05"))
    run = opened(bot)
    run = then(bot, run, tick("95.01", 1))
    assert run.placed == []
    run = then(bot, run, tick("95", 2))
    assert run.canceled == ["bot:1:1:2", "bot:1:1:3", "bot:1:1:4"]
    assert run.placed == []  # the take-profit may still sell: its end first
    run = then(bot, run, ended("bot:1:1:2", 2))
    (close,) = run.placed
    assert close.request == OrderRequest(SELL, OrderType.MARKET, D("0.990"), worst_price=D("94.05"))
    assert close.reason == "deal 1: selling the rest (STOP_LOSS)"
    # half sells, the rest expires: sold again at the next price
    run = then(
        bot,
        run,
        fill(close.client_order_id, SELL, "95", "0.5", "0.095", remaining="0.490"),
        ended(close.client_order_id, 2, status=OrderStatus.EXPIRED),
        tick("94", 3),
    )
    assert [(p.client_order_id, p.request.quantity) for p in run.placed] == [
        ("bot:1:1:6", D("0.490"))
    ]
    run = then(bot, run, ended("bot:1:1:3", 3), ended("bot:1:1:4", 3))
    assert run.state.deals[0].status is DealStatus.CLOSING  # still selling
    run = then(bot, run, fill("bot:1:1:6", SELL, "94", "0.490", "0.09212", hours=3))
    assert run.state.deals == ()
    assert run.reasons(Action.DEAL_CLOSED)[0].startswith("deal 1 STOP_LOSS")


def test_a_refused_take_profit_is_placed_again_a_minute_later():
    bot = dca()
    run = opened(bot)
    run = then(bot, run, ended("bot:1:1:2", 0, status=OrderStatus.REJECTED))
    assert run.reasons(Action.ORDER_ENDED) == ["TAKE_PROFIT order REJECTED: X"]
    assert bot.wake_at(run.state) == at(0) + timedelta(minutes=1)  # though no deal may start
    assert then(bot, run, tick("100", 0.01)).placed == []
    run = then(bot, run, TimerTick(at(0) + timedelta(minutes=1)))
    assert [(p.client_order_id, p.request.price, p.request.quantity) for p in run.placed] == [
        ("bot:1:1:5", D("101.00"), D("0.990"))
    ]
    assert bot.wake_at(run.state) is None


def test_a_base_order_that_fills_while_being_canceled_is_sold_not_reopened():
    bot = dca()
    run = fold(bot, [tick("100"), StopBot(at(0.1), close_position=True)])
    assert run.canceled == ["bot:1:1:1"]
    run = then(bot, run, fill("bot:1:1:1", BUY, "100", "0.990", "0.198", hours=0.1))
    assert [(p.request.side, p.request.quantity) for p in run.placed] == [(SELL, D("0.990"))]
    assert run.state.deals[0].status is DealStatus.CLOSING


def test_deals_at_most_max_active_and_the_cooldown_between_starts():
    bot = dca(max_active_deals=2, cooldown=timedelta(hours=1), max_safety_orders=0)
    run = fold(bot, [tick("100", 0), tick("100", 0.5), tick("100", 1)])
    assert [p.client_order_id for p in run.placed] == ["bot:1:1:1", "bot:1:2:2"]
    assert bot.wake_at(run.state) is None  # two deals open: nothing to wake for
    run = then(bot, run, tick("100", 2), TimerTick(at(3)))
    assert run.placed == []


def test_a_deal_that_bought_nothing_is_abandoned_and_retried_later():
    bot = dca()
    run = fold(bot, [tick("100")])
    run = then(bot, run, ended("bot:1:1:1", 0, status=OrderStatus.EXPIRED))
    assert run.state.deals == () and run.reasons(Action.DEAL_ABANDONED)
    assert bot.wake_at(run.state) == at(0) + timedelta(minutes=1)
    run = then(bot, run, tick("100", 0.01))
    assert run.placed == []
    run = then(bot, run, TimerTick(at(0) + timedelta(minutes=1)))
    assert [p.client_order_id for p in run.placed] == ["bot:1:2:2"]


def test_a_deal_starts_on_a_buy_alert_once_per_alert():
    bot = dca(start=StartCondition.SIGNAL)
    run = fold(bot, [tick("100")])
    assert run.placed == []
    run = then(bot, run, signal(0.001, alert_id="tv-1"), signal(0.002, alert_id="tv-1"))
    assert [p.reason for p in run.placed] == ["deal 1 on alert tv-1: base order of 100 USDT"]
    assert run.reasons(Action.ALERT_DROPPED) == ["alert tv-1: alert tv-1 was already received"]


def test_a_close_alert_closes_open_deals_and_a_stale_one_is_dropped():
    bot = dca()
    run = opened(bot)
    stale = signal(1, alert_id="old", action=AlertAction.CLOSE, time=at(0.9))
    run = then(bot, run, stale)
    assert run.placed == [] and "s old" in run.reasons(Action.ALERT_DROPPED)[0]
    run = then(
        bot,
        run,
        signal(1, alert_id="now", action=AlertAction.CLOSE, time=at(1)),
        ended("bot:1:1:2", 1),
    )
    assert [p.request.type for p in run.placed] == [OrderType.MARKET]
    assert run.state.deals[0].close_reason == "ALERT"


def test_stop_keeping_the_position_cancels_and_ends_the_deal_with_what_it_holds():
    bot = dca()
    run = opened(bot)
    run = then(bot, run, StopBot(at(1)))
    assert run.canceled == ["bot:1:1:2", "bot:1:1:3", "bot:1:1:4"] and run.placed == []
    assert run.state.status is BotStatus.STOPPING
    run = then(bot, run, *(ended(c, 1) for c in ("bot:1:1:2", "bot:1:1:3", "bot:1:1:4")))
    assert run.state.status is BotStatus.STOPPED and run.state.deals == ()
    assert run.reasons(Action.DEAL_CLOSED)[0].endswith("kept 0.990")
    assert then(bot, run, tick("100", 2)).placed == []


def test_stop_with_close_position_sells_at_market():
    bot = dca()
    run = then(bot, opened(bot), StopBot(at(1), close_position=True), ended("bot:1:1:2", 1))
    assert [(p.request.side, p.request.quantity) for p in run.placed] == [(SELL, D("0.990"))]


def test_the_budget_of_a_deal_is_the_base_and_every_safety_order():
    assert deal_budget(settings()) == D(100) + D(100) + D(150) + D(225)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"base_order": D(0)}, "baseOrder"),
        ({"max_safety_orders": 101}, "maxSafetyOrders"),
        ({"max_active_safety_orders": 4}, "maxActiveSafetyOrders"),
        ({"price_deviation": D(1)}, "priceDeviation"),
        ({"step_scale": D(0)}, "stepScale"),
        ({"price_deviation": D("0.2"), "step_scale": D(2)}, "stepScale"),  # 0.2 x 7 >= 1
        ({"take_profit": ()}, "takeProfit"),
        ({"take_profit": (TakeProfitStep(D("0.01"), D("0.5")),)}, "takeProfit"),
        ({"take_profit": (TakeProfitStep(D("0.003"), D(1)),)}, "takeProfit"),  # under fees
        (
            {
                "take_profit": (
                    TakeProfitStep(D("0.02"), D("0.5")),
                    TakeProfitStep(D("0.01"), D("0.5")),
                )
            },
            "takeProfit",
        ),
        ({"trailing_deviation": D(0)}, "trailingDeviation"),
        ({"stop_loss": D(1)}, "stopLoss"),
        ({"max_active_deals": 0}, "maxActiveDeals"),
        ({"cooldown": timedelta(seconds=-1)}, "cooldown"),
        ({"max_slippage_bps": 1001}, "maxSlippageBps"),
    ],
)
def test_settings_out_of_range_are_refused_naming_the_field(change, field):
    with pytest.raises(ValidationFailed) as refused:
        settings(**change)
    assert refused.value.field == field
