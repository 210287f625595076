"""The backtest service on real PostgreSQL: candles imported through the market data
importer, a backtest started, run in the background to DONE; its stored metrics, equity
points and trades equal evaluating the same run directly; progress rows and events; bad
input refused with its field and nothing written; another user's backtest is NOT_FOUND."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from app.backtesting import backtests
from app.backtesting.domain import specs
from app.backtesting.domain.evaluation import evaluate, metrics_from_json
from app.backtesting.domain.runner import result_json
from app.core.errors import NotFound, ValidationFailed
from app.events import topics
from app.marketdata.importer import import_file
from app.trading.domain.errors import UnknownMarket
from tests.support.trading import eventually, funded_user, rows, scalar

PROGRESS_TOPIC = topics.BACKTEST_PROGRESS.named()

T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOURS = 400


def candle_lines(n: int = HOURS, start: datetime = T0) -> str:
    """Hourly candles of a wave with noise and a drift up, each opening at the last close."""
    lines, c = [], 100.0
    for i in range(n):
        o, c = c, round(100 + 10 * math.sin(i / 6) + i / 20 + 0.5 * math.sin(i), 2)
        hi, lo = round(max(o, c) + 1, 2), round(min(o, c) - 1, 2)
        ms = int((start + timedelta(hours=i)).timestamp() * 1000)
        lines.append(f"{ms},{o},{hi},{lo},{c},{50 + i % 7}")
    return "\n".join(lines) + "\n"


async def import_candles(rt, tmp_path, symbol="ETH/USDT", n=HOURS, source="file:test"):  # type: ignore[no-untyped-def]
    path = tmp_path / "candles.csv"
    path.write_text(candle_lines(n))
    await import_file(rt.sessions, path=path, source=source, symbol=symbol, interval="1h")


def request(**kw: object) -> backtests.BacktestRequest:
    values: dict[str, object] = {
        "strategy": specs.MovingAverageParameters(5, 20, fraction=D("0.5")),
        "symbol": "ETH/USDT",
        "source": "file:test",
        "interval": "1h",
        "start": T0,
        "end": T0 + timedelta(hours=HOURS),
        "balance": D(10_000),
    }
    values.update(kw)
    return backtests.BacktestRequest(**values)  # type: ignore[arg-type]


async def finished(rt, backtest_id: int):  # type: ignore[no-untyped-def]
    async def done():  # type: ignore[no-untyped-def]
        async with rt.sessions() as session:
            row = await session.get(backtests.Backtest, backtest_id)
            return row if row.status in ("DONE", "FAILED") else None

    row = await eventually(done, within=30)
    assert row is not None, "the backtest did not finish"
    return row


async def test_a_backtest_runs_to_done_and_stores_what_evaluating_the_run_gives(rt, tmp_path):
    await import_candles(rt, tmp_path)
    uid = await funded_user(rt, "quant")
    row = await backtests.start_backtest(rt, user_id=uid, request=request())
    assert row.status == "QUEUED"
    done = await finished(rt, row.id)
    assert done.status == "DONE", done.reason
    assert done.candles_done == done.candles_total == HOURS
    # the same run, directly
    async with rt.reads() as session:
        checked = await backtests.check_request(session, request())
        inputs = await backtests.load_inputs(session, checked)
    run = specs.run(inputs)
    expected = evaluate(run)
    assert metrics_from_json(done.metrics) == expected.metrics
    assert done.market["makerFee"] == "0.001" and done.market["tickSize"] == "0.01"
    points = await rows(
        rt,
        "SELECT at, price, cash, position, equity FROM backtest_equity_points"
        " WHERE backtest_id = $1 ORDER BY id",
        row.id,
    )
    assert [tuple(p) for p in points] == [
        (p.at, p.price, p.cash, p.position, p.equity) for p in run.equity
    ]
    trades = await rows(
        rt, "SELECT pnl, fees FROM backtest_trades WHERE backtest_id = $1 ORDER BY id", row.id
    )
    assert len(trades) == len(run.trades) > 0
    assert [(t["pnl"], t["fees"]) for t in trades] == [(t.pnl, t.fees) for t in run.trades]
    # byte-identical for identical inputs
    assert result_json(specs.run(inputs)) == result_json(run)
    # the events: QUEUED, RUNNING (total known), progress steps, DONE; in order
    events = await rows(
        rt, "SELECT payload FROM outbox WHERE topic = $1 ORDER BY id", PROGRESS_TOPIC
    )

    statuses = [e["payload"]["status"] for e in events]
    done_counts = [e["payload"]["candlesDone"] for e in events]
    assert statuses[0] == "QUEUED" and statuses[-1] == "DONE"
    assert statuses.count("RUNNING") >= 10  # the progress steps
    assert done_counts == sorted(done_counts) and done_counts[-1] == HOURS


async def test_the_platform_market_spec_is_used_for_one_of_our_symbols(rt, tmp_path):
    await import_candles(rt, tmp_path, symbol="BTC/USDT")
    uid = await funded_user(rt, "quant")
    row = await backtests.start_backtest(
        rt, user_id=uid, request=request(symbol="btc/usdt", taker_fee=D("0.0025"))
    )
    done = await finished(rt, row.id)
    assert done.status == "DONE", done.reason
    async with rt.sessions() as session:
        spec = (await backtests.markets.market_by_symbol(session, "BTC/USDT")).spec
    assert done.market["tickSize"] == str(spec.tick_size)
    assert done.market["makerFee"] == str(spec.maker_fee) and done.market["takerFee"] == "0.0025"


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"source": "ftp:\x00x"}, "source"),
        ({"symbol": "ETH\x00USDT"}, "symbol"),
        ({"interval": "7m"}, "interval"),
        ({"symbol": "DOGE/USDT"}, "from"),  # nothing stored for it
        ({"start": T0 - timedelta(days=30), "end": T0}, "from"),  # no candle in the period
        ({"end": T0 + timedelta(hours=200_000)}, "from"),  # too many candles
        ({"end": T0}, "to"),
        ({"balance": D(0)}, "balance"),
        ({"maker_fee": D("0.5")}, "makerFee"),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_written(rt, tmp_path, kw, field):
    await import_candles(rt, tmp_path, n=50)
    uid = await funded_user(rt, "quant")
    with pytest.raises(ValidationFailed) as refused:
        await backtests.start_backtest(rt, user_id=uid, request=request(**kw))
    assert refused.value.field == field
    assert await scalar(rt, "SELECT count(*) FROM backtests") == 0
    assert await scalar(rt, "SELECT count(*) FROM outbox WHERE topic = $1", PROGRESS_TOPIC) == 0


async def test_the_venue_source_needs_one_of_our_markets(rt):
    uid = await funded_user(rt, "quant")
    with pytest.raises(UnknownMarket):
        await backtests.start_backtest(
            rt, user_id=uid, request=request(source="VENUE", symbol="NOPE/USDT")
        )
    assert await scalar(rt, "SELECT count(*) FROM backtests") == 0


async def test_another_users_backtest_is_not_found(rt, tmp_path):
    await import_candles(rt, tmp_path, n=50)
    owner, other = await funded_user(rt, "owner"), await funded_user(rt, "other")
    row = await backtests.start_backtest(rt, user_id=owner, request=request())
    await finished(rt, row.id)
    async with rt.sessions() as session:
        assert (await backtests.get_backtest(session, user_id=owner, backtest_id=row.id)).id
        with pytest.raises(NotFound):
            await backtests.get_backtest(session, user_id=other, backtest_id=row.id)
        page = await backtests.list_backtests(session, user_id=other, first=10, after=None)
    assert page.items == []
