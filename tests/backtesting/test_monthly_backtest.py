"""A backtest over monthly (``1M``) candles, on real PostgreSQL: each candle closes when the
calendar month ends (February 2024 after 29 days), and the metrics annualise with 12
periods a year, so the CAGR of exactly one year is its total return."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from app.backtesting import backtests
from app.backtesting.domain import specs
from app.backtesting.domain.evaluation import evaluate, metrics_from_json
from app.marketdata.domain.candles import INTERVALS
from tests.backtesting.test_backtests import finished
from tests.backtesting.test_backtests import request as backtest_request
from tests.marketdata.test_monthly_store import load_monthly, monthly_csv, months_from
from tests.support.trading import funded_user

MONTH = INTERVALS["1M"]
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def request() -> backtests.BacktestRequest:
    """2024 month by month: an MA crossover of 2 and 3 months."""
    return backtest_request(
        strategy=specs.MovingAverageParameters(2, 3, fraction=D("0.5")),
        symbol="BTC/USD",
        source="file:monthly",
        interval="1M",
        start=T0,
        end=datetime(2025, 1, 1, tzinfo=UTC),
    )


async def test_monthly_candles_close_at_month_end_and_annualise_by_twelve(rt, tmp_path):
    await load_monthly(rt, monthly_csv(tmp_path, months_from(MONTH.shift(T0, -7), 24)))
    async with rt.reads() as session:
        checked = await backtests.check_request(session, request())
        inputs = await backtests.load_inputs(session, checked)
    assert [c.open_time for c in inputs.candles] == months_from(T0, 12)
    assert [c.close_time for c in inputs.candles] == months_from(MONTH.next(T0), 12)
    assert inputs.candles[1].interval == timedelta(days=29)
    run = specs.run(inputs)
    metrics = evaluate(run).metrics
    assert metrics.periods_per_year == 12
    assert metrics.bars == 12 and metrics.end == datetime(2025, 1, 1, tzinfo=UTC)
    years = D(metrics.bars - 1) / 12
    assert metrics.cagr is not None
    expected = (1 + metrics.total_return) ** (1 / years) - 1
    assert abs(metrics.cagr - expected) < D("1e-15")


async def test_a_monthly_backtest_runs_in_the_background_to_done(rt, tmp_path):
    await load_monthly(rt, monthly_csv(tmp_path, months_from(T0, 12)))
    uid = await funded_user(rt, "quant")
    row = await backtests.start_backtest(rt, user_id=uid, request=request())
    done = await finished(rt, row.id)
    assert done.status == "DONE", done.reason
    assert done.candles_total == 12
    assert metrics_from_json(done.metrics).periods_per_year == 12
