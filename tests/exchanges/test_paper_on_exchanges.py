"""Paper trading against an exchange's live trades, with the real ccxt reading the
stand-ins' public trades (no key): a paper order on an exchange's market fills when that
exchange's trades cross its limit, and only then (the platform's own trades do not move
it); bad input is a typed error that opens nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from app.paper import exchange_feed, live
from db.models import PaperAccount
from tests.support import GraphQLClient
from tests.support.exchanges import TapeTrade, now_ms
from tests.support.partner import client_with
from tests.support.trading import funded_user, trade_at, trader

ORDER_EXCHANGES = ("binance", "kraken", "okx", "bybit", "coinbase")
OPEN = """
mutation($input: OpenPaperAccountInput!) { openPaperAccount(input: $input) {
  __typename ... on PaperAccountPayload { paperAccount { id symbol exchange } }
  ... on Error { code field } } }"""
PLACE = """
mutation($input: PlacePaperOrderInput!) { placePaperOrder(input: $input) {
  __typename ... on PaperOrderPayload { order { status clientOrderId } }
  ... on Error { code field } } }"""
ACCOUNT = """
query($id: ID!) { paperAccount(id: $id) {
  equity balances { currency available held }
  orders(first: 10) { edges { node { clientOrderId status filledQuantity } } }
  fills(first: 10) { edges { node { price quantity liquidity } } } } }"""


@pytest.fixture
async def api(rt, exchanges) -> AsyncIterator[GraphQLClient]:
    """GraphQL over HTTP, the runtime talking to the stand-ins."""
    async with client_with(rt) as http:
        yield GraphQLClient(http)


def _input(exchange: str | None, symbol: str = "BTC/USDT") -> dict:
    return {"name": "On the exchange", "symbol": symbol, "exchange": exchange,
            "balances": [{"currency": "USDT", "amount": "10000"}]}  # fmt: skip


def _trade(stand_in, price: str) -> None:
    """The exchange's market trades at ``price`` (a new trade on its public tape)."""
    tape = stand_in.tapes["BTC/USDT"]
    last = tape.trades[-1]
    tape.trades.append(TapeTrade(last.trade_id + 1, max(now_ms(), last.time_ms + 1),
                                 Decimal(price), Decimal("0.5"), "sell"))  # fmt: skip


@pytest.mark.parametrize("name", ORDER_EXCHANGES)
async def test_a_paper_order_fills_when_the_exchange_trades_through_it(
    api, rt, engines, exchanges, name
):
    _, token = await trader(api, rt, "paper@example.com")
    opened = (await api.data(OPEN, {"input": _input(name)}, token=token))["openPaperAccount"]
    assert opened["__typename"] == "PaperAccountPayload", opened
    account = opened["paperAccount"]
    assert (account["symbol"], account["exchange"]) == ("BTC/USDT", name)
    order = {"paperAccountId": account["id"], "clientOrderId": "dip", "side": "BUY",
             "type": "LIMIT", "quantity": "0.01", "price": "89999.00"}  # fmt: skip
    placed = (await api.data(PLACE, {"input": order}, token=token))["placePaperOrder"]
    assert placed["order"] == {"status": "OPEN", "clientOrderId": "dip"}  # the tape is ~90000

    # the platform's market trades through the limit: not this account's prices
    maker = await funded_user(rt, "maker", BTC="5")
    taker = await funded_user(rt, "taker", USDT="1000000")
    await trade_at(rt, maker, taker, "89000")
    await live.run_once(rt)
    _trade(exchanges[name], "90000.50")  # the exchange trades above it: nothing
    await exchange_feed.run_once(rt)
    read = (await api.data(ACCOUNT, {"id": account["id"]}, token=token))["paperAccount"]
    assert read["fills"]["edges"] == []

    _trade(exchanges[name], "89998.00")  # through it
    assert await exchange_feed.run_once(rt) >= 1
    assert await exchange_feed.run_once(rt) == 0  # read again: stored once, taken once
    read = (await api.data(ACCOUNT, {"id": account["id"]}, token=token))["paperAccount"]
    fills = [e["node"] for e in read["fills"]["edges"]]
    assert fills == [{"price": "89999", "quantity": "0.01", "liquidity": "MAKER"}]
    [mine] = [e["node"] for e in read["orders"]["edges"]]
    assert (mine["status"], mine["filledQuantity"]) == ("FILLED", "0.01")
    held = {b["currency"]: b for b in read["balances"]}
    assert Decimal(held["BTC"]["available"]) == Decimal("0.01")
    # valued at the exchange's last trade (the platform's last is 89000)
    cash = Decimal(held["USDT"]["available"]) + Decimal(held["USDT"]["held"])
    assert abs(Decimal(read["equity"]) - (cash + Decimal("0.01") * Decimal("89998"))) < Decimal(
        "0.01"
    )


@pytest.mark.parametrize(
    ("exchange", "symbol", "typename", "field"),
    [
        ("nasdaq", "BTC/USDT", "ValidationFailed", "exchange"),
        ("", "BTC/USDT", "ValidationFailed", "exchange"),
        ("bin\x00ance", "BTC/USDT", "VALIDATION_FAILED", "input.exchange"),  # the gateway's
        ("b" * 10_000, "BTC/USDT", "ValidationFailed", "exchange"),
        ("binance", "SOL/USDT", "UnknownMarket", "symbol"),  # the platform's, not binance's
        ("kraken", "DOGE/USDT", "UnknownMarket", "symbol"),  # nobody's
        ("okx", "BTC/USDT\x00", "VALIDATION_FAILED", "input.symbol"),
    ],
)
async def test_bad_input_is_a_typed_error_that_opens_nothing(
    api, rt, exchanges, exchange, symbol, typename, field
):
    _, token = await trader(api, rt, "paper@example.com")
    body = await api(OPEN, {"input": _input(exchange, symbol)}, token=token)
    if "errors" in body:  # NUL bytes: refused by the gateway before any resolver
        [error] = body["errors"]
        assert (error["extensions"]["code"], error["extensions"]["field"]) == (typename, field)
    else:
        result = body["data"]["openPaperAccount"]
        assert (result["__typename"], result["field"]) == (typename, field), result
    async with rt.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(PaperAccount)) == 0


async def test_an_exchange_that_does_not_answer_is_a_typed_error(api, rt, exchanges):
    _, token = await trader(api, rt, "paper@example.com")
    exchanges["bybit"].fail_next(*([503] * 10))
    result = (await api.data(OPEN, {"input": _input("bybit")}, token=token))["openPaperAccount"]
    assert result["__typename"] == "ExchangeUnavailable", result
