"""Importing OHLCV files into the store (real PostgreSQL): each layout, bad rows rejected
with their line and reason, idempotent re-import, overlapping ranges, gaps, refused files."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from app.core.errors import ValidationFailed
from app.marketdata import reads
from app.marketdata.importer import import_file
from tests.support.trading import rows

T0 = datetime(2024, 1, 1, tzinfo=UTC)
MS = int(T0.timestamp() * 1000)
MINUTE = 60_000


def ohlcv(n: int, *, skip: set[int] = frozenset(), base: int = 100) -> list[list]:
    """n one-minute candles from T0 (minus those in ``skip``): [ms, o, h, l, c, v]."""
    return [
        [MS + i * MINUTE, f"{base + i}", f"{base + i + 2}", f"{base + i - 1}", f"{base + i + 1}",
         f"{i}.5"]
        for i in range(n) if i not in skip
    ]  # fmt: skip


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def csv_text(table: list[list], header: str | None = None) -> str:
    lines = [header] if header else []
    return "\n".join(lines + [",".join(str(x) for x in row) for row in table]) + "\n"


async def load(rt, path: Path, interval: str = "1m", **kw):
    return await import_file(
        rt.sessions,
        path=path,
        source=kw.pop("source", "file:test"),
        symbol=kw.pop("symbol", "BTC/USDT"),
        interval=interval,
        **kw,
    )


async def stored(rt, source: str = "file:test") -> list[tuple]:
    found = await rows(
        rt,
        "SELECT open_time, open, high, low, close, volume, quote_volume, trades"
        " FROM market_candles WHERE source = $1 ORDER BY open_time",
        source,
    )
    return [tuple(r) for r in found]


def _ccxt_json(table):
    return json.dumps([[r[0], *(float(x) for x in r[1:])] for r in table])


def _objects_json(table):
    keys = ("timestamp", "open", "high", "low", "close", "volume")
    return json.dumps([dict(zip(keys, r, strict=True)) for r in table])


def _json_lines(table):
    return "\n".join(json.dumps(r) for r in table) + "\n"


def _iso_csv(table):
    iso = [[datetime.fromtimestamp(r[0] / 1000, UTC).isoformat(), *r[1:]] for r in table]
    return csv_text(iso, "Date;Open;High;Low;Close;Volume").replace(",", ";")


LAYOUTS = {
    "headerless ccxt csv": ("a.csv", lambda t: csv_text(t)),
    "csv with header, seconds": (
        "b.csv",
        lambda t: csv_text(
            [[r[5], r[0] // 1000, r[1], r[2], r[3], r[4]] for r in t],
            "volume,time,open,high,low,close",
        ),
    ),
    "csv with iso dates and semicolons": ("c.txt", _iso_csv),
    "ccxt json": ("d.json", _ccxt_json),
    "json objects": ("e.json", _objects_json),
    "json lines": ("f.jsonl", _json_lines),
}


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_each_layout_imports_the_same_candles(rt, tmp_path, layout):
    name, render = LAYOUTS[layout]
    table = ohlcv(5)
    summary = await load(rt, write(tmp_path, name, render(table)))
    assert (summary.rows, summary.inserted, summary.rejected) == (5, 5, 0), summary
    assert (summary.first, summary.last) == (T0, T0 + timedelta(minutes=4))
    held = await stored(rt)
    assert [r[0] for r in held] == [T0 + timedelta(minutes=i) for i in range(5)]
    assert held[1][1:6] == (Decimal(101), Decimal(103), Decimal(100), Decimal(102), Decimal("1.5"))


async def test_binance_klines_keep_quote_volume_and_trades(rt, tmp_path):
    kline = [MS, "100.1", "101", "99", "100.5", "2", MS + MINUTE - 1, "200.5", 17, "1", "100", "0"]
    await load(rt, write(tmp_path, "k.csv", csv_text([kline])))
    [(_, *_, quote, trades)] = await stored(rt)
    assert (quote, trades) == (Decimal("200.5"), 17)


async def test_reimporting_changes_nothing_and_overlaps_upsert(rt, tmp_path):
    first = write(tmp_path, "one.csv", csv_text(ohlcv(10)))
    assert (await load(rt, first)).inserted == 10
    before = await stored(rt)
    again = await load(rt, first)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 10)
    assert await stored(rt) == before
    later = ohlcv(15, base=200)[5:]  # minutes 5..14 at other prices
    overlap = await load(rt, write(tmp_path, "two.csv", csv_text(later)))
    assert (overlap.inserted, overlap.updated, overlap.unchanged) == (5, 5, 0)
    held = await stored(rt)
    assert len(held) == 15 and held[4] == before[4] and held[5][1] == Decimal(205)


async def test_bad_rows_are_rejected_with_line_and_reason_and_the_rest_imports(rt, tmp_path):
    good = ohlcv(8)
    lines = [",".join(str(x) for x in r).encode() for r in good]
    lines[1] = lines[1].replace(b"101", b"1\x0001", 1)  # NUL byte
    lines[2] = lines[2] + b"\xff\xfe"  # not UTF-8
    lines[3] = f"{MS + 3 * MINUTE},103,105,102,104,-1".encode()  # negative volume
    lines[4] = f"{MS + 4 * MINUTE},104,100,106,105,1".encode()  # high below low
    lines[5] = f"{MS + 5 * MINUTE + 30_000},105,107,104,106,1".encode()  # off the grid
    lines[6] = f"{MS + 6 * MINUTE},{'9' * 40},107,104,106,1".encode()  # too big
    path = write(tmp_path, "bad.csv", b"\n".join(lines) + b"\n")
    summary = await load(rt, path)
    assert (summary.rows, summary.inserted, summary.rejected) == (8, 2, 6)
    reasons = {r.line: r.reason for r in summary.rejections}
    assert reasons[2] == "NUL byte"
    assert reasons[3].startswith("not UTF-8")
    assert reasons[4] == "volume is negative"
    assert reasons[5] == "high is below low"
    assert "not on the 1m grid" in reasons[6]
    assert reasons[7].startswith("open is out of range")
    assert [r[0] for r in await stored(rt)] == [T0, T0 + timedelta(minutes=7)]
    assert (summary.gap_count, summary.missing) == (1, 6)


async def test_gaps_and_duplicates_are_reported(rt, tmp_path):
    table = ohlcv(20, skip={3, 4, 10})
    table.append([*table[0][:5], "9"])  # minute 0 again: the later row wins
    summary = await load(rt, write(tmp_path, "g.csv", csv_text(table)), batch_size=4)
    assert summary.duplicates == 1
    assert [(g.start, g.end, g.missing) for g in summary.gaps] == [
        (T0 + timedelta(minutes=3), T0 + timedelta(minutes=5), 2),
        (T0 + timedelta(minutes=10), T0 + timedelta(minutes=11), 1),
    ]
    assert (await stored(rt))[0][5] == Decimal(9)
    [series] = await _coverage(rt)
    assert (series.candles, series.missing, series.gap_count) == (17, 3, 2)
    assert series.gaps == summary.gaps


async def _coverage(rt, **kw):
    async with rt.sessions() as session:
        return await reads.coverage(session, **kw)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a,b\n1,2\n", "the header names no column"),
        ("1704067200000,1,2\n", "rows have 3 fields"),
        ("[[1704067200000, 1, 2, 0.5, 1, 3], [oops]]", "not valid JSON at line 1"),
        ('[[1704067200000, 1, 2, 0.5, 1, 3]\n, [1, "\x00"]]', "not valid JSON at line 2"),
    ],
)
async def test_a_file_in_no_known_layout_imports_nothing(rt, tmp_path, content, message):
    with pytest.raises(ValidationFailed, match=message) as refused:
        await load(rt, write(tmp_path, "x", content))
    assert refused.value.field == "file"
    assert await stored(rt) == []


async def test_venue_and_bad_names_are_refused(rt, tmp_path):
    path = write(tmp_path, "a.csv", csv_text(ohlcv(1)))
    for kw, field in (
        ({"source": "VENUE"}, "source"),
        ({"source": "no spaces"}, "source"),
        ({"symbol": "BTCUSDT"}, "symbol"),
        ({"interval": "7m"}, "interval"),
    ):
        with pytest.raises(ValidationFailed) as refused:
            await load(rt, path, **kw)
        assert refused.value.field == field


async def test_reads_serve_stored_and_merged_candles(rt, tmp_path):
    await load(rt, write(tmp_path, "m.csv", csv_text(ohlcv(130))), source="binance")
    async with rt.sessions() as session:
        exact = await reads.candles(
            session, source="file:binance", symbol="BTC/USDT", interval="1m",
            start=T0 + timedelta(minutes=2), end=T0 + timedelta(minutes=4),
        )  # fmt: skip
        hourly = await reads.candles(
            session, source="binance", symbol="btc/usdt", interval="1h",
            start=T0 - timedelta(minutes=30), end=T0 + timedelta(hours=3),
        )  # fmt: skip
        nothing = await reads.candles(
            session, source="file:other", symbol="BTC/USDT", interval="1h",
            start=T0, end=T0 + timedelta(hours=3),
        )  # fmt: skip
    assert [c.open_time for c in exact] == [T0 + timedelta(minutes=2), T0 + timedelta(minutes=3)]
    assert [c.open_time for c in hourly] == [T0 + timedelta(hours=h) for h in range(3)]
    first = hourly[0]
    assert (first.open, first.high, first.low, first.close) == (100, 161, 99, 160)
    assert first.volume == sum(Decimal(f"{i}.5") for i in range(60))
    assert hourly[2].close == 230 and nothing == []
