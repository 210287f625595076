"""The ``Decimal`` scalar accepts plain ASCII decimal text only: a look-alike digit from
another script or a trailing newline is refused as bad input and changes nothing."""

from __future__ import annotations

import pytest

from graphql_schema.scalars import parse_decimal
from tests.support.trading import rows, trader
from tests.trading.test_trading_api import order

PLACE = """
mutation($input: PlaceOrderInput!) {
  placeOrder(input: $input) { __typename ... on Error { code message } }
}"""
PLACE_INLINE = """
mutation { placeOrder(input: {symbol: "BTC/USDT", side: BUY, type: LIMIT,
                              quantity: %s, price: "90000"}) { __typename } }"""
NOT_ASCII_DECIMALS = [
    "\u0661",  # ARABIC-INDIC DIGIT ONE
    "0.0\u0661",
    "\uff10.01",  # FULLWIDTH DIGIT ZERO
    "0.01\n",
    "0.01\r\n",
    "\n0.01",
    "0.01 ",
    "+0.01",
    "1e-2",
    "0" * 31 + ".01",  # more than 30 integer digits
]


@pytest.mark.parametrize("text", NOT_ASCII_DECIMALS)
def test_only_ascii_plain_decimals_parse(text):
    with pytest.raises(ValueError):
        parse_decimal(text)


@pytest.mark.parametrize("text", NOT_ASCII_DECIMALS[:5])
async def test_a_quantity_in_another_script_or_with_a_newline_is_bad_input(gql, rt, engines, text):
    _, token = await trader(gql, rt, "digits@example.com", USDT="10000")
    body = await gql(PLACE, {"input": order(quantity=text)}, token=token)
    assert "data" not in body or body["data"] is None, body
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert "Decimal" in error["message"]
    assert await rows(rt, "SELECT id FROM orders") == []
    wallets = await gql.data("{ me { wallets { currency available held } } }", token=token)
    usdt = next(w for w in wallets["me"]["wallets"] if w["currency"] == "USDT")
    assert (usdt["available"], usdt["held"]) == ("10000.000000", "0.000000")


@pytest.mark.parametrize("literal", ['"\u0661"', '"0.01\\n"'])
async def test_an_inline_literal_in_another_script_is_a_validation_error(gql, rt, literal):
    _, token = await trader(gql, rt, "inline@example.com", USDT="10000")
    body = await gql(PLACE_INLINE % literal, token=token)
    (error,) = body["errors"]
    assert error["extensions"]["code"] in ("BAD_USER_INPUT", "GRAPHQL_VALIDATION_FAILED"), error
    assert await rows(rt, "SELECT id FROM orders") == []
