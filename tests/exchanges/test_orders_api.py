"""Orders on connected exchange accounts over GraphQL, with the real ccxt talking to the
stand-ins: placed once with our client order id (a lost answer looked up, never
re-sent), checked against the exchange's market and the user's risk state first (bad
input is a typed error that sends nothing), canceled, listed on the account; the poller
and reconciliation record each fill once, however they are interrupted."""

from __future__ import annotations

import asyncio
import decimal
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from app.exchanges import following
from app.risk.domain.states import RiskState, Scope, ScopeRef
from db.models import ExchangeFill, ExchangeOrder
from tests.exchanges.test_accounts_api import _connect
from tests.risk.support import force_state
from tests.support import pk
from tests.support.documents import ERROR_FIELDS, signed_in
from tests.support.exchanges import fill
from tests.support.exchanges.keys import new_account
from tests.support.trading import eventually

ORDER_EXCHANGES = ("binance", "kraken", "okx", "bybit", "coinbase")
ORDER_FIELDS = (
    "id accountId clientOrderId exchangeOrderId symbol side type quantity price stopPrice"
    " filled status emulated rejectCode"
)
PLACE = (
    "mutation($account: ID!, $symbol: String!, $side: OrderSide!, $type: ExchangeOrderType!,"
    " $quantity: Decimal!, $price: Decimal, $stopPrice: Decimal) {"
    " placeExchangeOrder(accountId: $account, symbol: $symbol, side: $side, type: $type,"
    " quantity: $quantity, price: $price, stopPrice: $stopPrice) { __typename"
    f" ... on ExchangeOrderPayload {{ exchangeOrder {{ {ORDER_FIELDS} }} }}"
    f" {ERROR_FIELDS} ... on Error {{ field }} }} }}"
)
CANCEL = (
    "mutation($id: ID!) { cancelExchangeOrder(id: $id) { __typename"
    f" ... on ExchangeOrderPayload {{ exchangeOrder {{ {ORDER_FIELDS} }} }}"
    f" {ERROR_FIELDS} ... on Error {{ field }} }} }}"
)
ACCOUNT_ORDERS = (
    "query($id: ID!, $after: String) { node(id: $id) { ... on ExchangeAccount {"
    " orderTypes { type emulated }"
    " orders(first: 2, after: $after) { edges { node { id clientOrderId status } }"
    " pageInfo { hasNextPage endCursor } } } } }"
)


async def _account(gql, exchanges, name: str, **options) -> tuple[str, str, object]:
    carol = await signed_in(gql)
    account = exchanges[name].add(new_account(name, **options))
    connected = await _connect(gql, carol["accessToken"], name, account)
    return carol["accessToken"], connected["exchangeAccount"]["id"], account


async def _place(gql, token, account_id, **changes) -> dict:
    variables = {"account": account_id, "symbol": "BTC/USDT", "side": "BUY", "type": "LIMIT",
                 "quantity": "0.01", "price": "40000", **changes}  # fmt: skip
    return (await gql.data(PLACE, variables, token=token))["placeExchangeOrder"]


async def _rows(rt, model=ExchangeOrder) -> list:
    async with rt.sessions() as session:
        return list(await session.scalars(select(model).order_by(model.id)))


@pytest.mark.parametrize("name", ORDER_EXCHANGES)
async def test_a_placed_order_carries_our_client_id_and_is_listed(gql, rt, exchanges, name):
    token, account_id, _ = await _account(gql, exchanges, name)
    result = await _place(gql, token, account_id)
    assert result["__typename"] == "ExchangeOrderPayload", result
    order = result["exchangeOrder"]
    [at_exchange] = exchanges[name].orders
    assert order["clientOrderId"] == at_exchange.client_order_id
    assert order["exchangeOrderId"] == at_exchange.id
    assert (order["status"], order["filled"], order["emulated"]) == ("OPEN", "0", False)
    assert (order["quantity"], order["price"], order["accountId"]) == ("0.01", "40000",
                                                                       account_id)  # fmt: skip
    second = await _place(gql, token, account_id, side="SELL", type="MARKET", price=None)
    # Kraken's, OKX's, Bybit's and Coinbase's answer to a placement holds the ids only:
    # the poller reads it
    assert second["exchangeOrder"]["status"] in ("FILLED", "OPEN")
    await following.poll_live(rt)
    node = (await gql.data(ACCOUNT_ORDERS, {"id": account_id}, token=token))["node"]
    edges = node["orders"]["edges"]
    assert [e["node"]["id"] for e in edges] == [second["exchangeOrder"]["id"], order["id"]]
    assert [e["node"]["status"] for e in edges] == ["FILLED", "OPEN"]
    assert [e["node"]["status"] for e in edges] == ["FILLED", "OPEN"]
    assert node["orders"]["pageInfo"]["hasNextPage"] is False
    emulated = {t["type"]: t["emulated"] for t in node["orderTypes"]}
    assert emulated == {"LIMIT": False, "MARKET": False,
                        "STOP_LOSS": name in ("okx", "coinbase"),
                        "STOP_LOSS_LIMIT": name == "okx"}  # fmt: skip
    assert exchanges[name].refused == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"price": "40000.005"}, "price"),  # off the 0.01 tick
        ({"quantity": "0.000001"}, "quantity"),  # below the lot and the minimum
        ({"quantity": "0.0001", "price": "100"}, "quantity"),  # under the 5 USDT notional
        ({"quantity": "100000000000000000000000"}, "quantity"),
        ({"quantity": "-1"}, "quantity"),
        ({"price": None}, "price"),
        ({"type": "MARKET"}, "price"),  # a market order has no price
        ({"type": "STOP_LOSS_LIMIT"}, "stopPrice"),
        ({"symbol": "DOGE/USDT"}, "symbol"),
        ({"account": "RXhjaGFuZ2VBY2NvdW50Ojk5OTk5OTk="}, "accountId"),  # nobody's
        ({"account": "bm9wZQ=="}, "accountId"),
    ],
)
async def test_bad_input_is_a_typed_error_and_sends_nothing(gql, rt, exchanges, changes, field):
    token, account_id, _ = await _account(gql, exchanges, "binance")
    result = await _place(gql, token, account_id, **changes)
    assert result["__typename"] in ("ValidationFailed", "NotFound"), result
    assert result["field"] == field
    assert exchanges["binance"].orders == [] and await _rows(rt) == []
    assert not [r for r in exchanges["binance"].requests if r.path == "/api/v3/order"]


async def test_a_refusal_is_typed_and_recorded_as_rejected(gql, rt, exchanges):
    token, account_id, _ = await _account(gql, exchanges, "kraken")
    result = await _place(gql, token, account_id, quantity="1")  # 40,000 USDT: too much
    assert result["__typename"] == "ExchangeInsufficientFunds", result
    [row] = await _rows(rt)
    assert (row.status, row.reject_code) == ("REJECTED", "EXCHANGE_INSUFFICIENT_FUNDS")
    exchanges["kraken"].fail_next(429)
    limited = await _place(gql, token, account_id)
    assert limited["__typename"] == "ExchangeRateLimited", limited
    assert exchanges["kraken"].orders == []


async def test_an_emulated_stop_is_held_armed_not_sent(gql, rt, exchanges):
    token, account_id, _ = await _account(gql, exchanges, "okx")
    result = await _place(gql, token, account_id, type="STOP_LOSS_LIMIT", side="SELL",
                          price="44000", stopPrice="45000")  # fmt: skip
    order = result["exchangeOrder"]
    assert (order["status"], order["emulated"], order["exchangeOrderId"]) == ("ARMED", True, None)
    assert exchanges["okx"].orders == [] and len(await _rows(rt)) == 1
    await following.poll_live(rt)  # the poller leaves an armed stop alone
    assert not [r for r in exchanges["okx"].requests if "/trade/" in r.path]


async def test_a_market_buy_sized_in_the_quote_currency_is_refused_at_coinbase(gql, rt, exchanges):
    token, account_id, _ = await _account(gql, exchanges, "coinbase")
    result = await _place(gql, token, account_id, type="MARKET", price=None)
    assert result["__typename"] == "ExchangeOrderTypeNotAvailable", result
    assert result["field"] == "type"
    assert exchanges["coinbase"].orders == [] and await _rows(rt) == []
    assert not _creates(exchanges["coinbase"], "coinbase")


@pytest.mark.parametrize("name", ["binance", "bybit", "coinbase"])
async def test_a_native_stop_is_placed_at_the_exchange(gql, rt, exchanges, name):
    token, account_id, _ = await _account(gql, exchanges, name)
    result = await _place(gql, token, account_id, type="STOP_LOSS_LIMIT", side="SELL",
                          price="44000", stopPrice="45000")  # fmt: skip
    assert result["exchangeOrder"]["emulated"] is False
    assert result["exchangeOrder"]["stopPrice"] == "45000"
    [order] = exchanges[name].orders
    assert (order.type, order.stop_price) == ("stop_loss_limit", Decimal(45000))
    await following.poll_live(rt)  # followed by our client order id: still open
    [row] = await _rows(rt)
    assert (row.status, row.exchange_order_id) == ("OPEN", order.id)


async def test_a_halted_user_cannot_send(gql, rt, exchanges):
    token, account_id, _ = await _account(gql, exchanges, "binance")
    uid = pk((await gql.data("{ me { id } }", token=token))["me"]["id"])
    await force_state(rt, ScopeRef(Scope.USER, uid), RiskState.HALTED, "by hand")
    result = await _place(gql, token, account_id)
    assert result["__typename"] == "RiskHalted", result
    assert exchanges["binance"].orders == [] and await _rows(rt) == []


@pytest.mark.parametrize("name", ORDER_EXCHANGES)
async def test_a_lost_answer_is_looked_up_never_resent(gql, rt, exchanges, name):
    server = exchanges[name]
    token, account_id, _ = await _account(gql, exchanges, name)
    server.lose_answers.append(_create_path(name))
    result = await _place(gql, token, account_id)
    assert result["__typename"] == "ExchangeOrderPayload", result
    [order] = server.orders
    assert result["exchangeOrder"]["clientOrderId"] == order.client_order_id
    assert result["exchangeOrder"]["status"] == "OPEN"
    assert len(_creates(server, name)) == 1


def _creates(server, name: str) -> list:
    return [r for r in server.requests if r.path == _create_path(name) and r.method == "POST"]


async def test_an_unresolved_outcome_stays_pending_until_reconciled(gql, rt, exchanges):
    server = exchanges["binance"]
    token, account_id, _ = await _account(gql, exchanges, "binance")
    server.lose_answers.append("/api/v3/order")
    server.after_lost = [503] * 3  # placed, its answer lost, then every lookup fails
    unknown = await _place(gql, token, account_id)
    assert unknown["__typename"] == "ExchangeUnavailable", unknown
    assert "do not place it again" in unknown["message"]
    [row] = await _rows(rt)
    assert row.status == "PENDING_SUBMIT" and len(server.orders) == 1
    await following.poll_live(rt)
    [row] = await _rows(rt)
    assert (row.status, row.exchange_order_id) == ("OPEN", server.orders[0].id)
    assert len(server.orders) == 1 and len(_creates(server, "binance")) == 1


async def test_a_pending_order_the_exchange_never_got_is_rejected_after_a_while(gql, rt, exchanges):
    server = exchanges["kraken"]
    token, account_id, _ = await _account(gql, exchanges, "kraken")
    server.fail_next(*[503] * 4)  # the placement and every lookup: unknown
    assert (await _place(gql, token, account_id))["__typename"] == "ExchangeUnavailable"
    assert server.orders == []
    await following.poll_live(rt)
    assert [r.status for r in await _rows(rt)] == ["PENDING_SUBMIT"]  # too soon to say
    async with rt.sessions() as session, session.begin():
        await session.execute(
            update(ExchangeOrder).values(
                created_at=ExchangeOrder.created_at - following.SETTLE_AFTER - timedelta(seconds=1)
            )
        )
    await following.poll_live(rt)
    [row] = await _rows(rt)
    assert (row.status, row.reject_code) == ("REJECTED", "EXCHANGE_UNAVAILABLE")


@pytest.mark.parametrize("name", ORDER_EXCHANGES)
async def test_cancel_an_open_order_once(gql, rt, exchanges, name):
    token, account_id, _ = await _account(gql, exchanges, name)
    placed = (await _place(gql, token, account_id))["exchangeOrder"]
    canceled = (await gql.data(CANCEL, {"id": placed["id"]}, token=token))["cancelExchangeOrder"]
    assert canceled["__typename"] == "ExchangeOrderPayload", canceled
    assert canceled["exchangeOrder"]["status"] == "CANCELED"
    assert exchanges[name].orders[0].status == "canceled"
    again = (await gql.data(CANCEL, {"id": placed["id"]}, token=token))["cancelExchangeOrder"]
    assert again["__typename"] == "ExchangeOrderNotCancellable"


async def test_cancel_of_an_order_filled_meanwhile_reads_it_back(gql, rt, exchanges):
    server = exchanges["binance"]
    token, account_id, _ = await _account(gql, exchanges, "binance")
    placed = (await _place(gql, token, account_id))["exchangeOrder"]
    fill(server, server.orders[0], Decimal("0.01"))
    result = (await gql.data(CANCEL, {"id": placed["id"]}, token=token))["cancelExchangeOrder"]
    assert result["__typename"] == "ExchangeOrderNotCancellable", result
    [row] = await _rows(rt)
    assert (row.status, row.filled) == ("FILLED", Decimal("0.01"))


async def test_someone_else_s_order_is_not_found(gql, rt, exchanges):
    token, account_id, _ = await _account(gql, exchanges, "binance")
    placed = (await _place(gql, token, account_id))["exchangeOrder"]
    dave = await signed_in(gql, "dave@example.com")
    result = (await gql.data(CANCEL, {"id": placed["id"]},
                             token=dave["accessToken"]))["cancelExchangeOrder"]  # fmt: skip
    assert result["__typename"] == "NotFound"
    node = await gql.data("query($id: ID!) { node(id: $id) { id } }", {"id": placed["id"]},
                          token=dave["accessToken"])  # fmt: skip
    assert node["node"] is None


def _create_path(name: str) -> str:
    return {"binance": "/api/v3/order", "kraken": "/0/private/AddOrder",
            "okx": "/api/v5/trade/batch-orders", "bybit": "/v5/order/create",
            "coinbase": "/api/v3/brokerage/orders"}[name]  # fmt: skip


async def _fill_count(rt) -> int:
    async with rt.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(ExchangeFill)) or 0)


@pytest.mark.parametrize("name", ORDER_EXCHANGES)
async def test_polling_records_each_fill_once_through_interruptions(gql, rt, exchanges, name):
    server = exchanges[name]
    token, account_id, _ = await _account(gql, exchanges, name)
    placed = [(await _place(gql, token, account_id, price=str(40000 + i)))["exchangeOrder"]
              for i in range(4)]  # fmt: skip
    at_exchange = {o.client_order_id: o for o in server.orders}
    first, second, third, fourth = (at_exchange[p["clientOrderId"]] for p in placed)
    fill(server, first, Decimal("0.004"))
    fill(server, second, Decimal("0.01"))
    assert await following.poll_live(rt) == 1
    assert await _fill_count(rt) == 2

    # the poller killed mid-way: whatever it had written stays or goes whole
    fill(server, first, Decimal("0.006"))
    fill(server, third, Decimal("0.002"))
    before = len(server.requests)
    poller = asyncio.create_task(following.poll_live(rt))

    async def asked() -> bool:
        return len(server.requests) > before

    assert await eventually(asked, interval=0.001)  # it is talking to the exchange: kill it
    poller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await poller
    # meanwhile at the exchange: more fills, a cancel from its own site
    fill(server, third, Decimal("0.003"))
    fill(server, fourth, Decimal("0.001"))
    with server.lock:
        fourth.status = "canceled"
    account_pk = pk(account_id)
    await following.reconcile_account(rt, connection_id=account_pk)
    again = await following.reconcile_account(rt, connection_id=account_pk)
    assert (again.orders_changed, again.fills_added) == (0, 0)

    fills = await _rows(rt, ExchangeFill)
    assert sorted(f.trade_id for f in fills) == sorted(t.id for t in server.trades)
    assert len(fills) == 6
    rows = {r.client_order_id: r for r in await _rows(rt)}
    state = {c: (rows[c].status, rows[c].filled) for c in at_exchange}
    assert state == {
        first.client_order_id: ("FILLED", Decimal("0.01")),
        second.client_order_id: ("FILLED", Decimal("0.01")),
        third.client_order_id: ("PARTIALLY_FILLED", Decimal("0.005")),
        fourth.client_order_id: ("CANCELED", Decimal("0.001")),
    }
    by_order = {}
    for f in fills:
        by_order[f.order_id] = by_order.get(f.order_id, Decimal(0)) + f.quantity
    assert {r.client_order_id: by_order.get(r.id, Decimal(0)) for r in rows.values()} == {
        c: s[1] for c, s in state.items()}  # fmt: skip


MY_ACCOUNTS_ORDERS = (
    "{ me { exchangeAccounts { id orders(first: 3) { edges { node { id status } } } } } }"
)


async def _cost(gql, token, sql_statements, statements) -> tuple[int, dict]:
    sql_statements.reset()
    statements.clear()
    data = await gql.data(MY_ACCOUNTS_ORDERS, token=token)
    await asyncio.sleep(0)  # asyncpg's query logger runs soon after each statement
    return sql_statements.count + len(statements), data


async def test_accounts_orders_cost_the_same_statements_for_one_or_three(
    gql, rt, exchanges, sql_statements, statements
):
    token = (await signed_in(gql))["accessToken"]
    ids = []
    for name in ORDER_EXCHANGES[:3]:
        account = exchanges[name].add(new_account(name))
        ids.append((await _connect(gql, token, name, account))["exchangeAccount"]["id"])
        for price in ("40000", "40001"):
            assert (await _place(gql, token, ids[-1], price=price))["exchangeOrder"]
        if len(ids) == 1:
            one, data = await _cost(gql, token, sql_statements, statements)
            assert [len(a["orders"]["edges"]) for a in data["me"]["exchangeAccounts"]] == [2]
    three, data = await _cost(gql, token, sql_statements, statements)
    assert [len(a["orders"]["edges"]) for a in data["me"]["exchangeAccounts"]] == [2, 2, 2]
    assert three == one
    owned = (await gql.data("query($id: ID!) { node(id: $id) { id } }",
                            {"id": data["me"]["exchangeAccounts"][0]["orders"]["edges"][0]
                             ["node"]["id"]}, token=token))  # fmt: skip
    assert owned["node"] is not None


@pytest.mark.parametrize("name", ORDER_EXCHANGES)
async def test_an_order_that_ended_before_its_fills_were_read_still_gets_them(
    gql, rt, exchanges, name
):
    server = exchanges[name]
    token, account_id, _ = await _account(gql, exchanges, name)
    market = await _place(gql, token, account_id, side="SELL", type="MARKET", price=None)
    limit = (await _place(gql, token, account_id))["exchangeOrder"]
    fill(server, server.orders[1], Decimal("0.003"))
    canceled = (await gql.data(CANCEL, {"id": limit["id"]}, token=token))["cancelExchangeOrder"]
    assert canceled["exchangeOrder"]["status"] == "CANCELED"
    await following.poll_live(rt)
    await following.poll_live(rt)
    fills = await _rows(rt, ExchangeFill)
    assert sorted(f.trade_id for f in fills) == sorted(t.id for t in server.trades)
    assert sorted(f.quantity for f in fills) == [Decimal("0.003"), Decimal("0.01")]
    rows = {r.client_order_id: r for r in await _rows(rt)}
    assert rows[market["exchangeOrder"]["clientOrderId"]].status == "FILLED"
    assert rows[limit["clientOrderId"]].filled == Decimal("0.003")


@pytest.mark.parametrize("name", ["binance", "okx"])
async def test_an_order_sent_leaves_the_process_decimal_rounding_alone(gql, rt, exchanges, name):
    """ccxt formats an order's amounts with the current decimal context after setting its
    rounding to ROUND_HALF_UP (and trapping Underflow): the platform's money maths rounds
    half even, so that must not leak out of the ccxt edge."""
    before = decimal.getcontext().copy()
    token, account_id, _ = await _account(gql, exchanges, name)
    assert (await _place(gql, token, account_id, quantity="0.0105"))["__typename"] == (
        "ExchangeOrderPayload"
    )
    await following.poll_live(rt)
    after = decimal.getcontext()
    assert (after.rounding, after.prec) == (before.rounding, before.prec)
    assert after.traps == before.traps
    assert Decimal("2.5").quantize(Decimal(1)) == 2  # half even, as before
