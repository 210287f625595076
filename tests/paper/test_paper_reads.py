"""Paper account fields through DataLoaders: ``paperAccounts { balances equity orders fills }``
for one account or five costs the same statements (SQLAlchemy's and raw asyncpg's), and
shows what the per-account reads show; paging and bad paging arguments as before."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

import pytest

from app.paper import accounts, orders
from app.trading.domain.orders import OrderRequest, OrderType, Side
from tests.support.trading import BTC, funded_user, trade_at, trader

pytestmark = pytest.mark.usefixtures("engines")

ACCOUNTS = """{ paperAccounts { id name symbol equity
  balances { currency available held total }
  orders(first: 2) { edges { cursor node { clientOrderId status } } pageInfo { hasNextPage } }
  fills(first: 5) { edges { node { clientOrderId price liquidity } } } } }"""
PAGE = """query($first: Int!, $after: String) { paperAccounts { name
  orders(first: $first, after: $after) { edges { node { clientOrderId } }
    pageInfo { hasNextPage hasPreviousPage } } } }"""


async def open_and_trade(rt, uid: int, name: str) -> int:
    """A paper account with three orders (one filled at once, two open)."""
    account = await accounts.open_account(rt, user_id=uid, name=name, symbol=BTC,
                                          balances={"USDT": D("10000")})  # fmt: skip
    for client_order_id, price in (("now", "91000"), ("a", "88000"), ("b", "87000")):
        await orders.place_order(
            rt, user_id=uid, paper_account_id=account.id, client_order_id=client_order_id,
            request=OrderRequest(Side.BUY, OrderType.LIMIT, D("0.0100"), price=D(price)),
        )  # fmt: skip
    return account.id


async def cost(gql, token: str, sql_statements, statements) -> tuple[int, dict]:
    sql_statements.reset()
    statements.clear()
    data = await gql.data(ACCOUNTS, token=token)
    await asyncio.sleep(0)  # asyncpg's query logger runs soon after each statement
    return sql_statements.count + len(statements), data


async def test_paper_accounts_cost_the_same_statements_for_one_or_five(
    gql, rt, sql_statements, statements
):
    maker = await funded_user(rt, "maker", BTC="5")
    taker = await funded_user(rt, "taker", USDT="1000000")
    await trade_at(rt, maker, taker, "90000")
    uid, token = await trader(gql, rt, "paper@example.com")
    ids = [await open_and_trade(rt, uid, "first")]
    await gql.data(ACCOUNTS, token=token)  # connections warmed (types introspected once)
    one, data = await cost(gql, token, sql_statements, statements)
    assert len(data["paperAccounts"]) == 1
    ids += [await open_and_trade(rt, uid, f"n{i}") for i in range(4)]
    five, data = await cost(gql, token, sql_statements, statements)
    assert len(data["paperAccounts"]) == 5
    assert five == one == 6  # authenticate, accounts, markets, balances, orders, fills
    # the same values as the per-account reads
    async with rt.sessions() as session:
        for account_id, shown in zip(ids, data["paperAccounts"], strict=True):
            row = await accounts.get_account(session, user_id=uid, paper_account_id=account_id)
            expected = await accounts.balances_of(session, row)
            assert [(b["currency"], D(b["available"]), D(b["held"]), D(b["total"]))
                    for b in shown["balances"]] == [
                (b.currency, b.available, b.held, b.total) for b in expected
            ]  # fmt: skip
            assert D(shown["equity"]) == await accounts.equity_of(session, row)
            assert shown["symbol"] == BTC
            assert [e["node"]["clientOrderId"] for e in shown["orders"]["edges"]] == ["b", "a"]
            assert shown["orders"]["pageInfo"]["hasNextPage"] is True
            assert [(f["node"]["clientOrderId"], f["node"]["liquidity"])
                    for f in shown["fills"]["edges"]] == [("now", "TAKER")]  # fmt: skip


async def test_each_accounts_pages_follow_their_cursors(gql, rt):
    maker = await funded_user(rt, "maker", BTC="5")
    taker = await funded_user(rt, "taker", USDT="1000000")
    await trade_at(rt, maker, taker, "90000")
    uid, token = await trader(gql, rt, "paper@example.com")
    for name in ("x", "y"):
        await open_and_trade(rt, uid, name)
    first = (await gql.data(PAGE, {"first": 1}, token=token))["paperAccounts"]
    assert [[e["node"]["clientOrderId"] for e in a["orders"]["edges"]] for a in first] == [
        ["b"],
        ["b"],
    ]
    data = await gql.data(ACCOUNTS, token=token)
    after = data["paperAccounts"][0]["orders"]["edges"][-1]["cursor"]  # x's, after "a"
    rest = (await gql.data(PAGE, {"first": 5, "after": after}, token=token))["paperAccounts"]
    x, y = ([e["node"]["clientOrderId"] for e in a["orders"]["edges"]] for a in rest)
    assert x == ["now"]  # x's list after its own cursor
    assert rest[0]["orders"]["pageInfo"] == {"hasNextPage": False, "hasPreviousPage": True}
    assert y == []  # y's orders are all newer than x's cursor
    both = "{ paperAccounts { one: orders(first: 1) { edges { node { clientOrderId } } }"
    both += " all: orders(first: 5) { edges { node { clientOrderId } } } } }"
    for account in (await gql.data(both, token=token))["paperAccounts"]:
        assert [e["node"]["clientOrderId"] for e in account["one"]["edges"]] == ["b"]
        assert [e["node"]["clientOrderId"] for e in account["all"]["edges"]] == ["b", "a", "now"]


@pytest.mark.parametrize(
    ("variables", "field"),
    [({"first": -1}, "first"), ({"first": 2, "after": "!!notacursor"}, "after")],
)  # fmt: skip
async def test_bad_paging_arguments_are_typed_errors(gql, rt, variables, field):
    uid, token = await trader(gql, rt, "paper@example.com")
    await accounts.open_account(rt, user_id=uid, name="p", symbol=BTC,
                                balances={"USDT": D("10")})  # fmt: skip
    body = await gql(PAGE, variables, token=token)
    assert body["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED"
    assert body["errors"][0]["extensions"]["field"] == field
