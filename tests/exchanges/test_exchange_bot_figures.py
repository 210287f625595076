"""An exchange bot's figures (issue 23): its holdings, trades, open orders, equity and
P&L read from its exchange orders and fills (a fee the exchange took in the base valued
at the fill's price, as the runner counts it), marked at the exchange's last price the
platform keeps (the ticker the bots job read; no request in a read); a page of several
exchange bots costs the same statements as one of two."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from sqlalchemy import select

from app.bots import worker
from app.exchanges import following, market_data
from app.exchanges.domain.catalogue import ExchangeId
from app.exchanges.venue import exchange_client_id
from db.models import Bot, ExchangeFill, ExchangeOrder
from tests.exchanges.test_exchange_bots import (
    _account,
    _bot_id,
    _create,
    _fill_all_buys,
    _small_dca,
)
from tests.support.bot_api import dca_input

FIGURES = """query($id: ID!) { bot(id: $id) { budget equity pnl realisedPnl unrealisedPnl
  holdings { currency amount }
  trades(first: 10) { edges { node { side price quantity quoteAmount fee feeCurrency market { id }
                                     exchangeFill { fee feeCurrency } } } }
  openOrders { clientOrderId side type price quantity status market { id }
               exchangeOrder { id clientOrderId } } } }"""
PAGE = """{ bots(first: 20) { edges { node { id budget equity pnl
  holdings { currency amount } trades(first: 5) { edges { node { price } } }
  openOrders { clientOrderId } } } } }"""


@pytest.fixture
def kept_tickers(rt, monkeypatch):
    """Tickers kept a minute: the price the bots job read is the one a read finds."""
    monkeypatch.setattr(
        rt, "settings", rt.settings.model_copy(update={"exchange_ticker_cache_seconds": 60})
    )


async def _expected(rt, bot_id: int) -> tuple[dict[str, Decimal], list, Decimal]:
    """The bot's holdings from its fills, counted here by hand (every order of the
    account is the bot's), its fills and its budget."""
    async with rt.sessions() as session:
        bot = await session.get(Bot, bot_id)
        rows = (await session.execute(
            select(ExchangeFill, ExchangeOrder)
            .join(ExchangeOrder, ExchangeOrder.id == ExchangeFill.order_id)
            .order_by(ExchangeFill.id.desc())
        )).all()  # fmt: skip
    quote, base = bot.budget, Decimal(0)
    for f, o in rows:
        fee = f.fee * f.price if f.fee_currency == "BTC" else f.fee
        value = f.price * f.quantity
        if o.side == "BUY":
            quote, base = quote - value - fee, base + f.quantity
        else:
            quote, base = quote + value - fee, base - f.quantity
    held = {c: a for c, a in (("BTC", base), ("USDT", quote)) if a}
    return held, rows, bot.budget


@pytest.mark.parametrize("name", ["binance", "bybit"])  # bybit takes a buy's fee in BTC
async def test_its_figures_are_its_exchange_orders_and_fills_at_the_exchanges_price(
    gql, rt, exchanges, kept_tickers, name
):
    server = exchanges[name]
    token, account_id = await _account(gql, exchanges, name)
    created = await _create(gql, token, account_id, _small_dca())
    bot_gid = created["bot"]["id"]
    await _fill_all_buys(server)
    await following.poll_live(rt)
    await worker.run_once(rt)  # steps on the fill: its take-profit and safety orders
    bot_id = await _bot_id(rt)
    held, fills, given = await _expected(rt, bot_id)
    assert held["BTC"] > 0 and fills
    if name == "bybit":
        assert any(f.fee_currency == "BTC" for f, _ in fills)
    price = (await market_data.ticker(rt, exchange=ExchangeId(name), symbol="BTC/USDT")).last
    shown = (await gql.data(FIGURES, {"id": bot_gid}, token=token))["bot"]
    assert {h["currency"]: Decimal(h["amount"]) for h in shown["holdings"]} == held
    budget = Decimal(shown["budget"])
    equity = Decimal(shown["equity"])
    assert budget == given  # its funding, fees included
    assert equity == held["USDT"] + held["BTC"] * price
    assert Decimal(shown["pnl"]) == equity - budget
    assert -5 < Decimal(shown["pnl"]) < 0  # the fees and the spread: not -budget
    assert Decimal(shown["realisedPnl"]) == 0  # no deal closed yet
    assert Decimal(shown["unrealisedPnl"]) == Decimal(shown["pnl"])
    trades = [e["node"] for e in shown["trades"]["edges"]]
    assert [(t["side"], Decimal(t["price"]), Decimal(t["quantity"])) for t in trades] == [
        (o.side, f.price, f.quantity) for f, o in fills
    ]
    for trade, (f, _) in zip(trades, fills, strict=True):
        assert trade["feeCurrency"] == "USDT" and trade["market"] is None
        in_base = f.fee_currency == "BTC"
        assert Decimal(trade["fee"]) == (f.fee * f.price if in_base else f.fee)
        assert Decimal(trade["exchangeFill"]["fee"]) == f.fee  # as the exchange took it
    live = sorted((o["side"], o["status"]) for o in shown["openOrders"])
    assert live == [("BUY", "OPEN"), ("BUY", "OPEN"), ("SELL", "OPEN")]  # TP, 2 safety
    for order in shown["openOrders"]:
        sent = exchange_client_id(order["clientOrderId"])  # the bot's, as decisions name it
        assert order["exchangeOrder"]["clientOrderId"] == sent
        assert order["type"] == "LIMIT" and order["market"] is None


async def test_a_page_of_exchange_bots_costs_the_same_statements_for_two_or_five(
    gql, rt, exchanges, kept_tickers, sql_statements, statements
):
    server = exchanges["binance"]
    token, account_id = await _account(gql, exchanges, "binance")

    async def make(n: int) -> None:
        made = await _create(gql, token, account_id, dca_input(
            f"dca {n}", baseOrder="100", safetyOrder="100", maxSafetyOrders=1,
            takeProfit=[{"profit": "0.03", "share": "1"}]))  # fmt: skip
        assert made["__typename"] == "CreateBotPayload", made

    async def cost() -> tuple[int, list[dict]]:
        sql_statements.reset()
        statements.clear()
        data = await gql.data(PAGE, token=token)
        await asyncio.sleep(0)
        return sql_statements.count + len(statements), [e["node"] for e in data["bots"]["edges"]]

    async def settle() -> None:
        await _fill_all_buys(server)
        await following.poll_live(rt)
        await worker.run_once(rt)

    for n in range(2):
        await make(n)
    await settle()
    await gql.data(PAGE, token=token)  # connections warmed
    two, shown = await cost()
    for n in range(2, 5):
        await make(n)
    await settle()
    five, shown = await cost()
    assert len(shown) == 5
    for bot in shown:
        assert bot["holdings"] and bot["trades"]["edges"] and bot["openOrders"]
        assert Decimal(bot["pnl"]) > -5 and bot["equity"] is not None
    assert five == two
