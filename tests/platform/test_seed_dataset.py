"""The demo seed's market data: backtesting.py's monthly BTC/USD file (a dev dependency,
read where it is installed, never copied here) imported as ``file:btcusd-monthly``
BTC/USD 1M, once, with a log line; a demo backtest over it for the user; skipped with one
line where the package is not installed (the production image)."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import func, select

from app.backtesting.domain.evaluation import metrics_from_json
from app.marketdata import reads
from app.seed import (
    ALICE,
    DATASET_SOURCE,
    DATASET_SYMBOL,
    dataset_path,
    seed_demo_data,
    seed_demo_dataset,
)
from db.models import Backtest, BacktestEquityPoint, MarketCandle, User
from tests.support import ROOT
from tests.support.trading import funded_user


async def _candles(rt) -> list[tuple]:
    async with rt.sessions() as session:
        found = await session.execute(
            select(MarketCandle.open_time, MarketCandle.open, MarketCandle.close)
            .where(MarketCandle.source == DATASET_SOURCE)
            .order_by(MarketCandle.open_time)
        )
        return [tuple(r) for r in found.all()]


def test_the_file_is_found_in_the_installed_package_without_importing_it():
    path = dataset_path()
    assert path is not None and path.name == "BTCUSD.csv" and path.is_file()
    assert path.parent.parent.name == "backtesting"
    assert dataset_path("no_such_package_here") is None
    # importing backtesting would load pandas and bokeh into the server
    found = subprocess.run(
        [sys.executable, "-c", "import sys; from app.seed import dataset_path; dataset_path();"
         " print(sorted(m for m in sys.modules if m.startswith(('backtesting', 'bokeh'))))"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert found.stdout.strip() == "[]", found.stdout


async def test_the_dataset_is_imported_once_as_monthly_btc_usd(rt, caplog):
    uid = await funded_user(rt, "quant")
    with caplog.at_level(logging.INFO, logger="app.seed"):
        await seed_demo_dataset(rt, path=dataset_path(), user_id=uid)
    [line] = [r.getMessage() for r in caplog.records if "market data" in r.getMessage()]
    assert "file:btcusd-monthly BTC/USD 1M" in line and "156 inserted" in line, line
    async with rt.sessions() as session:
        [series] = await reads.coverage(session, source=DATASET_SOURCE)
    assert (series.symbol, series.interval, series.candles, series.missing) == (
        DATASET_SYMBOL, "1M", 156, 0,
    )  # fmt: skip
    assert (series.first, series.last) == (
        datetime(2012, 1, 1, tzinfo=UTC),
        datetime(2024, 12, 1, tzinfo=UTC),
    )
    held = await _candles(rt)
    # the file's first row, 2012-01-31 (January's end), and its last, 2024-12-31
    assert held[0] == (datetime(2012, 1, 1, tzinfo=UTC), Decimal("4.58"), Decimal("5.55"))
    assert held[-1] == (datetime(2024, 12, 1, tzinfo=UTC), Decimal(96515), Decimal(93381))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="app.seed"):
        await seed_demo_dataset(rt, path=dataset_path(), user_id=uid)
    [again] = [r.getMessage() for r in caplog.records if "market data" in r.getMessage()]
    assert "0 inserted" in again and "156 unchanged" in again, again
    assert await _candles(rt) == held


async def test_the_user_gets_one_demo_backtest_over_it(rt):
    uid = await funded_user(rt, "quant")
    await seed_demo_dataset(rt, path=dataset_path(), user_id=uid)
    async with rt.sessions() as session:
        [row] = (await session.scalars(select(Backtest).where(Backtest.user_id == uid))).all()
        points = await session.scalar(
            select(func.count()).where(BacktestEquityPoint.backtest_id == row.id)
        )
    assert row.status == "DONE", row.reason
    assert (row.source, row.symbol, row.interval, row.strategy) == (
        DATASET_SOURCE, DATASET_SYMBOL, "1M", "MA",
    )  # fmt: skip
    assert row.candles_total == points == 156
    metrics = metrics_from_json(row.metrics)
    assert metrics.periods_per_year == 12 and metrics.trades > 0
    await seed_demo_dataset(rt, path=dataset_path(), user_id=uid)
    async with rt.sessions() as session:
        again = (await session.scalars(select(Backtest).where(Backtest.user_id == uid))).all()
    assert [b.id for b in again] == [row.id]


async def test_without_the_package_it_is_skipped_with_one_line(rt, caplog):
    uid = await funded_user(rt, "quant")
    with caplog.at_level(logging.INFO, logger="app.seed"):
        await seed_demo_dataset(rt, path=None, user_id=uid)
    [line] = [r.getMessage() for r in caplog.records if r.name == "app.seed"]
    assert "backtesting" in line and "not installed" in line, line
    assert await _candles(rt) == []
    async with rt.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Backtest)) == 0


async def test_the_whole_seed_gives_alice_the_demo_backtest(rt):
    await seed_demo_data(rt)
    async with rt.sessions() as session:
        statuses = (
            await session.scalars(
                select(Backtest.status)
                .join(User, User.id == Backtest.user_id)
                .where(User.email == ALICE.email, Backtest.source == DATASET_SOURCE)
            )
        ).all()
    assert statuses == ["DONE"]
    assert len(await _candles(rt)) == 156
