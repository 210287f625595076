"""Risk limits in a backtest over GraphQL: ``runBacktest`` takes ``riskLimits`` as
``setRiskLimit`` takes them; the backtest shows them (``riskLimits``) and pages through
its refusals and transitions (``riskEvents``), equal to the run's own; a limit that cannot
be set is a typed error and nothing is stored."""

from __future__ import annotations

from typing import Any

import pytest

from app.backtesting import backtests
from app.backtesting.domain import specs
from app.risk.domain.limits import LimitKind
from app.risk.domain.states import Scope
from tests.backtesting.test_backtesting_api import start, until_done
from tests.backtesting.test_backtests import import_candles, request
from tests.support.trading import scalar, trader

EVENTS = """query($id: ID!, $after: String) { backtest(id: $id) {
  ... on Backtest { status
    riskLimits { scope kind threshold action warnRatio cooldownSeconds }
    riskEvents(first: 4, after: $after) {
      edges { node { at candle action state limit value clientOrderId reason } }
      pageInfo { hasNextPage endCursor } } } } }"""
LIMITS = [
    {"scope": {"scope": "USER"}, "kind": "TRADES_PER_DAY", "threshold": "1"},
    {"scope": {"scope": "USER"}, "kind": "DRAWDOWN", "threshold": "50",
     "action": "COOL_DOWN", "cooldownSeconds": 7200},
]  # fmt: skip


def expected(event: Any) -> dict[str, Any]:
    return {
        "at": event.at.isoformat(),
        "candle": event.candle,
        "action": event.action,
        "state": event.state.value,
        "limit": None if event.limit_kind is None else event.limit_kind.value,
        "value": None if event.value is None else format(event.value.normalize(), "f"),
        "clientOrderId": event.client_order_id,
        "reason": event.reason,
    }


async def test_a_backtest_runs_under_the_limits_it_was_given(gql, rt, tmp_path):
    await import_candles(rt, tmp_path)
    _, token = await trader(gql, rt, "quant@example.com")
    started = await start(gql, token, riskLimits=LIMITS)
    assert started["__typename"] == "RunBacktestPayload", started
    backtest_id = started["backtest"]["id"]
    assert (await until_done(gql, token, backtest_id))["status"] == "DONE"
    limits = specs.backtest_limits(
        [
            specs.LimitSpec(Scope.USER, LimitKind.TRADES_PER_DAY, specs.Decimal(1)),
            specs.LimitSpec(Scope.USER, LimitKind.DRAWDOWN, specs.Decimal(50),
                            specs.Action.COOL_DOWN, cooldown_seconds=7200),
        ]
    )  # fmt: skip
    async with rt.reads() as session:
        inputs = await backtests.load_inputs(
            session, await backtests.check_request(session, request(limits=limits))
        )
    run = specs.run(inputs)
    assert any(e.action == "REFUSED" for e in run.risk_events)
    seen, after = [], None
    while True:
        found = (await gql.data(EVENTS, {"id": backtest_id, "after": after}, token=token))[
            "backtest"
        ]
        page = found["riskEvents"]
        seen += [e["node"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == [expected(e) for e in run.risk_events]
    assert found["riskLimits"] == [
        {"scope": "USER", "kind": "TRADES_PER_DAY", "threshold": "1", "action": "BLOCK_ENTRIES",
         "warnRatio": "0.8", "cooldownSeconds": None},
        {"scope": "USER", "kind": "DRAWDOWN", "threshold": "50", "action": "COOL_DOWN",
         "warnRatio": "0.8", "cooldownSeconds": 7200},
    ]  # fmt: skip
    refused = {e["clientOrderId"] for e in seen if e["action"] == "REFUSED"}
    outcomes = {d.client_order_id: d.outcome for d in run.decisions}
    assert refused and all(outcomes[c].startswith("RISK_") for c in refused)


@pytest.mark.parametrize(
    ("limit", "field"),
    [
        ({"scope": {"scope": "FOLLOW", "followId": "Rm9sbG93OjE="}, "kind": "DAILY_LOSS",
          "threshold": "10"}, "scope"),
        ({"scope": {"scope": "USER"}, "kind": "ORDER_NOTIONAL", "threshold": "-1"},
         "threshold"),
        ({"scope": {"scope": "USER"}, "kind": "DAILY_LOSS", "threshold": "10",
          "action": "COOL_DOWN"}, "cooldownSeconds"),
        ({"scope": {"scope": "MARKET"}, "kind": "TRADES_PER_DAY", "threshold": "3"}, "scope"),
    ],
)  # fmt: skip
async def test_a_limit_that_cannot_be_set_is_refused_and_nothing_stored(
    gql, rt, tmp_path, limit, field
):
    await import_candles(rt, tmp_path, n=50)
    _, token = await trader(gql, rt, "quant@example.com")
    refused = await start(gql, token, riskLimits=[limit])
    assert refused["__typename"] == "InvalidRiskLimit", refused
    assert refused["code"] == "INVALID_RISK_LIMIT" and refused["field"] == field
    assert await scalar(rt, "SELECT count(*) FROM backtests") == 0


async def test_two_limits_of_one_kind_and_scope_are_refused(gql, rt, tmp_path):
    await import_candles(rt, tmp_path, n=50)
    _, token = await trader(gql, rt, "quant@example.com")
    twice = [{"scope": {"scope": "USER"}, "kind": "DRAWDOWN", "threshold": "10"}] * 2
    refused = await start(gql, token, riskLimits=twice)
    assert (refused["__typename"], refused["field"]) == ("InvalidRiskLimit", "kind")
