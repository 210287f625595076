"""Bots on a connected exchange account, with the real ccxt talking to the stand-ins:
created over GraphQL with ``exchangeAccountId``, they place their orders at the
exchange (our digest of their client order ids), the stand-in fills them, the poller
records the fills and wakes the bots job, and the bot places its next orders exactly
once however often (or at once) the job runs; a crash before the acks were saved sends
nothing twice; a stop cancels its orders at the exchange; bad input is a typed error
that writes nothing."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from app.bots import worker
from app.exchanges import following
from app.exchanges.venue import ExchangeVenue, exchange_client_id
from app.risk.domain.states import RiskState, Scope, ScopeRef
from app.trading.domain.orders import OrderRequest, OrderStatus, OrderType, Side
from db.models import Bot, BotCommand, BotDecision, ExchangeFill, ExchangeOrder
from tests.exchanges.test_accounts_api import _connect
from tests.risk.support import force_state
from tests.support import pk
from tests.support.bot_api import CREATE, STOP, dca_input, grid_input
from tests.support.documents import signed_in
from tests.support.exchanges import TapeTrade, fill
from tests.support.exchanges.keys import new_account

ORDER_EXCHANGES = ("binance", "kraken", "okx", "bybit", "coinbase")
EXCHANGE_ACCOUNT_OF = "query($id: ID!) { bot(id: $id) { exchangeAccountId holdings { amount } } }"
DISCONNECT = """mutation($id: ID!) { disconnectExchangeAccount(id: $id) { __typename } }"""


async def _account(gql, exchanges, name: str, email: str = "carol@example.com"):
    user = await signed_in(gql, email)
    account = exchanges[name].add(new_account(name))
    exchanges[name].last_price["BTC/USDT"] = Decimal(90000)  # market orders fill here
    connected = await _connect(gql, user["accessToken"], name, account)
    return user["accessToken"], connected["exchangeAccount"]["id"]


async def _create(gql, token, account_id, input_) -> dict:
    input_ = {**input_, "exchangeAccountId": account_id}
    return (await gql.data(CREATE, {"input": input_}, token=token))["createBot"]


def _small_dca() -> dict:
    # 3 % profit: Coinbase's fees (0.6 % maker, 0.8 % taker) eat the default 1 %
    return dca_input(baseOrder="100", safetyOrder="100", maxSafetyOrders=2,
                     takeProfit=[{"profit": "0.03", "share": "1"}])  # fmt: skip


async def _placed(rt, bot_id: int) -> list[str]:
    """The client order ids of the bot's placements, in order."""
    async with rt.sessions() as session:
        rows = await session.scalars(
            select(BotCommand.client_order_id)
            .where(BotCommand.bot_id == bot_id, BotCommand.kind == "PLACE")
            .order_by(BotCommand.id)
        )
        return list(rows)


def _at_exchange(server, client_order_ids) -> list:
    """The stand-in's orders placed for the bot's client order ids, in their order."""
    wanted = {exchange_client_id(c): c for c in client_order_ids}
    return [o for o in server.orders if o.client_order_id in wanted]


async def _fill_all_buys(server) -> None:
    for order in list(server.orders):
        if order.status == "open" and order.side == "buy" and order.type != "market":
            fill(server, order, order.remaining, Decimal(90000))


@pytest.mark.parametrize("name", ORDER_EXCHANGES)
async def test_a_dca_bot_trades_at_the_exchange_and_reacts_to_its_fill_once(
    gql, rt, exchanges, name
):
    server = exchanges[name]
    token, account_id = await _account(gql, exchanges, name)
    created = await _create(gql, token, account_id, _small_dca())
    assert created["__typename"] == "CreateBotPayload", created
    bot_id = await _bot_id(rt)
    [base] = await _placed(rt, bot_id)
    [order] = _at_exchange(server, [base])
    assert order.side == "buy" and order.symbol == "BTC/USDT"
    # Coinbase sizes market buys in the quote: a marketable limit at the worst price
    assert order.type == ("limit" if name == "coinbase" else "market")
    await _fill_all_buys(server)  # (a market order filled on arrival)
    await following.poll_live(rt)
    async with rt.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(ExchangeFill)) == 1
    # the job twice at once, then once more: the bot steps on the fill once
    await asyncio.gather(worker.run_once(rt), worker.run_once(rt))
    await worker.run_once(rt)
    placed = await _placed(rt, bot_id)
    at_exchange = _at_exchange(server, placed)
    assert len(placed) == len(at_exchange) == 4, placed  # base, take-profit, 2 safety
    sides = sorted(o.side for o in at_exchange[1:])
    assert sides == ["buy", "buy", "sell"]
    take_profit = next(o for o in at_exchange if o.side == "sell")
    assert take_profit.quantity == order.quantity  # what the base order bought
    assert take_profit.price > Decimal(90000)
    assert len(server.orders) == 4  # nothing placed twice
    assert server.refused == []


async def _bot_id(rt) -> int:
    async with rt.sessions() as session:
        return int(await session.scalar(select(func.max(Bot.id))))


async def test_a_grid_bot_places_its_lines_and_replaces_a_filled_buy_by_a_sell(gql, rt, exchanges):
    server = exchanges["binance"]
    token, account_id = await _account(gql, exchanges, "binance")
    created = await _create(gql, token, account_id, grid_input(investment="500"))
    assert created["__typename"] == "CreateBotPayload", created
    shown = await gql.data(EXCHANGE_ACCOUNT_OF, {"id": created["bot"]["id"]}, token=token)
    assert shown["bot"]["exchangeAccountId"] == account_id
    bot_id = await _bot_id(rt)
    await following.poll_live(rt)  # the opening market buy's fill
    await worker.run_once(rt)
    first = await _placed(rt, bot_id)
    resting = [o for o in _at_exchange(server, first) if o.status == "open"]
    buys = sorted((o for o in resting if o.side == "buy"), key=lambda o: o.price)
    assert buys and any(o.side == "sell" for o in resting)
    top = buys[-1]
    fill(server, top, top.quantity)
    await following.poll_live(rt)
    await asyncio.gather(worker.run_once(rt), worker.run_once(rt))
    after = await _placed(rt, bot_id)
    [new] = _at_exchange(server, after[len(first) :])
    assert new.side == "sell" and new.price > top.price and new.quantity == top.quantity
    await worker.run_once(rt)
    assert len(await _placed(rt, bot_id)) == len(after) == len(server.orders)


async def test_a_crash_before_the_acks_were_saved_sends_nothing_twice(gql, rt, exchanges):
    server = exchanges["okx"]
    token, account_id = await _account(gql, exchanges, "okx")
    await _create(gql, token, account_id, grid_input(investment="500"))
    bot_id = await _bot_id(rt)
    placed = len(server.orders)
    assert placed > 1
    async with rt.sessions() as session, session.begin():  # as if the acks were lost
        await session.execute(
            update(BotCommand).where(BotCommand.bot_id == bot_id).values(sent_at=None)
        )
    await worker.run_once(rt)  # sends every command again
    assert len(server.orders) == placed
    async with rt.sessions() as session:
        unsent = await session.scalar(
            select(func.count()).where(BotCommand.bot_id == bot_id, BotCommand.sent_at.is_(None))
        )
        rows = await session.scalar(select(func.count()).select_from(ExchangeOrder))
    assert unsent == 0 and rows == placed


async def test_stopping_cancels_its_orders_at_the_exchange(gql, rt, exchanges):
    server = exchanges["kraken"]
    token, account_id = await _account(gql, exchanges, "kraken")
    created = await _create(gql, token, account_id, grid_input(investment="500"))
    bot_id = created["bot"]["id"]
    await following.poll_live(rt)
    await worker.run_once(rt)
    assert any(o.status == "open" for o in server.orders)
    stopped = (await gql.data(STOP, {"id": bot_id}, token=token))["stopBot"]
    assert stopped["__typename"] == "BotPayload", stopped
    assert all(o.status != "open" for o in server.orders)
    await following.poll_live(rt)
    await worker.run_once(rt)
    async with rt.sessions() as session:
        bot = await session.get(Bot, await _bot_id(rt))
    assert bot.status == "STOPPED"
    assert {o.status for o in server.orders} <= {"closed", "canceled"}


async def test_a_buy_beyond_the_budget_is_the_bots_decision_not_an_order(gql, rt, exchanges):
    server = exchanges["bybit"]
    token, account_id = await _account(gql, exchanges, "bybit")
    await _create(gql, token, account_id, _small_dca())
    bot_id = await _bot_id(rt)
    async with rt.sessions() as session, session.begin():  # its budget spent elsewhere
        await session.execute(update(Bot).where(Bot.id == bot_id).values(budget=Decimal(50)))
    await _fill_all_buys(server)
    await following.poll_live(rt)
    await worker.run_once(rt)
    at_exchange = _at_exchange(server, await _placed(rt, bot_id))
    assert [o.side for o in at_exchange] == ["buy", "sell"]  # no safety order sent
    async with rt.sessions() as session:
        reasons = list(await session.scalars(
            select(BotDecision.reason).where(BotDecision.bot_id == bot_id)
        ))  # fmt: skip
    assert any("INSUFFICIENT_FUNDS" in r for r in reasons), reasons


@pytest.mark.parametrize(
    ("case", "field", "code"),
    [
        ("someone_elses", "exchangeAccountId", "NOT_FOUND"),
        ("disconnected", "exchangeAccountId", "NOT_FOUND"),
        ("unknown_market", "symbol", "UNKNOWN_MARKET"),
        ("bad_id", "exchangeAccountId", "VALIDATION_FAILED"),
        ("paper_too", "exchangeAccountId", "VALIDATION_FAILED"),
        ("rebalance", "exchangeAccountId", "VALIDATION_FAILED"),
    ],
)
async def test_bad_input_is_a_typed_error_and_writes_nothing(gql, rt, exchanges, case, field, code):
    server = exchanges["binance"]
    token, account_id = await _account(gql, exchanges, "binance")
    input_ = _small_dca()
    if case == "someone_elses":
        token, _ = await _account(gql, exchanges, "binance", "dave@example.com")
    elif case == "disconnected":
        done = await gql.data(DISCONNECT, {"id": account_id}, token=token)
        assert done["disconnectExchangeAccount"]["__typename"] != "NotFound"
    elif case == "unknown_market":
        input_["symbol"] = "DOGE/USDT"
    elif case == "bad_id":
        account_id = "9" * 400
    elif case == "paper_too":
        input_["paper"] = True
    elif case == "rebalance":
        input_ = {"name": "r", "rebalance": {"quote": "USDT", "trigger": "PERIOD",
            "periodSeconds": 3600, "targets": [
            {"asset": "BTC", "weight": "0.5"}, {"asset": "USDT", "weight": "0.5"}]},
            "allocation": [{"currency": "USDT", "amount": "100"}]}  # fmt: skip
    result = await _create(gql, token, account_id, input_)
    assert result["__typename"] not in ("CreateBotPayload", None), result
    if code is not None:
        assert result["code"] == code, result
    if field is not None:
        assert result["field"] == field, result
    if case == "rebalance":  # says why
        assert "runs on the platform only" in result["message"], result
    async with rt.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Bot)) == 0
    assert not any("order" in r.path.lower() for r in server.requests)


async def test_a_nul_byte_in_the_account_id_is_refused_before_anything(gql, rt, exchanges):
    token, _ = await _account(gql, exchanges, "binance")
    input_ = {**_small_dca(), "exchangeAccountId": "a\x00b"}
    answer = await gql(CREATE, {"input": input_}, token=token)
    assert answer["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED", answer
    async with rt.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Bot)) == 0


async def test_an_order_below_the_exchanges_minimum_is_the_bots_decision(gql, rt, exchanges):
    """The exchange market's minimum notional (5 USDT) refuses a 1 USDT base order before
    anything is sent: the refusal is the bot's decision, not an error."""
    server = exchanges["binance"]
    token, account_id = await _account(gql, exchanges, "binance")
    created = await _create(gql, token, account_id, dca_input(
        baseOrder="1", safetyOrder="1", maxSafetyOrders=1,
        takeProfit=[{"profit": "0.03", "share": "1"}]))  # fmt: skip
    assert created["__typename"] == "CreateBotPayload", created
    bot_id = await _bot_id(rt)
    async with rt.sessions() as session:
        reasons = list(await session.scalars(
            select(BotDecision.reason).where(BotDecision.bot_id == bot_id)
        ))  # fmt: skip
        rows = await session.scalar(select(func.count()).select_from(ExchangeOrder))
    assert rows == 0 and server.orders == []
    assert any("minimum order value" in r for r in reasons), reasons


async def test_its_bot_scope_halted_refuses_its_next_order_as_its_decision(gql, rt, exchanges):
    server = exchanges["binance"]
    token, account_id = await _account(gql, exchanges, "binance")
    await _create(gql, token, account_id, _small_dca())
    bot_id = await _bot_id(rt)
    await force_state(rt, ScopeRef(Scope.BOT, bot_id), RiskState.HALTED, "by hand")
    await following.poll_live(rt)  # the base order's fill
    await worker.run_once(rt)
    assert len(server.orders) == 1  # the base order only
    async with rt.sessions() as session:
        codes = set(await session.scalars(
            select(BotCommand.ack_code).where(BotCommand.bot_id == bot_id)
        ))  # fmt: skip
    assert "RISK_HALTED" in codes, codes


async def test_its_exchanges_price_wakes_it_the_platforms_does_not(gql, rt, exchanges, monkeypatch):
    """A grid that stops at its bounds: the platform's BTC/USDT is not its market; the
    exchange's ticker reaching its top (94000) wakes it, and it stops."""
    monkeypatch.setattr(
        rt, "settings", rt.settings.model_copy(update={"exchange_ticker_cache_seconds": 0})
    )
    server = exchanges["binance"]
    token, account_id = await _account(gql, exchanges, "binance")
    await _create(gql, token, account_id, grid_input(investment="500", atBounds="STOP"))
    bot_id = await _bot_id(rt)
    await following.poll_live(rt)
    await worker.run_once(rt)
    # its grid's orders' own events (placed, answered) wake it once more, as a platform
    # bot's accepted orders do; that step places nothing new
    await worker.run_once(rt)
    async with rt.sessions() as session:
        before = await session.get(Bot, bot_id)
    assert before.last_price == Decimal("89999.98") and before.status == "RUNNING"
    await worker.run_once(rt)  # the same price: not stepped again
    async with rt.sessions() as session:
        assert (await session.get(Bot, bot_id)).steps == before.steps
    last = server.tapes["BTC/USDT"].trades[-1]
    server.tapes["BTC/USDT"].trades.append(
        TapeTrade(last.trade_id + 1, last.time_ms + 1, Decimal(95000), Decimal("0.1"), "buy")
    )
    await worker.run_once(rt)
    async with rt.sessions() as session:
        after = await session.get(Bot, bot_id)
    assert after.last_price == Decimal(95000) and after.status != "RUNNING"
    assert all(o.status != "open" for o in server.orders)


async def test_the_exchange_venue_is_the_venue_interface_over_one_account(gql, rt, exchanges):
    server = exchanges["okx"]
    token, account_id = await _account(gql, exchanges, "okx")
    uid = pk((await gql.data("{ me { id } }", token=token))["me"]["id"])
    venue = ExchangeVenue(rt, user_id=uid, account_id=pk(account_id))
    buy = OrderRequest(Side.BUY, OrderType.LIMIT, Decimal("0.01"), Decimal(89000))
    first = await venue.submit(symbol="BTC/USDT", client_order_id="a:1", request=buy)
    again = await venue.submit(symbol="BTC/USDT", client_order_id="a:1", request=buy)
    assert first.ok and again == first and first.status is OrderStatus.OPEN
    other = replace(buy, quantity=Decimal("0.02"))
    reused = await venue.submit(symbol="BTC/USDT", client_order_id="a:1", request=other)
    assert reused.code == "CLIENT_ORDER_ID_REUSED"
    [order] = server.orders  # once
    assert order.client_order_id == exchange_client_id("a:1")
    off_tick = replace(buy, price=Decimal("89000.005"))
    refused = await venue.submit(symbol="BTC/USDT", client_order_id="a:2", request=off_tick)
    assert refused.code == "VALIDATION_FAILED" and refused.order_id is None
    post_only = replace(buy, post_only=True)
    refused = await venue.submit(symbol="BTC/USDT", client_order_id="a:3", request=post_only)
    assert refused.code == "EXCHANGE_ORDER_TYPE_NOT_AVAILABLE"
    amend = await venue.amend(client_order_id="a:1", price=Decimal(1), quantity=Decimal(1))
    assert amend.code == "EXCHANGE_AMEND_NOT_AVAILABLE"
    [open_order] = await venue.open_orders()
    assert (open_order.order_id, open_order.quantity) == (first.order_id, Decimal("0.01"))
    assert (await venue.balances())["USDT"].available == Decimal("1234.5")
    fill(server, order, Decimal("0.004"))
    await following.poll_live(rt)
    [filled] = await venue.events()
    assert (filled.quantity, filled.remaining, filled.price) == (
        Decimal("0.004"), Decimal("0.006"), Decimal(89000))  # fmt: skip
    assert await venue.events(after=filled.number) == ()
    canceled = await venue.cancel(client_order_id="a:1")
    assert canceled.ok and canceled.status is OrderStatus.CANCELED
    assert order.status == "canceled"
    assert (await venue.cancel(client_order_id="nope")).code == "ORDER_NOT_FOUND"
    someone = ExchangeVenue(rt, user_id=uid + 1000, account_id=pk(account_id))
    assert (await someone.submit(symbol="BTC/USDT", client_order_id="b", request=buy)).code == (
        "NOT_FOUND")  # fmt: skip
    assert len(server.orders) == 1
