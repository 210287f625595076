"""Market data over HTTP: ``candles(source:)`` for stored sources beside the venue's,
``marketDataSources``; and the ``python -m app data import`` command end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from app.marketdata.importer import import_file
from tests.support import ROOT
from tests.support.trading import funded_user, trade_at

T0 = datetime(2024, 1, 1, tzinfo=UTC)
MS = int(T0.timestamp() * 1000)
CANDLES = """
query($symbol: String!, $interval: String!, $start: DateTime!, $end: DateTime, $source: String!) {
  candles(symbol: $symbol, interval: $interval, start: $start, end: $end, source: $source) {
    openTime open high low close volume quoteVolume trades
  }
}"""
VENUE_CANDLES = """
query($start: DateTime!) {
  candles(symbol: "BTC/USDT", interval: "1m", start: $start) { open close volume trades }
}"""
SOURCES = """
query($symbol: String) {
  marketDataSources(symbol: $symbol) {
    source symbol interval first last candles missing gapCount gaps { start end missing }
  }
}"""


def candle_file(tmp_path, n=90, skip=(5,)):
    lines = [
        f"{MS + i * 60_000},{90000 + i},{90010 + i},{89990 + i},{90005 + i},0.5"
        for i in range(n)
        if i not in skip
    ]
    path = tmp_path / "btc.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


async def imported(rt, tmp_path, **kw):
    return await import_file(
        rt.sessions,
        path=candle_file(tmp_path, **kw),
        source="file:binance",
        symbol="BTC/USDT",
        interval="1m",
    )


def variables(**kw):
    return {
        "symbol": "BTC/USDT",
        "interval": "1m",
        "start": T0.isoformat(),
        "end": (T0 + timedelta(minutes=3)).isoformat(),
        "source": "file:binance",
        **kw,
    }


async def test_candles_of_a_stored_source_at_the_markets_scale(gql, rt, tmp_path):
    await imported(rt, tmp_path)
    found = (await gql.data(CANDLES, variables()))["candles"]
    assert found[0] == {
        "openTime": "2024-01-01T00:00:00+00:00",
        "open": "90000.00",
        "high": "90010.00",
        "low": "89990.00",
        "close": "90005.00",
        "volume": "0.5000",
        "quoteVolume": "0.000000",
        "trades": 0,
    }
    assert len(found) == 3
    hourly = await gql.data(
        CANDLES, variables(interval="1h", end=(T0 + timedelta(hours=2)).isoformat())
    )
    assert [(c["open"], c["close"]) for c in hourly["candles"]] == [
        ("90000.00", "90064.00"),
        ("90060.00", "90094.00"),
    ]
    other = await gql.data(CANDLES, variables(symbol="ETH/BTC", source="file:nothing"))
    assert other["candles"] == []


async def test_bad_arguments_are_typed_errors(gql, rt, tmp_path):
    await imported(rt, tmp_path)
    for kw, code, field in (
        ({"source": "no such thing!"}, "VALIDATION_FAILED", "source"),
        ({"interval": "7m"}, "VALIDATION_FAILED", "interval"),
        ({"symbol": "BTCUSDT"}, "VALIDATION_FAILED", "symbol"),
        ({"end": T0.isoformat()}, "VALIDATION_FAILED", "to"),
        ({"source": "VENUE", "symbol": "DOGE/USDT"}, "UNKNOWN_MARKET", "symbol"),
        ({"source": "VENUE", "interval": "3m"}, "VALIDATION_FAILED", "interval"),
    ):
        answer = await gql(CANDLES, variables(**kw))
        [error] = answer["errors"]
        assert error["extensions"]["code"] == code, (kw, answer)
        assert error["extensions"].get("field") == field, (kw, answer)


async def test_the_venue_is_the_default_and_unchanged(gql, rt, engines):
    maker = await funded_user(rt, "maker", BTC="1")
    taker = await funded_user(rt, "taker", USDT="100000")
    await trade_at(rt, maker, taker, "90000")
    start = (rt.now() - timedelta(minutes=5)).isoformat()
    default = await gql.data(VENUE_CANDLES, {"start": start})
    assert default["candles"] == [
        {"open": "90000.00", "close": "90000.00", "volume": "0.1000", "trades": 1}
    ]
    venue = await gql.data(
        CANDLES, variables(source="VENUE", start=start, end=rt.now().isoformat())
    )
    assert [c["trades"] for c in venue["candles"]] == [1]


async def test_market_data_sources_say_what_is_held(gql, rt, tmp_path):
    await imported(rt, tmp_path)
    [series] = (await gql.data(SOURCES, {"symbol": "BTC/USDT"}))["marketDataSources"]
    assert series == {
        "source": "file:binance",
        "symbol": "BTC/USDT",
        "interval": "1m",
        "first": "2024-01-01T00:00:00+00:00",
        "last": "2024-01-01T01:29:00+00:00",
        "candles": 89,
        "missing": 1,
        "gapCount": 1,
        "gaps": [
            {"start": "2024-01-01T00:05:00+00:00", "end": "2024-01-01T00:06:00+00:00", "missing": 1}
        ],
    }
    assert (await gql.data(SOURCES, {"symbol": "ETH/USDT"}))["marketDataSources"] == []


def _cli(rt, *args, action="import"):
    env = {**os.environ, "DATABASE_URL": rt.settings.database_url}
    env.pop("REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "app", "data", action, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_the_import_command_end_to_end(rt, tmp_path):
    path = candle_file(tmp_path, n=10, skip=(3, 4))
    with path.open("a") as f:
        f.write(f"{MS + 10 * 60_000},1,0.5,2,1,1\n")  # high below low
    args = (str(path), "--symbol", "BTC/USDT", "--interval", "1m", "--source", "binance")
    first = _cli(rt, *args)
    assert first.returncode == 1, first.stderr  # imported, one row rejected
    assert "Imported" in first.stdout and "file:binance BTC/USDT 1m" in first.stdout
    for line in ("rows read   9", "inserted    8", "rejected    1", "line 9: high is below low",
                 "gaps        1 (2 candles missing)",
                 "2024-01-01T00:03:00Z up to 2024-01-01T00:05:00Z: 2 missing"):  # fmt: skip
        assert line in first.stdout, first.stdout
    again = _cli(rt, *args)
    assert "inserted    0" in again.stdout and "unchanged   8" in again.stdout, again.stdout
    refused = _cli(rt, str(path), "--symbol", "BTC/USDT", "--interval", "1m", "--source", "VENUE")
    assert refused.returncode == 2 and "Nothing imported: source" in refused.stderr
