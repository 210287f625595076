"""An order refused for insufficient funds leaves nothing behind: no order, no hold, and
no ledger account row (not even an empty HELD or AVAILABLE one it would have needed)."""

from __future__ import annotations

import asyncio

from app.trading.domain.orders import Side
from tests.support.trading import funded_user, limit, place, rows, trader
from tests.trading.test_trading_api import order

PLACE = """
mutation($input: PlaceOrderInput!) {
  placeOrder(input: $input) { __typename ... on Error { code } }
}"""
PLACE_LIST = """
mutation($input: PlaceOrderListInput!) {
  placeOrderList(input: $input) { __typename ... on Error { code } }
}"""


async def accounts(rt) -> list[tuple]:
    return [
        tuple(r)
        for r in await rows(
            rt, "SELECT id, user_id, currency, kind, balance FROM ledger_accounts ORDER BY id"
        )
    ]


async def user_accounts(rt, uid: int) -> set[tuple[str, str]]:
    found = await rows(rt, "SELECT currency, kind FROM ledger_accounts WHERE user_id = $1", uid)
    return {(r["currency"], r["kind"]) for r in found}


async def test_an_order_refused_for_funds_makes_no_account_row(gql, rt, engines):
    uid, token = await trader(gql, rt, "poor@example.com", USDT="100")
    before = await accounts(rt)
    assert await user_accounts(rt, uid) == {("USDT", "AVAILABLE")}
    refusals = [
        order(quantity="0.01", price="90000"),  # needs 900 USDT: no HELD USDT yet
        order(side="SELL", quantity="0.01", price="90000"),  # no BTC at all
        order(symbol="ETH/BTC", quantity="1", price="0.03"),  # no BTC to pay with
    ]
    for refused in refusals:
        result = (await gql.data(PLACE, {"input": refused}, token=token))["placeOrder"]
        assert result == {"__typename": "InsufficientFunds", "code": "INSUFFICIENT_FUNDS"}
    assert await accounts(rt) == before
    assert await rows(rt, "SELECT id FROM orders") == []
    assert await rows(rt, "SELECT id FROM holds") == []


async def test_an_order_list_refused_for_funds_makes_no_account_row(gql, rt, engines):
    _, token = await trader(gql, rt, "poor@example.com", USDT="100")
    before = await accounts(rt)
    oco = {
        "symbol": "BTC/USDT",
        "kind": "OCO",
        "orders": [
            {"side": "SELL", "type": "LIMIT", "quantity": "0.01", "price": "95000"},
            {
                "side": "SELL",
                "type": "STOP_LIMIT",
                "quantity": "0.01",
                "price": "85000",
                "stopPrice": "85500",
            },
        ],
    }
    result = (await gql.data(PLACE_LIST, {"input": oco}, token=token))["placeOrderList"]
    assert result == {"__typename": "InsufficientFunds", "code": "INSUFFICIENT_FUNDS"}
    assert await accounts(rt) == before
    assert await rows(rt, "SELECT id FROM order_lists") == []


async def test_in_a_batch_only_the_funded_orders_make_their_held_account(rt, engines):
    rich = await funded_user(rt, "rich", USDT="1000")
    poor = await funded_user(rt, "poor", USDT="5")
    got = await asyncio.gather(
        place(rt, rich, limit(Side.BUY, "0.1", "99.5")),
        place(rt, poor, limit(Side.BUY, "0.1", "99.5")),  # needs 9.97 USDT
        place(rt, rich, limit(Side.SELL, "0.1", "120")),  # no BTC
        return_exceptions=True,
    )
    assert [type(a).__name__ for a in got] == ["Order", "InsufficientFunds", "InsufficientFunds"]
    assert await user_accounts(rt, rich) == {("USDT", "AVAILABLE"), ("USDT", "HELD")}
    assert await user_accounts(rt, poor) == {("USDT", "AVAILABLE")}


async def test_a_refusal_after_a_funded_order_of_the_same_currency_keeps_its_account(rt, engines):
    uid = await funded_user(rt, "trader", USDT="15")
    got = await asyncio.gather(
        place(rt, uid, limit(Side.BUY, "0.1", "99.5")),
        place(rt, uid, limit(Side.BUY, "0.1", "99.5")),
        return_exceptions=True,
    )
    assert [type(a).__name__ for a in got] == ["Order", "InsufficientFunds"]
    assert await user_accounts(rt, uid) == {("USDT", "AVAILABLE"), ("USDT", "HELD")}
