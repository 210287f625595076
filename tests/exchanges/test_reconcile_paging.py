"""Reconciliation reads every page of an account's history, at each of the five
exchanges, through the real ccxt against stand-ins that page as the exchange does
(Binance 1000 oldest first from the start, then by id; Kraken 50 newest first by offset;
OKX 100 newest first, then older than an id; Bybit 50 orders and 100 trades, Coinbase
1000 orders and 250 fills, by cursor): more than two pages of trades and of ended orders
since the start are recorded, every fill once and every order's final state; a second
run doubles nothing. A run stops at its page bound and the next goes on from there; an
exchange answering the same page again ends the read."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
from sqlalchemy import insert, select

from app.exchanges import following
from db.models import ExchangeConnection, ExchangeFill, ExchangeOrder
from tests.exchanges.conftest import connector_for
from tests.exchanges.test_accounts_api import _connect
from tests.support import pk
from tests.support.documents import signed_in
from tests.support.exchanges import Order, StandIn, binance, cancel, fill, place
from tests.support.exchanges.keys import new_account

# each exchange's largest page of ended orders and of trades (what a run must get past)
PAGES = {"binance": 1000, "kraken": 50, "okx": 100, "bybit": 100, "coinbase": 1000}
ORDER_EXCHANGES = tuple(PAGES)
QUANTITY = Decimal("0.01")


async def _connected(gql, rt, server: StandIn, name: str):
    carol = await signed_in(gql)
    account = new_account(name)
    account.balances = {"BTC": (Decimal(10**6), Decimal(0)), "USDT": (Decimal(10**9), Decimal(0))}
    server.add(account)
    connected = await _connect(gql, carol["accessToken"], name, account)
    connection_id = pk(connected["exchangeAccount"]["id"])
    async with rt.sessions() as session:
        user_id = (await session.get(ExchangeConnection, connection_id)).user_id
    return account, connection_id, user_id


async def _history(rt, server: StandIn, account, connection_id: int, user_id: int,
                   count: int) -> list[Order]:  # fmt: skip
    """``count`` orders at the exchange, ours OPEN (as placed): a third filled in two
    trades, a third in one, a third filled in part and then canceled; and one left open."""
    orders = []
    for i in range(count + 1):
        order = place(server, account, client_order_id=f"cp{i:016d}", symbol="BTC/USDT",
                      side="buy", type="limit", quantity=QUANTITY,
                      price=Decimal(40000))  # fmt: skip
        if i == count:
            pass  # left open
        elif i % 3 == 0:
            fill(server, order, Decimal("0.004"))
            fill(server, order, Decimal("0.006"))
        elif i % 3 == 1:
            fill(server, order, QUANTITY)
        else:
            fill(server, order, Decimal("0.003"))
            cancel(server, order)
        orders.append(order)
    rows = [{"connection_id": connection_id, "user_id": user_id,
             "client_order_id": o.client_order_id, "exchange_order_id": o.id,
             "symbol": "BTC/USDT", "side": "BUY", "type": "LIMIT", "quantity": QUANTITY,
             "price": Decimal(40000), "status": "OPEN"} for o in orders]  # fmt: skip
    async with rt.sessions() as session, session.begin():
        await session.execute(insert(ExchangeOrder), rows)
    return orders


def _expected(order: Order) -> tuple[str, Decimal]:
    if order.status == "canceled":
        return "CANCELED", order.filled
    return ("FILLED" if order.status == "closed" else "OPEN"), order.filled


async def _recorded(rt, connection_id: int) -> tuple[dict, list]:
    mine = ExchangeOrder.connection_id == connection_id
    async with rt.sessions() as session:
        rows = list(await session.scalars(select(ExchangeOrder).where(mine)))
        fills = list(await session.scalars(select(ExchangeFill).where(
            ExchangeFill.connection_id == connection_id)))  # fmt: skip
    return {r.client_order_id: (r.status, r.filled) for r in rows}, fills


@pytest.mark.parametrize("name", ORDER_EXCHANGES)
async def test_every_page_since_the_start_is_recorded_once(gql, rt, exchanges, name):
    server = exchanges[name]
    account, connection_id, user_id = await _connected(gql, rt, server, name)
    count = 2 * PAGES[name] + 3  # more than two pages of ended orders, and of trades
    orders = await _history(rt, server, account, connection_id, user_id, count)
    assert len(server.trades) > 2 * PAGES[name]

    first = await following.reconcile_account(rt, connection_id=connection_id)
    second = await following.reconcile_account(rt, connection_id=connection_id)

    states, fills = await _recorded(rt, connection_id)
    assert states == {o.client_order_id: _expected(o) for o in orders}
    assert sorted(f.trade_id for f in fills) == sorted(t.id for t in server.trades)
    assert (first.fills_added, first.orders_changed) == (len(server.trades), count)
    assert (second.orders_changed, second.fills_added) == (0, 0)
    assert server.refused == []


@pytest.mark.parametrize("name", ORDER_EXCHANGES)
async def test_a_run_stops_at_its_page_bound_and_the_next_goes_on(
    gql, rt, exchanges, stand_ins, name, caplog
):
    server = exchanges[name]
    rt.exchanges = connector_for(rt, stand_ins, history_max_pages=2)
    account, connection_id, user_id = await _connected(gql, rt, server, name)
    orders = await _history(rt, server, account, connection_id, user_id, 2 * PAGES[name] + 3)
    runs = []
    with caplog.at_level(logging.WARNING, logger="app.exchanges.ccxt_edge"):
        for _ in range(20):
            runs.append(await following.reconcile_account(rt, connection_id=connection_id))
            if runs[-1] == following.Reconciled(0, 0):
                break
    await rt.exchanges.aclose()

    assert any("bound reached" in r.getMessage() for r in caplog.records)
    assert 0 < runs[0].fills_added < len(server.trades)  # the bound: not all in one run
    assert runs[-1] == following.Reconciled(0, 0)
    states, fills = await _recorded(rt, connection_id)
    assert states == {o.client_order_id: _expected(o) for o in orders}
    assert sorted(f.trade_id for f in fills) == sorted(t.id for t in server.trades)


async def test_an_exchange_answering_the_same_page_again_ends_the_read(
    gql, rt, exchanges, monkeypatch, caplog
):
    server = exchanges["binance"]
    account, connection_id, user_id = await _connected(gql, rt, server, "binance")
    await _history(rt, server, account, connection_id, user_id, PAGES["binance"] + 3)
    paged = binance._page

    def same_page(items, p, from_id, at):  # the id ignored: the oldest page, always
        return paged(items, {"startTime": "0", "limit": p.get("limit", "500")}, from_id, at)

    monkeypatch.setattr(binance, "_page", same_page)
    with caplog.at_level(logging.WARNING, logger="app.exchanges.ccxt_edge"):
        run = await following.reconcile_account(rt, connection_id=connection_id)
    assert run.fills_added == PAGES["binance"]  # the first page's, and the end
    assert sum(1 for r in server.requests if r.path == "/api/v3/myTrades") == 2
    assert any("same page" in r.getMessage() for r in caplog.records)
