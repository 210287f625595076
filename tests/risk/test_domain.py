"""The risk engine's pure rules: the state table, the limits' figures, ``check_order``
(with hypothesis properties) and the P&L marks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.risk.domain import states
from app.risk.domain.checks import check_order, order_scopes
from app.risk.domain.errors import (
    InvalidRiskLimit,
    RiskHalted,
    RiskLimitReached,
    RiskReducing,
    RiskStateConflict,
)
from app.risk.domain.limits import (
    EFFECTS,
    KINDS,
    PRE_TRADE_KINDS,
    Action,
    Breach,
    Figures,
    Limit,
    LimitKind,
    Phase,
    ProposedOrder,
    after_fills,
    check_limit,
    figure,
    strictest,
)
from app.risk.domain.pnl import Marks
from app.risk.domain.states import (
    RiskState,
    Scope,
    ScopeRef,
    ScopeStatus,
    StateEvent,
)

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)  # a Wednesday
D = Decimal
USER = ScopeRef(Scope.USER, 7)
SCOPES = order_scopes(user_id=7, market_id=1)


def limit(kind: LimitKind, threshold: str | int, *, ref: ScopeRef = USER, **kw) -> Limit:
    return Limit(id=kw.pop("id", 1), ref=ref, kind=kind, threshold=D(threshold), **kw)


def decide(order: ProposedOrder, *limits: Limit, figures: Figures | None = None, **state):
    statuses = {ref: ScopeStatus(ref, s) for ref, s in state.get("states", {}).items()}
    return check_order(
        order,
        scopes=SCOPES,
        states=statuses,
        limits=limits,
        figures=figures or Figures(),
        now=NOW,
    )


BUY = ProposedOrder(D(100), "BTC")  # an entry: acquires BTC
SELL = ProposedOrder(D(100), None)  # reduces exposure


# --- states ------------------------------------------------------------------------------


def test_the_table_is_the_whole_truth():
    for state in RiskState:
        for event in StateEvent:
            if (state, event) in states.TRANSITIONS:
                assert states.apply(state, event) is states.TRANSITIONS[(state, event)]
            else:
                with pytest.raises(RiskStateConflict):
                    states.apply(state, event)


def test_triggers_only_make_a_state_stricter():
    for (state, event), after in states.TRANSITIONS.items():
        if event in (StateEvent.REDUCE, StateEvent.HALT):
            assert states.stricter(after, state)
        else:
            assert after is RiskState.ACTIVE


def test_a_cool_down_that_ended_is_active():
    halted = ScopeStatus(USER, RiskState.HALTED, cooldown_until=NOW)
    assert halted.effective(NOW - timedelta(seconds=1)) is RiskState.HALTED
    assert halted.effective(NOW) is RiskState.ACTIVE
    assert halted.cool_down_over(NOW)
    assert ScopeStatus(USER, RiskState.HALTED).effective(NOW + timedelta(days=999)) is (
        RiskState.HALTED
    )


# --- check_order: properties -------------------------------------------------------------

amounts = st.decimals(min_value=0, max_value=10**9, places=6, allow_nan=False)
assets = st.sampled_from([None, "BTC", "ETH"])
orders = st.builds(ProposedOrder, amounts, assets)
refs = st.sampled_from(SCOPES)
figures_st = st.builds(
    Figures,
    orders_last_minute=st.integers(0, 1000),
    cancels_last_minute=st.integers(0, 1000),
    orders_today=st.integers(0, 10_000),
    exposure=st.dictionaries(st.sampled_from(["BTC", "ETH", "SOL"]), amounts, max_size=3),
    equity=amounts,
    market_data_age=st.none() | amounts,
)
limits_st = st.lists(
    st.builds(
        Limit,
        id=st.integers(1, 100),
        ref=refs,
        kind=st.sampled_from(sorted(PRE_TRADE_KINDS)),
        threshold=st.decimals(min_value=D("0.01"), max_value=10**6, places=2),
    ),
    max_size=6,
)


@given(orders, refs, limits_st, figures_st)
def test_reducing_never_admits_an_order_that_increases_exposure(order, ref, limits, figures):
    decision = decide(order, *limits, figures=figures, states={ref: RiskState.REDUCING})
    if order.entry:
        assert not decision.allowed
        assert isinstance(decision.binding.error(), RiskReducing)
    elif decision.binding is not None:
        assert decision.binding.state is None  # a limit may still bind; the state does not


@given(orders, refs, limits_st, figures_st)
def test_halted_admits_none(order, ref, limits, figures):
    decision = decide(order, *limits, figures=figures, states={ref: RiskState.HALTED})
    assert not decision.allowed
    assert isinstance(decision.binding.error(), RiskHalted)
    assert decision.binding.ref == ref


@given(orders, limits_st, figures_st)
def test_a_limit_never_binds_below_its_threshold(order, limits, figures):
    decision = decide(order, *limits, figures=figures)
    if decision.binding is not None:
        bound = decision.binding.limit
        assert bound is not None
        assert decision.binding.value == figure(bound.kind, figures, order)
        assert decision.binding.value > bound.threshold
        assert order.entry or not KINDS[bound.kind].entries_only
        assert isinstance(decision.binding.error(), RiskLimitReached)
    else:
        for each in limits:
            if order.entry or not KINDS[each.kind].entries_only:
                assert figure(each.kind, figures, order) <= each.threshold


@given(orders, limits_st, figures_st)
def test_the_binding_limit_is_the_first_by_scope(order, limits, figures):
    decision = decide(order, *limits, figures=figures)
    if decision.binding is None:
        return
    bound = decision.binding.limit
    earlier = [
        each
        for each in limits
        if (SCOPES.index(each.ref), each.id) < (SCOPES.index(bound.ref), bound.id)
    ]
    for each in earlier:
        if order.entry or not KINDS[each.kind].entries_only:
            assert figure(each.kind, figures, order) <= each.threshold


@given(st.integers(0, 50), st.integers(1, 50))
def test_trades_per_day_admits_exactly_the_threshold(placed, threshold):
    cap = limit(LimitKind.TRADES_PER_DAY, threshold)
    decision = decide(SELL, cap, figures=Figures(orders_today=placed))
    assert decision.allowed == (placed < threshold)


# --- check_order: examples ---------------------------------------------------------------


def test_a_sell_passes_exposure_and_stale_data_limits():
    figures = Figures(exposure={"BTC": D(1000)}, equity=D(1000), market_data_age=D(999))
    tight = [
        limit(LimitKind.ASSET_EXPOSURE, 1, id=1),
        limit(LimitKind.TOTAL_EXPOSURE, 1, id=2),
        limit(LimitKind.CONCENTRATION, 1, id=3),
        limit(LimitKind.STALE_MARKET_DATA, 1, id=4),
    ]
    assert decide(SELL, *tight, figures=figures).allowed
    assert not decide(BUY, *tight, figures=figures).allowed


def test_exposure_counts_the_asset_the_order_acquires():
    figures = Figures(exposure={"BTC": D(850), "ETH": D(500)}, equity=D(5000))
    cap = limit(LimitKind.ASSET_EXPOSURE, 1000)
    assert not decide(ProposedOrder(D(151), "BTC"), cap, figures=figures).allowed
    assert decide(ProposedOrder(D(150), "BTC"), cap, figures=figures).allowed
    assert decide(ProposedOrder(D(500), "ETH"), cap, figures=figures).allowed
    total = limit(LimitKind.TOTAL_EXPOSURE, 1500)
    assert decide(ProposedOrder(D(150), "SOL"), total, figures=figures).allowed
    binding = decide(ProposedOrder(D(151), "SOL"), total, figures=figures).binding
    assert binding.value == D(1501)
    assert "TOTAL_EXPOSURE of 1500 USD (USER 7)" in binding.error().message


def test_concentration_is_a_share_of_equity():
    figures = Figures(exposure={"BTC": D(200)}, equity=D(1000))
    cap = limit(LimitKind.CONCENTRATION, 25)
    assert decide(ProposedOrder(D(50), "BTC"), cap, figures=figures).allowed
    assert not decide(ProposedOrder(D(51), "BTC"), cap, figures=figures).allowed
    assert not decide(ProposedOrder(D(1), "BTC"), cap, figures=Figures()).allowed


def test_warnings_come_near_the_threshold():
    cap = limit(LimitKind.TRADES_PER_DAY, 10)
    assert decide(SELL, cap, figures=Figures(orders_today=6)).warnings == ()
    assert decide(SELL, cap, figures=Figures(orders_today=7)).warnings == ((cap, D(8)),)


def test_the_states_come_before_the_limits_and_a_halt_before_a_reduce():
    cap = limit(LimitKind.ORDER_NOTIONAL, 1)
    market = ScopeRef(Scope.MARKET, 1)
    decision = decide(BUY, cap, states={USER: RiskState.REDUCING, market: RiskState.HALTED})
    assert decision.binding.ref == USER and decision.binding.state is RiskState.REDUCING
    decision = decide(SELL, cap, states={USER: RiskState.REDUCING, market: RiskState.HALTED})
    assert decision.binding.ref == market and decision.binding.state is RiskState.HALTED


def test_other_scopes_do_not_bind():
    other = limit(LimitKind.ORDER_NOTIONAL, 1, ref=ScopeRef(Scope.USER, 8))
    assert decide(BUY, other).allowed
    halted = {ScopeRef(Scope.FOLLOW, 3): RiskState.HALTED}
    assert decide(BUY, states=halted).allowed


def test_a_figure_after_the_order_counts_the_order():
    f = Figures(orders_last_minute=2, orders_today=5, exposure={"BTC": D(10)})
    assert figure(LimitKind.ORDER_RATE, f, BUY) == 3
    assert figure(LimitKind.TRADES_PER_DAY, f, SELL) == 6
    assert figure(LimitKind.ASSET_EXPOSURE, f, BUY) == 110
    assert figure(LimitKind.CANCEL_RATE, Figures(cancels_last_minute=4), BUY) == 4
    assert figure(LimitKind.ORDER_NOTIONAL, f) == 0


# --- limits ------------------------------------------------------------------------------


def _check(**kw):
    args = {
        "scope": Scope.USER,
        "kind": LimitKind.DAILY_LOSS,
        "threshold": D(100),
        "action": Action.CANCEL_ORDERS,
        "warn_ratio": D("0.8"),
        "cooldown_seconds": None,
    }
    check_limit(**(args | kw))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"scope": Scope.MARKET}, "scope"),
        ({"kind": LimitKind.TRADES_PER_DAY, "scope": Scope.FOLLOW}, "scope"),
        ({"threshold": D(0)}, "threshold"),
        ({"threshold": D("NaN")}, "threshold"),
        ({"threshold": D("1e30")}, "threshold"),
        ({"kind": LimitKind.CONSECUTIVE_LOSSES, "threshold": D("2.5")}, "threshold"),
        ({"kind": LimitKind.CONCENTRATION, "threshold": D(101), "action": Action.BLOCK_ENTRIES},
         "threshold"),
        ({"warn_ratio": D(0)}, "warnRatio"),
        ({"warn_ratio": D("1.1")}, "warnRatio"),
        ({"kind": LimitKind.TRADES_PER_DAY, "threshold": D(5)}, "action"),
        ({"action": Action.COOL_DOWN}, "cooldownSeconds"),
        ({"action": Action.COOL_DOWN, "cooldown_seconds": 0}, "cooldownSeconds"),
        ({"cooldown_seconds": 60}, "cooldownSeconds"),
    ],
)  # fmt: skip
def test_limits_that_cannot_be_set_name_the_field(change, field):
    with pytest.raises(InvalidRiskLimit) as caught:
        _check(**change)
    assert caught.value.field == field


def test_every_kind_can_be_set_where_its_rule_says():
    for kind, rule in KINDS.items():
        action = Action.BLOCK_ENTRIES
        for scope in rule.scopes:
            _check(scope=scope, kind=kind, threshold=D(5), action=action)
    _check(action=Action.COOL_DOWN, cooldown_seconds=3600)


def test_after_fills_limits_fire_on_reaching_and_warn_near():
    loss = limit(LimitKind.DAILY_LOSS, 100, action=Action.CANCEL_ORDERS)
    streak = limit(LimitKind.CONSECUTIVE_LOSSES, 3, id=2, action=Action.COOL_DOWN)
    fired, warned = after_fills([loss, streak], Figures(loss_today=D(100), consecutive_losses=2))
    assert fired == [Breach(loss, D(100))]
    assert warned == []
    fired, warned = after_fills([loss, streak], Figures(loss_today=D(80), consecutive_losses=3))
    assert fired == [Breach(streak, D(3))] and warned == [Breach(loss, D(80))]
    pre = limit(LimitKind.TRADES_PER_DAY, 1)
    assert after_fills([pre], Figures(orders_today=99)) == ([], [])


def test_the_strictest_action_wins():
    def breach(action: Action) -> Breach:
        return Breach(limit(LimitKind.DAILY_LOSS, 1, action=action), D(1))

    everything = [breach(a) for a in Action]
    assert strictest(everything).limit.action is Action.COOL_DOWN
    assert (
        strictest([breach(Action.BLOCK_ENTRIES), breach(Action.REDUCE_TO_FLAT)]).effect
        == (EFFECTS[Action.REDUCE_TO_FLAT])
    )
    assert strictest([]) is None


def test_every_kind_has_a_rule_and_a_phase():
    assert set(KINDS) == set(LimitKind)
    assert {r.phase for r in KINDS.values()} == set(Phase)


# --- P&L marks ---------------------------------------------------------------------------


def test_marks_measure_the_day_the_week_and_the_peak():
    marks = Marks.start(now=NOW, pnl=D(0), realised=D(0))
    marks = marks.observe(now=NOW, pnl=D(50), realised=D(50))
    marks = marks.observe(now=NOW, pnl=D(-30), realised=D(20))
    f = marks.figures()
    assert (f.loss_today, f.drawdown, f.consecutive_losses) == (D(30), D(80), 1)
    tomorrow = marks.observe(now=NOW + timedelta(days=1), pnl=D(-40), realised=D(10))
    f = tomorrow.figures()
    assert (f.loss_today, f.loss_this_week, f.drawdown, f.consecutive_losses) == (
        D(10),
        D(40),
        D(90),
        2,
    )
    monday = tomorrow.observe(now=NOW + timedelta(days=5), pnl=D(-40), realised=D(30))
    f = monday.figures()
    assert (f.loss_today, f.loss_this_week, f.consecutive_losses) == (D(0), D(0), 0)


def test_a_restart_measures_from_now():
    marks = Marks.start(now=NOW, pnl=D(0), realised=D(0)).observe(
        now=NOW, pnl=D(-100), realised=D(-100)
    )
    assert marks.figures().loss_today == 100
    f = marks.restart().figures()
    assert (f.loss_today, f.drawdown, f.consecutive_losses) == (D(0), D(0), 0)


@given(st.lists(st.tuples(st.integers(0, 3), amounts, amounts), min_size=1, max_size=30))
def test_marks_never_report_a_negative_loss_and_the_peak_bounds_the_pnl(steps):
    marks = Marks.start(now=NOW, pnl=D(0), realised=D(0))
    day = NOW
    for days, pnl, realised in steps:
        day += timedelta(days=days)
        marks = marks.observe(now=day, pnl=pnl - 500_000_000, realised=realised)
        f = marks.figures()
        assert min(f.loss_today, f.loss_this_week, f.drawdown) >= 0
        assert marks.peak >= marks.pnl
        assert f.drawdown >= max(f.loss_today, f.loss_this_week)  # marks are past P&Ls


@given(orders, figures_st, st.sampled_from(sorted(LimitKind)))
def test_a_figure_after_an_order_is_the_figure_of_the_figures_after_it(order, figures, kind):
    after = figures.after(order)
    if kind is LimitKind.ORDER_NOTIONAL:
        assert figure(kind, figures, order) == order.notional
    elif kind in (LimitKind.ASSET_EXPOSURE, LimitKind.CONCENTRATION) and order.acquires is None:
        assert figure(kind, figures, order) == figure(kind, after)
    elif kind in (LimitKind.ASSET_EXPOSURE, LimitKind.CONCENTRATION):
        held = after.exposure[order.acquires]
        expected = (
            held
            if kind is LimitKind.ASSET_EXPOSURE
            else figure(LimitKind.CONCENTRATION, Figures(exposure={"X": held}, equity=after.equity))
        )
        assert figure(kind, figures, order) == expected
    else:
        assert figure(kind, figures, order) == figure(kind, after)


# --- a bot's orders ----------------------------------------------------------------------------


def test_a_bots_order_meets_its_own_figures_at_bot_scope_and_its_owners_at_user_scope():
    bot = ScopeRef(Scope.BOT, 3)
    scopes = order_scopes(user_id=7, market_id=1, bot_id=3)
    assert scopes[:3] == [ScopeRef(Scope.ORDER, 7), bot, USER]
    owners = Figures(orders_today=9)  # the owner's and every bot's orders
    its_own = Figures(orders_today=2)
    per_bot = limit(LimitKind.TRADES_PER_DAY, 3, ref=bot, id=1)
    per_user = limit(LimitKind.TRADES_PER_DAY, 10, id=2)

    def check(*limits: Limit, bots: Figures = its_own):
        return check_order(
            BUY, scopes=scopes, states={}, limits=limits, figures=owners, now=NOW,
            scope_figures={bot: bots},
        )  # fmt: skip

    assert check(per_bot, per_user).allowed  # 3 of 3 for the bot, 10 of 10 for the owner
    refused = check(per_bot, per_user, bots=Figures(orders_today=3)).binding
    assert refused is not None and refused.ref == bot and refused.value == 4
    refused = check(per_bot, limit(LimitKind.TRADES_PER_DAY, 9, id=2)).binding
    assert refused is not None and refused.ref == USER and refused.value == 10


def test_bot_scope_takes_the_kinds_that_watch_a_bots_own_figures():
    for kind in (LimitKind.TRADES_PER_DAY, LimitKind.ASSET_EXPOSURE, LimitKind.DAILY_LOSS):
        check_limit(
            scope=Scope.BOT, kind=kind, threshold=D(5), action=Action.BLOCK_ENTRIES,
            warn_ratio=D("0.8"), cooldown_seconds=None,
        )  # fmt: skip
