"""Risk limits in a backtest (pure, no database): a strategy that keeps losing is stopped
by CONSECUTIVE_LOSSES and DAILY_LOSS, a cool-down lasts its simulated time, REDUCE_TO_FLAT
sells the position, PRE_TRADE limits refuse simulated orders, each refusal and transition
is in the result with its simulated time and reason; and the backtest decides as the live
gate and trigger decide for the same figures (the same functions)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from app.backtesting.domain.protections import ACCOUNT, Protections
from app.backtesting.domain.runner import RunResult, result_json, run_backtest
from app.backtesting.domain.strategies import Submit, Tick
from app.risk.domain.limits import Action, Figures, Limit, LimitKind, ProposedOrder, to_act
from app.risk.domain.pnl import Marks
from app.risk.domain.states import RiskState, Scope, ScopeRef
from app.risk.gate import Gate
from app.trading.domain.orders import OrderRequest, OrderType, Side
from app.trading.markets import MarketRow
from app.venues.domain.paths import Candle
from app.venues.domain.simulated import SimulationSettings
from tests.support.simulation import SPEC, T0

CASH = {"USDT": D("10000")}
USER = ScopeRef(Scope.USER, ACCOUNT)


class BuyHighSellLow:
    """Buys 1 BTC at a close, sells it at the next: on falling candles every round trip
    loses (what a runaway bot does)."""

    name = "loser"

    def decide(self, tick: Tick) -> list[Submit]:
        side = Side.SELL if tick.position > 0 else Side.BUY
        request = OrderRequest(side=side, type=OrderType.MARKET, quantity=D(1),
                               max_slippage_bps=500)  # fmt: skip
        return [Submit(f"loser:{tick.index}:{side.value.lower()}", request, "keeps trying")]


def falling(count: int, *, start: int = 1000, step: int = 5, hours: int = 1) -> list[Candle]:
    out, price = [], D(start)
    for i in range(count):
        close = price - step
        out.append(Candle(T0 + timedelta(hours=hours * i), price, price + 1, close - 1, close,
                          D(1000)))  # fmt: skip
        price = close
    return out


def limit(kind: LimitKind, threshold: str, action: Action = Action.BLOCK_ENTRIES, **kw) -> Limit:
    return Limit(id=len(kind), ref=USER, kind=kind, threshold=D(threshold), action=action, **kw)


def run(candles: list[Candle], *limits: Limit) -> RunResult:
    return run_backtest(BuyHighSellLow(), candles, market=SPEC, balances=CASH,
                        settings=SimulationSettings(latency=0, volume_share=None),
                        limits=limits)  # fmt: skip


def buys(result: RunResult) -> list[tuple[int, str]]:
    return [(d.candle, d.outcome) for d in result.decisions if d.side is Side.BUY]


def test_without_limits_it_keeps_losing():
    result = run(falling(12))
    assert result.risk_events == ()
    assert len(result.trades) == 6 and all(t.pnl < 0 for t in result.trades)
    assert "risk_events" not in result_json(result)  # runs without limits: as before


def test_consecutive_losses_block_entries_for_the_rest_of_the_run():
    result = run(falling(12), limit(LimitKind.CONSECUTIVE_LOSSES, "3"))
    assert len(result.trades) == 3
    moved, *refused = result.risk_events
    assert (moved.action, moved.state, moved.limit_kind, moved.value) == (
        "REDUCE", RiskState.REDUCING, LimitKind.CONSECUTIVE_LOSSES, D(3),
    )  # fmt: skip
    # the 3rd losing sale, at candle 5's close (latency 0), is looked at by the next close
    # before the strategy decides there (live: the consumer reads fills after they commit)
    assert moved.candle == 6 and moved.at == T0 + timedelta(hours=7)
    assert moved.reason == "CONSECUTIVE_LOSSES of 3 LOSSES (USER 0) reached (3)"
    assert buys(result)[-1] == (11, "RISK_REDUCING")
    assert [(e.action, e.candle, e.client_order_id) for e in refused] == [
        ("REFUSED", c, f"loser:{c}:buy") for c in (6, 7, 8, 9, 10, 11)
    ]
    assert all(e.state is RiskState.REDUCING and e.limit_kind is None for e in refused)
    assert "only takes orders that reduce exposure" in refused[0].reason


def test_a_daily_loss_cool_down_halts_for_its_simulated_time():
    daily = limit(LimitKind.DAILY_LOSS, "12", Action.COOL_DOWN, cooldown_seconds=3 * 3600)
    result = run(falling(10, hours=4), daily)  # a candle every 4 hours
    moves = [(e.action, e.candle, e.at - T0) for e in result.risk_events if e.action != "REFUSED"]
    # a round trip loses 5 and about 4 in fees; at candle 3's close the first trip and the
    # open position have lost 15.94 today: halted for 3 hours, over at the next close
    # (4 hours on) where today's loss is still beyond: halted again, as live
    assert moves[:3] == [
        ("HALT", 3, timedelta(hours=13)),
        ("COOL_DOWN_OVER", 4, timedelta(hours=17)),
        ("HALT", 4, timedelta(hours=17)),
    ]
    assert result.risk_events[0].reason == "DAILY_LOSS of 12 USD (USER 0) reached (15.94)"
    # the next day (candle 6 closes at 01:00) starts from that day's P&L: trading resumes
    assert ("COOL_DOWN_OVER", 6, timedelta(hours=25)) in moves
    outcomes = [(d.candle, d.outcome) for d in result.decisions]
    assert outcomes[3:8] == [
        (3, "RISK_HALTED"), (4, "RISK_HALTED"), (5, "RISK_HALTED"), (6, "OK"), (7, "OK"),
    ]  # fmt: skip
    refused = next(e for e in result.risk_events if e.action == "REFUSED")
    assert "USER 0 is halted (cancels only): DAILY_LOSS of 12 USD" in refused.reason


def test_reduce_to_flat_sells_the_position_at_the_close():
    drawdown = limit(LimitKind.DRAWDOWN, "3", Action.REDUCE_TO_FLAT)
    candles = falling(4, step=2)
    result = run_backtest(_HoldOn(), candles, market=SPEC, balances=CASH,
                          settings=SimulationSettings(latency=0, volume_share=None),
                          limits=[drawdown])  # fmt: skip
    (moved,) = result.risk_events
    assert (moved.action, moved.state, moved.candle) == ("REDUCE", RiskState.REDUCING, 1)
    sold = [f for f in result.fills if f.client_order_id == "risk-flat-1"]
    assert [(f.side, f.quantity) for f in sold] == [(Side.SELL, D(1))]
    assert result.equity[-1].position == 0


class _HoldOn:
    name = "hold"

    def decide(self, tick: Tick) -> list[Submit]:
        if tick.index:
            return []
        request = OrderRequest(side=Side.BUY, type=OrderType.MARKET, quantity=D(1),
                               max_slippage_bps=500)  # fmt: skip
        return [Submit("hold:buy", request, "buy once")]


def test_pre_trade_limits_refuse_simulated_orders():
    result = run(falling(12), limit(LimitKind.TRADES_PER_DAY, "4"),
                 limit(LimitKind.ORDER_NOTIONAL, "100000"))  # fmt: skip
    outcomes = [d.outcome for d in result.decisions]
    assert outcomes == ["OK"] * 4 + ["RISK_LIMIT_REACHED"] * 8
    # the 4th order takes the count to 4, past 80 % of 4 (the default warning ratio):
    # warned of once that day (as live: one notification a day per limit), then refused
    warned, first = result.risk_events[:2]
    assert [e.action for e in result.risk_events].count("WARNED") == 1
    assert (warned.action, warned.limit_kind, warned.value, warned.candle) == (
        "WARNED", LimitKind.TRADES_PER_DAY, D(4), 3,
    )  # fmt: skip
    assert warned.client_order_id == "loser:3:sell"
    assert warned.reason == "TRADES_PER_DAY of 4 ORDERS (USER 0) at 4 (100 %)"
    assert (first.action, first.limit_kind, first.value, first.candle) == (
        "REFUSED", LimitKind.TRADES_PER_DAY, D(5), 4,
    )  # fmt: skip
    assert "TRADES_PER_DAY of 4 ORDERS (USER 0) to 5" in first.reason


def test_a_limit_near_warns_once_a_simulated_day():
    # an order every hour (a buy, then a sell) for 3 days: 23 or 24 a day; warned at 80 %
    # of 25, the 20th order of each day, once, and never refused
    result = run(falling(72), limit(LimitKind.TRADES_PER_DAY, "25"))
    warned = [e for e in result.risk_events if e.action == "WARNED"]
    assert [(e.at.date() - T0.date()).days for e in warned] == [0, 1, 2]
    assert all(e.value == 20 for e in warned)
    assert not [e for e in result.risk_events if e.action == "REFUSED"]


def test_the_backtest_and_the_live_gate_decide_alike_for_the_same_figures():
    limits = [limit(LimitKind.ASSET_EXPOSURE, "1000"), limit(LimitKind.TRADES_PER_DAY, "3")]
    guard = Protections(limits, market=SPEC, start=T0)
    live_limits = [Limit(lim.id, ScopeRef(Scope.USER, 7), lim.kind, lim.threshold)
                   for lim in limits]  # fmt: skip
    gate = Gate(T0, limits={ScopeRef(Scope.USER, 7): live_limits})
    market = MarketRow(1, SPEC, None, None, 0, 0, 0)
    for held, today, quantity in [(0, 0, "1"), (900, 0, "1"), (900, 0, "0.09"), (0, 3, "0.1")]:
        figures = Figures(orders_today=today, exposure={"BTC": D(held)}, equity=D(10000))
        gate.figures[7] = figures
        valid = SPEC_VALID(quantity)
        live, order, _ = gate.decide(user_id=7, market=market, valid=valid, usd_rate=D(1),
                                     client_order_id="x")  # fmt: skip
        simulated = guard.decide(guard.proposed(valid), figures, T0)
        assert order == guard.proposed(valid) == ProposedOrder(D(100) * D(quantity), "BTC")
        assert (live.binding is None) == (simulated.binding is None)
        if live.binding is not None and simulated.binding is not None:
            assert live.binding.limit.kind == simulated.binding.limit.kind  # type: ignore[union-attr]
            assert live.binding.value == simulated.binding.value
    # after fills: the consumer and the backtest both act through ``to_act``
    marks = Marks.start(now=T0, pnl=D(0), realised=D(0))
    for pnl in (D(-1), D(-2), D(-3)):
        marks = marks.observe(now=T0, pnl=pnl, realised=pnl)
    breach, _ = to_act([limit(LimitKind.CONSECUTIVE_LOSSES, "3")], marks.figures(),
                       RiskState.ACTIVE)  # fmt: skip
    assert breach is not None and breach.effect.state is RiskState.REDUCING


def SPEC_VALID(quantity: str):
    from app.trading.domain.orders import validate_order

    request = OrderRequest(side=Side.BUY, type=OrderType.LIMIT, quantity=D(quantity), price=D(100))
    return validate_order(request, SPEC, now=T0, reference_price=None)


class _TooBigThenSmall:
    """Asks for more than it can pay at each close, then for what it can."""

    name = "greedy"

    def decide(self, tick: Tick) -> list[Submit]:
        return [
            Submit(
                f"greedy:{tick.index}:{size}",
                OrderRequest(
                    side=Side.BUY,
                    type=OrderType.MARKET,
                    quantity=D(size),
                    max_slippage_bps=500,
                ),
                "try",
            )
            for size in ("1000", "1")
        ]


def test_an_order_refused_for_its_funds_is_not_counted_as_placed():
    result = run_backtest(_TooBigThenSmall(), falling(3), market=SPEC, balances=CASH,
                          settings=SimulationSettings(latency=0, volume_share=None),
                          limits=[limit(LimitKind.TRADES_PER_DAY, "2")])  # fmt: skip
    assert [d.outcome for d in result.decisions] == [
        "INSUFFICIENT_FUNDS", "OK", "INSUFFICIENT_FUNDS", "OK",
        "RISK_LIMIT_REACHED", "RISK_LIMIT_REACHED",  # the limits come before the funds
    ]  # fmt: skip
