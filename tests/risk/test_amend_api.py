"""Amendments over GraphQL: amendOrder answers RiskLimitReached naming the limit, and
riskCheckAmend (the same arguments) says beforehand what the check would decide, with the
warnings it would give; neither changes anything it refuses."""

from __future__ import annotations

from decimal import Decimal

from tests.risk.test_risk_api import SET, limit_input, order
from tests.support.trading import scalar, trader

AMEND = """
mutation($id: ID!, $price: Decimal, $quantity: Decimal) {
  amendOrder(id: $id, price: $price, quantity: $quantity) {
    __typename ... on OrderPayload { order { quantity } } ... on Error { code message field } } }
"""
CHECK_AMEND = """
query($id: ID!, $price: Decimal, $quantity: Decimal) {
  riskCheckAmend(id: $id, price: $price, quantity: $quantity) {
    __typename
    ... on RiskCheck { allowed entry notionalUsd
      binding { scope code value limit { kind threshold } }
      warnings { value limit { kind } } }
    ... on Error { code field } } }
"""
PLACED = """
mutation($input: PlaceOrderInput!) { placeOrder(input: $input) {
  __typename ... on OrderPayload { order { id } } } }
"""


async def test_amend_what_if_and_the_typed_error(gql, rt, engines):
    uid, token = await trader(gql, rt, "ann@example.com", USDT="1000")
    set_ = await gql.data(SET, limit_input("ASSET_EXPOSURE", "50"), token=token)
    assert set_["setRiskLimit"]["__typename"] == "RiskLimitPayload"
    placed = await gql.data(PLACED, {"input": order(quantity="0.3")}, token=token)  # 30 USD
    order_id = placed["placeOrder"]["order"]["id"]
    grow = {"id": order_id, "quantity": "0.6"}  # +30: 60
    check = (await gql.data(CHECK_AMEND, grow, token=token))["riskCheckAmend"]
    assert check["allowed"] is False and check["entry"] is True
    assert check["notionalUsd"] == "60"
    assert check["binding"]["code"] == "RISK_LIMIT_REACHED"
    assert check["binding"]["limit"] == {"kind": "ASSET_EXPOSURE", "threshold": "50"}
    assert check["binding"]["value"] == "60"
    refused = (await gql.data(AMEND, grow, token=token))["amendOrder"]
    assert refused["__typename"] == "RiskLimitReached" and refused["field"] == "quantity"
    assert "ASSET_EXPOSURE of 50 USD" in refused["message"]
    quantity = await scalar(rt, "SELECT quantity FROM orders WHERE user_id = $1", uid)
    assert quantity == Decimal("0.3")  # unchanged
    near = {"id": order_id, "quantity": "0.45"}  # 45: 90 % of 50
    check = (await gql.data(CHECK_AMEND, near, token=token))["riskCheckAmend"]
    assert check["allowed"] is True
    assert check["warnings"] == [{"value": "45", "limit": {"kind": "ASSET_EXPOSURE"}}]
    shrink = {"id": order_id, "quantity": "0.2"}
    check = (await gql.data(CHECK_AMEND, shrink, token=token))["riskCheckAmend"]
    assert (check["allowed"], check["entry"], check["binding"]) == (True, False, None)
    off_tick = await gql.data(CHECK_AMEND, {"id": order_id, "price": "100.001"}, token=token)
    assert off_tick["riskCheckAmend"] == {"__typename": "PriceOffTick", "code": "PRICE_OFF_TICK",
                                         "field": "price"}  # fmt: skip
