"""The ``exchange-candles`` job: keeps the candles of the configured series
(``EXCHANGE_CANDLE_SYNC``: ``exchange:BASE/QUOTE:interval`` entries) up to date in the
market data store.

Each run, per series: from the last candle held (it may have been open when fetched),
or ``EXCHANGE_CANDLE_BACKFILL`` candles back for a series with none, up to now, at most
``EXCHANGE_CANDLE_SYNC_MAX_REQUESTS`` requests (a long backfill goes on at the next
runs). A series whose exchange fails (unavailable, rate limited, a symbol it does not
list) is skipped for a while, doubling from one run's interval up to an hour, and the
others go on: the job itself never fails for an exchange's error. Several processes may
run it at once (every write is an idempotent upsert)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select

from app.core.errors import AppError, UserError
from app.exchanges.domain.marketdata import SyncedSeries, parse_synced, source_of
from app.exchanges.market_data import fetch_candles
from app.marketdata.domain.candles import interval_named
from app.runtime import Runtime
from db.models.marketdata import MarketCandle

log = logging.getLogger(__name__)
MAX_BACKOFF_SECONDS = 3600.0


@dataclass
class Backoff:
    """Per series: consecutive failures, and when it may be tried again (monotonic)."""

    failures: dict[str, int] = field(default_factory=dict)
    not_before: dict[str, float] = field(default_factory=dict)

    def ready(self, name: str) -> bool:
        return self.not_before.get(name, 0.0) <= time.monotonic()

    def failed(self, name: str, every_seconds: float) -> float:
        count = self.failures[name] = self.failures.get(name, 0) + 1
        wait = min(MAX_BACKOFF_SECONDS, max(every_seconds, 1.0) * 2 ** (count - 1))
        self.not_before[name] = time.monotonic() + wait
        return wait

    def succeeded(self, name: str) -> None:
        self.failures.pop(name, None)
        self.not_before.pop(name, None)


@dataclass(frozen=True, slots=True)
class SeriesRun:
    series: str
    candles: int = 0
    requests: int = 0
    behind: bool = False  # more to fetch at the next run (a backfill in progress)
    error: str | None = None  # the error's code; the series backs off
    skipped: bool = False  # backing off


def configured_series(entries: list[str]) -> list[SyncedSeries]:
    """The setting's series; a malformed entry is logged and left out."""
    found = []
    for entry in entries:
        try:
            found.append(parse_synced(entry))
        except UserError as error:
            reason = {"entry": entry[:80], "reason": error.message}
            log.error("EXCHANGE_CANDLE_SYNC entry ignored", extra=reason)
    return found


async def sync_candles(rt: Runtime) -> list[SeriesRun]:
    """One run over every configured series."""
    backoff = rt.coalescer("exchange-candle-backoff", Backoff)
    return [await _sync_one(rt, s, backoff)
            for s in configured_series(rt.settings.exchange_candle_sync)]  # fmt: skip


async def _sync_one(rt: Runtime, series: SyncedSeries, backoff: Backoff) -> SeriesRun:
    if not backoff.ready(series.name):
        return SeriesRun(series.name, skipped=True)
    now = rt.now()
    try:
        since = await _resume_at(rt, series, now)
        fetched = await fetch_candles(
            rt, exchange=series.exchange, symbol=series.symbol, interval=series.interval,
            since=since, until=now, max_requests=rt.settings.exchange_candle_sync_max_requests,
        )  # fmt: skip
    except AppError as error:  # the exchange's (or a malformed series'): back off, go on
        wait = backoff.failed(series.name, rt.settings.exchange_candle_sync_interval_seconds)
        log.warning("exchange candles not fetched", extra={
            "series": series.name, "error": error.code, "retry_in_seconds": wait})  # fmt: skip
        return SeriesRun(series.name, error=error.code)
    backoff.succeeded(series.name)
    if fetched.resume_at is not None:  # a backfill in progress: say how far it got
        log.info("exchange candles behind", extra={
            "series": series.name, "candles": fetched.candles,
            "resume_at": fetched.resume_at.isoformat()})  # fmt: skip
    return SeriesRun(series.name, fetched.candles, fetched.requests, fetched.resume_at is not None)


async def _resume_at(rt: Runtime, series: SyncedSeries, now: datetime) -> datetime:
    grid = interval_named(series.interval)
    async with rt.reads() as db:
        last = await db.scalar(
            select(func.max(MarketCandle.open_time)).where(
                MarketCandle.source == source_of(series.exchange),
                MarketCandle.symbol == series.symbol,
                MarketCandle.interval == series.interval,
            )
        )
    if last is not None:
        return last  # type: ignore[no-any-return]
    return grid.shift(grid.floor(now), -(rt.settings.exchange_candle_backfill - 1))
