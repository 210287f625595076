"""Trading through GraphQL over HTTP: placing, typed errors, reads, and no N+1."""

from __future__ import annotations

import base64

import pytest

from tests.support.trading import trader

PLACE = """
mutation($input: PlaceOrderInput!) {
  placeOrder(input: $input) {
    __typename
    ... on OrderPayload { order { id status filledQuantity averagePrice fees clientOrderId
                                  market { symbol } fills { price quantity liquidity } } }
    ... on Error { code message }
  }
}"""
ORDERS_N = """
query($n: Int!) { me {
  orders(first: $n) { edges { node { id market { symbol } fills { price } } } }
  portfolio { equity positions { currency quantity market { symbol lastPrice } } }
} }"""


def order(symbol="BTC/USDT", side="BUY", type_="LIMIT", quantity="0.01", price="90000", **kw):
    return {
        "symbol": symbol,
        "side": side,
        "type": type_,
        "quantity": quantity,
        "price": price,
        **kw,
    }


async def place(gql, token, **kw):
    body = await gql.data(PLACE, {"input": order(**kw)}, token=token)
    return body["placeOrder"]


async def test_crossing_orders_fill_through_graphql(gql, rt, engines):
    _, seller = await trader(gql, rt, "seller@example.com", BTC="1")
    _, buyer = await trader(gql, rt, "buyer@example.com", USDT="10000")
    ask = await place(gql, seller, side="SELL", quantity="0.02")
    assert ask["__typename"] == "OrderPayload" and ask["order"]["status"] == "OPEN"
    bid = await place(gql, buyer, quantity="0.01", clientOrderId="b-1")
    assert bid["order"]["status"] == "FILLED", bid
    fill = {"price": "90000.00", "quantity": "0.0100", "liquidity": "TAKER"}
    assert bid["order"]["fills"] == [fill]
    assert bid["order"]["fees"] == "1.800000"
    again = await place(gql, buyer, quantity="0.01", clientOrderId="b-1")
    assert again["order"]["id"] == bid["order"]["id"]
    other = await place(gql, buyer, quantity="0.02", clientOrderId="b-1")
    assert other["__typename"] == "ClientOrderIdReused"
    book = await gql.data(
        '{ orderBook(symbol: "BTC/USDT", depth: 5) { sequence bids { price }'
        " asks { price quantity orders } } }"
    )
    assert book["orderBook"]["asks"] == [{"price": "90000.00", "quantity": "0.0100", "orders": 1}]
    trades = await gql.data('{ recentTrades(symbol: "BTC/USDT") { price quantity takerSide } }')
    assert trades["recentTrades"] == [
        {"price": "90000.00", "quantity": "0.0100", "takerSide": "BUY"}
    ]


@pytest.mark.parametrize(
    ("kw", "code"),
    [
        ({"symbol": "DOGE/USDT"}, "UNKNOWN_MARKET"),
        ({"quantity": "0.00001"}, "QUANTITY_OFF_LOT_SIZE"),
        ({"price": "90000.001"}, "PRICE_OFF_TICK"),
        ({"quantity": "0.0001", "price": "100"}, "BELOW_MIN_NOTIONAL"),
        ({"quantity": "1"}, "INSUFFICIENT_FUNDS"),
        ({"timeInForce": "FOK"}, "FOK_NOT_FILLABLE"),
    ],
)
async def test_bad_orders_get_typed_errors_and_hold_nothing(gql, rt, engines, kw, code):
    _, token = await trader(gql, rt, "t@example.com", USDT="1000")
    result = await place(gql, token, **kw)
    assert result["__typename"] != "OrderPayload" and result["code"] == code, result
    wallets = await gql.data("{ me { wallets { currency available held } } }", token=token)
    usdt = next(w for w in wallets["me"]["wallets"] if w["currency"] == "USDT")
    assert usdt == {"currency": "USDT", "available": "1000.000000", "held": "0.000000"}


async def test_orders_query_statement_count_does_not_grow_with_n(gql, rt, engines, sql_statements):
    _, seller = await trader(gql, rt, "mm@example.com", BTC="10", ETH="10")
    _, token = await trader(gql, rt, "n1@example.com", USDT="100000")
    for i in range(50):
        symbol = "BTC/USDT" if i % 2 else "ETH/USDT"
        price = "90000" if i % 2 else "3000"
        if i % 5 == 0:
            await place(gql, seller, symbol=symbol, side="SELL", price=price, quantity="0.01")
        await place(gql, token, symbol=symbol, price=price, quantity="0.01" if i % 5 else "0.02")
    counts = {}
    for n in (5, 50):
        sql_statements.reset()
        data = await gql.data(ORDERS_N, {"n": n}, token=token)
        assert len(data["me"]["orders"]["edges"]) == n
        counts[n] = sql_statements.count
    assert counts[5] == counts[50], counts


PLACE_LIST = """
mutation($input: PlaceOrderListInput!) {
  placeOrderList(input: $input) {
    __typename
    ... on OrderListPayload { listId kind orders { id listRole } }
    ... on Error { code message }
  }
}"""


async def test_an_order_lists_id_is_a_global_id(gql, rt, engines):
    """listId was a bare integer where every other id is a global id (issue 18.14)."""
    _, token = await trader(gql, rt, "holder@example.com", BTC="1")
    legs = [
        {"side": "SELL", "type": "LIMIT", "quantity": "0.01", "price": "95000"},
        {"side": "SELL", "type": "STOP_MARKET", "quantity": "0.01", "stopPrice": "85000"},
    ]
    body = await gql.data(
        PLACE_LIST,
        {"input": {"symbol": "BTC/USDT", "kind": "OCO", "orders": legs}},
        token=token,
    )
    placed = body["placeOrderList"]
    assert placed["__typename"] == "OrderListPayload", placed
    type_name, number = base64.b64decode(placed["listId"]).decode().split(":")
    assert type_name == "OrderList" and int(number) > 0


async def test_a_fill_or_kill_refusal_is_named_after_its_code(gql, rt, engines):
    """FOK_NOT_FILLABLE is FokNotFillable, as every code is its type's name (18.14)."""
    _, token = await trader(gql, rt, "t@example.com", USDT="1000")
    body = await gql.data(
        "mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { __typename"
        " ... on FokNotFillable { code field } } }",
        {"input": order(timeInForce="FOK")},
        token=token,
    )
    assert body["placeOrder"] == {
        "__typename": "FokNotFillable",
        "code": "FOK_NOT_FILLABLE",
        "field": None,
    }
