"""Exchanges' public trades over their WebSocket (``ccxt.pro`` watch_trades against the
stand-ins' trade streams: OKX's ``trades`` channel, Binance's ``@aggTrade``): each
streamed trade is stored once (unique on the exchange's trade id, as the REST path
stores it), and an armed emulated stop on the market is judged on it as it arrives: it
fires from a trade pushed on the WebSocket, once, without a REST trades call; the REST
read covers what traded while the stream was down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from app.exchanges import market_data, triggers
from app.exchanges.domain.catalogue import ExchangeId
from app.exchanges.trade_streams import TradeStreams
from app.paper import exchange_feed
from tests.exchanges.test_orders_api import _creates
from tests.exchanges.test_paper_on_exchanges import OPEN, _input, api  # noqa: F401
from tests.exchanges.test_triggers_api import BTC, _armed, _order
from tests.support.exchanges import trade_at
from tests.support.trading import rows, trader

TIMEOUT = 10.0
OKX_TRADES = "/api/v5/market/trades"


async def _until(check) -> None:
    """Once ``check()`` holds (the test's own timeout otherwise)."""

    async def wait() -> None:
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    await asyncio.wait_for(wait(), TIMEOUT)


@pytest.fixture
async def fast(rt, exchanges) -> AsyncIterator[None]:
    original = rt.settings
    rt.settings = original.model_copy(update={"exchange_stream_backoff_seconds": 0.05})
    yield
    rt.settings = original


async def _streaming(rt, streams: TradeStreams, server, exchange: ExchangeId, topic: str) -> None:
    assert await streams.supervise(rt) == 1
    await _until(lambda: (exchange, BTC) in streams.healthy)
    await _until(lambda: any(topic in s.topics for s in list(server.streams)))


async def _stored(rt, source: str, trade_ids: list[int]) -> list[str]:
    found = await rows(rt, "SELECT trade_id FROM market_trades WHERE source = $1"
                           " AND trade_id = ANY($2::text[]) ORDER BY trade_id",
                       source, [str(i) for i in trade_ids])  # fmt: skip
    return [r["trade_id"] for r in found]


async def test_a_stop_fires_once_from_a_trade_pushed_on_the_stream(gql, rt, exchanges, fast):
    server = exchanges["okx"]
    token, _, placed = await _armed(gql, exchanges, "okx", "STOP_LOSS")  # sell, stop 45000
    streams = TradeStreams()
    try:
        await _streaming(rt, streams, server, ExchangeId.OKX, "trades:BTC-USDT")
        rest = server.public_count(OKX_TRADES)
        above = trade_at(server, BTC, Decimal("45000.01"))  # not yet
        await _until(lambda: streams.batches == 1)
        assert server.orders == []
        crossing = trade_at(server, BTC, Decimal("44999.50"))
        await _until(lambda: streams.batches == 2)
        assert len(server.orders) == 1
        again = trade_at(server, BTC, Decimal("44000"))  # crosses too: nothing again
        await _until(lambda: streams.batches == 3)
        assert await triggers.fire_armed(rt, skip=streams.healthy) == 0  # the poll skips it
        assert server.public_count(OKX_TRADES) == rest  # judged on the stream alone
    finally:
        await streams.aclose()
    [sent] = server.orders
    assert len(_creates(server, "okx")) == 1
    assert (sent.client_order_id, sent.type) == (placed["clientOrderId"], "market")
    node = await _order(gql, token, placed["id"])
    assert (node["triggerState"], node["triggerPrice"]) == ("TRIGGERED", "44999.5")
    ids = sorted(str(t.trade_id) for t in (above, crossing, again))
    assert await _stored(rt, "exchange:okx", [above.trade_id, crossing.trade_id,
                                              again.trade_id]) == ids  # fmt: skip
    await market_data.recent_trades(rt, exchange=ExchangeId.OKX, symbol=BTC, first=100)
    assert await _stored(rt, "exchange:okx", [above.trade_id, crossing.trade_id,
                                              again.trade_id]) == ids  # once each  # fmt: skip


async def test_what_traded_while_the_stream_was_down_is_read_over_rest(gql, rt, exchanges,
                                                                        fast):  # fmt: skip
    server = exchanges["okx"]
    await _armed(gql, exchanges, "okx", "STOP_LOSS")
    streams = TradeStreams()
    try:
        await _streaming(rt, streams, server, ExchangeId.OKX, "trades:BTC-USDT")
        server.refuse_streams = True
        server.drop_streams()
        await _until(lambda: not streams.healthy)
        rest = server.public_count(OKX_TRADES)
        trade_at(server, BTC, Decimal("44000"))  # in the gap: no stream to push it
        server.refuse_streams = False
        await _until(lambda: len(server.orders) == 1)  # on the reconnect's REST read
        assert server.public_count(OKX_TRADES) > rest
        await _until(lambda: (ExchangeId.OKX, BTC) in streams.healthy)
    finally:
        await streams.aclose()
    assert len(_creates(server, "okx")) == 1


async def _eventually(read, expected) -> None:
    """Once ``await read()`` gives ``expected`` (the test's own timeout otherwise)."""

    async def wait() -> None:
        while await read() != expected:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    await asyncio.wait_for(wait(), TIMEOUT)


async def test_binance_s_streamed_trades_are_stored_once(api, rt, exchanges, fast):  # noqa: F811
    server = exchanges["binance"]
    _, token = await trader(api, rt, "paper@example.com")
    opened = (await api.data(OPEN, {"input": _input("binance")}, token=token))["openPaperAccount"]
    assert opened["__typename"] == "PaperAccountPayload", opened
    streams = TradeStreams(exchange_feed.markets)  # an exchange paper account's market
    try:
        await _streaming(rt, streams, server, ExchangeId.BINANCE, "btcusdt@aggTrade")
        read = server.public_count("/api/v3/aggTrades")  # the account's opening read
        pushed = [trade_at(server, BTC, Decimal(p)) for p in ("90000.5", "90001")]
        ids = sorted(str(t.trade_id) for t in pushed)
        await _eventually(lambda: _stored(rt, "exchange:binance", [t.trade_id for t in pushed]),
                          ids)  # fmt: skip
        assert server.public_count("/api/v3/aggTrades") == read  # streamed, not read
    finally:
        await streams.aclose()
    await exchange_feed.run_once(rt)  # the REST read of the same trades
    assert server.public_count("/api/v3/aggTrades") == read + 1
    assert await _stored(rt, "exchange:binance", [t.trade_id for t in pushed]) == ids
