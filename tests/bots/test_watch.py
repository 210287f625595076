"""Each kind's price interest (``watch``) on hand-made events, with its figures: the
prices a bot needs, and that a price just inside its band does nothing while one at its
bound acts. Market BTC/USDT: tick 0.01, lot 0.001, maker 0.1 %, taker 0.2 %."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal as D

from app.bots.domain.dca import DcaBot
from app.bots.domain.grid import GridBot
from app.bots.domain.grid_settings import AtBounds, GridSettings, validate_grid
from app.bots.domain.rebalance import (
    Holding,
    RebalanceBot,
    RebalanceSettings,
    RebalanceTrigger,
    Target,
)
from app.bots.domain.runtime import Action, PriceBand, StopBot
from app.bots.domain.signal_bot import SignalBot, SignalSettings
from app.trading.domain.orders import OrderStatus, OrderType, Side
from tests.support.bots import at, dca_settings, ended, fill, fold, signal, then, tick
from tests.support.simulation import SPEC

BUY, SELL = Side.BUY, Side.SELL
EVERY, NONE = PriceBand.EVERY, PriceBand.NONE
ETH = replace(SPEC, symbol="ETH/USDT", base="ETH")


def band(bot, state, symbol: str = SPEC.symbol) -> PriceBand:
    return bot.watch(state)[symbol]


def opened(bot: DcaBot, price: str = "100"):
    """A deal whose base order (0.990 at 100) filled."""
    run = fold(bot, [tick(price)])
    return then(bot, run, fill("bot:1:1:1", BUY, price, "0.990", "0.198"))


def test_a_dca_deal_needs_its_stop_loss_and_nothing_else():
    bot = DcaBot(1, SPEC, dca_settings(stop_loss=D("0.05")))
    assert bot.watch(bot.start(at(0))) == {SPEC.symbol: EVERY}  # no price yet: the first
    run = fold(bot, [tick("100")])
    assert band(bot, run.state) == NONE  # its base order is out: one deal at a time
    run = opened(bot)
    assert band(bot, run.state) == PriceBand(low=D(95))  # 100 x (1 - 0.05)
    assert then(bot, run, tick("95.01")).commands == []
    closed = then(bot, run, tick("95"))  # its orders canceled, then it sells
    assert set(closed.reasons(Action.CANCEL)) == {"deal 1: price 95 at or below the stop-loss 95"}


def test_a_trailing_take_profit_needs_its_target_then_its_high_and_the_fall_from_it():
    bot = DcaBot(1, SPEC, dca_settings(trailing_deviation=D("0.005")))
    run = opened(bot)
    assert band(bot, run.state) == PriceBand(high=D(101))  # 100 x 1.01
    assert then(bot, run, tick("100.99")).state == replace(run.state, last_price=D("100.99"))
    run = then(bot, run, tick("102"))
    assert band(bot, run.state) == PriceBand(D("101.49"), D(102))  # 102 x (1 - 0.005)
    assert then(bot, run, tick("101.5")).commands == []
    sold = then(bot, run, tick("101.49")).placed
    assert [(p.request.side, p.request.type) for p in sold] == [(SELL, OrderType.MARKET)]


def test_a_dca_bot_that_may_start_a_deal_needs_every_price_but_in_a_cooldown():
    waits = DcaBot(1, SPEC, dca_settings(max_active_deals=2, cooldown=timedelta(hours=1)))
    run = fold(waits, [tick("100")])
    assert band(waits, run.state) == NONE and waits.wake_at(run.state) == at(1)
    at_once = DcaBot(1, SPEC, dca_settings(max_active_deals=2))
    assert band(at_once, fold(at_once, [tick("100")]).state) == EVERY  # the next price


def test_a_base_order_under_one_lot_waits_for_a_price_that_buys_one():
    whole = replace(SPEC, lot_size=D(1))
    bot = DcaBot(1, whole, dca_settings())
    run = fold(bot, [tick("150"), tick("140", 1)])
    assert run.placed == [] and run.reasons(Action.WAITING) == [
        "the base order of 100 USDT is under one lot or the minimum order value at 150"
    ]  # noted once
    # 100 buys one coin when its worst price, 1 % above, is at most 100: at 99.01, not 99.02
    low = band(bot, run.state).low
    assert low is not None and D("99.01") < low < D("99.02") and band(bot, run.state).high is None
    assert then(bot, run, tick("99.02", 2)).decisions == []
    (base,) = then(bot, run, tick("99.01", 2)).placed
    assert (base.request.quantity, base.request.worst_price) == (D(1), D("100.00"))


def test_a_closing_deal_needs_the_prices_that_make_what_is_left_worth_the_minimum():
    market = replace(SPEC, min_notional=D(5))
    bot = DcaBot(1, market, dca_settings(stop_loss=D("0.05")))
    run = opened(bot)  # take-profit 2, safety orders 3 (98) and 4 (94)
    run = then(bot, run, tick("95", 1))  # the stop-loss: all three canceled
    assert run.canceled == ["bot:1:1:2", "bot:1:1:3", "bot:1:1:4"]
    assert band(bot, run.state) == NONE  # its take-profit may still sell
    run = then(bot, run, ended("bot:1:1:2", 1))
    assert [(c.request.type, c.request.quantity) for c in run.placed] == [
        (OrderType.MARKET, D("0.990"))
    ]
    assert band(bot, run.state) == NONE
    # the canceled safety order buys 0.010 before its end: 0.010 is left to sell
    run = then(bot, run, fill("bot:1:1:3", BUY, "98", "0.010", "0.001", remaining="1.010"))
    assert band(bot, run.state) == PriceBand(high=D(500))  # 5 / 0.010
    assert then(bot, run, tick("499.99", 1)).commands == []
    (rest,) = then(bot, run, tick("500", 1)).placed
    assert (rest.request.side, rest.request.quantity) == (SELL, D("0.010"))


def grid(at_bounds: AtBounds) -> GridBot:
    settings = GridSettings(D(90), D(110), 5, D(1000), at_bounds=at_bounds)
    return GridBot(1, SPEC, validate_grid(settings, SPEC))


def test_a_grid_needs_its_first_price_then_its_bounds_by_its_rule():
    bot = grid(AtBounds.STOP)
    assert band(bot, bot.start(at(0))) == EVERY
    started = fold(bot, [tick("100")]).state
    assert band(bot, started) == PriceBand(D(90), D(110))
    assert band(grid(AtBounds.TRAIL_UP), started) == PriceBand(high=D(110))
    assert band(grid(AtBounds.WAIT), started) == NONE
    stopped = then(bot, fold(bot, [tick("100")]), StopBot(at(1))).state
    assert band(bot, stopped) == NONE  # kept what it holds


def test_a_signal_bot_needs_no_price_but_to_sell_what_it_holds_once_stopped():
    market = replace(SPEC, min_notional=D(5))
    bot = SignalBot(1, market, SignalSettings(amount=D(100), budget=D(250)))
    run = fold(bot, [tick("100"), signal(0.1, alert_id="tv")])
    assert band(bot, run.state) == NONE  # an alert is sized at the caught-up last price
    (buy,) = run.placed
    run = then(bot, run, fill(buy.client_order_id, BUY, "100", "0.988", "0.2"))
    run = then(bot, run, StopBot(at(1), close_position=True))
    (sell,) = run.placed
    assert band(bot, run.state) == NONE  # its sale is out
    run = then(bot, run, ended(sell.client_order_id, 1, status=OrderStatus.REJECTED))
    # 0.988 is worth 5 from 5.0607287... (rounded down): it sells again there
    assert band(bot, run.state) == PriceBand(high=D("5.060728744939271255060728744"))
    assert then(bot, run, tick("5.06", 1)).placed == []
    assert then(bot, run, tick("5.07", 1)).placed


def rebalance(trigger: RebalanceTrigger) -> RebalanceBot:
    s = RebalanceSettings(
        quote="USDT",
        targets=(Target("BTC", D("0.5")), Target("USDT", D("0.5"))),
        trigger=trigger,
        threshold=D("0.05") if trigger is RebalanceTrigger.THRESHOLD else None,
        period=timedelta(hours=1) if trigger is RebalanceTrigger.PERIOD else None,
    )
    return RebalanceBot(1, (SPEC,), s, (Holding("BTC", D(5)), Holding("USDT", D(500))))


def test_a_rebalance_bot_by_threshold_needs_the_prices_that_move_a_weight_that_far():
    bot = rebalance(RebalanceTrigger.THRESHOLD)
    assert band(bot, bot.start(at(0))) == EVERY  # the first price
    run = fold(bot, [tick("100")])  # 500 and 500: on target
    # BTC's weight 5p / (5p + 500) reaches 0.55 at p = 122.22 (x = 11 / 9), 0.45 at 81.82:
    # the band goes 0.99 of the way there
    x = 1 + (D(11) / 9 - 1) * D("0.99")
    assert band(bot, run.state) == PriceBand(100 / x, 100 * x)
    assert D("121.99") < 100 * x < D("122.01") and D("81.96") < 100 / x < D("81.98")
    assert then(bot, run, tick("122.2")).commands == []
    assert then(bot, run, tick("122.23")).placed  # 5 x 122.23 is 55.002 % of the value


def test_a_rebalance_bot_by_period_needs_the_first_prices_only():
    bot = rebalance(RebalanceTrigger.PERIOD)
    run = fold(bot, [tick("100")])
    assert band(bot, run.state) == NONE and bot.wake_at(run.state) == at(1)
    two = RebalanceBot(
        1,
        (SPEC, ETH),
        replace(bot.settings, targets=(Target("BTC", D("0.5")), Target("ETH", D("0.5")))),
        (Holding("BTC", D(1)),),
    )
    state = fold(two, [tick("100")]).state
    assert two.watch(state) == {SPEC.symbol: NONE, ETH.symbol: EVERY}
