"""Monthly (``1M``) candles in the store, on real PostgreSQL: an end-labelled file imported
(the layout pandas writes), months read exact and merged from days over GraphQL, the
range limit in months, gaps across months, ranges longer than one page, the command."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from app.marketdata import reads
from app.marketdata.domain.candles import INTERVALS
from app.marketdata.importer import import_file
from tests.marketdata.test_marketdata_api import CANDLES, SOURCES, _cli

MONTH = INTERVALS["1M"]


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def month_end(opened: datetime) -> str:
    return (MONTH.next(opened) - timedelta(days=1)).date().isoformat()


def monthly_csv(tmp_path, months: list[datetime], name: str = "m.csv"):
    """pandas' ``to_csv`` of a monthly frame: an unnamed index of month-end dates."""
    lines = [",Open,High,Low,Close,Volume"]
    for n, opened in enumerate(months):
        lines.append(f"{month_end(opened)},{100 + n},{110 + n},{90 + n},{105 + n},{n}.5")
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def months_from(first: datetime, n: int, skip: tuple[int, ...] = ()) -> list[datetime]:
    return [MONTH.shift(first, i) for i in range(n) if i not in skip]


async def load_monthly(rt, path, **kw):
    return await import_file(
        rt.sessions,
        path=path,
        source="file:monthly",
        symbol="BTC/USD",
        interval="1M",
        time_label=kw.pop("time_label", "end"),
        **kw,
    )


async def test_an_end_labelled_monthly_file_imports_once(rt, tmp_path):
    path = monthly_csv(tmp_path, months_from(at(2023, 11, 1), 6, skip=(2, 3)))
    summary = await load_monthly(rt, path)
    assert (summary.rows, summary.inserted, summary.rejected) == (4, 4, 0), summary
    assert (summary.first, summary.last) == (at(2023, 11, 1), at(2024, 4, 1))
    assert [(g.start, g.end, g.missing) for g in summary.gaps] == [
        (at(2024, 1, 1), at(2024, 3, 1), 2)
    ]
    again = await load_monthly(rt, path)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 4)
    opened = await load_monthly(rt, path, time_label="open")  # read as open times: refused
    assert opened.rejected == 4 and "not on the 1M grid" in opened.rejections[0].reason


def variables(**kw):
    return {
        "symbol": "BTC/USD",
        "interval": "1M",
        "start": "2023-11-15T00:00:00+00:00",
        "end": "2024-03-01T00:00:00+00:00",
        "source": "file:monthly",
        **kw,
    }


async def test_monthly_candles_over_graphql(gql, rt, tmp_path):
    await load_monthly(rt, monthly_csv(tmp_path, months_from(at(2023, 11, 1), 6)))
    found = (await gql.data(CANDLES, variables()))["candles"]
    assert [(c["openTime"], c["open"], c["close"]) for c in found] == [
        ("2023-12-01T00:00:00+00:00", "101", "106"),
        ("2024-01-01T00:00:00+00:00", "102", "107"),
        ("2024-02-01T00:00:00+00:00", "103", "108"),
    ]
    [series] = (await gql.data(SOURCES, {"symbol": "BTC/USD"}))["marketDataSources"]
    assert (series["interval"], series["candles"], series["missing"]) == ("1M", 6, 0)


async def test_the_range_limit_counts_months(gql, rt, tmp_path):
    await load_monthly(rt, monthly_csv(tmp_path, months_from(at(2023, 11, 1), 2)))
    longest = variables(start="1970-01-01T00:00:00+00:00", end="2053-05-01T00:00:00+00:00")
    assert len((await gql.data(CANDLES, longest))["candles"]) == 2  # 1000 months: allowed
    answer = await gql(CANDLES, {**longest, "end": "2053-05-01T00:00:01+00:00"})
    [error] = answer["errors"]
    assert error["extensions"]["code"] == "VALIDATION_FAILED", answer
    assert error["message"] == "At most 1000 candles per query"


async def test_months_merged_from_days(gql, rt, tmp_path):
    """Days from 2024-01-30 to 2024-03-02 (the leap day among them) as three months."""
    first = at(2024, 1, 30)
    lines = [
        f"{(first + timedelta(days=n)).date()},{100 + n},{200 + n},{50 + n},{101 + n},1"
        for n in range(33)
    ]
    path = tmp_path / "days.csv"
    path.write_text("date,open,high,low,close,volume\n" + "\n".join(lines) + "\n")
    await import_file(rt.sessions, path=path, source="file:daily", symbol="BTC/USD", interval="1d")
    asked = variables(source="file:daily", start="2024-01-01T00:00:00Z", end="2024-04-01T00:00:00Z")
    found = (await gql.data(CANDLES, asked))["candles"]
    assert [
        (c["openTime"], c["open"], c["high"], c["low"], c["close"], c["volume"]) for c in found
    ] == [
        ("2024-01-01T00:00:00+00:00", "100", "201", "50", "102", "2.00"),
        ("2024-02-01T00:00:00+00:00", "102", "230", "52", "131", "29.00"),
        ("2024-03-01T00:00:00+00:00", "131", "232", "81", "133", "2.00"),
    ]  # at BTC/USD's scale: tick 1, lot 0.01


async def test_gaps_across_months_in_the_store(gql, rt, tmp_path):
    held = months_from(at(2023, 10, 1), 18, skip=(2, 3, 4, 10))  # Dec..Feb, Aug
    await load_monthly(rt, monthly_csv(tmp_path, held))
    [series] = (await gql.data(SOURCES, {"symbol": "BTC/USD"}))["marketDataSources"]
    assert series == {
        "source": "file:monthly",
        "symbol": "BTC/USD",
        "interval": "1M",
        "first": "2023-10-01T00:00:00+00:00",
        "last": "2025-03-01T00:00:00+00:00",
        "candles": 14,
        "missing": 4,
        "gapCount": 2,
        "gaps": [
            {"start": "2023-12-01T00:00:00+00:00", "end": "2024-03-01T00:00:00+00:00",
             "missing": 3},
            {"start": "2024-08-01T00:00:00+00:00", "end": "2024-09-01T00:00:00+00:00",
             "missing": 1},
        ],
    }  # fmt: skip


async def test_streaming_more_months_than_one_page(rt, tmp_path):
    months = months_from(at(1970, 1, 1), 1100)
    await load_monthly(rt, monthly_csv(tmp_path, months))
    async with rt.sessions() as session:
        found = [
            c.open_time
            async for c in reads.stream_candles(
                session, source="file:monthly", symbol="BTC/USD", interval="1M",
                start=at(1969, 12, 15), end=at(2100, 1, 1),
            )
        ]  # fmt: skip
    assert found == months


async def test_the_import_command_reads_end_labels(rt, tmp_path):
    path = monthly_csv(tmp_path, months_from(at(2012, 1, 1), 3))
    args = (str(path), "--symbol", "BTC/USD", "--interval", "1M", "--source", "monthly")
    done = _cli(rt, *args, "--time-label", "end")
    assert done.returncode == 0, done.stderr
    assert "inserted    3" in done.stdout
    assert "range       2012-01-01T00:00:00Z .. 2012-03-01T00:00:00Z" in done.stdout
    refused = _cli(rt, *args)  # the default: times are open times
    assert refused.returncode == 1 and "rejected    3" in refused.stdout, refused.stdout
    async with rt.sessions() as session:
        [first, *_] = await reads.candles(
            session, source="file:monthly", symbol="BTC/USD", interval="1M",
            start=at(2012, 1, 1), end=at(2012, 2, 1),
        )  # fmt: skip
    assert (first.open, first.volume) == (Decimal(100), Decimal("0.5"))
