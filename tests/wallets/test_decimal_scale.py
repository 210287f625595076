"""Figures keep their scale, as exchanges show them: prices at the market's tick, order
quantities at its lot, values and fees at the quote currency's scale; a figure with more
decimals than that keeps them (never rounded)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from graphql_schema.scalars import at_places, serialize_decimal
from tests.support.trading import trader
from tests.trading.test_trading_api import place

ORDER_FIELDS = """
  id price quantity filledQuantity remainingQuantity averagePrice executedValue fees
  fills { price quantity quoteAmount fee }
"""
MY_ORDERS = "{ me { orders(first: 10) { edges { node { " + ORDER_FIELDS + " } } } } }"
MY_FILLS = "{ me { fills(first: 10) { edges { node { price quantity quoteAmount fee } } } } }"
BOOK = '{ orderBook(symbol: "%s", depth: 5) { bids { price quantity } asks { price quantity } } }'


async def test_prices_quantities_and_amounts_keep_their_scale(gql, rt, engines):
    _, seller = await trader(gql, rt, "seller@example.com", BTC="1")
    _, buyer = await trader(gql, rt, "buyer@example.com", USDT="10000")
    await place(gql, seller, side="SELL", quantity="0.01", price="90000.00")
    await place(gql, seller, side="SELL", quantity="0.01", price="90000.01")
    await place(gql, seller, side="SELL", quantity="0.5", price="90116.3")
    await place(gql, buyer, quantity="0.01", price="89000")  # rests
    bought = await place(gql, buyer, quantity="0.02", price="90000.01")
    assert bought["order"]["fills"] == [
        {"price": "90000.00", "quantity": "0.0100", "liquidity": "TAKER"},
        {"price": "90000.01", "quantity": "0.0100", "liquidity": "TAKER"},
    ]
    orders = await gql.data(MY_ORDERS, token=buyer)
    resting, taker = (e["node"] for e in orders["me"]["orders"]["edges"][::-1])
    assert {k: resting[k] for k in ("price", "quantity", "filledQuantity")} == {
        "price": "89000.00",
        "quantity": "0.0100",
        "filledQuantity": "0.0000",
    }
    assert taker["price"] == "90000.01" and taker["remainingQuantity"] == "0.0000"
    # 1800.0001 / 0.02 = 90000.005: finer than the tick, shown as it is, not rounded
    assert (taker["averagePrice"], taker["executedValue"]) == ("90000.005", "1800.000100")
    # 0.2 % taker fee, at USDT's 6 decimals: 1.8 + 1.8000002 (rounded up to the unit)
    assert taker["fees"] == "3.600001"
    assert taker["fills"][0] == {
        "price": "90000.00",
        "quantity": "0.0100",
        "quoteAmount": "900.000000",
        "fee": "1.800000",
    }
    fills = await gql.data(MY_FILLS, token=buyer)
    assert fills["me"]["fills"]["edges"][0]["node"]["price"] == "90000.01"
    book = (await gql.data(BOOK % "BTC/USDT"))["orderBook"]
    assert book["asks"] == [{"price": "90116.30", "quantity": "0.5000"}]
    assert book["bids"] == [{"price": "89000.00", "quantity": "0.0100"}]


async def test_each_market_has_its_own_tick(gql, rt, engines):
    _, seller = await trader(gql, rt, "seller@example.com", ETH="10")
    placed = await place(gql, seller, symbol="ETH/BTC", side="SELL", quantity="1", price="0.03")
    assert placed["__typename"] == "OrderPayload", placed
    book = (await gql.data(BOOK % "ETH/BTC"))["orderBook"]
    assert book["asks"] == [{"price": "0.03000", "quantity": "1.000"}]


@pytest.mark.parametrize(
    ("value", "places", "shown"),
    [
        ("90000", 2, "90000.00"),
        ("90116.3", 2, "90116.30"),
        ("90000.000000000000000000", 2, "90000.00"),  # as NUMERIC(38, 18) returns it
        ("1.23456789", 2, "1.23456789"),  # finer than the scale: all digits, not rounded
        ("-0E-18", 2, "0.00"),
        ("-5.1", 6, "-5.100000"),
        ("1E+3", 0, "1000"),
        ("99999999999999999999.999999999999999999", 18, "99999999999999999999.999999999999999999"),
    ],
)
def test_at_places_shows_the_scale_and_never_rounds(value, places, shown):
    scaled = at_places(Decimal(value), places)
    assert serialize_decimal(scaled) == shown and scaled == Decimal(value)
