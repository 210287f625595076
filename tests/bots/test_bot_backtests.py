"""Each bot kind as a backtest strategy (``BotStrategy``) through ``run_backtest`` on the
simulated venue, reproducing hand-computed fills. Default simulation: latency 1 (an
order decided at a close trades from the next candle's open), the adverse path (low
first while holding), no volume cap. Candles open at the previous close and range over
the move only. Market BTC/USDT: tick 0.01, lot 0.001, maker 0.1 %, taker 0.2 %."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from app.backtesting.domain.runner import result_json, run_backtest
from app.bots.domain.alerts import Alert, AlertAction
from app.bots.domain.backtest import BotStrategy
from app.bots.domain.dca import DcaBot
from app.bots.domain.dca_settings import DcaSettings
from app.bots.domain.grid import GridBot
from app.bots.domain.grid_settings import GridSettings, validate_grid
from app.bots.domain.rebalance import (
    Holding,
    RebalanceBot,
    RebalanceSettings,
    RebalanceTrigger,
    Target,
)
from app.bots.domain.runtime import Action, PlaceOrder, Signal
from app.bots.domain.signal_bot import SignalBot, SignalSettings, alert_scope
from app.core.errors import InvariantViolation
from app.trading.domain.orders import OrderRequest, OrderType, Side
from app.venues.domain.simulated import SimulationSettings
from tests.support.bots import at, candles_from, dca_settings
from tests.support.simulation import SPEC

BUY, SELL = Side.BUY, Side.SELL
NO_CAP = SimulationSettings(volume_share=None)


def backtest(strategy, closes, cash="1000"):
    return run_backtest(
        strategy, candles_from(closes), market=SPEC, balances={"USDT": D(cash)}, settings=NO_CAP
    )


def fills(result) -> list[tuple[str, Side, D, D, D]]:
    return [(f.client_order_id, f.side, f.price, f.quantity, f.fee) for f in result.fills]


def test_dca_backtest():
    settings = dca_settings(
        max_safety_orders=2, max_active_safety_orders=1, step_scale=D(1), volume_scale=D(1)
    )
    strategy = BotStrategy(DcaBot(1, SPEC, settings), SPEC)
    result = backtest(strategy, [100, 100, 97, 99, 101, 101])
    assert fills(result) == [
        # decided at candle 0's close, bought at candle 1's open, as a taker
        ("bot:1:1:1", BUY, D(100), D("0.990"), D("0.198")),
        # safety order 1 at 98, placed at candle 1's close; candle 2 falls to 97
        ("bot:1:1:3", BUY, D("98.00"), D("1.020"), D("0.09996")),
        # safety order 2 (4) takes the slot; the new take-profit (once the old one's
        # cancel has ended, at the same close) 98.985 x 1.01 -> 99.98 fills as candle 4
        # rises to 101
        ("bot:1:1:5", SELL, D("99.98"), D("2.010"), D("0.20096")),
    ]
    (trade,) = result.trades
    assert trade.pnl == D("200.9598") - D("198.96") - D("0.49892")
    assert strategy.state.realized_pnl == trade.pnl
    assert [d.outcome for d in result.decisions] == ["OK"] * len(result.decisions)
    # the next deal starts at candle 5's close: 100 / (101 x 1.01 = 102.01) = 0.980
    assert result.decisions[-1].client_order_id == "bot:1:2:6"
    assert result.decisions[-1].quantity == D("0.980")


def test_grid_backtest():
    settings = GridSettings(lower=D(90), upper=D(110), levels=5, investment=D(1000))
    strategy = BotStrategy(GridBot(1, SPEC, validate_grid(settings, SPEC)), SPEC)
    result = backtest(strategy, [100, 100, 96, 94, 100, 106, 100])
    assert fills(result) == [
        ("bot:1:spare:3", BUY, D(100), D("5.156"), D("1.0312")),  # the opening buy
        ("bot:1:1:2", BUY, D(95), D("2.578"), D("0.24491")),  # candle 3 falls to 94
        ("bot:1:1:6", SELL, D(100), D("2.578"), D("0.2578")),  # candle 4 back to 100
        ("bot:1:2:4", SELL, D(105), D("2.578"), D("0.27069")),  # candle 5 up to 106
        ("bot:1:2:8", BUY, D(100), D("2.578"), D("0.2578")),  # candle 6 down to 100
    ]
    state = strategy.state
    assert [lv.cycles for lv in state.levels] == [0, 1, 1, 0]
    # level 1 round trip: 257.8 - 0.2578 - (244.91 + 0.24491)
    assert state.levels[1].position.realized_pnl == D("12.38729")
    assert state.base_held == result.equity[-1].position == D("5.156")


def test_rebalance_backtest():
    settings = RebalanceSettings(
        quote="USDT",
        targets=(Target("BTC", D("0.5")), Target("USDT", D("0.5"))),
        trigger=RebalanceTrigger.THRESHOLD,
        threshold=D("0.05"),
    )
    bot = RebalanceBot(1, (SPEC,), settings, allocation=(Holding("USDT", D(1000)),))
    strategy = BotStrategy(bot, SPEC)
    result = backtest(strategy, [100, 100, 125, 125])
    assert fills(result) == [
        ("bot:1:1:1", BUY, D(100), D("4.950"), D("0.99")),  # 500 / 101.00 (worst)
        ("bot:1:2:2", SELL, D(125), D("0.458"), D("0.1145")),  # 57.37 over at 125
    ]
    assert (strategy.state.held("BTC"), strategy.state.held("USDT")) == (
        D("4.492"),
        D("1000") - D("495") - D("0.99") + D("57.25") - D("0.1145"),
    )
    assert strategy.state.held("USDT") == result.equity[-1].cash


def test_signal_backtest_acts_once_per_alert_at_the_close():
    bot = SignalBot(1, SPEC, SignalSettings(amount=D(100), budget=D(1000)))
    buy = Alert("tv-1", AlertAction.BUY, time=at(1.5))
    signals = [
        Signal(at(1.5), buy),
        Signal(at(2.5), Alert("tv-2", AlertAction.CLOSE, time=at(2.5))),
        Signal(at(2.6), buy),  # delivered again
    ]
    strategy = BotStrategy(bot, SPEC, signals=signals)
    result = backtest(strategy, [100, 102, 104, 103])
    assert fills(result) == [
        # at candle 1's close (102): 100 / (103.02 x 1.002) = 0.968; at candle 2's open
        (f"bot:1:{alert_scope('tv-1')}:1", BUY, D(102), D("0.968"), D("0.197472")),
        (f"bot:1:{alert_scope('tv-2')}:2", SELL, D(104), D("0.968"), D("0.201344")),
    ]
    (trade,) = result.trades
    assert trade.pnl == D("100.672") - D("98.736") - D("0.398816")
    dropped = [d.reason for d in strategy.decisions if d.action is Action.ALERT_DROPPED]
    assert dropped == ["alert tv-1: alert tv-1 was already received"]


def test_the_same_run_twice_gives_the_same_bytes():
    def run():
        settings = GridSettings(lower=D(90), upper=D(110), levels=5, investment=D(1000))
        strategy = BotStrategy(GridBot(1, SPEC, settings), SPEC)
        return result_json(backtest(strategy, [100, 100, 96, 94, 100, 106, 100]))

    assert run() == run()


def test_a_command_for_another_market_is_a_bug():
    strategy = BotStrategy(DcaBot(1, SPEC, DcaSettings(D(1), D(1), 0, 0, D("0.1"))), SPEC)
    other = PlaceOrder("x", "ETH/USDT", OrderRequest(BUY, OrderType.LIMIT, D(1), price=D(1)), "")
    with pytest.raises(InvariantViolation):
        strategy._intent(other)
