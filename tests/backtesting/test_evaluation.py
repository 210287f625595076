"""The glue, pure and hand-computed: stored candles into venue candles, a run's equity
points and round trips into the metrics' inputs, ``evaluate``; the metrics' exact JSON
round trip; strategy parameters and settings refused with the field at fault; sweep
ranges, the best variant and its deflated Sharpe ratio."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest

from app.backtesting.domain import evaluation, specs, sweeps
from app.backtesting.domain.metrics import CONTEXT, compute_metrics
from app.backtesting.domain.runner import EquityPoint, RunResult, Trade
from app.core.errors import ValidationFailed
from app.marketdata.domain.candles import Candle as StoredCandle
from app.venues.domain.simulated import SimulationSettings
from tests.support.simulation import T0

HOUR = timedelta(hours=1)


def at(hour: int):  # type: ignore[no-untyped-def]
    return T0 + hour * HOUR


def a_run(**kw: object) -> RunResult:
    """Three candles: 1000 cash; buys 2 at 100 (fee 0.4) at the first close; the price
    goes 100 -> 110 -> 105; sells at 110 (fee 0.44) at the last close."""
    values: dict[str, object] = {
        "strategy": "ma",
        "symbol": "BTC/USDT",
        "interval": HOUR,
        "settings": SimulationSettings(),
        "decisions": (),
        "fills": (),
        "equity": (
            EquityPoint(at(1), D(100), D(1000), D(0), D(1000)),
            EquityPoint(at(2), D(110), D("799.6"), D(2), D("1019.6")),
            EquityPoint(at(3), D(105), D("1019.16"), D(0), D("1019.16")),
        ),
        "fees": D("0.84"),
        "trades": (Trade(at(1), at(3), D(2), D(200), D(220), D("0.84"), D("19.16")),),
    }
    values.update(kw)
    return RunResult(**values)  # type: ignore[arg-type]


def test_stored_candles_become_venue_candles_of_the_interval():
    stored = StoredCandle(T0, D(1), D(3), D("0.5"), D(2), D(10), D(20), 7)
    [candle] = evaluation.venue_candles([stored], timedelta(minutes=5))
    assert (candle.open_time, candle.open, candle.high, candle.low, candle.close) == (
        T0, D(1), D(3), D("0.5"), D(2),
    )  # fmt: skip
    assert candle.volume == D(10) and candle.close_time == T0 + timedelta(minutes=5)


def test_equity_points_carry_the_close_and_the_exposure():
    curve = evaluation.equity_curve(a_run())
    assert [(p.at, p.equity, p.close, p.in_market) for p in curve] == [
        (at(1), D(1000), D(100), False),
        (at(2), D("1019.6"), D(110), True),
        (at(3), D("1019.16"), D(105), False),
    ]


def test_round_trips_become_long_closed_trades_at_average_prices():
    [trade] = evaluation.closed_trades(a_run())
    assert trade.side == "long" and trade.entry_at == at(1) and trade.exit_at == at(3)
    assert (trade.entry_price, trade.exit_price) == (D(100), D(110))
    assert (trade.pnl, trade.fees, trade.quantity) == (D("19.16"), D("0.84"), D(2))


def test_evaluate_is_the_metrics_of_the_glued_curve_and_trades():
    result = evaluation.evaluate(a_run())
    m = result.metrics
    assert m.bars == 3 and m.start == at(1) and m.end == at(3)
    assert m.total_return == D("0.01916")  # 1019.16 / 1000 - 1
    assert m.buy_and_hold_return == D("0.05")  # 105 / 100 - 1
    assert m.exposure == CONTEXT.divide(1, 3)  # 1 of 3 closes held a position
    assert m.fees_paid == D("0.84") and m.trades == 1 and m.win_rate == D(1)
    assert m == compute_metrics(
        evaluation.equity_curve(a_run()),
        evaluation.closed_trades(a_run()),
        interval=HOUR,
        fees_paid=D("0.84"),
    )


def test_fees_paid_counts_an_open_position_too():
    run = a_run(trades=(), fees=D("0.4"))
    assert evaluation.evaluate(run).metrics.fees_paid == D("0.4")


def test_metrics_json_round_trips_exactly():
    metrics = evaluation.evaluate(a_run()).metrics
    encoded = evaluation.metrics_json(metrics)
    assert encoded["total_return"] == "0.01916" and encoded["returns"]["observations"] == 2
    assert evaluation.metrics_from_json(encoded) == metrics


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: specs.MovingAverageParameters(30, 10, fraction=D("0.5")), "fast"),
        (lambda: specs.MovingAverageParameters(10, 10, fraction=D("0.5")), "fast"),
        (lambda: specs.MovingAverageParameters(0, 10, fraction=D("0.5")), "fast"),
        (lambda: specs.MovingAverageParameters(5, 10**6, fraction=D("0.5")), "slow"),
        (lambda: specs.MovingAverageParameters(5, 10), "fraction"),
        (lambda: specs.MovingAverageParameters(5, 10, fraction=D("1.5")), "fraction"),
        (lambda: specs.MovingAverageParameters(5, 10, quantity=D("-1")), "quantity"),
        (lambda: specs.DollarCostParameters(D("-100"), 24), "amount"),
        (lambda: specs.DollarCostParameters(D("1e40"), 24), "amount"),
        (lambda: specs.DollarCostParameters(D("NaN"), 24), "amount"),
        (lambda: specs.DollarCostParameters(D(100), 0), "every"),
        (lambda: specs.DollarCostParameters(D(100), 24, D(0)), "takeProfit"),
        (lambda: specs.simulation_settings(volume_share=D(2)), "volumeShare"),
        (lambda: specs.simulation_settings(latency=-1), "latency"),
        (lambda: specs.simulation_settings(seed=2**64), "seed"),
        (lambda: specs.check_balance(D(0)), "balance"),
        (lambda: specs.check_fee(D("0.5"), "takerFee"), "takerFee"),
    ],
)
def test_bad_parameters_are_refused_with_their_field(make, field):
    with pytest.raises(ValidationFailed) as refused:
        make()
    assert refused.value.field == field


def test_parameters_round_trip_through_json():
    for p in (
        specs.MovingAverageParameters(10, 30, fraction=D("0.5")),
        specs.DollarCostParameters(D(100), 24, D("0.02")),
    ):
        assert specs.parameters_from_json(p.kind, p.as_json()) == p
    s = specs.simulation_settings(volume_share=None, latency=0, seed=3)
    assert specs.settings_from_json(specs.settings_json(s)) == s


def test_a_derived_market_has_the_candles_tick_and_default_fees():
    candle = StoredCandle(T0, D("0.001234"), D("0.0013"), D("0.0012"), D("0.00125"), D(1))
    [venue] = evaluation.venue_candles([candle], HOUR)
    spec = specs.derived_market("PEPE/USDT", [venue])
    assert spec.tick_size == D("0.000001") and spec.lot_size == D("0.00000001")
    assert spec.quote_scale == 14 and spec.maker_fee == spec.taker_fee == D("0.001")
    assert specs.derived_market("X/Y", [venue], taker_fee=D("0.002")).taker_fee == D("0.002")


def test_ranges_and_grid():
    assert sweeps.parse_range("5:20:5", "fast") == [D(5), D(10), D(15), D(20)]
    assert sweeps.parse_range("0.5", "fraction") == [D("0.5")]
    for bad in ("5:1:1", "1:5:0", "a", "1:2", "1:1e9:1"):
        with pytest.raises(ValidationFailed):
            sweeps.parse_range(bad, "fast")
    assert sweeps.grid({"a": [1, 2], "b": [3]}) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]


def test_the_best_variant_ranks_undefined_last_and_ties_first():
    base = evaluation.evaluate(a_run()).metrics
    p = [specs.DollarCostParameters(D(i), 1) for i in (1, 2, 3)]
    outcomes = [
        sweeps.VariantOutcome(p[0], base.__class__(**{**_fields(base), "sharpe": None})),
        sweeps.VariantOutcome(p[1], base.__class__(**{**_fields(base), "sharpe": D(1)})),
        sweeps.VariantOutcome(p[2], base.__class__(**{**_fields(base), "sharpe": D(1)})),
    ]
    summary = sweeps.summarise(outcomes)
    assert summary.best.parameters == p[1]
    assert summary.sharpe_variance == 0.0  # the same per-bar returns in each


def _fields(metrics):  # type: ignore[no-untyped-def]
    return {name: getattr(metrics, name) for name in metrics.__dataclass_fields__}
