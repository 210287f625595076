"""A backtest's decisions over GraphQL: ``Backtest.decisions(first, after)`` pages through
every intent of the run (what, why, the venue's answer) in the order made, equal to the
run's own decisions; a cursor of another list is refused; and the statements a page of
backtests with their decisions, equity curves and trades costs do not grow with the number
of backtests (each connection's pages load in one statement)."""

from __future__ import annotations

from typing import Any

from app.backtesting import backtests
from app.backtesting.domain import specs
from tests.backtesting.test_backtesting_api import start, until_done
from tests.backtesting.test_backtests import finished, import_candles, request
from tests.support.trading import trader

DECISIONS = """query($id: ID!, $first: Int!, $after: String) { backtest(id: $id) {
  ... on Backtest { attempts
    decisions(first: $first, after: $after) {
      edges { cursor node { at candle action clientOrderId side type quantity price reason
                            outcome } }
      pageInfo { hasNextPage hasPreviousPage endCursor } }
    equityCurve(first: 1) { pageInfo { endCursor } } } } }"""
PAGE = """query($n: Int!) { backtests(first: $n) { edges { node { id
  decisions(first: 3) { edges { node { reason } } pageInfo { hasNextPage } }
  equityCurve(first: 2) { edges { node { equity } } }
  trades(first: 2) { edges { node { pnl } } }
  riskLimits { kind } riskEvents(first: 2) { edges { node { reason } } } } } } }"""


def expected(decision: Any) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        return None if value is None else format(value.normalize(), "f")

    return {
        "at": decision.at.isoformat(),
        "candle": decision.candle,
        "action": decision.action,
        "clientOrderId": decision.client_order_id,
        "side": None if decision.side is None else decision.side.value,
        "type": None if decision.type is None else decision.type.value,
        "quantity": plain(decision.quantity),
        "price": plain(decision.price),
        "reason": decision.reason,
        "outcome": decision.outcome,
    }


async def test_decisions_page_through_every_intent_of_the_run(gql, rt, tmp_path):
    await import_candles(rt, tmp_path)
    _, token = await trader(gql, rt, "quant@example.com")
    backtest_id = (await start(gql, token))["backtest"]["id"]
    assert (await until_done(gql, token, backtest_id))["status"] == "DONE"
    async with rt.reads() as session:
        inputs = await backtests.load_inputs(
            session, await backtests.check_request(session, request())
        )
    run = specs.run(inputs)
    assert len(run.decisions) > 10
    seen, after, pages = [], None, 0
    while True:
        variables = {"id": backtest_id, "first": 5, "after": after}
        found = (await gql.data(DECISIONS, variables, token=token))["backtest"]
        page = found["decisions"]
        assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
        seen += [e["node"] for e in page["edges"]]
        pages += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert found["attempts"] == 1
    assert pages == -(-len(run.decisions) // 5)
    assert seen == [expected(d) for d in run.decisions]
    assert {d["action"] for d in seen} == {"SUBMIT"} and {d["outcome"] for d in seen} == {"OK"}
    # a cursor of the equity curve is not one of the decisions'
    other = found["equityCurve"]["pageInfo"]["endCursor"]
    body = await gql(DECISIONS, {"id": backtest_id, "first": 5, "after": other}, token=token)
    assert body["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED"
    assert body["errors"][0]["message"] == "The cursor belongs to another list"


async def test_a_page_of_backtests_costs_the_same_statements_for_2_or_6(
    gql, rt, tmp_path, sql_statements
):
    await import_candles(rt, tmp_path)
    uid, token = await trader(gql, rt, "quant@example.com")
    for seed in range(6):
        settings = specs.simulation_settings(seed=seed)
        row = await backtests.start_backtest(rt, user_id=uid, request=request(settings=settings))
        assert (await finished(rt, row.id)).status == "DONE"
    counts = {}
    for n in (2, 6):
        sql_statements.reset()
        edges = (await gql.data(PAGE, {"n": n}, token=token))["backtests"]["edges"]
        assert len(edges) == n
        assert all(len(e["node"]["decisions"]["edges"]) == 3 for e in edges)
        assert all(e["node"]["decisions"]["pageInfo"]["hasNextPage"] for e in edges)
        assert all(len(e["node"]["equityCurve"]["edges"]) == 2 for e in edges)
        assert all(len(e["node"]["trades"]["edges"]) == 2 for e in edges)
        counts[n] = sql_statements.count
    assert counts[2] == counts[6], counts
