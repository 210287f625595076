"""``python -m app backtest`` end to end in a subprocess on a small generated file
(imported with ``data import``): the metrics printed, the report written, a refusal's exit
status; and a sweep gives the same best variant with 2 worker processes as with 1."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from decimal import Decimal as D

from app.backtesting import backtests
from app.backtesting.cli import sweep
from app.backtesting.domain import specs
from app.backtesting.domain.sweeps import parse_range
from tests.backtesting.test_backtests import HOURS, T0, import_candles, request
from tests.support import ROOT

COMMON = [
    "--symbol", "ETH/USDT", "--source", "file:test", "--interval", "1h",
    "--from", T0.isoformat(), "--to", (T0 + timedelta(hours=HOURS)).isoformat(),
]  # fmt: skip


def app_command(rt, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "DATABASE_URL": rt.settings.database_url}
    env.pop("REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "app", "backtest", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_the_command_prints_the_metrics_and_writes_the_report(rt, tmp_path):
    await import_candles(rt, tmp_path)
    report = tmp_path / "out.html"
    done = app_command(
        rt, "--strategy", "ma", "--fast", "5", "--slow", "20", "--fraction", "0.5",
        *COMMON, "--path", "ohlc", "--volume-share", "0.2", "--seed", "3",
        "--report", str(report),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Sharpe" in done.stdout and "total return" in done.stdout
    assert "backtest 400/400" in done.stderr  # the progress line, not on a terminal
    html = report.read_text()
    assert html.startswith("<!DOCTYPE html>") and "ETH/USDT" in html
    again = tmp_path / "again.html"
    rerun = app_command(
        rt, "--strategy", "ma", "--fast", "5", "--slow", "20", "--fraction", "0.5",
        *COMMON, "--path", "ohlc", "--volume-share", "0.2", "--seed", "3",
        "--report", str(again),
    )  # fmt: skip
    assert rerun.stdout.replace(str(again), "") == done.stdout.replace(str(report), "")
    assert again.read_bytes() == report.read_bytes()  # byte-identical


async def test_dca_and_a_refusal(rt, tmp_path):
    await import_candles(rt, tmp_path)
    report = tmp_path / "dca.html"
    done = app_command(
        rt, "--strategy", "dca", "--amount", "100", "--every", "24", "--take-profit", "0.02",
        *COMMON, "--report", str(report),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert report.exists()
    refused = app_command(
        rt, "--strategy", "ma", "--fast", "30", "--slow", "10", "--fraction", "0.5",
        *COMMON, "--report", str(tmp_path / "no.html"),
    )  # fmt: skip
    assert refused.returncode == 2 and "Refused" in refused.stderr
    assert not (tmp_path / "no.html").exists()


async def test_a_sweep_reports_the_best_variant_and_its_deflated_sharpe(rt, tmp_path):
    await import_candles(rt, tmp_path)
    report = tmp_path / "sweep.html"
    done = app_command(
        rt, "sweep", "--strategy", "ma", "--fast", "4:8:2", "--slow", "8:16:8",
        "--fraction", "0.5", *COMMON, "--workers", "2", "--report", str(report),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "variants tried  5 (1 invalid combinations skipped)" in done.stdout
    assert "deflated Sharpe" in done.stdout
    html = report.read_text()
    assert "<h2>Parameter sweep</h2>" in html and "<td>Variants tried</td><td>5</td>" in html


async def test_a_sweep_is_the_same_with_one_or_two_workers(rt, tmp_path):
    await import_candles(rt, tmp_path)
    async with rt.reads() as session:
        inputs = await backtests.load_inputs(
            session, await backtests.check_request(session, request())
        )
    variants = [
        specs.MovingAverageParameters(int(f), int(s), fraction=D("0.5"))
        for f in parse_range("3:9:3", "fast")
        for s in parse_range("12:24:12", "slow")
    ]
    with ProcessPoolExecutor(max_workers=1) as one:
        alone = sweep(inputs, variants, executor=one)
    with ProcessPoolExecutor(max_workers=2) as two:
        paired = sweep(inputs, variants, executor=two)
    assert paired.best == alone.best
    assert paired.variants == alone.variants
    assert paired.deflated_sharpe == alone.deflated_sharpe


async def test_risk_limits_on_the_command_line(rt, tmp_path):
    await import_candles(rt, tmp_path)
    done = app_command(
        rt, "--strategy", "ma", "--fast", "5", "--slow", "20", "--fraction", "0.5", *COMMON,
        "--risk-limit", "trades_per_day:1", "--risk-limit", "DRAWDOWN:1:COOL_DOWN:3600",
        "--report", str(tmp_path / "risk.html"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    refusals = next(line for line in done.stdout.splitlines() if line.startswith("risk refusals"))
    assert int(refusals.split()[-1]) > 0
    assert "DRAWDOWN of 1 USD (USER 0) reached" in done.stdout
    html = (tmp_path / "risk.html").read_text()
    assert "<h2>Risk limits</h2>" in html and "DRAWDOWN of 1 USD (USER 0) reached" in html
    assert f"Orders refused by the risk limits: {refusals.split()[-1]}." in html
    for bad in ("DAILY_LOSS", "NOPE:1", "DAILY_LOSS:1:COOL_DOWN", "DAILY_LOSS:1:SOON"):
        refused = app_command(
            rt, "--strategy", "ma", "--fast", "5", "--slow", "20", "--fraction", "0.5",
            *COMMON, "--risk-limit", bad, "--report", str(tmp_path / "no.html"),
        )  # fmt: skip
        assert refused.returncode == 2 and "Refused" in refused.stderr, bad
