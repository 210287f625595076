"""One order contract every covered exchange passes, through the real ccxt against its
stand-in (which verifies each request's signature): limit orders rest, fill in parts and
whole, cancel; market orders fill at once; an order is found by our client order id; a
lost answer is ``ExchangeOutcomeUnknown`` with the order placed exactly once; refusals
are typed; stops are native where the capability data says so."""

from __future__ import annotations

from decimal import Decimal

import pytest

from app.exchanges.domain.accounts import Credentials
from app.exchanges.domain.catalogue import ExchangeId
from app.exchanges.domain.errors import (
    ExchangeInsufficientFunds,
    ExchangeKeyInvalid,
    ExchangeOrderNotFound,
    ExchangeOutcomeUnknown,
    ExchangeRejected,
)
from app.exchanges.domain.orders import (
    ExchangeOrderStatus,
    ExchangeOrderType,
    OrderSubmission,
    new_client_order_id,
)
from app.trading.domain.orders import Side
from tests.support.exchanges import Account, fill
from tests.support.exchanges.keys import new_account, other_secret

ORDER_EXCHANGES = ("binance", "kraken", "okx", "bybit", "coinbase")
CREATE_PATHS = {"binance": "/api/v3/order", "kraken": "/0/private/AddOrder",
                "okx": "/api/v5/trade/batch-orders", "bybit": "/v5/order/create",
                "coinbase": "/api/v3/brokerage/orders"}  # fmt: skip
pytestmark = pytest.mark.parametrize("name", ORDER_EXCHANGES)
S = ExchangeOrderStatus


def _credentials(account: Account, **changes: str) -> Credentials:
    fields = {"api_key": account.api_key, "secret": account.secret,
              "passphrase": account.passphrase, **changes}  # fmt: skip
    return Credentials(**fields)  # type: ignore[arg-type]


def _limit(quantity: str = "0.01", price: str | None = "40000", **changes) -> OrderSubmission:
    fields = {"client_order_id": new_client_order_id(), "symbol": "BTC/USDT",
              "side": Side.BUY, "type": ExchangeOrderType.LIMIT, "quantity": Decimal(quantity),
              "price": price and Decimal(price), **changes}  # fmt: skip
    return OrderSubmission(**fields)


def _session(rt, name, account, **changes):
    return rt.exchanges.session(ExchangeId(name), _credentials(account, **changes))


async def test_a_limit_order_rests_fills_in_parts_then_whole(rt, exchanges, name):
    server = exchanges[name]
    account = server.add(new_account(name))
    submission = _limit()
    async with _session(rt, name, account) as session:
        placed = await session.create_order(submission)
        assert placed.status is S.OPEN and placed.filled == 0
        [order] = server.orders
        assert order.client_order_id == submission.client_order_id
        assert (order.quantity, order.price, order.side) == (Decimal("0.01"), Decimal(40000),
                                                             "buy")  # fmt: skip
        found = await session.find_order(symbol="BTC/USDT", client_order_id=order.client_order_id)
        assert found is not None and found.exchange_order_id == placed.exchange_order_id
        fill(server, order, Decimal("0.004"))
        found = await session.find_order(symbol="BTC/USDT", client_order_id=order.client_order_id)
        assert (found.status, found.filled) == (S.PARTIALLY_FILLED, Decimal("0.004"))
        fill(server, order, Decimal("0.006"), Decimal("39999.5"))
        recent = await session.recent_orders(symbol="BTC/USDT", since=None)
        assert [(o.client_order_id, o.status, o.filled) for o in recent] == [
            (submission.client_order_id, S.FILLED, Decimal("0.01"))]  # fmt: skip
        trades = await session.my_trades(symbol="BTC/USDT", since=None)
    assert sorted((t.quantity, t.price) for t in trades) == [
        (Decimal("0.004"), Decimal(40000)), (Decimal("0.006"), Decimal("39999.5"))]  # fmt: skip
    assert {t.exchange_order_id for t in trades} == {placed.exchange_order_id}
    assert len({t.trade_id for t in trades}) == 2
    assert all(t.fee > 0 for t in trades)
    assert server.refused == []


async def test_an_open_order_is_canceled_once(rt, exchanges, name):
    server = exchanges[name]
    account = server.add(new_account(name))
    async with _session(rt, name, account) as session:
        placed = await session.create_order(_limit())
        await session.cancel_order(exchange_order_id=placed.exchange_order_id, symbol="BTC/USDT")
        [order] = server.orders
        assert order.status == "canceled"
        with pytest.raises((ExchangeOrderNotFound, ExchangeRejected)):
            await session.cancel_order(
                exchange_order_id=placed.exchange_order_id, symbol="BTC/USDT"
            )
        found = await session.find_order(symbol="BTC/USDT", client_order_id=order.client_order_id)
    assert found.status is S.CANCELED


async def test_a_market_order_fills_at_once(rt, exchanges, name):
    server = exchanges[name]
    account = server.add(new_account(name))
    submission = _limit(type=ExchangeOrderType.MARKET, price=None, side=Side.SELL)
    async with _session(rt, name, account) as session:
        await session.create_order(submission)
        found = await session.find_order(symbol="BTC/USDT",
                                         client_order_id=submission.client_order_id)  # fmt: skip
        trades = await session.my_trades(symbol="BTC/USDT", since=None)
    assert (found.status, found.filled) == (S.FILLED, Decimal("0.01"))
    assert [(t.quantity, t.price) for t in trades] == [(Decimal("0.01"), Decimal(50000))]
    assert server.orders[0].side == "sell" and server.orders[0].quantity == Decimal("0.01")


async def test_a_lost_answer_is_an_unknown_outcome_and_the_order_exists_once(rt, exchanges, name):
    server = exchanges[name]
    account = server.add(new_account(name))
    submission = _limit()
    server.lose_answers.append(CREATE_PATHS[name])
    async with _session(rt, name, account) as session:
        with pytest.raises(ExchangeOutcomeUnknown):
            await session.create_order(submission)
        found = await session.find_order(
            symbol="BTC/USDT", client_order_id=submission.client_order_id
        )
        missing = await session.find_order(symbol="BTC/USDT", client_order_id="co0000000000000000")
    creates = [r for r in server.requests if r.path == CREATE_PATHS[name] and r.method == "POST"]
    assert len(creates) == 1 and len(server.orders) == 1  # never re-sent
    assert found is not None and found.status is S.OPEN
    assert missing is None


async def test_refusals_are_typed_and_place_nothing(rt, exchanges, name):
    server = exchanges[name]
    account = server.add(new_account(name))
    async with _session(rt, name, account) as session:
        with pytest.raises(ExchangeInsufficientFunds):
            await session.create_order(_limit(quantity="1"))  # 40,000 USDT > 1234.5
    async with _session(rt, name, account, secret=other_secret(name)) as session:
        with pytest.raises(ExchangeKeyInvalid):
            await session.create_order(_limit())
    assert server.orders == []
    creates = [r for r in server.requests if r.path == CREATE_PATHS[name]]
    # a refusal is never retried (ccxt asks Bybit about the account before its first
    # order: the bad key is refused there, before any create)
    assert len(creates) == (1 if name == "bybit" else 2)
    assert server.refused  # the bad key: refused by the stand-in's signature check


async def test_stops_are_native_where_the_capability_data_says(rt, exchanges, name):
    server = exchanges[name]
    account = server.add(new_account(name))
    submission = _limit(type=ExchangeOrderType.STOP_LOSS_LIMIT, side=Side.SELL,
                        price="44000", stop_price=Decimal("45000"))  # fmt: skip
    async with _session(rt, name, account) as session:
        support = {s.type: s.emulated for s in session.order_types()}
        assert support[ExchangeOrderType.LIMIT] is False
        assert support[ExchangeOrderType.MARKET] is False
        assert support[ExchangeOrderType.STOP_LOSS_LIMIT] is (name == "okx")
        # a stop market order: ccxt's Coinbase refuses it (its stops are stop-limits)
        assert support[ExchangeOrderType.STOP_LOSS] is (name in ("okx", "coinbase"))
        if name == "okx":
            return
        await session.create_order(submission)
    [order] = server.orders
    assert (order.type, order.stop_price, order.price) == (
        "stop_loss_limit", Decimal(45000), Decimal(44000))  # fmt: skip
