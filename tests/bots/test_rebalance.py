"""The rebalance bot, step by step: by threshold (a round when a weight drifts far
enough), by period, sells before buys, buys within what the quote holds, trades skipped
when they are too small or not worth their fee, several markets at once."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal as D

import pytest

from app.bots.domain.rebalance import (
    Holding,
    Phase,
    RebalanceBot,
    RebalanceSettings,
    RebalanceTrigger,
    Target,
    validate_rebalance,
)
from app.bots.domain.runtime import Action, BotStatus, StopBot, TimerTick
from app.core.errors import ValidationFailed
from app.trading.domain.orders import OrderRequest, OrderType, Side
from tests.support.bots import at, fill, fold, then, tick
from tests.support.simulation import SPEC

ETH = replace(SPEC, symbol="ETH/USDT", base="ETH")
HALF = (Target("BTC", D("0.5")), Target("USDT", D("0.5")))


def rebalance(
    *, allocation: dict[str, str], targets=HALF, markets=(SPEC,), **kw: object
) -> RebalanceBot:
    base = RebalanceSettings(
        quote="USDT", targets=targets, trigger=RebalanceTrigger.THRESHOLD, threshold=D("0.05")
    )
    settings = validate_rebalance(
        replace(base, **kw),  # type: ignore[arg-type]
        {m.symbol: m for m in markets},
    )
    holdings = tuple(Holding(a, D(q)) for a, q in allocation.items())
    return RebalanceBot(bot_id=1, markets=markets, settings=settings, allocation=holdings)


def test_threshold_rounds_sell_above_target_and_buy_below_it():
    bot = rebalance(allocation={"USDT": "1000"})
    run = fold(bot, [tick("100")])
    # BTC 0 of 1000: 500 to buy; at the worst price 101.00: floor(500 / 101) = 4.950
    (buy,) = run.placed
    assert (buy.client_order_id, buy.request) == (
        "bot:1:1:1",
        OrderRequest(Side.BUY, OrderType.MARKET, D("4.950"), worst_price=D("101.00")),
    )
    assert run.reasons(Action.REBALANCE) == ["round 1: BTC is 0.5 away from its target weight"]
    run = then(bot, run, fill("bot:1:1:1", Side.BUY, "100", "4.950", "0.99", hours=0.1))
    assert run.state.phase is Phase.IDLE and run.reasons(Action.REBALANCE) == ["round 1 done"]
    assert (run.state.held("BTC"), run.state.held("USDT")) == (D("4.950"), D("504.01"))

    # at 120: 594 of 1098.01 is 0.541 (0.041 off): nothing; at 125: 618.75 of 1122.76
    run = then(bot, run, tick("120", 1))
    assert run.commands == []
    run = then(bot, run, tick("125", 2))
    # target 561.38: 57.37 too much; floor(57.37 / 125) = 0.458, worst 125 x 0.99
    assert [p.request for p in run.placed] == [
        OrderRequest(Side.SELL, OrderType.MARKET, D("0.458"), worst_price=D("123.75"))
    ]
    assert run.state.phase is Phase.SELLING
    run = then(bot, run, fill("bot:1:2:2", Side.SELL, "125", "0.458", "0.1145", hours=2))
    assert run.placed == [] and run.state.phase is Phase.SELLING  # buys wait for a price
    run = then(bot, run, tick("125", 3))
    # BTC 561.5 of 1122.6455 is above its target: nothing to buy
    assert run.placed == [] and run.state.phase is Phase.IDLE
    assert run.reasons(Action.REBALANCE) == ["round 2 done"]


def test_buys_come_after_the_sells_and_share_what_the_quote_holds():
    bot = rebalance(
        allocation={"BTC": "10", "ETH": "0", "USDT": "0"},
        targets=(Target("BTC", D("0.5")), Target("ETH", D("0.5"))),
        markets=(SPEC, ETH),
    )
    run = fold(bot, [tick("100"), tick("50", symbol="ETH/USDT")])
    # 1000 in BTC: sell 500 worth; nothing to buy ETH with yet
    assert [(p.symbol, p.request.side, p.request.quantity) for p in run.placed] == [
        ("BTC/USDT", Side.SELL, D("5.000"))
    ]
    run = then(bot, run, fill("bot:1:1:1", Side.SELL, "100", "5", "1"))
    assert run.placed == []
    run = then(bot, run, TimerTick(at(1)))
    # ETH wants 499.5 of 999 but the quote holds 499: scaled to (499 - 0.000001) / 1.002
    # = 498.003991 with the taker fee; at the worst price 50 x 1.01 = 50.50: 9.861 ETH
    assert [(p.symbol, p.request.side, p.request.quantity) for p in run.placed] == [
        ("ETH/USDT", Side.BUY, D("9.861"))
    ]
    run = then(bot, run, fill("bot:1:1:2", Side.BUY, "50", "9.861", "0.986100"))
    assert run.state.held("USDT") == D("4.963900")  # 499 - 493.05 - 0.9861


def test_period_rounds_come_every_period_and_skip_trades_not_worth_their_fee():
    bot = rebalance(
        allocation={"BTC": "10", "USDT": "1000"},
        trigger=RebalanceTrigger.PERIOD,
        threshold=None,
        period=timedelta(hours=1),
    )
    assert bot.wake_at(bot.start(at(0))) == at(0)
    run = fold(bot, [tick("100.3")])
    # 1003 vs 1001.5: sell floor(1.5 / 100.3) = 0.014 (1.4042): it corrects 1.4042 / 2003 of the
    # weight, its fee 0.002809 costs 0.002 of what it trades
    assert run.placed == []
    assert run.reasons(Action.SKIPPED) == [
        "sell 0.014 BTC: it corrects 0.00070105 of the weight, its fee costs 0.00200043 of"
        " what it trades"
    ]
    assert bot.wake_at(run.state) == at(1)
    run = then(bot, run, tick("101", 0.5))
    assert run.commands == []  # not due
    run = then(bot, run, tick("101", 3.5))
    # due (the 3 missed periods are not made up: next at 4h); 1010 vs 1005: 0.049 BTC
    assert [p.request.quantity for p in run.placed] == [D("0.049")]
    assert run.state.next_due == at(4)


def test_a_trade_under_the_minimum_is_skipped():
    bot = rebalance(allocation={"BTC": "10", "USDT": "1000"}, min_trade=D(50))
    run = fold(bot, [tick("125")])
    # 1250 of 2250 (0.056 off): 125 to sell, floor(125 / 125) = 1.000
    assert [p.request.quantity for p in run.placed] == [D("1.000")]
    bot = rebalance(allocation={"BTC": "10", "USDT": "1000"}, min_trade=D(130))
    run = fold(bot, [tick("125")])
    assert run.placed == [] and run.reasons(Action.SKIPPED) == [
        "BTC: 125 USDT off, under the minimum trade"
    ]
    # a round that traded nothing waits for the drift to grow by another threshold
    assert then(bot, run, tick("126", 1)).decisions == []
    assert then(bot, run, tick("200", 1)).placed != []


def test_stop_with_close_position_sells_every_asset():
    bot = rebalance(allocation={"BTC": "2", "USDT": "200"})
    run = fold(bot, [tick("100"), StopBot(at(1), close_position=True)])
    assert [(p.request.side, p.request.quantity) for p in run.placed] == [(Side.SELL, D(2))]
    assert run.state.status is BotStatus.STOPPING


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"targets": ()}, "targets"),
        ({"targets": (Target("USDT", D(1)),)}, "targets"),
        ({"targets": (Target("BTC", D("0.5")), Target("USDT", D("0.4")))}, "targets"),
        ({"targets": (Target("DOGE", D("0.5")), Target("USDT", D("0.5")))}, "targets"),
        ({"threshold": D(0)}, "threshold"),
        ({"trigger": RebalanceTrigger.PERIOD, "period": timedelta(seconds=30)}, "period"),
        ({"min_trade": D(-1)}, "minTrade"),
    ],
)
def test_settings_out_of_range_are_refused_naming_the_field(change, field):
    with pytest.raises(ValidationFailed) as refused:
        rebalance(allocation={"USDT": "1"}, **change)
    assert refused.value.field == field
