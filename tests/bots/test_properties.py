"""Properties of the bots' runtime over random price paths on the simulated venue (the
bot's events come from the venue; its time only from the events: a fake clock):

- DCA: a deal never buys more than its budget (base and every safety order, before
  fees) nor has sells out for more than it holds, an account funded with that budget
  for each deal refuses a buy for funds only after closed deals lost some of it, safety
  orders stay within their limits, an open deal's take-profit covers its position;
- grid: the base the venue holds for the bot is always what its levels and spare hold,
  its quote never falls below the start less the investment, levels change status only
  as the transition table allows;
- rebalance: what it holds is what the venue holds, never negative;
- an alert delivered N times, between other events, gives one order (signal and DCA);
- replaying the same events from the same state gives the same commands, decisions and
  states, also when the state goes through JSON between every two steps (a restart).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from app.bots.domain.codec import dumps, loads
from app.bots.domain.dca import DcaBot, DcaState, DealStatus
from app.bots.domain.dca_settings import (
    DcaSettings,
    StartCondition,
    TakeProfitStep,
    deal_budget,
    validate_dca,
)
from app.bots.domain.grid import TRANSITIONS, GridBot, GridState
from app.bots.domain.grid_settings import AtBounds, GridSettings, Spacing, validate_grid
from app.bots.domain.rebalance import (
    Holding,
    RebalanceBot,
    RebalanceSettings,
    RebalanceState,
    RebalanceTrigger,
    Target,
)
from app.bots.domain.runtime import PlaceOrder, Signal, StopBot, ceil_to, max_fee
from app.bots.domain.signal_bot import SignalBot, SignalSettings, SignalState, alert_scope
from app.trading.domain.orders import Side
from app.venues.domain.paths import Candle
from app.venues.domain.simulated import SimulationSettings
from tests.support.bots import Drive, alert, at, drive, fold
from tests.support.simulation import SPEC

PROPERTIES = settings(max_examples=100, derandomize=True, deadline=None)


@st.composite
def price_paths(draw, *, length: int = 30) -> list[Candle]:
    """A random walk around 100 in ticks: each candle opens at the last close, moves up
    to 4 % and reaches up to 2 % beyond its body."""
    n = draw(st.integers(8, length))
    close, out = 10_000, []
    for i in range(n):
        open_, close = close, max(500, close + draw(st.integers(-400, 400)))
        up, down = draw(st.integers(0, 200)), draw(st.integers(0, 200))
        high, low = max(open_, close) + up, max(1, min(open_, close) - down)
        out.append(
            Candle(
                at(i),
                SPEC.price(open_),
                SPEC.price(high),
                SPEC.price(low),
                SPEC.price(close),
                D(draw(st.sampled_from([1, 5, 1000]))),
            )
        )
    return out


@st.composite
def stops(draw) -> dict[int, list[StopBot]]:
    """Maybe a stop at some candle's close, selling or keeping what the bot holds."""
    candle = draw(st.one_of(st.none(), st.integers(0, 40)))
    if candle is None:
        return {}
    return {candle: [StopBot(at(candle + 1), close_position=draw(st.booleans()))]}


simulations = st.builds(
    SimulationSettings,
    volume_share=st.sampled_from([None, D("0.1"), D("0.5")]),
    latency=st.integers(0, 2),
)


@st.composite
def dca_settings(draw) -> DcaSettings:
    trailing = draw(st.booleans())
    return validate_dca(
        DcaSettings(
            base_order=D(draw(st.integers(20, 200))),
            safety_order=D(draw(st.integers(20, 200))),
            max_safety_orders=(safety := draw(st.integers(0, 6))),
            max_active_safety_orders=draw(st.integers(1, max(1, safety))) if safety else 0,
            price_deviation=D(draw(st.sampled_from(["0.005", "0.01", "0.015"]))),
            step_scale=D(draw(st.sampled_from(["1", "1.5", "2"]))),
            volume_scale=D(draw(st.sampled_from(["1", "1.5", "2"]))),
            take_profit=draw(
                st.sampled_from(
                    [(tp("0.01", "1"),)]
                    if trailing
                    else [
                        (tp("0.01", "1"),),
                        (tp("0.01", "0.5"), tp("0.02", "0.5")),
                    ]
                )
            ),
            trailing_deviation=D("0.005") if trailing else None,
            stop_loss=draw(st.sampled_from([None, D("0.05"), D("0.1")])),
            max_active_deals=draw(st.integers(1, 3)),
            cooldown=timedelta(hours=draw(st.integers(0, 3))),
        ),
        SPEC,
    )


def tp(profit: str, share: str) -> TakeProfitStep:
    return TakeProfitStep(D(profit), D(share))


def dca_funding(s: DcaSettings) -> D:
    """Each deal's budget with the larger fee, and a quote unit per order for rounding."""
    per_deal = deal_budget(s) * (1 + max_fee(SPEC)) + (1 + s.max_safety_orders) * SPEC.quote_unit
    return ceil_to(per_deal * s.max_active_deals, SPEC.quote_unit)


@PROPERTIES
@given(dca_settings(), price_paths(), simulations, stops())
def test_dca_stays_within_its_budget_and_safety_order_limits(s, candles, simulation, stop):
    bot = DcaBot(1, SPEC, s)
    funding = {"USDT": dca_funding(s)}
    run = drive(bot, candles, balances=funding, settings=simulation, extra=stop)
    for state in run.states:
        assert len(state.deals) <= s.max_active_deals
        for deal in state.deals:
            buying = [o for o in state.orders if o.scope == deal.scope and o.side is Side.BUY]
            safety = [o for o in buying if o.role == "SAFETY" and not o.canceling]
            # what it bought and what its buy orders may still buy, at their prices
            committed = deal.bought_value + sum((o.open_quantity * o.price for o in buying), D(0))
            assert committed <= deal_budget(s)
            assert deal.safety_placed <= s.max_safety_orders
            assert len(safety) <= s.max_active_safety_orders
            # never sells out (canceled ones included) for more than the deal holds
            selling = [o for o in state.orders if o.scope == deal.scope and o.side is Side.SELL]
            assert sum((o.open_quantity for o in selling), D(0)) <= deal.position.quantity
    # funded with each deal's budget, fees included: short of funds for a buy only once
    # closed deals have lost some of it
    for command, _, state in run.refused:
        assert command.request.side is Side.SELL or state.realized_pnl < 0
    for state, totals in run.checkpoints:
        held = sum((d.position.quantity for d in state.deals), D(0))
        assert held <= totals.get("BTC", D(0))  # what the deals hold is on the venue
        for deal in state.deals:  # an open deal's take-profit covers its position
            pending = deal.tp_retry_at is not None  # refused: placed again soon
            if deal.status is DealStatus.OPEN and s.trailing_deviation is None and not pending:
                selling = sum(
                    (o.open_quantity for o in state.orders
                     if o.scope == deal.scope and o.side is Side.SELL and not o.canceling),
                    D(0),
                )  # fmt: skip
                assert selling == deal.position.quantity


@st.composite
def grid_settings(draw) -> GridSettings:
    return validate_grid(
        GridSettings(
            lower=D(draw(st.sampled_from([80, 90, 95]))),
            upper=D(draw(st.sampled_from([105, 110, 125]))),
            levels=draw(st.integers(2, 9)),
            investment=D(draw(st.sampled_from([500, 1000, 5000]))),
            spacing=draw(st.sampled_from(list(Spacing))),
            at_bounds=draw(st.sampled_from(list(AtBounds))),
        ),
        SPEC,
    )


@PROPERTIES
@given(grid_settings(), price_paths(length=40), simulations, stops())
def test_grid_conserves_quantities_and_its_budget(s, candles, simulation, stop):
    start = {"USDT": s.investment + 100, "BTC": D(1)}  # more than it may use
    run = drive(GridBot(1, SPEC, s), candles, balances=start, settings=simulation, extra=stop)
    for state, totals in run.checkpoints:
        assert totals["BTC"] - start["BTC"] == state.base_held
        assert totals["USDT"] >= start["USDT"] - s.investment
        for level in state.levels:
            assert 0 <= level.position.quantity <= level.quantity
    for before, after in zip(run.states, run.states[1:], strict=False):
        old = {lv.line: lv.status for lv in before.levels}
        for level in after.levels:
            was = old.get(level.line)
            assert was is None or was == level.status or level.status in TRANSITIONS[was]


@PROPERTIES
@given(
    st.decimals(min_value=0, max_value=1, places=2),
    st.sampled_from([RebalanceTrigger.THRESHOLD, RebalanceTrigger.PERIOD]),
    price_paths(),
    simulations,
)
def test_rebalance_holds_what_the_venue_holds(weight, trigger, candles, simulation):
    s = RebalanceSettings(
        quote="USDT",
        targets=(Target("BTC", weight), Target("USDT", 1 - weight)),
        trigger=trigger,
        threshold=D("0.02") if trigger is RebalanceTrigger.THRESHOLD else None,
        period=timedelta(hours=3) if trigger is RebalanceTrigger.PERIOD else None,
    )
    allocation = (Holding("BTC", D(3)), Holding("USDT", D(500)))
    bot = RebalanceBot(1, (SPEC,), s, allocation)
    run = drive(bot, candles, balances={"BTC": D(3), "USDT": D(500)}, settings=simulation)
    assert run.refused == []
    replay_matches(bot, run, RebalanceState)
    for state, totals in run.checkpoints:
        assert state.held("BTC") == totals["BTC"] and state.held("USDT") == totals["USDT"]
        assert state.held("BTC") >= 0 and state.held("USDT") >= 0


@PROPERTIES
@given(st.integers(1, 6), st.lists(st.integers(0, 20), min_size=1, max_size=6), price_paths())
def test_an_alert_delivered_n_times_gives_one_order(n, hours, candles):
    deliveries = {h % len(candles): [] for h in hours}
    for k in range(n):
        hour = sorted(deliveries)[k % len(deliveries)]
        deliveries[hour].append(Signal(at(hour) + timedelta(minutes=k), alert("tv")))
    signal_bot = SignalBot(1, SPEC, SignalSettings(amount=D(100), budget=D(1000)))
    run = drive(signal_bot, candles, balances={"USDT": D(1000)}, extra=deliveries)
    placed = [c for c in run.commands if isinstance(c, PlaceOrder)]
    assert len(placed) == 1 and f":{alert_scope('tv')}:" in placed[0].client_order_id
    replay_matches(signal_bot, run, SignalState)
    s = validate_dca(
        DcaSettings(D(100), D(100), 2, 1, D("0.01"), start=StartCondition.SIGNAL), SPEC
    )
    run = drive(DcaBot(1, SPEC, s), candles, balances={"USDT": D(1000)}, extra=deliveries)
    bases = [c for c in run.commands if isinstance(c, PlaceOrder) and c.reason.endswith("USDT")]
    assert len(bases) == 1


def replay_matches(bot, run: Drive, state_type) -> None:
    again = fold(bot, run.events)
    assert again.commands == run.commands and again.decisions == run.decisions
    assert again.state == run.states[-1]
    # a restart between any two steps: the state read back from JSON
    state, commands = bot.start(at(0)), []
    for event in run.events:
        state, out, _ = bot.step(loads(state_type, dumps(state)), event)
        commands.extend(out)
    assert commands == run.commands


@PROPERTIES
@given(dca_settings(), price_paths(), simulations)
def test_replaying_a_dca_bots_events_gives_the_same_commands(s, candles, simulation):
    bot = DcaBot(1, SPEC, s)
    run = drive(bot, candles, balances={"USDT": dca_funding(s)}, settings=simulation)
    replay_matches(bot, run, DcaState)


@PROPERTIES
@given(grid_settings(), price_paths(), simulations)
def test_replaying_a_grid_bots_events_gives_the_same_commands(s, candles, simulation):
    bot = GridBot(1, SPEC, s)
    run = drive(bot, candles, balances={"USDT": s.investment + 100}, settings=simulation)
    replay_matches(bot, run, GridState)
