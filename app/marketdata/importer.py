"""Importing an OHLCV file into the store: ``import_file``.

One transaction per import: the file's valid rows are upserted in batches (a row already
held with the same values is left alone, so importing the same file again changes
nothing; overlapping ranges take the file's values), rows that are no candle are left out
and reported with their line and reason, and a file in no known layout imports nothing.
The file is streamed; what is kept per row is one 8-byte open time (for the gaps)."""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.errors import ValidationFailed
from app.marketdata.domain import layouts
from app.marketdata.domain.candles import (
    EPOCH,
    VENUE,
    Candle,
    Gap,
    Interval,
    gaps,
    interval_named,
    parse_source,
    parse_symbol,
)
from app.marketdata.files import Progress, Row, detect_format, rows
from app.marketdata.reading import MAX_REPORTED, Layout, Tally, values
from app.marketdata.store import write_candles
from db.raw import driver
from db.session import in_transaction

BATCH = 5000


@dataclass
class ImportSummary(Tally):
    source: str
    symbol: str
    interval: str
    gaps: list[Gap] = field(default_factory=list)  # the first MAX_REPORTED
    gap_count: int = 0
    missing: int = 0  # candles missing between first and last


async def import_file(
    sessions: async_sessionmaker[AsyncSession],
    *,
    path: Path,
    source: str,
    symbol: str,
    interval: str,
    format: Literal["auto", "csv", "json"] = "auto",
    time_label: layouts.TimeLabel = "open",
    progress: Progress | None = None,
    batch_size: int = BATCH,
) -> ImportSummary:
    """Import ``path`` as ``symbol``'s ``interval`` candles of ``source``. ``time_label``:
    what the file's times are, each candle's open or its end (``layouts.open_time_of_end``:
    a date on its last day, an inclusive close time)."""
    source = parse_source(source)
    if source == VENUE:
        raise ValidationFailed(
            "VENUE candles are built from the platform's trades; import under a file source",
            field="source",
        )
    job = _Import(
        ImportSummary(source, parse_symbol(symbol), interval),
        interval_named(interval),
        path,
        format,
        time_label,
        progress or (lambda _: None),
        batch_size,
    )
    return await in_transaction(sessions, job.run)


@dataclass
class _Import:
    summary: ImportSummary
    interval: Interval
    path: Path
    format: Literal["auto", "csv", "json"]
    time_label: layouts.TimeLabel
    progress: Progress
    batch_size: int

    async def run(self, session: AsyncSession) -> ImportSummary:
        """One attempt (a retried transaction starts again from a fresh summary)."""
        s = self.summary
        summary = self.summary = ImportSummary(s.source, s.symbol, s.interval)
        connection = await driver(session)
        times = array("q")  # every accepted open time, µs since the epoch
        batch: dict[datetime, Candle] = {}
        with self.path.open("rb") as stream:
            kind = detect_format(stream) if self.format == "auto" else self.format
            try:
                for candle in self._candles(rows(stream, kind, self.progress)):
                    times.append((candle.open_time - EPOCH) // _MICROSECOND)
                    batch[candle.open_time] = candle
                    if len(batch) >= self.batch_size:
                        await self._write(connection, batch)
            except layouts.UnknownLayout as error:
                raise ValidationFailed(str(error), field="file") from None
        await self._write(connection, batch)
        self._find_gaps(times)
        return summary

    def _candles(self, found: Iterator[Row]) -> Iterator[Candle]:
        """The file's candles; other rows are counted and their reasons kept."""
        symbol, interval, label = self.summary.symbol, self.interval, self.time_label
        layout = Layout(
            header=lambda names: layouts.from_header(names, symbol=symbol),
            headerless=lambda fields: layouts.positional(len(fields)),
            keys=layouts.from_object_keys,
            value=lambda fields, columns: layouts.candle(fields, columns, interval, label),
        )
        return (candle for _, candle in values(found, layout, self.summary))

    async def _write(self, connection: Any, batch: dict[datetime, Candle]) -> None:
        if not batch:
            return
        candles = [batch[t] for t in sorted(batch)]  # one lock order for every import
        batch.clear()
        s = self.summary
        written = await write_candles(connection, s.source, s.symbol, s.interval, candles)
        s.inserted += written.inserted
        s.updated += written.updated
        s.unchanged += written.unchanged

    def _find_gaps(self, times: array[int]) -> None:
        s = self.summary
        if not times:
            return
        ordered = times if _ascending(times) else array("q", sorted(times))
        s.first, s.last = (EPOCH + t * _MICROSECOND for t in (ordered[0], ordered[-1]))
        distinct = [0]

        def open_times() -> Iterator[datetime]:
            for n, t in enumerate(ordered):
                if n == 0 or t != ordered[n - 1]:
                    distinct[0] += 1
                    yield EPOCH + t * _MICROSECOND

        for gap in gaps(open_times(), self.interval):
            s.gap_count += 1
            s.missing += gap.missing
            if len(s.gaps) < MAX_REPORTED:
                s.gaps.append(gap)
        s.duplicates = len(ordered) - distinct[0]


def _ascending(times: array[int]) -> bool:
    return all(a <= b for a, b in pairwise(times))


_MICROSECOND = timedelta(microseconds=1)
