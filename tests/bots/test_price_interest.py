"""Price interest (``bot.watch``): a bot given only the ticks its band reaches (the band
of its state at that moment), plus a catch-up tick with the latest price before any
other event, does exactly what it does given every tick: the same commands and
decisions from the same events, in the same order, the same state after every other
event, and the same state at the end once caught up. Random settings of every kind on
simulated venues (one per market), random walks with ticks inside each candle, alerts,
timer ticks and stops; both runs wake the bot at ``wake_at`` alike
(``tests.support.bot_runtime``).

Why it holds, checked on its own too at every state of those runs: a tick inside the
band (one tick inside each bound, and prices around the last) changes nothing but the
price the bot last saw; with several markets, neither do ticks that take every market
to a corner of its band, one after another (the bands hold whatever the others do)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal as D
from itertools import product

from hypothesis import given, settings
from hypothesis import strategies as st

from app.bots.domain.alerts import Alert, AlertAction
from app.bots.domain.dca import DcaBot
from app.bots.domain.dca_settings import StartCondition, validate_dca
from app.bots.domain.grid import GridBot
from app.bots.domain.rebalance import (
    Holding,
    LastPrice,
    RebalanceBot,
    RebalanceSettings,
    RebalanceState,
    RebalanceTrigger,
    Target,
    validate_rebalance,
)
from app.bots.domain.runtime import Event, PriceTick, Signal, StopBot, TimerTick
from app.bots.domain.signal_bot import SignalBot, SignalSettings, validate_signal
from app.trading.domain.orders import MarketSpec
from app.venues.domain.paths import Candle
from tests.bots.test_properties import dca_funding, dca_settings, grid_settings, simulations
from tests.support.bot_runtime import Feed, run_on_venues
from tests.support.bots import at
from tests.support.simulation import SPEC

PROPERTIES = settings(max_examples=100, derandomize=True, deadline=None)
ETH = replace(SPEC, symbol="ETH/USDT", base="ETH")
# a market minimum (what is left to sell may be worth less), and whole-coin lots (a
# base order may buy less than one at some prices)
MINIMUM = D(5)
TICKS = 8  # trades inside a candle, at most


def markets(spec: MarketSpec = SPEC) -> st.SearchStrategy[MarketSpec]:
    return st.sampled_from([spec, replace(spec, min_notional=MINIMUM)])


@st.composite
def walks(draw, n: int) -> list[Candle]:
    """``n`` candles of a random walk around 100 (as ``test_properties.price_paths``)."""
    close, out = 10_000, []
    for i in range(n):
        open_, close = close, max(500, close + draw(st.integers(-400, 400)))
        high = max(open_, close) + draw(st.integers(0, 200))
        low = max(1, min(open_, close) - draw(st.integers(0, 200)))
        price = SPEC.price
        volume = D(draw(st.sampled_from([1, 5, 1000])))
        out.append(Candle(at(i), price(open_), price(high), price(low), price(close), volume))
    return out


@st.composite
def paths(draw, specs: tuple[MarketSpec, ...], *, length: int = 30) -> dict[MarketSpec, list]:
    n = draw(st.integers(8, length))
    return {spec: draw(walks(n)) for spec in specs}


@st.composite
def happenings(draw, paths, *, alerts: bool = False) -> dict[int, list[Event]]:
    """Inside each candle, after the venue has played it: trades' ticks within its
    range, maybe an alert (ids from a small pool: repeats), maybe time passing; maybe a
    stop at one candle."""
    n = len(next(iter(paths.values())))
    stop_at = draw(st.one_of(st.none(), st.integers(0, n)))
    out: dict[int, list[Event]] = {}
    for i in range(n):
        timed: list[tuple[int, int, Event]] = []
        for k, (spec, candles) in enumerate(paths.items()):
            candle, tick = candles[i], spec.tick_size
            low, high = int(candle.low / tick), int(candle.high / tick)
            for minute in draw(st.lists(st.integers(1, 58), max_size=TICKS)):
                price = spec.price(draw(st.integers(low, high)))
                when = at(i) + timedelta(minutes=minute)
                timed.append((minute, k, PriceTick(when, spec.symbol, price)))
        if alerts and draw(st.booleans()):
            minute = draw(st.integers(1, 58))
            alert = Alert(
                draw(st.sampled_from(["a", "b", "c", "d", "e"])),
                draw(st.sampled_from(list(AlertAction))),
                price=draw(st.sampled_from([None, D(100)])),
            )
            timed.append((minute, 90, Signal(at(i) + timedelta(minutes=minute), alert)))
        for minute in draw(st.lists(st.integers(1, 58), max_size=1)):
            timed.append((minute, 91, TimerTick(at(i) + timedelta(minutes=minute))))
        if stop_at == i:
            stop = StopBot(at(i) + timedelta(minutes=59), close_position=draw(st.booleans()))
            timed.append((59, 92, stop))
        out[i] = [event for _, _, event in sorted(timed, key=lambda t: t[:2])]
    return out


def same_course(bot, paths, *, balances, simulation, extra) -> tuple[Feed, Feed]:
    every = run_on_venues(
        bot, paths, banded=False, balances=balances, settings=simulation, extra=extra
    )
    specs = {spec.symbol: spec for spec in paths}
    for stepped in every.steps:
        quiet = isinstance(stepped.event, PriceTick) and not (stepped.commands or stepped.decisions)
        if not quiet and not stepped.woken:  # (a tick now would come after that wake-up)
            inside_the_band_nothing_happens(bot, stepped.state, stepped.event.at, specs)
    banded = run_on_venues(
        bot, paths, banded=True, balances=balances, settings=simulation, extra=extra
    )
    assert banded.acts == every.acts
    assert banded.others == every.others
    banded.catch_up()
    assert banded.state == every.state
    return every, banded


def inside_the_band_nothing_happens(bot, state, at, specs) -> None:
    for symbol, band in bot.watch(state).items():
        if band.every:
            continue
        tick, last = specs[symbol].tick_size, seen_price(state, symbol)
        near = [] if last is None else [last + k * tick for k in (-500, -50, -1, 1, 50, 500)]
        bounds = [b + tick for b in (band.low,) if b is not None]
        bounds += [b - tick for b in (band.high,) if b is not None]
        for price in {*bounds, *near, tick, D(10**6)}:
            if price <= 0 or band.reaches(price):
                continue
            after, commands, decisions = bot.step(state, PriceTick(at, symbol, price))
            assert (commands, decisions) == ((), ()), (symbol, band, price)
            assert after == with_price(state, symbol, price), (symbol, band, price)
    bands = bot.watch(state)
    if len(bands) > 1 and all(b.low is not None and b.high is not None for b in bands.values()):
        ticks = {s: specs[s].tick_size for s in bands}
        corners = [(bands[s].low + ticks[s], bands[s].high - ticks[s]) for s in bands]
        for corner in product(*corners):
            after = state
            for symbol, price in zip(bands, corner, strict=True):
                after, commands, decisions = bot.step(after, PriceTick(at, symbol, price))
                assert (commands, decisions) == ((), ()), (bands, corner)


def seen_price(state, symbol: str) -> D | None:
    if isinstance(state, RebalanceState):
        return next((p.price for p in state.prices if p.symbol == symbol), None)
    return state.last_price


def with_price(state, symbol: str, price: D):
    if isinstance(state, RebalanceState):
        prices = {p.symbol: p.price for p in state.prices} | {symbol: price}
        return replace(state, prices=tuple(LastPrice(s, p) for s, p in sorted(prices.items())))
    return replace(state, last_price=price)


@st.composite
def dca_bots(draw) -> tuple[DcaBot, MarketSpec]:
    s = draw(dca_settings())
    s = replace(
        s,
        start=draw(st.sampled_from(list(StartCondition))),
        max_slippage_bps=draw(st.sampled_from([0, 100, 500])),
        stop_loss=draw(st.sampled_from([None, D("0.01"), D("0.03"), D("0.1")])),
        trailing_deviation=s.trailing_deviation
        and draw(st.sampled_from([D("0.002"), D("0.005"), D("0.02")])),
    )
    whole_lots = replace(SPEC, lot_size=D(1))
    spec = draw(st.sampled_from([SPEC, replace(SPEC, min_notional=MINIMUM), whole_lots]))
    return DcaBot(1, spec, validate_dca(s, SPEC)), spec


@PROPERTIES
@given(dca_bots(), st.data(), simulations)
def test_a_dca_bot_given_the_ticks_its_band_reaches_does_what_it_does_given_all(
    bot_spec, data, simulation
):
    bot, spec = bot_spec
    path = data.draw(paths((spec,)))
    extra = data.draw(happenings(path, alerts=True))
    funding = {spec.symbol: {"USDT": dca_funding(bot.settings)}}
    same_course(bot, path, balances=funding, simulation=simulation, extra=extra)


@PROPERTIES
@given(grid_settings(), markets(), st.data(), simulations)
def test_a_grid_bot_given_the_ticks_its_band_reaches_does_what_it_does_given_all(
    s, spec, data, simulation
):
    path = data.draw(paths((spec,), length=40))
    extra = data.draw(happenings(path))
    balances = {spec.symbol: {"USDT": s.investment + 100, "BTC": D(1)}}
    same_course(GridBot(1, spec, s), path, balances=balances, simulation=simulation, extra=extra)


@PROPERTIES
@given(
    st.integers(20, 200),
    st.integers(100, 1000),
    st.booleans(),
    markets(),
    st.data(),
    simulations,
)
def test_a_signal_bot_given_the_ticks_its_band_reaches_does_what_it_does_given_all(
    amount, budget, use_alert_size, spec, data, simulation
):
    s = SignalSettings(amount=D(amount), budget=D(budget), use_alert_size=use_alert_size)
    bot = SignalBot(1, spec, validate_signal(s))
    path = data.draw(paths((spec,)))
    extra = data.draw(happenings(path, alerts=True))
    balances = {spec.symbol: {"USDT": D(budget) * 2}}
    same_course(bot, path, balances=balances, simulation=simulation, extra=extra)


@st.composite
def rebalance_bots(draw) -> RebalanceBot:
    btc, eth = draw(markets(SPEC)), draw(markets(ETH))
    w_btc = draw(st.integers(0, 100))
    w_eth = draw(st.integers(0, 100 - w_btc))
    targets = (
        Target("BTC", D(w_btc) / 100),
        Target("ETH", D(w_eth) / 100),
        Target("USDT", D(100 - w_btc - w_eth) / 100),
    )
    trigger = draw(st.sampled_from(list(RebalanceTrigger)))
    s = RebalanceSettings(
        quote="USDT",
        targets=targets,
        trigger=trigger,
        threshold=D(draw(st.sampled_from(["0.005", "0.02", "0.1"])))
        if trigger is RebalanceTrigger.THRESHOLD
        else None,
        period=timedelta(hours=draw(st.integers(1, 3)))
        if trigger is RebalanceTrigger.PERIOD
        else None,
        min_trade=D(draw(st.sampled_from([0, 10]))),
    )
    s = validate_rebalance(s, {m.symbol: m for m in (btc, eth)})
    allocation = (
        Holding("BTC", D(draw(st.integers(0, 5)))),
        Holding("ETH", D(draw(st.integers(0, 5)))),
        Holding("USDT", D(draw(st.sampled_from([0, 500])))),
    )
    return RebalanceBot(1, (btc, eth), s, allocation)


@PROPERTIES
@given(rebalance_bots(), st.data(), simulations)
def test_a_rebalance_bot_given_the_ticks_its_bands_reach_does_what_it_does_given_all(
    bot, data, simulation
):
    path = data.draw(paths(bot.markets))
    extra = data.draw(happenings(path))
    held = {h.asset: h.quantity for h in bot.allocation}
    balances = {m.symbol: {m.base: held[m.base], "USDT": held["USDT"]} for m in bot.markets}
    same_course(bot, path, balances=balances, simulation=simulation, extra=extra)
