"""The risk engine over GraphQL: users set, read and remove their limits, reset with
two-factor; admins set a market's and the platform's (audited); riskCheck names the
binding limit; placeOrder answers the typed errors; bad input changes nothing."""

from __future__ import annotations

import pytest

from app.risk.domain.states import RiskState, Scope, ScopeRef
from db.raw import driver
from tests.risk.support import force_state
from tests.support.trading import BTC, scalar, trader
from tests.support.withdrawing import admin_token, make_withdrawer

SET = """
mutation($input: SetRiskLimitInput!) {
  setRiskLimit(input: $input) {
    __typename
    ... on RiskLimitPayload { limit { id scope kind threshold unit action warnRatio
                                      cooldownSeconds requiresTwoFactor market { symbol } } }
    ... on Error { code message field }
  }
}
"""
REMOVE = """
mutation($id: ID!) { removeRiskLimit(id: $id) {
  __typename ... on RiskLimitRemovedPayload { removedId } ... on Error { code field } } }
"""
RESET = """
mutation($scope: RiskScopeInput!, $code: String) { resetRisk(scope: $scope, totpCode: $code) {
  __typename ... on RiskStatePayload { scope state reason } ... on Error { code message field } } }
"""
SET_STATE = """
mutation($scope: RiskScopeInput!, $state: RiskState!) {
  setRiskState(scope: $scope, state: $state, reason: "maintenance") {
    __typename ... on RiskStatePayload { scope state reason market { symbol } }
    ... on Error { code } } }
"""
STATUS = """
{ me { riskStatus { state scopes { scope state reason cooldownUntil market { symbol }
  limits { value ratio warning reached limit { kind threshold } }
  transitions { fromState toState reason byRiskEngine } } } } }
"""
CHECK = """
query($input: PlaceOrderInput!) { riskCheck(input: $input) {
  __typename
  ... on RiskCheck { allowed entry notionalUsd
    binding { scope state code message value limit { kind threshold } }
    warnings { value limit { kind } } }
  ... on Error { code field } } }
"""
PLACE = """
mutation($input: PlaceOrderInput!) { placeOrder(input: $input) {
  __typename ... on OrderPayload { order { status } } ... on Error { code message field } } }
"""


def order(side: str = "BUY", quantity: str = "0.1", price: str = "100") -> dict:
    return {"symbol": BTC, "side": side, "type": "LIMIT", "quantity": quantity, "price": price}


def limit_input(kind: str, threshold: str, scope: str = "USER", **more) -> dict:
    return {"input": {"scope": {"scope": scope, **more.pop("where", {})}, "kind": kind,
                      "threshold": threshold, **more}}  # fmt: skip


async def test_a_user_sets_reads_and_removes_a_limit(gql, rt, engines):
    uid, token = await trader(gql, rt, "ann@example.com", USDT="1000")
    got = (await gql.data(SET, limit_input("TRADES_PER_DAY", "5"), token=token))["setRiskLimit"]
    assert got["__typename"] == "RiskLimitPayload"
    assert got["limit"] | {"id": None} == {
        "id": None,
        "scope": "USER",
        "kind": "TRADES_PER_DAY",
        "threshold": "5",
        "unit": "ORDERS",
        "action": "BLOCK_ENTRIES",
        "warnRatio": "0.8",
        "cooldownSeconds": None,
        "requiresTwoFactor": True,
        "market": None,
    }
    for price in ("99", "98", "97", "96"):
        placed = await gql.data(PLACE, {"input": order(price=price)}, token=token)
        assert placed["placeOrder"]["order"]["status"] == "OPEN"
    status = (await gql.data(STATUS, token=token))["me"]["riskStatus"]
    assert status["state"] == "ACTIVE"
    (user,) = [s for s in status["scopes"] if s["scope"] == "USER"]
    assert user["limits"] == [
        {
            "value": "4",
            "ratio": "0.8",
            "warning": True,
            "reached": False,
            "limit": {"kind": "TRADES_PER_DAY", "threshold": "5"},
        }
    ]
    check = (await gql.data(CHECK, {"input": order(price="95")}, token=token))["riskCheck"]
    assert check == {
        "__typename": "RiskCheck",
        "allowed": True,
        "entry": True,
        "notionalUsd": "9.5",
        "binding": None,
        "warnings": [{"value": "5", "limit": {"kind": "TRADES_PER_DAY"}}],
    }
    await gql.data(PLACE, {"input": order(price="95")}, token=token)
    refused = (await gql.data(PLACE, {"input": order(price="94")}, token=token))["placeOrder"]
    assert refused["__typename"] == "RiskLimitReached"
    assert (refused["code"], refused["field"]) == ("RISK_LIMIT_REACHED", "quantity")
    check = (await gql.data(CHECK, {"input": order(price="94")}, token=token))["riskCheck"]
    assert check["allowed"] is False
    assert check["binding"] | {"message": None} == {
        "scope": "USER",
        "state": None,
        "code": "RISK_LIMIT_REACHED",
        "message": None,
        "value": "6",
        "limit": {"kind": "TRADES_PER_DAY", "threshold": "5"},
    }
    other_uid, other = await trader(gql, rt, "bob@example.com")
    removed = await gql.data(REMOVE, {"id": got["limit"]["id"]}, token=other)
    assert removed["removeRiskLimit"] == {
        "__typename": "RiskLimitNotFound",
        "code": "RISK_LIMIT_NOT_FOUND",
        "field": "id",
    }
    removed = await gql.data(REMOVE, {"id": got["limit"]["id"]}, token=token)
    assert removed["removeRiskLimit"]["removedId"] == got["limit"]["id"]
    placed = await gql.data(PLACE, {"input": order(price="94")}, token=token)
    assert placed["placeOrder"]["order"]["status"] == "OPEN"
    assert uid != other_uid


async def test_setting_a_limit_again_replaces_it(gql, rt):
    _, token = await trader(gql, rt, "ann@example.com")
    first = (await gql.data(SET, limit_input("DAILY_LOSS", "100", action="CANCEL_ORDERS"),
                            token=token))["setRiskLimit"]["limit"]  # fmt: skip
    again = await gql.data(
        SET,
        limit_input("DAILY_LOSS", "50", action="COOL_DOWN", cooldownSeconds=3600),
        token=token,
    )
    second = again["setRiskLimit"]["limit"]
    assert second["id"] == first["id"]
    assert (second["threshold"], second["action"], second["cooldownSeconds"]) == (
        "50",
        "COOL_DOWN",
        3600,
    )
    assert await scalar(rt, "SELECT count(*) FROM risk_limits") == 1


@pytest.mark.parametrize(
    ("variables", "code", "field"),
    [
        (limit_input("TRADES_PER_DAY", "0"), "INVALID_RISK_LIMIT", "threshold"),
        (limit_input("TRADES_PER_DAY", "1" + "0" * 19), "INVALID_RISK_LIMIT", "threshold"),
        (limit_input("TRADES_PER_DAY", "2.5"), "INVALID_RISK_LIMIT", "threshold"),
        (limit_input("TRADES_PER_DAY", "5", action="CANCEL_ORDERS"), "INVALID_RISK_LIMIT",
         "action"),
        (limit_input("DAILY_LOSS", "5", scope="MARKET", where={"symbol": BTC}),
         "INVALID_RISK_LIMIT", "scope"),
        (limit_input("DAILY_LOSS", "5", warnRatio="0"), "INVALID_RISK_LIMIT", "warnRatio"),
        (limit_input("DAILY_LOSS", "5", action="COOL_DOWN"), "INVALID_RISK_LIMIT",
         "cooldownSeconds"),
        (limit_input("ORDER_NOTIONAL", "5", scope="PLATFORM"), "FORBIDDEN", None),
        (limit_input("ORDER_NOTIONAL", "5", scope="FOLLOW"), "VALIDATION_FAILED", "followId"),
        (limit_input("ORDER_NOTIONAL", "5", scope="FOLLOW", where={"followId": "bm9wZQ=="}),
         "VALIDATION_FAILED", "followId"),
        (limit_input("ORDER_NOTIONAL", "5", scope="FOLLOW",
                     where={"followId": "Rm9sbG93Ojk5OTk="}), "NOT_FOUND", "followId"),
        (limit_input("ORDER_NOTIONAL", "5", scope="BOT"), "VALIDATION_FAILED", "botId"),
        (limit_input("ORDER_NOTIONAL", "5", scope="BOT", where={"botId": "Qm90Ojk5OTk="}),
         "NOT_FOUND", "botId"),
        (limit_input("ORDER_NOTIONAL", "5", scope="BOT", where={"botId": "Rm9sbG93Ojk5OTk="}),
         "VALIDATION_FAILED", "botId"),
    ],
)  # fmt: skip
async def test_limits_that_cannot_be_set_are_typed_errors_and_change_nothing(
    gql, rt, variables, code, field
):
    _, token = await trader(gql, rt, "ann@example.com")
    got = (await gql.data(SET, variables, token=token))["setRiskLimit"]
    assert (got["code"], got["field"]) == (code, field), got
    assert await scalar(rt, "SELECT count(*) FROM risk_limits") == 0


@pytest.mark.parametrize("threshold", ["NaN", "Infinity", "-1", "1" * 80, "1\u0000", "", " 5"])
async def test_bad_numbers_never_reach_the_service(gql, rt, threshold):
    _, token = await trader(gql, rt, "ann@example.com")
    body = await gql(SET, limit_input("ORDER_NOTIONAL", threshold), token=token)
    if "errors" in body:
        assert "INTERNAL" not in str(body)
    else:
        assert body["data"]["setRiskLimit"]["__typename"] != "RiskLimitPayload", body
    assert await scalar(rt, "SELECT count(*) FROM risk_limits") == 0


async def test_an_admin_sets_platform_and_market_limits_and_states_audited(gql, rt, engines):
    token, _ = await admin_token(gql, rt)
    _, user = await trader(gql, rt, "ann@example.com", USDT="1000")
    market = {"scope": "MARKET", "symbol": BTC}
    got = await gql.data(
        SET, limit_input("STALE_MARKET_DATA", "300", scope="MARKET", where={"symbol": BTC}),
        token=token,
    )  # fmt: skip
    assert got["setRiskLimit"]["limit"]["market"] == {"symbol": BTC}
    halted = await gql.data(SET_STATE, {"scope": market, "state": "HALTED"}, token=token)
    assert halted["setRiskState"] == {
        "__typename": "RiskStatePayload",
        "scope": "MARKET",
        "state": "HALTED",
        "reason": "maintenance",
        "market": {"symbol": BTC},
    }
    refused = (await gql.data(PLACE, {"input": order()}, token=user))["placeOrder"]
    assert refused["code"] == "RISK_HALTED" and "maintenance" in refused["message"]
    status = (await gql.data(STATUS, token=user))["me"]["riskStatus"]
    assert status["state"] == "HALTED"
    mine = await gql.data(SET_STATE, {"scope": market, "state": "HALTED"}, token=user)
    assert mine["setRiskState"] == {"__typename": "Forbidden", "code": "FORBIDDEN"}
    back = await gql.data(RESET, {"scope": market}, token=token)
    assert back["resetRisk"]["state"] == "ACTIVE"
    placed = (await gql.data(PLACE, {"input": order()}, token=user))["placeOrder"]
    assert placed["order"]["status"] == "OPEN"
    actions = await scalar(rt, "SELECT array_agg(action ORDER BY id) FROM audit_log")
    assert actions == ["risk.limit_set", "risk.state", "risk.reset"]
    trail = await scalar(
        rt, "SELECT array_agg(to_state || ':' || (actor_id IS NOT NULL) ORDER BY id)"
        " FROM risk_transitions"
    )  # fmt: skip
    assert trail == ["HALTED:true", "ACTIVE:true"]


async def test_a_reset_of_your_own_scope_needs_two_factor(gql, rt):
    walt = await make_withdrawer(gql, rt)
    user = ScopeRef(Scope.USER, walt.uid)
    await force_state(rt, user, RiskState.HALTED, "DAILY_LOSS of 100 USD (USER) reached")
    scope = {"scope": "USER"}
    got = await gql.data(RESET, {"scope": scope}, token=walt.token)
    assert got["resetRisk"]["code"] == "TWO_FACTOR_REQUIRED"
    got = await gql.data(RESET, {"scope": scope, "code": walt.stale_code()}, token=walt.token)
    assert got["resetRisk"]["code"] == "INVALID_TWO_FACTOR_CODE"
    assert await scalar(rt, "SELECT state FROM risk_states") == "HALTED"
    got = await gql.data(RESET, {"scope": scope, "code": walt.code()}, token=walt.token)
    assert got["resetRisk"] == {
        "__typename": "RiskStatePayload",
        "scope": "USER",
        "state": "ACTIVE",
        "reason": "reset by hand",
    }
    again = await gql.data(RESET, {"scope": scope, "code": walt.code()}, token=walt.token)
    assert again["resetRisk"]["code"] == "RISK_STATE_CONFLICT"
    status = (await gql.data(STATUS, token=walt.token))["me"]["riskStatus"]
    (mine,) = [s for s in status["scopes"] if s["scope"] == "USER"]
    assert mine["transitions"] == [
        {"fromState": "HALTED", "toState": "ACTIVE", "reason": "reset by hand",
         "byRiskEngine": False},
        {"fromState": "ACTIVE", "toState": "HALTED",
         "reason": "DAILY_LOSS of 100 USD (USER) reached", "byRiskEngine": True},
    ]  # fmt: skip


async def test_without_two_factor_a_reset_says_turn_it_on(gql, rt):
    uid, token = await trader(gql, rt, "ann@example.com")
    await force_state(rt, ScopeRef(Scope.USER, uid), RiskState.REDUCING, "losses")
    got = await gql.data(RESET, {"scope": {"scope": "USER"}, "code": "123456"}, token=token)
    assert got["resetRisk"]["code"] == "TWO_FACTOR_NOT_ENABLED"
    assert await scalar(rt, "SELECT state FROM risk_states") == "REDUCING"


async def test_risk_check_names_a_state_and_validates_the_order(gql, rt, engines):
    uid, token = await trader(gql, rt, "ann@example.com", USDT="1000")
    await force_state(rt, ScopeRef(Scope.USER, uid), RiskState.REDUCING, "drawdown")
    check = (await gql.data(CHECK, {"input": order()}, token=token))["riskCheck"]
    assert check["allowed"] is False
    assert check["binding"]["state"] == "REDUCING" and check["binding"]["code"] == "RISK_REDUCING"
    sell = await gql.data(CHECK, {"input": order("SELL", price="101")}, token=token)
    assert sell["riskCheck"]["allowed"] is True and sell["riskCheck"]["entry"] is False
    bad = await gql.data(CHECK, {"input": order(price="100.001")}, token=token)
    assert bad["riskCheck"] == {"__typename": "PriceOffTick", "code": "PRICE_OFF_TICK",
                                "field": "price"}  # fmt: skip
    anonymous = await gql.data(CHECK, {"input": order()})
    assert anonymous["riskCheck"]["code"] == "UNAUTHENTICATED"


async def test_the_status_counts_every_order_of_today_and_the_check_stops_past_the_limit(
    gql, rt, engines
):
    """TRADES_PER_DAY counts today's orders only (an earlier day's never); the status
    counts all of them, the placement's check no further than past the largest threshold
    (the refusal names that count plus the order)."""
    uid, token = await trader(gql, rt, "ann@example.com", USDT="1000")
    for price in ("99", "98", "97", "96", "95"):
        placed = await gql.data(PLACE, {"input": order(price=price)}, token=token)
        assert placed["placeOrder"]["order"]["status"] == "OPEN"
    async with rt.sessions() as session, session.begin():
        await (await driver(session)).execute(
            "UPDATE orders SET created_at = created_at - interval '1 day'"
            " WHERE id = (SELECT min(id) FROM orders WHERE user_id = $1)",
            uid,
        )
    got = (await gql.data(SET, limit_input("TRADES_PER_DAY", "2"), token=token))["setRiskLimit"]
    assert got["__typename"] == "RiskLimitPayload"
    status = (await gql.data(STATUS, token=token))["me"]["riskStatus"]
    (user,) = [s for s in status["scopes"] if s["scope"] == "USER"]
    assert [(x["value"], x["reached"]) for x in user["limits"]] == [("4", True)]
    refused = (await gql.data(PLACE, {"input": order(price="94")}, token=token))["placeOrder"]
    assert refused["__typename"] == "RiskLimitReached"
    assert refused["message"].endswith(" to 4")  # 3 counted (the threshold and one), and it
