"""Backtests over GraphQL: runBacktest, then backtest(id) polled until DONE; the equity
curve and trades page correctly; typed errors for bad input (nothing stored); another
user's backtest is NOT_FOUND; and the backtestProgress subscription over a real WebSocket
sees progress, then DONE."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from app.asgi import create_app
from app.core.settings import Settings
from tests.backtesting.test_backtests import HOURS, T0, import_candles
from tests.gateway.test_websocket import LiveServer
from tests.support.trading import scalar, trader
from tests.trading.test_trading_ws import _next, _subscribe

RUN = """mutation($input: RunBacktestInput!) { runBacktest(input: $input) {
  __typename
  ... on RunBacktestPayload { backtest { id status candlesTotal } }
  ... on Error { code field message } } }"""
GET = """query($id: ID!, $first: Int!, $after: String) { backtest(id: $id) {
  __typename
  ... on Error { code }
  ... on Backtest { id status reason progress candlesDone candlesTotal market
    settings { path volumeShare latency seed }
    metrics { bars totalReturn sharpe trades feesPaid exposure buyAndHoldReturn maxDrawdown }
    equityCurve(first: $first, after: $after) {
      edges { cursor node { at equity } } pageInfo { hasNextPage endCursor } }
    trades(first: 100) { edges { node { pnl fees } } } } } }"""
STATUS = """query($id: ID!) { backtest(id: $id) { ... on Backtest { status } } }"""
LIST = """query($after: String) { backtests(first: 1, after: $after) {
  edges { node { id } } pageInfo { hasNextPage endCursor } } }"""
PROGRESS = """subscription { backtestProgress(id: "%s") {
  id status candlesDone candlesTotal } }"""


def run_input(**kw: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "symbol": "ETH/USDT",
        "source": "file:test",
        "interval": "1h",
        "start": T0.isoformat(),
        "end": (T0 + timedelta(hours=HOURS)).isoformat(),
        "movingAverage": {"fast": 5, "slow": 20, "fraction": "0.5"},
    }
    values.update(kw)
    return values


async def start(gql, token: str, **kw: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    body = await gql.data(RUN, {"input": run_input(**kw)}, token=token)
    return body["runBacktest"]


async def until_done(gql, token: str, backtest_id: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    for _ in range(150):
        found = (await gql.data(STATUS, {"id": backtest_id}, token=token))["backtest"]
        if found["status"] in ("DONE", "FAILED"):
            return (await gql.data(GET, {"id": backtest_id, "first": 1}, token=token))["backtest"]
        await asyncio.sleep(0.2)
    raise AssertionError("the backtest did not finish")


async def test_run_poll_and_page(gql, rt, tmp_path):
    await import_candles(rt, tmp_path)
    _, token = await trader(gql, rt, "quant@example.com")
    started = await start(gql, token, seed=7, volumeShare="0.2")
    assert started["__typename"] == "RunBacktestPayload", started
    assert started["backtest"]["status"] == "QUEUED"
    backtest_id = started["backtest"]["id"]
    done = await until_done(gql, token, backtest_id)
    assert done["status"] == "DONE" and done["progress"] == "1"
    assert done["candlesDone"] == done["candlesTotal"] == HOURS
    assert done["settings"] == {"path": "ADVERSE_FIRST", "volumeShare": "0.2", "latency": 1,
                                "seed": 7}  # fmt: skip
    assert done["market"]["symbol"] == "ETH/USDT" and done["market"]["takerFee"]
    metrics = done["metrics"]
    assert metrics["bars"] == HOURS and metrics["trades"] == len(done["trades"]["edges"]) > 0
    assert isinstance(metrics["totalReturn"], str) and isinstance(metrics["sharpe"], str)
    # the equity curve, 90 per page: every point once, in time order
    seen, after = [], None
    while True:
        page = (await gql.data(GET, {"id": backtest_id, "first": 90, "after": after}, token=token))[
            "backtest"
        ]["equityCurve"]
        seen += [e["node"]["at"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == HOURS and seen == sorted(seen) and len(set(seen)) == HOURS
    # the viewer's list, newest first, one per page
    second = (await start(gql, token))["backtest"]["id"]
    await until_done(gql, token, second)
    first_page = (await gql.data(LIST, {}, token=token))["backtests"]
    assert [e["node"]["id"] for e in first_page["edges"]] == [second]
    assert first_page["pageInfo"]["hasNextPage"]
    next_page = (await gql.data(LIST, {"after": first_page["pageInfo"]["endCursor"]},
                                token=token))["backtests"]  # fmt: skip
    assert [e["node"]["id"] for e in next_page["edges"]] == [backtest_id]
    assert not next_page["pageInfo"]["hasNextPage"]


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"source": "nope:x"}, "source"),
        ({"interval": "7m"}, "interval"),
        ({"symbol": "DOGE/USDT"}, "from"),
        ({"end": (T0 + timedelta(days=20_000)).isoformat()}, "from"),
        ({"movingAverage": {"fast": 30, "slow": 10, "fraction": "0.5"}}, "fast"),
        (
            {"movingAverage": None, "dollarCostAveraging": {"amount": "-5", "every": 24}},
            "amount",
        ),
        (
            {"movingAverage": None, "dollarCostAveraging": {"amount": "1" + "0" * 29, "every": 24}},
            "amount",
        ),
        ({"movingAverage": None}, "movingAverage"),
        ({"balance": "0"}, "balance"),
    ],
)
async def test_bad_input_is_a_typed_error_and_nothing_is_stored(gql, rt, tmp_path, kw, field):
    await import_candles(rt, tmp_path, n=50)
    _, token = await trader(gql, rt, "quant@example.com")
    refused = await start(gql, token, **kw)
    assert refused["__typename"] == "ValidationFailed", refused
    assert refused["field"] == field
    assert await scalar(rt, "SELECT count(*) FROM backtests") == 0


async def test_nul_bytes_are_refused_before_the_operation(gql, rt, tmp_path):
    await import_candles(rt, tmp_path, n=50)
    _, token = await trader(gql, rt, "quant@example.com")
    body = await gql(RUN, {"input": run_input(symbol="ETH\u0000USDT")}, token=token)
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["field"] == "input.symbol"
    assert await scalar(rt, "SELECT count(*) FROM backtests") == 0


async def test_another_user_gets_not_found(gql, rt, tmp_path):
    await import_candles(rt, tmp_path, n=50)
    _, owner = await trader(gql, rt, "owner@example.com")
    _, other = await trader(gql, rt, "other@example.com")
    backtest_id = (await start(gql, owner))["backtest"]["id"]
    await until_done(gql, owner, backtest_id)
    found = (await gql.data(GET, {"id": backtest_id, "first": 1}, token=other))["backtest"]
    assert found == {"__typename": "NotFound", "code": "NOT_FOUND"}
    assert (await gql.data(LIST, {}, token=other))["backtests"]["edges"] == []
    node = await gql.data('query($id: ID!) { node(id: $id) { id } }', {"id": backtest_id},
                          token=other)  # fmt: skip
    assert node["node"] is None


@pytest.fixture
def live(settings: Settings) -> Iterator[LiveServer]:
    server = LiveServer(create_app(settings))
    server.start()
    yield server
    server.stop()


async def test_the_subscription_sees_progress_then_done(live, live_gql, rt, tmp_path):
    long = 3000
    await import_candles(rt, tmp_path, n=long)
    _, token = await trader(live_gql, rt, "quant@example.com")
    started = await start(live_gql, token, end=(T0 + timedelta(hours=long)).isoformat())
    ws = await _subscribe(live, PROGRESS % started["backtest"]["id"], token)
    try:
        seen = [(await _next(ws))["backtestProgress"]]
        while seen[-1]["status"] not in ("DONE", "FAILED"):
            seen.append((await _next(ws))["backtestProgress"])
    finally:
        await ws.close()
    assert seen[-1]["status"] == "DONE" and seen[-1]["candlesDone"] == long
    assert any(s["status"] in ("QUEUED", "RUNNING") for s in seen[:-1]), seen
    done = [s["candlesDone"] for s in seen]
    assert done == sorted(done)
    assert all(s["id"] == started["backtest"]["id"] for s in seen)
