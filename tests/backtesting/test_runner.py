"""Backtests without a database: the two strategies on hand-made candles (what they decide
and why, the round trips), determinism (same inputs and seed: the same JSON bytes), and
honesty as a property over random candle series: truncate the data at t and run again,
every decision, fill and equity point before t is unchanged (no lookahead)."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, replace
from datetime import timedelta
from decimal import Decimal as D
from decimal import localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.backtesting.domain.runner import (
    EquityCurve,
    EquityPoint,
    RunResult,
    result_json,
    run_backtest,
)
from app.backtesting.domain.strategies import (
    DollarCostAveraging,
    MovingAverageCrossover,
    Strategy,
    Submit,
    Tick,
    WindowSums,
    make_tick,
)
from app.trading.domain.orders import OrderType, Side
from app.venues.domain.paths import Candle, PathMode
from app.venues.domain.simulated import SimulationSettings
from tests.support.simulation import SPEC, T0, random_candle

CASH = {"USDT": D("1000")}
PROPERTIES = settings(max_examples=60, derandomize=True, deadline=None)


def flat_candles(closes: list[int], volume: str = "1000") -> list[Candle]:
    """Candles that open at the previous close and range one unit around the move."""
    out, previous = [], closes[0]
    for i, close in enumerate(closes):
        o, c = D(previous), D(close)
        out.append(Candle(T0 + timedelta(hours=i), o, max(o, c) + 1, min(o, c) - 1, c, D(volume)))
        previous = close
    return out


def run(strategy: Strategy, candles: list[Candle], **kw: object) -> RunResult:
    return run_backtest(
        strategy, candles, market=SPEC, balances=CASH, settings=SimulationSettings(**kw)
    )


def ma(**kw: object) -> MovingAverageCrossover:
    return MovingAverageCrossover(SPEC, fast=2, slow=4, **kw)  # type: ignore[arg-type]


def test_ma_crossover_buys_the_cross_up_and_sells_the_cross_down():
    closes = [100, 99, 98, 97, 99, 102, 105, 104, 100, 96, 95]
    result = run(ma(quantity=D("2")), flat_candles(closes))
    decided = [(d.candle, d.client_order_id, d.side, d.type, d.quantity) for d in result.decisions]
    # candle 3: fast 97.5 < slow 98.5; 4: fast 98 < slow 98.25;
    # 5: fast 100.5 > slow 99 (cross up); 8: fast 102 < slow 102.75 (cross down)
    assert decided == [
        (5, "ma:5:buy", Side.BUY, OrderType.MARKET, D("2")),
        (8, "ma:8:sell", Side.SELL, OrderType.MARKET, D("2.000")),
    ]
    assert result.decisions[0].reason == "fast SMA 100.5000 crossed above slow SMA 99.0000"
    assert all(d.outcome == "OK" for d in result.decisions)
    # latency 1: each fills at the next candle's open, as a taker
    assert [(f.side, f.price, f.fee) for f in result.fills] == [
        (Side.BUY, D("102.00"), D("0.408000")),
        (Side.SELL, D("100.00"), D("0.400000")),
    ]
    (trade,) = result.trades
    assert (trade.quantity, trade.entry_value, trade.exit_value) == (
        D("2.000"),
        D("204"),
        D("200"),
    )
    assert trade.fees == D("0.808") and trade.pnl == D("-4.808")
    assert result.fees == D("0.808")
    assert result.equity[-1].equity == D("1000") - D("4.808")
    assert trade.opened_at == T0 + timedelta(hours=6)  # candle 6's open
    assert trade.closed_at == T0 + timedelta(hours=9)


def test_ma_crossover_sizes_a_fraction_of_equity_within_the_hold():
    closes = [100, 99, 98, 97, 99, 102, 105]
    result = run(ma(fraction=D("1"), max_slippage_bps=100), flat_candles(closes))
    (decision,) = result.decisions
    # 1000 / 1.002 / (102 * 1.01) = 9.687... -> 9.687 lots of 0.001
    assert decision.quantity == D("9.687") and decision.outcome == "OK"


def test_dca_buys_every_n_candles_and_keeps_one_take_profit():
    closes = [100, 100, 100, 100, 103, 103]
    strategy = DollarCostAveraging(SPEC, quote_amount=D("100"), every=2, take_profit=D("0.02"))
    result = run(strategy, flat_candles(closes))
    assert [(d.candle, d.action, d.client_order_id) for d in result.decisions] == [
        (0, "SUBMIT", "dca:0:buy"),  # fills at candle 1's open, 100
        (1, "SUBMIT", "dca:1:tp"),  # 1 BTC cost 100.2 -> 102.204 -> 102.21
        (2, "SUBMIT", "dca:2:buy"),  # fills at candle 3's open, 100
        (3, "CANCEL", "dca:1:tp"),
        (3, "SUBMIT", "dca:3:tp"),  # 2 BTC cost 200.4 -> 102.21 again
        (4, "SUBMIT", "dca:4:buy"),  # fills at candle 5's open, 103
        (5, "SUBMIT", "dca:5:tp"),  # a new cycle
    ]
    tp = result.decisions[1]
    assert (tp.side, tp.type, tp.quantity, tp.price) == (
        Side.SELL,
        OrderType.LIMIT,
        D("1.000"),
        D("102.21"),
    )
    assert result.decisions[4].quantity == D("2.000")
    # candle 4 rises to 104: the take-profit fills at its price, as a maker
    sells = [f for f in result.fills if f.side is Side.SELL]
    assert [(f.client_order_id, f.price, f.quantity) for f in sells] == [
        ("dca:3:tp", D("102.21"), D("2.000"))
    ]
    assert len(result.trades) == 1 and result.trades[0].pnl > 0


def _walk(draw_moves: list[tuple[int, int, int, int]]) -> list[Candle]:
    out, price = [], 10_000  # cents
    for i, (move, up, down, volume) in enumerate(draw_moves):
        o = price
        c = max(500, o + move)
        out.append(random_candle(i, o, c, up, down, volume))
        price = c
    return out


moves = st.lists(
    st.tuples(st.integers(-400, 400), st.integers(0, 200), st.integers(0, 200), st.integers(0, 40)),
    min_size=8,
    max_size=60,
)


def _strategies() -> list[Strategy]:
    return [
        MovingAverageCrossover(SPEC, fast=3, slow=7, fraction=D("0.8")),
        DollarCostAveraging(SPEC, quote_amount=D("60"), every=3, take_profit=D("0.01")),
    ]


def test_the_same_inputs_give_the_same_bytes():
    candles = _walk([(37 * (i % 7) - 110, 50, 60, 20) for i in range(120)])
    for make in (0, 1):
        runs = [
            result_json(run(_strategies()[make], candles, slippage_bps=30, seed=7))
            for _ in range(2)
        ]
        assert runs[0] == runs[1]
        assert repr(run(_strategies()[make], candles, slippage_bps=30, seed=7)) == repr(
            run(_strategies()[make], candles, slippage_bps=30, seed=7)
        )
    # the seed is what the randomness depends on
    other = result_json(run(_strategies()[1], candles, slippage_bps=30, seed=8))
    assert other != result_json(run(_strategies()[1], candles, slippage_bps=30, seed=7))


@PROPERTIES
@given(
    steps=moves,
    cut=st.integers(1, 59),
    which=st.integers(0, 1),
    path=st.sampled_from(list(PathMode)),
    latency=st.integers(0, 2),
)
def test_no_lookahead_truncating_the_data_changes_nothing_before(steps, cut, which, path, latency):
    candles = _walk(steps)
    cut = min(cut, len(candles))
    kw = {"path": path, "latency": latency, "slippage_bps": 20, "seed": 3}
    full = run(_strategies()[which], candles, **kw)
    part = run(_strategies()[which], candles[:cut], **kw)
    n = len(part.decisions)
    assert full.decisions[:n] == part.decisions
    assert all(d.candle >= cut for d in full.decisions[n:])
    assert full.fills[: len(part.fills)] == part.fills
    assert all(f.at >= candles[cut - 1].close_time for f in full.fills[len(part.fills) :])
    assert full.equity[:cut] == part.equity
    # and the books balance at every close
    for point in full.equity:
        assert point.equity == point.cash + point.position * point.price
        assert point.cash >= 0 and point.position >= 0


def _decisions_summing_each_window(
    closes: list[D], fast: int, slow: int
) -> list[tuple[int, str, str]]:
    """The crossover's decisions as first written: both windows summed at each close (in
    the current context), the position flat until it buys and full until it sells."""
    out: list[tuple[int, str, str]] = []
    above: bool | None = None
    holding = False
    for i in range(slow - 1, len(closes)):
        window = closes[i - slow + 1 : i + 1]
        fast_ma = sum(window[-fast:], D(0)) / fast
        slow_ma = sum(window, D(0)) / slow
        now_above = fast_ma > slow_ma
        shown = f"fast SMA {fast_ma.quantize(D('0.0001'))} {{}} slow SMA "
        shown += f"{slow_ma.quantize(D('0.0001'))}"
        if now_above and above is False and not holding:
            out.append((i, "buy", shown.format("crossed above")))
            holding = True
        elif not now_above and above is True and holding:
            out.append((i, "sell", shown.format("crossed below")))
            holding = False
        above = now_above
    return out


@PROPERTIES
@given(
    units=st.lists(st.integers(1, 10**14), min_size=1, max_size=80),
    exponents=st.lists(st.integers(-8, 2), min_size=1, max_size=3),
    precision=st.sampled_from([28, 12, 6]),
    windows=st.tuples(st.integers(1, 6), st.integers(1, 12)).filter(lambda w: w[0] < w[1]),
)
def test_moving_averages_are_those_of_each_window_summed_in_the_context(
    units, exponents, precision, windows
):
    # running sums instead of a window's additions at each close; with long prices and a
    # short precision the plain sums round, and so must the averages
    fast, slow = windows
    sums = WindowSums(fast, slow)
    with localcontext() as context:
        context.prec = precision
        for i, u in enumerate(units):
            close = D(u).scaleb(exponents[i % len(exponents)])
            averages = sums.update(close)
            window = [D(v).scaleb(exponents[k % len(exponents)]) for k, v in enumerate(units)]
            window = window[max(0, i + 1 - slow) : i + 1]
            assert list(sums.closes) == window
            if i + 1 < slow:
                assert averages is None
                continue
            assert averages == (sum(window[-fast:], D(0)) / fast, sum(window, D(0)) / slow)


@PROPERTIES
@given(
    # below 10^7: the averages shown to 4 decimals fit in the smallest precision, 12
    units=st.lists(st.integers(1, 10**11), min_size=2, max_size=80),
    exponent=st.integers(-8, -5),
    precision=st.sampled_from([28, 16, 12]),
    windows=st.tuples(st.integers(1, 6), st.integers(1, 12)).filter(lambda w: w[0] < w[1]),
)
def test_the_crossover_s_averages_are_those_of_the_windows_summed_each_time(
    units, exponent, precision, windows
):
    # the strategy keeps running sums; with long prices and a short precision the plain
    # sums round (the strategy must then sum the windows itself): the same decisions and
    # the same averages in the reasons either way
    fast, slow = windows
    closes = [D(u).scaleb(exponent + (i % 3 == 0)) for i, u in enumerate(units)]
    with localcontext() as context:
        context.prec = precision
        strategy = MovingAverageCrossover(SPEC, fast=fast, slow=slow, quantity=D(1))
        decided, position = [], D(0)
        for i, close in enumerate(closes):
            candle = Candle(T0 + timedelta(hours=i), close, close, close, close, D(1))
            for intent in strategy.decide(Tick(i, candle, (), D(10**9), position)):
                assert isinstance(intent, Submit)
                side = intent.request.side.value.lower()
                decided.append((i, side, intent.reason))
                position = D(1) if side == "buy" else D(0)
        assert decided == _decisions_summing_each_window(closes, fast, slow)


def test_the_equity_curve_reads_as_the_tuple_of_its_points():
    result = run(ma(quantity=D("2")), flat_candles([100, 99, 98, 97, 99, 102, 105, 104, 100]))
    curve, points = result.equity, tuple(result.equity)
    assert isinstance(curve, EquityCurve) and len(curve) == len(points) == 9
    assert all(isinstance(p, EquityPoint) for p in points)
    assert curve[0] == points[0] and curve[-1] == points[-1]
    assert curve[2:5] == points[2:5] and list(curve[2:5]) == list(points[2:5])
    assert curve == points and points == curve and curve != points[:-1]
    assert curve == EquityCurve(curve.rows) and hash(curve) == hash(EquityCurve(curve.rows))
    assert points[6] in curve and curve.index(points[6]) == 6
    assert repr(curve) == f"EquityCurve({points!r})"
    # the JSON is that of the points (what it was when the curve was a tuple of them)
    assert result_json(result) == result_json(replace(result, equity=points))


def test_a_tick_made_fast_is_the_tick():
    candle = flat_candles([100])[0]
    args = (3, candle, (), D("12.5"), D("0.001"), ())
    tick = make_tick(*args)
    assert type(tick) is Tick and tick == Tick(*args) and hash(tick) == hash(Tick(*args))
    assert (tick.index, tick.candle, tick.cash, tick.position) == (3, candle, D("12.5"), D("0.001"))
    with pytest.raises(FrozenInstanceError):
        tick.cash = D(0)  # type: ignore[misc]
