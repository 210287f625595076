"""The ``exchange-candles`` job against the stand-ins: a new series is backfilled
``EXCHANGE_CANDLE_BACKFILL`` candles back, at most ``EXCHANGE_CANDLE_SYNC_MAX_REQUESTS``
requests a run (the rest at the next runs), then kept up to date from its last candle;
an exchange's errors back that series off without failing the job or the others; a
malformed entry is left out."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from app.background import default_jobs
from app.exchanges.candle_sync import configured_series, sync_candles
from app.marketdata.domain.candles import interval_named
from db.models.marketdata import MarketCandle

MINUTE = interval_named("1m")


@pytest.fixture
async def syncing(rt, exchanges) -> AsyncIterator[None]:
    original = rt.settings
    rt._coalescers.pop("exchange-candle-backoff", None)
    rt.settings = original.model_copy(update={
        "exchange_candle_sync": ["binance:BTC/USDT:1m", "okx:ETH/USDT:5m", "nasdaq:X/Y:1m"],
        "exchange_candle_backfill": 700,
        "exchange_candle_sync_max_requests": 1,
    })  # fmt: skip
    yield
    rt.settings = original
    rt._coalescers.pop("exchange-candle-backoff", None)


async def _held(rt, source: str, interval: str) -> list:
    async with rt.sessions() as session:
        return list(await session.scalars(
            select(MarketCandle.open_time).where(MarketCandle.source == source,
                                                 MarketCandle.interval == interval)
            .order_by(MarketCandle.open_time)))  # fmt: skip


async def test_series_are_backfilled_within_limits_then_kept_up_to_date(rt, syncing, exchanges):
    now = rt.now()
    first = {r.series: r for r in await sync_candles(rt)}
    assert set(first) == {"binance:BTC/USDT:1m", "okx:ETH/USDT:5m"}  # nasdaq left out
    binance = first["binance:BTC/USDT:1m"]
    # one request a run: Binance's 1000 cover the 700 candles; OKX's 300 do not
    assert (binance.requests, binance.error, binance.behind) == (1, None, False)
    held = await _held(rt, "exchange:binance", "1m")
    assert len(held) >= 700 and held[0] == MINUTE.shift(MINUTE.floor(now), -699)
    assert first["okx:ETH/USDT:5m"].behind and first["okx:ETH/USDT:5m"].candles == 300
    okx_before = exchanges["okx"].public_count("/market/candles")
    second = {r.series: r for r in await sync_candles(rt)}
    assert exchanges["okx"].public_count("/market/candles") == okx_before + 1
    assert len(await _held(rt, "exchange:okx", "5m")) == 599  # from its last held on
    assert second["binance:BTC/USDT:1m"].candles <= 2  # from its last candle on
    again = await _held(rt, "exchange:binance", "1m")
    assert again[: len(held)] == held and len(again) == len(set(again))


async def test_an_exchange_s_errors_back_its_series_off_and_the_others_go_on(
    rt, syncing, exchanges
):
    exchanges["binance"].fail_next(*(503,) * 6)  # markets and candles: every retry fails
    runs = {r.series: r for r in await sync_candles(rt)}
    assert runs["binance:BTC/USDT:1m"].error == "EXCHANGE_UNAVAILABLE"
    assert runs["okx:ETH/USDT:5m"].error is None and runs["okx:ETH/USDT:5m"].candles == 300
    asked = len(exchanges["binance"].requests)
    runs = {r.series: r for r in await sync_candles(rt)}
    assert runs["binance:BTC/USDT:1m"].skipped  # backing off: not asked
    assert len(exchanges["binance"].requests) == asked
    assert await _held(rt, "exchange:binance", "1m") == []


async def test_a_symbol_the_exchange_lacks_backs_off_too(rt, syncing, exchanges):
    rt.settings = rt.settings.model_copy(update={"exchange_candle_sync": ["kraken:DOGE/USDT:1h"]})
    (run,) = await sync_candles(rt)
    assert run.error == "EXCHANGE_SYMBOL_UNKNOWN"


def test_the_job_runs_only_when_series_are_configured(rt):
    assert "exchange-candles" not in [name for name, _, _ in default_jobs(rt).jobs]
    configured = rt.settings.model_copy(update={"exchange_candle_sync": ["okx:BTC/USDT:1h"]})
    original, rt.settings = rt.settings, configured
    try:
        assert "exchange-candles" in [name for name, _, _ in default_jobs(rt).jobs]
    finally:
        rt.settings = original


def test_malformed_entries_are_left_out():
    entries = ["binance:BTC/USDT:1m", "binance:BTC/USDT", "x:BTC/USDT:1m",
               "okx:btc\x00/usdt:1m", "okx:ETH/USDT:7m", "OKX:ETH/USDT:1h"]  # fmt: skip
    found = configured_series(entries)
    assert [s.name for s in found] == ["binance:BTC/USDT:1m", "okx:ETH/USDT:1h"]
