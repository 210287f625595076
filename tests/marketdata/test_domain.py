"""Market data rules, pure: intervals, sources, parsing of each file layout, validation,
gaps and aggregation (hypothesis for the last two)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.errors import ValidationFailed
from app.marketdata.domain import layouts
from app.marketdata.domain.candles import (
    INTERVALS,
    Candle,
    Gap,
    aggregate,
    gaps,
    parse_source,
    parse_symbol,
    problems,
)

M1, M5, M15, H1, W1 = (INTERVALS[n] for n in ("1m", "5m", "15m", "1h", "1w"))
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def candle(minute: int = 0, o="100", h="110", lo="90", c="105", v="1.5", **kw) -> Candle:
    return Candle(T0 + timedelta(minutes=minute), *(Decimal(x) for x in (o, h, lo, c, v)), **kw)


def test_sources_and_symbols():
    assert parse_source("VENUE") == "VENUE"
    assert parse_source("binance") == "file:binance"
    assert parse_source("File:Binance") == "file:binance"
    assert parse_source("exchange:kraken") == "exchange:kraken"
    assert parse_symbol(" btc/usdt ") == "BTC/USDT"
    for bad in ("", "venue:x", "file:", "a b", "x" * 41, "file:é"):
        with pytest.raises(ValidationFailed) as refused:
            parse_source(bad)
        assert refused.value.field == "source"
    for bad in ("BTCUSDT", "BTC/", "BTC/USDT/X", "BTC/ＵSDT"):
        with pytest.raises(ValidationFailed):
            parse_symbol(bad)


def test_interval_grids():
    assert M1.divides(H1) and M5.divides(M15) and M15.divides(INTERVALS["30m"])
    assert not INTERVALS["3m"].divides(M5)
    assert H1.divides(W1) and not W1.divides(INTERVALS["1d"])
    monday = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday
    assert W1.floor(monday + timedelta(days=3)) == monday
    assert W1.is_aligned(monday) and not W1.is_aligned(monday + timedelta(days=1))
    assert H1.ceil(T0 + timedelta(minutes=1)) == T0 + timedelta(hours=1)
    assert H1.ceil(T0) == T0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1704067200", T0),
        ("1704067200000", T0),
        ("1704067200000000", T0),
        ("1704067200000000000", T0),
        (Decimal(1704067200000), T0),
        ("2024-01-01T00:00:00Z", T0),
        ("2024-01-01 00:00:00", T0),
        ("2024-01-01T01:00:00+01:00", T0),
        ("1704067200.0", T0),
    ],
)
def test_timestamps_in_each_unit(value, expected):
    assert layouts.parse_time(value) == expected


@pytest.mark.parametrize(
    "value", ["yesterday", "-1", "1" * 30, "99999999999999999999", "2300-01-01", "", None, True]
)
def test_bad_timestamps_are_rejected(value):
    with pytest.raises(layouts.Rejected):
        layouts.parse_time(value)


def test_numbers():
    assert layouts.parse_decimal("1e-05", "v") == Decimal("0.00001")
    assert layouts.parse_decimal(" 42.50 ", "v") == Decimal("42.5")
    assert layouts.parse_decimal(Decimal("7"), "v") == 7
    for bad in ("NaN", "Infinity", "١٢", "１", "0x10", "1,5", "9" * 21, "1e30", "1e-19",
                "0." + "1" * 19, "1" * 300, True, None, float("nan")):  # fmt: skip
        with pytest.raises(layouts.Rejected):
            layouts.parse_decimal(bad, "v")


def test_headers_in_common_names():
    assert layouts.from_header(
        ["Date", "Open", "High", "Low", "Close", "Volume"], symbol="BTC/USDT"
    ) == layouts.Columns(0, 1, 2, 3, 4, 5)
    cdd = "unix,date,symbol,open,high,low,close,Volume BTC,Volume USDT,tradecount".split(",")
    assert layouts.from_header(cdd, symbol="BTC/USDT") == layouts.Columns(
        0, 3, 4, 5, 6, 7, quote_volume=8, trades=9
    )
    binance = (
        "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
        "taker_buy_volume,taker_buy_quote_volume,ignore"
    ).split(",")
    assert layouts.from_header(binance, symbol="BTC/USDT") == layouts.BINANCE_KLINE
    assert layouts.from_header(["close", "volume", "ts", "low", "high", "open"], symbol="A/B") == (
        layouts.Columns(2, 5, 4, 3, 0, 1)
    )
    with pytest.raises(layouts.UnknownLayout, match="volume"):
        layouts.from_header(["time", "open", "high", "low", "close"], symbol="A/B")
    assert layouts.is_header(["timestamp", "open"]) and not layouts.is_header(["1704067200000"])
    assert layouts.positional(6) == layouts.CCXT and layouts.positional(12) == layouts.BINANCE_KLINE


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (["1704067200000", "100", "90", "110", "95", "1"], "high is below low"),
        (["1704067200000", "100", "105", "90", "110", "1"], "high is below open or close"),
        (["1704067200000", "100", "110", "101", "105", "1"], "low is above open or close"),
        (["1704067200000", "100", "110", "90", "105", "-1"], "volume is negative"),
        (["1704067200000", "0", "110", "0", "105", "1"], "open is not positive"),
        (["1704067230000", "100", "110", "90", "105", "1"], "is not on the 1m grid"),
        (["1704067200000", "100", "110", "90", "105"], "5 fields, 6 expected"),
        (["1704067200000", "100", "110", "90", "x", "1"], "close is not a number"),
    ],
)
def test_bad_rows_are_rejected_with_a_reason(fields, reason):
    with pytest.raises(layouts.Rejected, match=reason):
        layouts.candle(fields, layouts.CCXT, M1)


def test_a_row_of_each_layout():
    ccxt = [Decimal(1704067200000), Decimal(100), Decimal(110), Decimal(90), Decimal(105), 2]
    assert layouts.candle(ccxt, layouts.CCXT, M1) == candle(v="2")
    obj = {"time": "2024-01-01T00:00:00Z", "o": "100", "h": "110", "l": "90", "c": "105",
           "v": "1.5", "trades": "7"}  # fmt: skip
    found = layouts.candle(obj, layouts.from_object_keys(list(obj)), M1)
    assert found == candle(trades=7)


times = st.lists(st.integers(0, 500), min_size=1, unique=True).map(sorted)


@given(times)
def test_gaps_account_for_every_missing_candle(minutes):
    held = [T0 + timedelta(minutes=m) for m in minutes]
    found = list(gaps(held, M1))
    assert sum(g.missing for g in found) == minutes[-1] - minutes[0] + 1 - len(minutes)
    for gap in found:
        assert gap.start - M1.step in held and gap.end in held
        assert gap.end - gap.start == gap.missing * M1.step
    assert list(gaps([T0, T0 + 3 * M1.step], M1)) == [Gap(T0 + M1.step, T0 + 3 * M1.step, 2)]


prices = st.decimals(min_value=1, max_value=10**6, places=2)


@st.composite
def minute_candles(draw) -> list[Candle]:
    result = []
    for minute in draw(times):
        o, c, v = (
            draw(prices),
            draw(prices),
            draw(st.decimals(min_value=0, max_value=10**6, places=4)),
        )
        h = max(o, c) + draw(prices) - 1
        lo = min(o, c) / 2
        result.append(Candle(T0 + timedelta(minutes=minute), o, h, lo, c, v))
    return result


@given(minute_candles())
def test_aggregation_keeps_the_extremes_and_the_volume(found):
    for c in found:
        assert problems(c, M1) == []
    hourly = list(aggregate(found, H1))
    assert sum(c.volume for c in hourly) == sum(c.volume for c in found)
    assert max(c.high for c in hourly) == max(c.high for c in found)
    assert min(c.low for c in hourly) == min(c.low for c in found)
    assert hourly[0].open == found[0].open and hourly[-1].close == found[-1].close
    assert all(problems(c, H1) == [] for c in hourly)
    assert list(aggregate(aggregate(found, M5), H1)) == hourly
    assert list(aggregate(aggregate(found, M15), H1)) == hourly
