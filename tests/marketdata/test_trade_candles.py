"""Candles built from a source's imported trades, over GraphQL on real PostgreSQL: equal to
candles computed by hand (ties in time in file order; weeks from Monday, calendar months),
stored candles win over trades; ``marketTradeSeries`` and the ``marketTrades``
connection; hostile arguments get typed errors."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime, timedelta

import pytest

from app.marketdata.importer import import_file
from app.marketdata.trade_importer import import_trades
from tests.gateway.test_input_fuzz import NO_LIMITS
from tests.marketdata.test_marketdata_api import CANDLES
from tests.support import GraphQLClient
from tests.support.partner import client_with

T0 = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday
# the file's rows, out of time order; two trades at 00:00:59.999999 with ids that sort
# the other way as text: the file's order decides the close
ROWS = [
    ("time,id,price,amount,side", None),
    ("{s}.000000,1,100,1,buy", 0),
    ("{s}.000000,2,110,1,sell", 60),
    ("{s}.000000,3,105,2,sell", 10),
    ("{s}.000000,4,95,0.5,buy", 10),
    ("{s}.999999,9,101,1.5,buy", 59),
    ("{s}.999999,10,102,0.5,sell", 59),
    ("{s}.000000,5,90,4,", 185),
    ("{s}.000000,6,120,0.1,buy", 7 * 86400),  # the next week
    ("{s}.000000,7,80,0.2,sell", 31 * 86400 + 5),  # February
]


def trade_file(tmp_path, rows=ROWS):
    lines = []
    for text, seconds in rows:
        if seconds is None:
            lines.append(text)
        else:
            at = T0 + timedelta(seconds=seconds)
            lines.append(text.format(s=at.strftime("%Y-%m-%dT%H:%M:%S")))
    path = tmp_path / "ticks.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


async def imported(rt, tmp_path, symbol="BTC/EUR", source="file:ticks"):
    summary = await import_trades(
        rt.sessions, path=trade_file(tmp_path), source=source, symbol=symbol
    )
    assert (summary.inserted, summary.rejected) == (len(ROWS) - 1, 0), summary
    return summary


def variables(interval="1m", start=T0, end=None, **kw):
    return {
        "symbol": "BTC/EUR",
        "interval": interval,
        "start": start.isoformat(),
        "end": (end or start + timedelta(minutes=5)).isoformat(),
        "source": "file:ticks",
        **kw,
    }


def candle(t, o, h, lo, c, v, q, n):
    return {
        "openTime": t.isoformat(),
        "open": o,
        "high": h,
        "low": lo,
        "close": c,
        "volume": v,
        "quoteVolume": q,
        "trades": n,
    }


async def candles_of(gql, **kw):
    return (await gql.data(CANDLES, variables(**kw)))["candles"]


async def test_candles_from_trades_equal_the_hand_computed_ones(gql, rt, tmp_path):
    await imported(rt, tmp_path)
    minute = timedelta(minutes=1)
    # minute 0: 100 @1, 105 @2 and 95 @0.5 (both at :10), 101 @1.5 then 102 @0.5 (:59.999999)
    # quote volume: 100 + 210 + 47.5 + 151.5 + 51
    assert await candles_of(gql) == [
        candle(T0, "100", "105", "95", "102", "5.5", "560", 5),
        candle(T0 + minute, "110", "110", "110", "110", "1", "110", 1),
        candle(T0 + 3 * minute, "90", "90", "90", "90", "4", "360", 1),
    ]
    assert await candles_of(gql, interval="5m") == [
        candle(T0, "100", "110", "90", "90", "10.5", "1030", 7)
    ]
    # a range starting inside a candle: candles opening in [start, end)
    assert await candles_of(gql, start=T0 + timedelta(seconds=30)) == [
        candle(T0 + minute, "110", "110", "110", "110", "1", "110", 1),
        candle(T0 + 3 * minute, "90", "90", "90", "90", "4", "360", 1),
    ]
    weeks = await candles_of(gql, interval="1w", end=T0 + timedelta(weeks=3))
    assert [(c["openTime"], c["open"], c["close"], c["trades"]) for c in weeks] == [
        (T0.isoformat(), "100", "90", 7),  # weeks from Monday 00:00 UTC
        ((T0 + timedelta(weeks=1)).isoformat(), "120", "120", 1),
    ]
    months = await candles_of(gql, interval="1M", end=datetime(2024, 3, 1, tzinfo=UTC))
    assert [(c["openTime"], c["open"], c["high"], c["low"], c["close"]) for c in months] == [
        (T0.isoformat(), "100", "120", "90", "120"),
        (datetime(2024, 2, 1, tzinfo=UTC).isoformat(), "80", "80", "80", "80"),
    ]


async def test_a_market_of_the_venue_is_shown_at_its_scale(gql, rt, tmp_path):
    await imported(rt, tmp_path, symbol="BTC/USDT")
    [first, *_] = await candles_of(gql, symbol="BTC/USDT")
    assert (first["open"], first["volume"], first["quoteVolume"]) == (
        "100.00",
        "5.5000",
        "560.000000",
    )


async def test_stored_candles_win_over_trades(gql, rt, tmp_path):
    await imported(rt, tmp_path)
    from_trades = await candles_of(gql, interval="1h", end=T0 + timedelta(hours=2))
    assert [c["open"] for c in from_trades] == ["100"]
    hourly = tmp_path / "hourly.csv"
    hourly.write_text(f"{int(T0.timestamp()) * 1000},1,3,0.5,2,7\n")
    await import_file(
        rt.sessions, path=hourly, source="file:ticks", symbol="BTC/EUR", interval="1h"
    )
    held = candle(T0, "1", "3", "0.5", "2", "7", "0", 0)
    assert await candles_of(gql, interval="1h", end=T0 + timedelta(hours=2)) == [held]
    # 1d is merged from the 1h candles held, not built from the trades
    assert await candles_of(gql, interval="1d", end=T0 + timedelta(days=2)) == [held]
    # 1m: no candles held at 1m or finer, so from the trades
    assert [c["open"] for c in await candles_of(gql)] == ["100", "110", "90"]


async def test_a_source_without_trades_or_candles_answers_no_candles(gql, rt, tmp_path):
    await imported(rt, tmp_path)
    assert await candles_of(gql, source="file:other") == []
    assert await candles_of(gql, symbol="ETH/EUR") == []


SERIES = """
query($source: String, $symbol: String) {
  marketTradeSeries(source: $source, symbol: $symbol) { source symbol first last trades }
}"""
TRADES = """
query($source: String!, $symbol: String!, $start: DateTime, $end: DateTime, $first: Int!,
      $after: String) {
  marketTrades(source: $source, symbol: $symbol, start: $start, end: $end, first: $first,
               after: $after) {
    edges { cursor node { tradeId price quantity takerSide at } }
    pageInfo { hasNextPage hasPreviousPage endCursor }
  }
}"""


async def test_trade_series_list_what_is_held(gql, rt, tmp_path):
    await imported(rt, tmp_path)
    await imported(rt, tmp_path, source="file:other", symbol="ETH/EUR")
    assert (await gql.data(SERIES, {"symbol": "BTC/EUR"}))["marketTradeSeries"] == [
        {
            "source": "file:ticks",
            "symbol": "BTC/EUR",
            "first": T0.isoformat(),
            "last": (T0 + timedelta(days=31, seconds=5)).isoformat(),
            "trades": 9,
        }
    ]
    every = (await gql.data(SERIES, {}))["marketTradeSeries"]
    assert [(s["source"], s["symbol"]) for s in every] == [
        ("file:other", "ETH/EUR"),
        ("file:ticks", "BTC/EUR"),
    ]
    assert (await gql.data(SERIES, {"source": "VENUE"}))["marketTradeSeries"] == []


async def test_trades_are_paged_in_time_order(gql, rt, tmp_path):
    await imported(rt, tmp_path)
    seen, after = [], None
    while True:
        page = (
            await gql.data(
                TRADES,
                {"source": "ticks", "symbol": "btc/eur", "first": 2, "after": after},
            )
        )["marketTrades"]
        seen += [e["node"] for e in page["edges"]]
        assert page["pageInfo"]["hasPreviousPage"] == (after is not None)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert [t["tradeId"] for t in seen] == ["1", "3", "4", "9", "10", "2", "5", "6", "7"]
    assert seen[0] == {
        "tradeId": "1",
        "price": "100",
        "quantity": "1",
        "takerSide": "BUY",
        "at": T0.isoformat(),
    }
    assert seen[6]["takerSide"] is None
    ranged = await gql.data(
        TRADES,
        {
            "source": "ticks",
            "symbol": "BTC/EUR",
            "first": 10,
            "start": (T0 + timedelta(seconds=10)).isoformat(),
            "end": (T0 + timedelta(seconds=60)).isoformat(),
        },
    )
    assert [e["node"]["tradeId"] for e in ranged["marketTrades"]["edges"]] == ["3", "4", "9", "10"]


def _encoded(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


HOSTILE_TEXT = ["", " ", "VENUE", "venue", "file:", "x" * 5000, "BTC/EUR\u0000", "١/٢", "é", "%"]


def _fuzzed(seed: int, n: int) -> list[dict]:
    """Arguments drawn at random from hostile and plausible values."""
    draw = random.Random(seed)
    texts = [*HOSTILE_TEXT, "ticks", "file:ticks", "BTC/EUR", "btc/eur", "exchange:x"]
    cursors = [
        None,
        "not a cursor",
        _encoded("market_trades:1"),
        _encoded("market_trades:1:2:3"),
        _encoded(f"market_trades:{2**63}:1"),
        _encoded(f"market_trades:{10**18}:1"),  # a time after year 9999
        _encoded("market_trades:-99999999999999:1"),
        _encoded("orders:5"),
        _encoded("market_trades:x:1"),
    ]
    times = [None, "0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59+00:00", T0.isoformat()]
    return [
        {
            "source": draw.choice(texts),
            "symbol": draw.choice(texts),
            "interval": draw.choice(["1m", "1M", "7m", "", "1w", "1d"]),
            "first": draw.choice([0, 1, 100, 101, -1, 2**31 - 1]),
            "after": draw.choice(cursors),
            "start": draw.choice(times[1:]),
            "end": draw.choice(times),
        }
        for _ in range(n)
    ]


TYPED = {"VALIDATION_FAILED", "UNKNOWN_MARKET", "BAD_USER_INPUT"}


@pytest.mark.parametrize("seed", range(3))
async def test_fuzzed_arguments_get_typed_errors(rt, tmp_path, seed):
    await imported(rt, tmp_path)
    async with client_with(rt, **NO_LIMITS) as http:
        gql = GraphQLClient(http)
        for arguments in _fuzzed(seed, 40):
            for document, wanted in (
                (TRADES, ("source", "symbol", "start", "end", "first", "after")),
                (CANDLES, ("source", "symbol", "interval", "start", "end")),
                (SERIES, ("source", "symbol")),
            ):
                answer = await gql(document, {k: arguments[k] for k in wanted})
                for error in answer.get("errors") or ():
                    code = (error.get("extensions") or {}).get("code")
                    assert code in TYPED, (arguments, answer)
                if "errors" not in answer:
                    assert answer["data"] is not None


async def test_cursors_of_another_list_or_malformed_are_refused(gql, rt, tmp_path):
    await imported(rt, tmp_path)
    for after, message in (
        (_encoded("orders:5"), "The cursor belongs to another list"),
        (_encoded("market_trades:5"), "Invalid cursor"),
        (_encoded(f"market_trades:{10**18}:1"), "Invalid cursor"),
        ("%%%", "Invalid cursor"),
    ):
        answer = await gql(
            TRADES, {"source": "ticks", "symbol": "BTC/EUR", "first": 1, "after": after}
        )
        [error] = answer["errors"]
        assert error["extensions"]["code"] == "VALIDATION_FAILED", answer
        assert (error["extensions"]["field"], error["message"]) == ("after", message)
    for kw, field in (
        ({"source": "VENUE"}, "source"),
        ({"first": 101}, "first"),
        ({"end": T0.isoformat(), "start": T0.isoformat()}, "end"),
        ({"symbol": "BTCEUR"}, "symbol"),
    ):
        answer = await gql(TRADES, {"source": "ticks", "symbol": "BTC/EUR", "first": 1, **kw})
        [error] = answer["errors"]
        assert error["extensions"]["field"] == field, answer
