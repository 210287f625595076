"""Orders followed by the exchange's order stream (``ccxt.pro``'s watch_orders /
watch_my_trades, the real ccxt talking to the Binance stand-in's WebSocket API): a fill
reaches ``exchange_orders`` and ``exchange_fills`` through the stream, not the poller;
a dropped stream is reconnected and the gap reconciled (each fill once); a disconnected
account's stream is stopped; an exchange without a stream here is left to the poller;
no secret is logged."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from sqlalchemy import select

from app.exchanges import following
from app.exchanges.domain.accounts import Credentials
from app.exchanges.domain.catalogue import ExchangeId
from app.exchanges.domain.sealing import Binding
from app.exchanges.streams import OrderStreams, StreamLeases
from db.models import ExchangeFill, ExchangeOrder
from tests.exchanges.test_accounts_api import DISCONNECT
from tests.exchanges.test_orders_api import _account, _place
from tests.support import pk
from tests.support.exchanges import cancel, fill
from tests.support.exchanges.keys import new_account
from tests.support.trading import eventually

# reconnect at once; the safety-net reconciliation never during a test (so what is
# recorded after the first one came through the stream)
FAST = {"exchange_stream_backoff_seconds": 0.05, "exchange_stream_backoff_max_seconds": 0.2,
        "exchange_stream_reconcile_seconds": 3600}  # fmt: skip
# the exchanges with an order stream here, and the REST requests that read orders or trades
READS = {
    "binance": ("GET /api/v3/openOrders", "GET /api/v3/allOrders", "GET /api/v3/myTrades",
                "GET /api/v3/order"),
    "okx": ("GET /api/v5/trade/orders-pending", "GET /api/v5/trade/orders-history",
            "GET /api/v5/trade/fills-history", "GET /api/v5/trade/order"),
    "bybit": ("GET /v5/order/realtime", "GET /v5/order/history", "GET /v5/execution/list"),
    "kraken": ("POST /0/private/OpenOrders", "POST /0/private/ClosedOrders",
               "POST /0/private/QueryOrders", "POST /0/private/TradesHistory"),
    "coinbase": ("GET /api/v3/brokerage/orders/historical/batch",
                 "GET /api/v3/brokerage/orders/historical/fills"),
}  # fmt: skip
# the exchanges whose stream carries no trades: an order it reports filled further has
# its fills read (REST) at once
FILLS_READ = {"coinbase"}
STREAMED = pytest.mark.parametrize("name", sorted(READS))


@pytest.fixture
async def streams(rt, exchanges, monkeypatch) -> AsyncIterator[OrderStreams]:
    monkeypatch.setattr(rt, "settings", rt.settings.model_copy(update=FAST))
    supervisor = OrderStreams()
    yield supervisor
    await supervisor.aclose()


async def _fills(rt) -> list[ExchangeFill]:
    async with rt.sessions() as session:
        return list(await session.scalars(select(ExchangeFill).order_by(ExchangeFill.id)))


async def _order(rt, order_id: int) -> ExchangeOrder:
    async with rt.sessions() as session:
        row = await session.get(ExchangeOrder, order_id)
    assert row is not None
    return row


def _reads(server) -> int:
    """REST requests that read orders or trades (the poller's, reconciliation's)."""
    reads = READS[server.exchange]
    return sum(1 for r in server.requests if f"{r.method} {r.path}" in reads)


async def _streaming(rt, streams: OrderStreams, connection_id: int) -> bool:
    await streams.supervise(rt)
    return await eventually(lambda: _true(connection_id in streams.healthy))


async def _true(value: bool) -> bool:
    return value


async def _opened(gql, rt, exchanges, streams, name="binance"):
    token, account_id, account = await _account(gql, exchanges, name)
    placed = (await _place(gql, token, account_id))["exchangeOrder"]
    assert await _streaming(rt, streams, pk(account_id))
    return token, account_id, account, placed


@STREAMED
async def test_a_fill_reaches_the_order_and_its_fills_through_the_stream(
    gql, rt, exchanges, streams, name
):
    server = exchanges[name]
    _, _, account, placed = await _opened(gql, rt, exchanges, streams, name)
    assert server.stream_auths == [account.api_key]  # logged in with the connected key
    reads = _reads(server)
    fill(server, server.orders[0], Decimal("0.004"))
    [first] = await eventually(lambda: _fills(rt))
    assert (first.quantity, first.trade_id) == (Decimal("0.004"), server.trades[0].id)
    row = await eventually(lambda: _filled(rt, pk(placed["id"]), Decimal("0.004")))
    assert row.status == "PARTIALLY_FILLED"
    fill(server, server.orders[0], Decimal("0.006"))
    row = await eventually(lambda: _filled(rt, pk(placed["id"]), Decimal("0.01")))
    assert row.status == "FILLED"
    assert len(await eventually(lambda: _count(rt, 2))) == 2
    assert (_reads(server) > reads) is (name in FILLS_READ)  # else the stream brought them
    assert len(streams.healthy) == 1
    assert await following.poll_live(rt, skip=streams.healthy) == 0


@STREAMED
async def test_a_cancel_at_the_exchange_reaches_the_order_through_the_stream(
    gql, rt, exchanges, streams, name
):
    server = exchanges[name]
    _, _, _, placed = await _opened(gql, rt, exchanges, streams, name)
    fill(server, server.orders[0], Decimal("0.004"))
    await eventually(lambda: _filled(rt, pk(placed["id"]), Decimal("0.004")))
    assert [f.trade_id for f in await eventually(lambda: _count(rt, 1))] == [server.trades[0].id]
    reads = _reads(server)
    assert cancel(server, server.orders[0])  # canceled at the exchange, not through us
    row = await eventually(lambda: _status(rt, pk(placed["id"]), "CANCELED"))
    assert row is not None and row.filled == Decimal("0.004")
    assert len(await _fills(rt)) == 1
    assert _reads(server) == reads  # the stream brought it


async def _status(rt, order_id: int, status: str) -> ExchangeOrder | None:
    row = await _order(rt, order_id)
    return row if row.status == status else None


async def _filled(rt, order_id: int, quantity: Decimal) -> ExchangeOrder | None:
    row = await _order(rt, order_id)
    return row if row.filled == quantity else None


async def _count(rt, n: int) -> list[ExchangeFill]:
    found = await _fills(rt)
    return found if len(found) >= n else []


@STREAMED
async def test_fills_during_a_dropped_stream_are_recorded_once_after_it_reconnects(
    gql, rt, exchanges, streams, name
):
    server = exchanges[name]
    _, account_id, account, placed = await _opened(gql, rt, exchanges, streams, name)
    server.refuse_streams = True
    server.drop_streams()
    assert await eventually(lambda: _true(not streams.healthy and not server.stream_count()))
    fill(server, server.orders[0], Decimal("0.004"))  # in the gap: nobody is told
    fill(server, server.orders[0], Decimal("0.002"))
    assert await _fills(rt) == []
    server.refuse_streams = False
    assert await eventually(lambda: _true(pk(account_id) in streams.healthy))
    found = await eventually(lambda: _count(rt, 2))
    assert sorted(f.trade_id for f in found) == sorted(t.id for t in server.trades)
    fill(server, server.orders[0], Decimal("0.004"))  # after it: through the stream
    assert len(await eventually(lambda: _count(rt, 3))) == 3
    await following.reconcile_account(rt, connection_id=pk(account_id))  # read all again
    found = await _fills(rt)
    assert sorted(f.trade_id for f in found) == sorted(t.id for t in server.trades)
    assert len({f.trade_id for f in found}) == len(found) == 3
    row = await _order(rt, pk(placed["id"]))
    assert (row.status, row.filled) == ("FILLED", Decimal("0.01"))
    assert server.stream_auths == [account.api_key, account.api_key]


@STREAMED
async def test_a_disconnected_account_stops_its_stream(gql, rt, exchanges, streams, name):
    server = exchanges[name]
    token, account_id, account, _ = await _opened(gql, rt, exchanges, streams, name)
    assert server.stream_count(account.api_key) == 1
    body = await gql(DISCONNECT, {"id": account_id}, token=token)
    assert "errors" not in body, body
    assert await streams.supervise(rt) == 0
    assert not streams.healthy
    assert await eventually(lambda: _true(server.stream_count() == 0))


@STREAMED
async def test_an_account_with_nothing_to_follow_has_no_stream(gql, rt, exchanges, streams, name):
    server = exchanges[name]
    *_, placed = await _opened(gql, rt, exchanges, streams, name)
    fill(server, server.orders[0], Decimal("0.01"))
    await eventually(lambda: _filled(rt, pk(placed["id"]), Decimal("0.01")))
    await eventually(lambda: _count(rt, 1))
    assert await streams.supervise(rt) == 0
    assert await eventually(lambda: _true(server.stream_count() == 0))


async def _supervised(rt, streams: OrderStreams) -> int:
    return await streams.supervise(rt)


async def _idle(rt, streams: OrderStreams) -> bool:
    return await streams.supervise(rt) == 0


@STREAMED
async def test_one_worker_streams_an_account_and_another_takes_over_when_it_stops(
    gql, rt, exchanges, streams, name
):
    server = exchanges[name]
    token, account_id, account = await _account(gql, exchanges, name)
    placed = (await _place(gql, token, account_id))["exchangeOrder"]
    other = OrderStreams()
    try:
        assert await _streaming(rt, streams, pk(account_id))
        assert await other.supervise(rt) == 0  # the account's lease is held
        assert server.stream_count() == 1 and server.stream_auths == [account.api_key]
        assert await following.poll_live(rt, skip=await other.skipped(rt)) == 0  # not polled
        await streams.aclose()  # the holder stops: its lease is released
        assert server.stream_count() == 0
        assert await _streaming(rt, other, pk(account_id))
        assert await streams.supervise(rt) == 0  # now the other holds it
        assert server.stream_count() == 1
        assert server.stream_auths == [account.api_key, account.api_key]
        fill(server, server.orders[0], Decimal("0.01"))  # followed by the new holder
        row = await eventually(lambda: _filled(rt, pk(placed["id"]), Decimal("0.01")))
        assert row is not None and row.status == "FILLED"
    finally:
        await other.aclose()


async def test_a_dead_workers_lease_expires_and_another_worker_takes_the_account(
    gql, rt, exchanges, streams
):
    server = exchanges["binance"]
    token, account_id, _ = await _account(gql, exchanges, "binance")
    await _place(gql, token, account_id)
    key = StreamLeases.key(rt, pk(account_id))
    await rt.redis.set(key, "a-worker-that-died", px=300)  # never renewed nor released
    assert await streams.supervise(rt) == 0
    assert server.stream_count() == 0
    assert await eventually(lambda: _supervised(rt, streams)) == 1  # expired: taken
    assert await _streaming(rt, streams, pk(account_id))
    assert await rt.redis.get(key) in (streams.leases.token, streams.leases.token.encode())


async def test_a_stream_whose_lease_is_lost_stops(gql, rt, exchanges, monkeypatch):
    monkeypatch.setattr(rt, "settings", rt.settings.model_copy(update=FAST))
    server = exchanges["binance"]
    token, account_id, _ = await _account(gql, exchanges, "binance")
    await _place(gql, token, account_id)
    holder = OrderStreams(StreamLeases(seconds=0.3))  # renewed every 0.1 s
    try:
        assert await _streaming(rt, holder, pk(account_id))
        key = StreamLeases.key(rt, pk(account_id))
        await rt.redis.set(key, "another-worker", px=60_000)  # taken over elsewhere
        assert await eventually(lambda: _true(not holder.healthy and not server.stream_count()))
        assert await eventually(lambda: _idle(rt, holder))  # not taken back while held
        assert await holder.supervise(rt) == 0
    finally:
        await holder.aclose()
    assert await rt.redis.get(key) in ("another-worker", b"another-worker")  # not released


async def test_the_stream_tests_run_for_every_exchange_with_a_stream(rt, exchanges):
    assert {e.value for e in ExchangeId if rt.exchanges.streamed(e)} == set(READS)


@STREAMED
async def test_no_secret_is_logged_by_a_stream(gql, rt, exchanges, streams, caplog, name):
    caplog.set_level(logging.DEBUG)
    server = exchanges[name]
    _, _, account, _ = await _opened(gql, rt, exchanges, streams, name)
    fill(server, server.orders[0], Decimal("0.004"))
    await eventually(lambda: _count(rt, 1))
    server.drop_streams()  # a reconnect logs too
    await eventually(lambda: _true(len(server.stream_auths) == 2))
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "exchange order stream open" in logged
    needles = [account.secret, account.api_key, account.secret[:20], account.passphrase]
    assert [n for n in needles if n and n in logged] == []


async def test_an_accounts_ccxt_instance_is_kept_until_its_key_changes_or_it_is_forgotten(
    rt, exchanges
):
    connector, server = rt.exchanges, exchanges["binance"]
    binding = Binding(user_id=1, exchange="binance", connection_id=10**9)
    account = server.add(new_account("binance"))
    sealed = rt.exchange_keys.seal(
        Credentials(account.api_key, account.secret, None).to_bytes(), binding
    )

    async def instance(sealed) -> object:
        async with connector.sealed_session(ExchangeId.BINANCE, sealed, binding) as session:
            await session.balances()
            return session._exchange

    first = await instance(sealed)
    assert await instance(sealed) is first
    replaced = server.add(new_account("binance"))  # a new key: a new version
    resealed = rt.exchange_keys.seal(
        Credentials(replaced.api_key, replaced.secret, None).to_bytes(), binding
    )
    second = await instance(resealed)
    assert second is not first and len(connector.instances) == 1
    assert await eventually(lambda: _true(first.session is None))  # the old one closed
    connector.forget(binding.connection_id)
    assert len(connector.instances) == 0
    assert await instance(resealed) is not second
