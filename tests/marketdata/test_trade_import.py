"""Importing trade files into the store (real PostgreSQL): each layout (ccxt JSON, Binance
trades and aggTrades CSV, header CSV), bad rows rejected with their line and reason,
idempotent re-import, duplicates, files without ids, refused files, the command."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from app.core.errors import ValidationFailed
from app.marketdata.trade_importer import import_trades
from tests.marketdata.test_marketdata_api import _cli
from tests.support.trading import rows

T0 = datetime(2024, 1, 1, tzinfo=UTC)
MS = int(T0.timestamp() * 1000)
# (id, ms after T0, price, amount, taker side)
TRADES = [
    (101, 0, "42000.5", "0.01", "BUY"),
    (102, 0, "42001", "0.25", "SELL"),
    (103, 1_500, "41999.99", "1.5", "SELL"),
    (104, 61_000, "42010", "0.002", "BUY"),
    (105, 3_600_000, "42100.1", "3", "BUY"),
]


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def ccxt_json(trades=TRADES) -> str:
    """What ``json.dump(exchange.fetch_trades(...))`` writes: floats, ISO datetime too."""
    return json.dumps(
        [
            {
                "info": {"a": i},
                "timestamp": MS + ms,
                "datetime": datetime.fromtimestamp((MS + ms) / 1000, UTC).isoformat(),
                "symbol": "BTC/USDT",
                "id": str(i),
                "order": None,
                "type": None,
                "side": side.lower(),
                "takerOrMaker": "taker",
                "price": float(price),
                "amount": float(amount),
                "cost": float(Decimal(price) * Decimal(amount)),
                "fee": None,
                "fees": [],
            }
            for i, ms, price, amount, side in trades
        ],
        indent=1,
    )


def binance_trades(trades=TRADES, *, best_match=True, micros=False) -> str:
    """data.binance.vision trades: id, price, qty, quote_qty, time, is_buyer_maker[, best]."""
    unit = 1000 if micros else 1
    return "".join(
        f"{i},{Decimal(p):.8f},{Decimal(q):.8f},{Decimal(p) * Decimal(q):.8f},"
        f"{(MS + ms) * unit},{side == 'SELL'}{',True' if best_match else ''}\n"
        for i, ms, p, q, side in trades
    )


def binance_agg_trades(trades=TRADES) -> str:
    """aggTrades: id, price, qty, first id, last id, time, is_buyer_maker, best match."""
    return "".join(
        f"{i},{p},{q},{i * 10},{i * 10 + 2},{MS + ms},{str(side == 'SELL').lower()},true\n"
        for i, ms, p, q, side in trades
    )


def tardis_csv(trades=TRADES) -> str:
    """A header CSV in Tardis' names: µs timestamps, the exchange's symbol."""
    lines = ["exchange,symbol,timestamp,local_timestamp,id,side,price,amount"]
    lines += [
        f"binance,BTCUSDT,{(MS + ms) * 1000},{(MS + ms) * 1000 + 7},{i},{side.lower()},{p},{q}"
        for i, ms, p, q, side in trades
    ]
    return "\n".join(lines) + "\n"


def header_csv(trades=TRADES) -> str:
    """Common names in another order, ISO times, semicolons."""
    lines = ["Side;Size;Price;Time;Trade ID"]
    lines += [
        f"{side};{q};{p};{(T0 + timedelta(milliseconds=ms)).isoformat()};{i}"
        for i, ms, p, q, side in trades
    ]
    return "\n".join(lines) + "\n"


LAYOUTS = {
    "ccxt fetch_trades json": ("t.json", ccxt_json),
    "binance trades csv": ("BTCUSDT-trades-2024-01-01.csv", binance_trades),
    "binance trades csv without best match": (
        "f.csv",
        lambda: binance_trades(best_match=False),
    ),
    "binance trades csv in microseconds": ("u.csv", lambda: binance_trades(micros=True)),
    "binance aggTrades csv": ("BTCUSDT-aggTrades-2024-01-01.csv", binance_agg_trades),
    "tardis csv": ("tardis.csv", tardis_csv),
    "header csv": ("h.txt", header_csv),
    "json lines": (
        "l.jsonl",
        lambda: "\n".join(json.dumps(o) for o in json.loads(ccxt_json())) + "\n",
    ),
}


async def load(rt, path: Path, **kw):
    return await import_trades(
        rt.sessions,
        path=path,
        source=kw.pop("source", "file:test"),
        symbol=kw.pop("symbol", "BTC/USDT"),
        **kw,
    )


async def stored(rt, source: str = "file:test") -> list[tuple]:
    found = await rows(
        rt,
        "SELECT trade_id, time, price, amount, side FROM market_trades"
        " WHERE source = $1 ORDER BY time, id",
        source,
    )
    return [tuple(r) for r in found]


def expected(trades=TRADES) -> list[tuple]:
    return [
        (str(i), T0 + timedelta(milliseconds=ms), Decimal(p), Decimal(q), side)
        for i, ms, p, q, side in trades
    ]


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_each_layout_imports_the_same_trades(rt, tmp_path, layout):
    name, render = LAYOUTS[layout]
    summary = await load(rt, write(tmp_path, name, render()))
    assert (summary.rows, summary.inserted, summary.rejected) == (5, 5, 0), summary
    assert (summary.first, summary.last) == (T0, T0 + timedelta(hours=1))
    assert await stored(rt) == expected()


async def test_reimporting_changes_nothing_and_an_overlap_takes_the_files_values(rt, tmp_path):
    path = write(tmp_path, "a.csv", binance_trades())
    await load(rt, path, batch_size=2)  # staged in three batches
    before = await stored(rt)
    again = await load(rt, path)
    assert (again.inserted, again.updated, again.unchanged, again.duplicates) == (0, 0, 5, 0)
    assert await stored(rt) == before
    changed = [
        *TRADES[3:],
        (104, 61_000, "42011", "0.002", "BUY"),
        (106, 3_700_000, "1", "1", "BUY"),
    ]
    overlap = await load(rt, write(tmp_path, "b.csv", binance_trades(changed)))
    # 104 twice in the file: the later row wins, counted as a duplicate
    assert (overlap.inserted, overlap.updated, overlap.unchanged) == (1, 1, 1)
    assert overlap.duplicates == 1
    held = await stored(rt)
    assert len(held) == 6 and held[3][2] == Decimal(42011)


async def test_bad_rows_are_rejected_with_line_and_reason_and_the_rest_imports(rt, tmp_path):
    lines = [line.encode() for line in binance_trades(TRADES * 3).splitlines()]
    lines[1] = lines[1].replace(b"42001", b"42\x00001", 1)  # NUL byte
    lines[2] = lines[2] + b"\xff\xfe"  # not UTF-8
    lines[3] = f"7,0,1,0,{MS},True,True".encode()  # price 0
    lines[4] = f"8,1,-2,0,{MS},True,True".encode()  # negative amount
    lines[5] = f"9,1,{'9' * 40},0,{MS},True,True".encode()  # too big
    lines[6] = f"10,1,1e400,0,{MS},True,True".encode()  # exponent too big
    lines[7] = b"11,1,1,0,tomorrow,True,True"  # no time
    lines[8] = b"12,1,1,0,99999999999999999999,True,True"  # beyond 2200
    lines[9] = f"13,1,1,0,{MS},maybe,True".encode()  # no side
    lines[10] = f"{'1' * 129},1,1,0,{MS},True,True".encode()  # id too long
    lines[11] = b"14,1,1"  # too few fields
    lines[12] = f"15,1.0000000000000000001,1,0,{MS},True,True".encode()  # 19 decimals
    path = write(tmp_path, "bad.csv", b"\n".join(lines) + b"\n")
    summary = await load(rt, path)
    assert (summary.rows, summary.inserted, summary.rejected) == (15, 3, 12), summary
    reasons = {r.line: r.reason for r in summary.rejections}
    assert reasons.pop(3).startswith("not UTF-8 (byte 0xff at ")
    assert reasons == {
        2: "NUL byte",
        4: "price is not positive",
        5: "amount is not positive",
        6: "amount is out of range: more than 20 digits before the point",
        7: "amount is out of range: more than 20 digits before the point",
        8: "timestamp is neither a number nor ISO 8601: 'tomorrow'",
        9: "timestamp is out of range (1970 to 2200): 99999999999999999999",
        10: "is_buyer_maker is true or false: 'maybe'",
        11: "id is longer than 128 characters",
        12: "3 fields, 6 expected",
        13: "price is out of range: more than 18 decimals",
    }, reasons
    assert [r[0] for r in await stored(rt)] == ["101", "104", "105"]


async def test_json_rows_with_hostile_text_are_rejected(rt, tmp_path):
    objects = json.loads(ccxt_json())
    objects[0]["id"] = "1\u00002"
    objects[1]["id"] = "\ud800"
    objects[2]["symbol"] = "ETH/USDT"
    objects[3]["side"] = "\u0661"
    objects[4]["price"] = "NaN"
    text = json.dumps([*objects, 7, {"price": 1}])
    summary = await load(rt, write(tmp_path, "h.json", text))
    assert (summary.rows, summary.inserted, summary.rejected) == (7, 0, 7)
    assert [r.reason for r in summary.rejections] == [
        "id has characters that are not printable: '1\\x002'",
        "id has characters that are not printable: '\\ud800'",
        "symbol 'ETH/USDT' is not BTC/USDT",
        "side is buy or sell: '١'",
        "price is not a number: 'NaN'",
        "not an array or object",
        "no time, amount key",
    ]
    assert await stored(rt) == []


async def test_trades_without_ids_get_ids_that_survive_reimports_and_overlaps(rt, tmp_path):
    lines = [
        "timestamp,price,size",
        f"{MS},100,1",
        f"{MS},100,1",  # the same trade again: a second trade, not a duplicate
        f"{MS + 1},100,1",
        f"{MS},101,1",
    ]
    first = await load(rt, write(tmp_path, "n.csv", "\n".join(lines) + "\n"))
    assert (first.inserted, first.duplicates) == (4, 0)
    micros = MS * 1000
    assert sorted(r[0] for r in await stored(rt)) == sorted(
        [f"{micros}:100:1:1", f"{micros}:100:1:2", f"{micros + 1000}:100:1:1", f"{micros}:101:1:1"]
    )
    again = await load(rt, write(tmp_path, "n.csv", "\n".join(lines) + "\n"))
    assert (again.inserted, again.unchanged) == (0, 4)
    later = ["time,price,amount", f"{MS},100,1", f"{MS},100,1", f"{MS + 2},100,1"]
    overlap = await load(rt, write(tmp_path, "m.csv", "\n".join(later) + "\n"))
    assert (overlap.inserted, overlap.unchanged) == (1, 2)
    assert len(await stored(rt)) == 5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a,b\n1,2\n", "the header names no column for time, price, amount"),
        ("1704067200000,1,2\n", "rows of 3 fields without a header"),
        ("1,2,3,4,5,6\n", "rows of 6 fields without a header"),
        ('[{"price": 1, "amount": 1, "time": 1}, oops]', "not valid JSON at line 1"),
    ],
)
async def test_a_file_in_no_known_layout_imports_nothing(rt, tmp_path, content, message):
    with pytest.raises(ValidationFailed, match=message) as refused:
        await load(rt, write(tmp_path, "x", content))
    assert refused.value.field == "file"
    assert await stored(rt) == []


async def test_the_venue_and_bad_names_are_refused(rt, tmp_path):
    path = write(tmp_path, "a.csv", binance_trades())
    for kw, field in (
        ({"source": "VENUE"}, "source"),
        ({"source": "a b"}, "source"),
        ({"symbol": "BTCUSDT"}, "symbol"),
    ):
        with pytest.raises(ValidationFailed) as refused:
            await load(rt, path, **kw)
        assert refused.value.field == field
    assert await rows(rt, "SELECT 1 FROM market_trades") == []


async def test_the_import_trades_command_end_to_end(rt, tmp_path):
    path = write(tmp_path, "t.csv", binance_trades() + f"9,0,1,0,{MS},True,True\n")
    args = (str(path), "--symbol", "BTC/USDT", "--source", "binance")
    first = _cli(rt, *args, action="import-trades")
    assert first.returncode == 1, first.stderr  # imported, one row rejected
    for line in ("Imported", "as file:binance BTC/USDT trades", "rows read   6",
                 "inserted    5", "rejected    1", "line 6: price is not positive",
                 "range       2024-01-01T00:00:00Z .. 2024-01-01T01:00:00Z"):  # fmt: skip
        assert line in first.stdout, first.stdout
    assert "gaps" not in first.stdout
    again = _cli(rt, *args, action="import-trades")
    assert "inserted    0" in again.stdout and "unchanged   5" in again.stdout, again.stdout
    venue = _cli(rt, str(path), "--symbol", "BTC/USDT", "--source", "VENUE", action="import-trades")
    assert venue.returncode == 2 and "Nothing imported: source" in venue.stderr
