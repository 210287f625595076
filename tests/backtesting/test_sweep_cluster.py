"""``backtest sweep --cluster``: the variants run on a Dask cluster (a ``LocalCluster`` of
two worker processes on loopback, started here) give the same outcome as local processes:
the same best variant, metrics, variants tried and summary file. Without the optional
extra the command is refused with the extra's name; and the sweep's summary is stored as
deterministic JSON beside the report."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys

from app.backtesting.cli import SWEEP_CHUNK
from tests.backtesting.test_backtest_cli import COMMON, app_command
from tests.backtesting.test_backtests import import_candles
from tests.support import ROOT

SWEEP = ["sweep", "--strategy", "ma", "--fast", "4:8:2", "--slow", "8:16:8", "--fraction", "0.5"]


def _without_report(stdout: str, *paths: object) -> str:
    for path in paths:
        stdout = stdout.replace(str(path), "")
    return stdout


async def test_a_sweep_on_a_dask_cluster_equals_the_local_one(rt, tmp_path):
    from distributed import LocalCluster

    await import_candles(rt, tmp_path)
    local_report, cluster_report = tmp_path / "local.html", tmp_path / "cluster.html"
    local = await asyncio.to_thread(
        app_command, rt, *SWEEP, *COMMON, "--workers", "2", "--report", str(local_report)
    )
    assert local.returncode == 0, local.stderr
    cluster = await asyncio.to_thread(
        LocalCluster,
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",  # None still binds :8787 (its HTTP routes)
    )
    try:
        on_cluster = await asyncio.to_thread(
            app_command, rt, *SWEEP, *COMMON, "--cluster", cluster.scheduler_address,
            "--report", str(cluster_report),
        )  # fmt: skip
        # ran there: the 5 variants in tasks of SWEEP_CHUNK
        ran = cluster.scheduler.task_prefixes["run_variants"].state_counts
        assert ran["memory"] == math.ceil(5 / SWEEP_CHUNK), ran
    finally:
        await asyncio.to_thread(cluster.close)
    assert on_cluster.returncode == 0, on_cluster.stderr
    assert "variants tried  5 (1 invalid combinations skipped)" in on_cluster.stdout
    # the same best variant, deflated Sharpe and metrics table
    assert _without_report(
        on_cluster.stdout, cluster_report, cluster_report.with_suffix(".json")
    ) == _without_report(local.stdout, local_report, local_report.with_suffix(".json"))
    # the same summary: variants tried, best, every variant's Sharpe
    stored = (tmp_path / "cluster.json").read_bytes()
    assert stored == (tmp_path / "local.json").read_bytes()
    assert cluster_report.read_bytes() == local_report.read_bytes()


async def test_the_summary_is_stored_beside_the_report(rt, tmp_path):
    await import_candles(rt, tmp_path)
    done = app_command(
        rt, *SWEEP, *COMMON, "--workers", "1", "--report", str(tmp_path / "sweep.html"),
        "--summary", str(tmp_path / "stored.json"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "stored.json").read_text()
    summary = json.loads(text)
    assert text == json.dumps(summary, indent=2, sort_keys=True) + "\n"  # sorted keys
    assert summary["variantsTried"] == 5 and summary["invalidSkipped"] == 1
    assert summary["ranges"] == {
        "fast": "4:8:2", "slow": "8:16:8", "fraction": "0.5", "quantity": None
    }  # fmt: skip
    variants = summary["variants"]
    assert [(v["parameters"]["fast"], v["parameters"]["slow"]) for v in variants] == [
        (4, 8), (4, 16), (6, 8), (6, 16), (8, 16)
    ]  # fmt: skip
    assert all(isinstance(v["sharpe"], str | None) for v in variants)
    best = summary["best"]
    assert best["parameters"] in [v["parameters"] for v in variants]
    assert best["sharpe"] == max(
        (v["sharpe"] for v in variants if v["sharpe"] is not None), key=float
    )
    fast, slow = best["parameters"]["fast"], best["parameters"]["slow"]
    assert f"best by Sharpe  {{'fast': {fast}, 'slow': {slow}," in done.stdout
    assert isinstance(best["deflatedSharpe"], str)
    assert f"deflated Sharpe {float(best['deflatedSharpe']):.4f}" in done.stdout


async def test_without_the_cluster_extra_the_command_names_it(rt, tmp_path):
    # distributed made unimportable in the child (as if the extra were not installed)
    code = (
        "import sys, runpy; sys.modules['distributed'] = None; "
        "sys.argv = ['app', 'backtest', *sys.argv[1:]]; "
        "runpy.run_module('app', run_name='__main__')"
    )
    env = {**os.environ, "DATABASE_URL": rt.settings.database_url}  # refused before it is used
    env.pop("REDIS_URL", None)
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", code, *SWEEP, *COMMON, "--cluster", "tcp://127.0.0.1:1",
         "--report", str(tmp_path / "no.html")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "pip install '.[cluster]'" in done.stderr
    assert not (tmp_path / "no.html").exists()
