"""Paper trading through GraphQL over HTTP: open, trade against the live market, read
balances, orders, fills and equity; typed errors that write nothing; another user sees
nothing of the account."""

from __future__ import annotations

import pytest

from app.paper import live
from tests.support.trading import funded_user, scalar, trade_at, trader

pytestmark = pytest.mark.usefixtures("engines")

OPEN = """
mutation($input: OpenPaperAccountInput!) { openPaperAccount(input: $input) {
  __typename ... on PaperAccountPayload { paperAccount { id name symbol } }
  ... on Error { code field } } }"""
PLACE = """
mutation($input: PlacePaperOrderInput!) { placePaperOrder(input: $input) {
  __typename ... on PaperOrderPayload { order { status clientOrderId } }
  ... on Error { code field } } }"""
CANCEL = """
mutation($id: ID!, $c: String!) { cancelPaperOrder(paperAccountId: $id, clientOrderId: $c) {
  __typename ... on PaperOrderPayload { order { status } } ... on Error { code } } }"""
RESET = """
mutation($id: ID!) { resetPaperAccount(paperAccountId: $id) {
  __typename ... on PaperAccountPayload { paperAccount { resets } } ... on Error { code } } }"""
ACCOUNT = """
query($id: ID!) { paperAccount(id: $id) {
  name status equity balances { currency available held }
  orders(first: 10) { edges { node { clientOrderId status filledQuantity } } }
  fills(first: 10) { edges { node { price quantity liquidity } } } } }"""


def balances(usdt: str = "10000") -> list[dict]:
    return [{"currency": "USDT", "amount": usdt}]


def order(account_id: str, **kw) -> dict:
    base = {"paperAccountId": account_id, "side": "BUY", "type": "LIMIT",
            "quantity": "0.01", "price": "89000"}  # fmt: skip
    return {**base, **kw}


async def test_paper_trading_over_http(gql, rt):
    maker = await funded_user(rt, "maker", BTC="5")
    taker = await funded_user(rt, "taker", USDT="1000000")
    await trade_at(rt, maker, taker, "90000")
    _, token = await trader(gql, rt, "paper@example.com")
    _, other = await trader(gql, rt, "other@example.com")
    opened = await gql.data(
        OPEN, {"input": {"name": "Mine", "symbol": "BTC/USDT", "balances": balances()}},
        token=token,
    )  # fmt: skip
    account_id = opened["openPaperAccount"]["paperAccount"]["id"]
    placed = await gql.data(PLACE, {"input": order(account_id, clientOrderId="x")}, token=token)
    assert placed["placePaperOrder"]["order"] == {"status": "OPEN", "clientOrderId": "x"}
    second = await gql.data(PLACE, {"input": order(account_id, clientOrderId="y")}, token=token)
    assert second["placePaperOrder"]["order"]["status"] == "OPEN"
    canceled = await gql.data(CANCEL, {"id": account_id, "c": "y"}, token=token)
    assert canceled["cancelPaperOrder"]["order"]["status"] == "CANCELED"
    await trade_at(rt, maker, taker, "88900")
    await live.run_once(rt)
    seen = (await gql.data(ACCOUNT, {"id": account_id}, token=token))["paperAccount"]
    assert seen["fills"]["edges"][0]["node"]["liquidity"] == "MAKER"
    assert [e["node"]["status"] for e in seen["orders"]["edges"]] == ["CANCELED", "FILLED"]
    by_currency = {b["currency"]: b for b in seen["balances"]}
    assert float(by_currency["BTC"]["available"]) == 0.01
    assert seen["equity"]
    # another user: nothing to see, nothing to trade
    assert (await gql.data(ACCOUNT, {"id": account_id}, token=other))["paperAccount"] is None
    theirs = await gql.data(PLACE, {"input": order(account_id)}, token=other)
    assert theirs["placePaperOrder"]["__typename"] == "NotFound"
    assert (await gql.data("{ paperAccounts { id } }", token=other))["paperAccounts"] == []
    reset = await gql.data(RESET, {"id": account_id}, token=token)
    assert reset["resetPaperAccount"]["paperAccount"]["resets"] == 1
    after = (await gql.data(ACCOUNT, {"id": account_id}, token=token))["paperAccount"]
    assert after["orders"]["edges"] == [] and after["fills"]["edges"] == []


@pytest.mark.parametrize(
    ("kind", "value", "code"),
    [
        ("open", {"name": "x", "symbol": "DOGE/USDT", "balances": balances()}, "UNKNOWN_MARKET"),
        ("open", {"name": "x", "symbol": "BTC/USDT", "balances": balances("99999999")},
         "VALIDATION_FAILED"),
        ("open", {"name": "x\x00", "symbol": "BTC/USDT", "balances": balances()}, None),
        ("open", {"name": "x", "symbol": "BTC/USDT", "balances": balances("1e9")}, None),
        ("place", {"quantity": "1"}, "INSUFFICIENT_FUNDS"),
        ("place", {"price": "89000.001"}, "PRICE_OFF_TICK"),
        ("place", {"clientOrderId": "a\x00"}, None),
    ],
)  # fmt: skip
async def test_bad_input_is_refused_and_writes_nothing(gql, rt, kind, value, code):
    maker = await funded_user(rt, "maker", BTC="5")
    taker = await funded_user(rt, "taker", USDT="1000000")
    await trade_at(rt, maker, taker, "90000")
    _, token = await trader(gql, rt, "paper@example.com")
    opened = await gql.data(
        OPEN, {"input": {"name": "A", "symbol": "BTC/USDT", "balances": balances()}}, token=token
    )
    account_id = opened["openPaperAccount"]["paperAccount"]["id"]
    counts = "SELECT (SELECT count(*) FROM paper_accounts) + (SELECT count(*) FROM paper_log)"
    before = await scalar(rt, counts)
    document, field, variables = (
        (OPEN, "openPaperAccount", {"input": value}) if kind == "open"
        else (PLACE, "placePaperOrder", {"input": order(account_id, **value)})
    )  # fmt: skip
    body = await gql(document, variables, token=token)
    if code is None:
        assert body.get("errors"), body  # refused before the operation ran
    else:
        assert body["data"][field]["code"] == code, body
    assert await scalar(rt, counts) == before
