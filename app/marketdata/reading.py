"""From a file's rows to values (candles, trades): the columns, found from a header, a
headerless first row or a JSON object's keys; each row's value, or its rejection with
its line and reason, counted in the import's ``Tally``."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from app.marketdata.domain import layouts
from app.marketdata.files import Row

MAX_REPORTED = 20  # rejections (and gaps) listed in a summary; all are counted
C = TypeVar("C")  # where a layout's fields are
V = TypeVar("V")  # what a row holds


@dataclass(frozen=True, slots=True)
class Rejection:
    line: int
    reason: str


@dataclass(kw_only=True)
class Tally:
    """What an import did with the file's rows (the candle and the trade importers')."""

    rows: int = 0  # rows read (blank lines and a header are not rows)
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    duplicates: int = 0  # rows whose key (open time, trade id) an earlier row had
    rejections: list[Rejection] = field(default_factory=list)  # the first MAX_REPORTED
    first: datetime | None = None
    last: datetime | None = None

    def reject(self, line: int, reason: str) -> None:
        self.rejected += 1
        if len(self.rejections) < MAX_REPORTED:
            self.rejections.append(Rejection(line, reason))


@dataclass(frozen=True, slots=True)
class Layout(Generic[C, V]):
    """How one kind of file's rows become values: the columns a CSV header names, those a
    headerless first row implies, those of a JSON object's keys (raising
    ``layouts.Rejected`` for that object), and one row's value (or ``Rejected``)."""

    header: Callable[[list[str]], C]
    headerless: Callable[[list[object]], C]
    keys: Callable[[tuple[str, ...]], C]
    value: Callable[[Sequence[object] | Mapping[str, object], C], V]


def values(found: Iterator[Row], layout: Layout[C, V], tally: Tally) -> Iterator[tuple[int, V]]:
    """(line, value) of the rows that hold one; the other rows are counted in ``tally`` with their
    reasons. ``layouts.UnknownLayout`` when the header or first row fits no layout."""
    positions: C | None = None  # from the header or the first row
    by_keys: dict[tuple[str, ...], C] = {}
    for row in found:
        if positions is None and isinstance(row.fields, list):
            texts = [str(f) for f in row.fields]
            if layouts.is_header(texts):
                positions = layout.header(texts)
                continue
            positions = layout.headerless(row.fields)
        tally.rows += 1
        try:
            if row.fields is None:
                raise layouts.Rejected(row.refused or "unreadable")
            if isinstance(row.fields, dict):
                keys = tuple(row.fields)
                if keys not in by_keys:
                    by_keys[keys] = layout.keys(keys)
                yield row.line, layout.value(row.fields, by_keys[keys])
            else:
                assert positions is not None
                yield row.line, layout.value(row.fields, positions)
        except layouts.Rejected as rejected:
            tally.reject(row.line, rejected.reason)
