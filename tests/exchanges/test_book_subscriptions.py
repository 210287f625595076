"""Subscriptions to an exchange's order book, made by polling its REST book: a snapshot,
then deltas (the levels that changed, 0 for a level gone) with sequence and
previousSequence; one poller per book shared by every subscriber of the process; a
failed poll is retried and the stream goes on. Over a real WebSocket as well."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from decimal import Decimal

import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from app.asgi import create_app
from app.exchanges.book_polling import BookPollers, book_changes
from app.exchanges.domain.catalogue import ExchangeId
from app.exchanges.domain.errors import ExchangeSymbolUnknown
from tests.exchanges.conftest import EXCHANGES
from tests.gateway.test_websocket import LiveServer

TIMEOUT = 10.0


@pytest.fixture
async def polling(rt, exchanges) -> AsyncIterator[None]:
    original = rt.settings
    rt.settings = original.model_copy(
        update={"exchange_book_poll_seconds": 0.1, "exchange_book_cache_seconds": 0.05}
    )
    yield
    rt.settings = original


async def _next(changes):
    return await asyncio.wait_for(anext(changes), TIMEOUT)


async def test_a_snapshot_then_the_changed_levels(rt, polling, exchanges):
    tape = exchanges["kraken"].tapes["BTC/USDT"]
    changes = book_changes(rt, exchange=ExchangeId.KRAKEN, symbol="BTC/USDT", depth=3)
    async with aclosing(changes):
        snapshot = await _next(changes)
        assert snapshot.previous_sequence is None
        assert list(snapshot.bids) == tape.bids[:3] and list(snapshot.asks) == tape.asks[:3]
        tape.move(Decimal("0.01"))  # every level up a tick, the best bid larger
        delta = await _next(changes)
    assert (delta.sequence, delta.previous_sequence) == (snapshot.sequence + 1, snapshot.sequence)
    assert delta.bids[0] == tape.bids[0]  # the new levels, then the one gone (0)
    assert (snapshot.bids[2][0], Decimal(0)) in delta.bids
    assert (snapshot.asks[0][0], Decimal(0)) in delta.asks
    assert rt.coalescer("exchange-book-pollers", BookPollers).running == {}  # stopped


async def test_subscribers_share_one_poller_and_its_numbers(rt, polling, exchanges):
    server = exchanges["bybit"]
    tape = server.tapes["ETH/USDT"]
    one = book_changes(rt, exchange=ExchangeId.BYBIT, symbol="ETH/USDT", depth=5)
    two = book_changes(rt, exchange=ExchangeId.BYBIT, symbol="ETH/USDT", depth=5)
    async with aclosing(one), aclosing(two):
        first, second = await asyncio.gather(_next(one), _next(two))
        assert first == second
        (poller,) = rt.coalescer("exchange-book-pollers", BookPollers).running.values()
        tape.move(Decimal("-0.02"))
        deltas = await asyncio.gather(_next(one), _next(two))
        assert deltas[0] == deltas[1] and deltas[0].previous_sequence == first.sequence
        assert server.public_count("/market/orderbook") <= poller.polls  # not one per subscriber


async def test_a_failed_poll_is_retried_and_the_stream_goes_on(rt, polling, exchanges):
    server = exchanges["bybit"]  # polled
    tape = server.tapes["BTC/USDT"]
    changes = book_changes(rt, exchange=ExchangeId.BYBIT, symbol="BTC/USDT", depth=2)
    async with aclosing(changes):
        snapshot = await _next(changes)
        server.fail_next(*(503,) * 3, 429)
        tape.move(Decimal("0.05"))
        delta = await _next(changes)
    assert delta.previous_sequence == snapshot.sequence and delta.bids[0] == tape.bids[0]
    assert server.failures == []


async def test_an_unknown_symbol_ends_the_subscription_with_a_typed_error(rt, polling, exchanges):
    changes = book_changes(rt, exchange=ExchangeId.COINBASE, symbol="DOGE/USDT", depth=2)
    async with aclosing(changes):
        with pytest.raises(ExchangeSymbolUnknown):
            await _next(changes)


# --- over a WebSocket -----------------------------------------------------------------

BOOK = """subscription($venue: Venue!) { orderBook(symbol: "BTC/USDT", depth: 2, venue: $venue) {
  kind sequence previousSequence bids { price quantity } asks { price quantity } } }"""


@pytest.fixture(scope="module")
def live(settings, stand_ins) -> Iterator[LiveServer]:
    served = settings.model_copy(update={
        "exchange_api_bases": {n: s.url for n, s in stand_ins.items()},
        "exchange_book_poll_seconds": 0.1, "exchange_book_cache_seconds": 0.05,
        "background_jobs_enabled": False,
    })  # fmt: skip
    server = LiveServer(create_app(served))
    server.start()
    yield server
    server.stop()


async def _receive(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


@pytest.mark.parametrize("name", EXCHANGES)
async def test_an_exchange_s_book_over_a_websocket(live, stand_ins, name):
    stand_ins[name].reset()
    tape = stand_ins[name].tapes["BTC/USDT"]
    async with connect(live.ws_url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert (await _receive(ws))["type"] == "connection_ack"
        variables = {"venue": name.upper()}
        await ws.send(json.dumps({"id": "1", "type": "subscribe",
                                  "payload": {"query": BOOK, "variables": variables}}))  # fmt: skip
        snapshot = (await _receive(ws))["payload"]["data"]["orderBook"]
        tape.move(Decimal("0.01"))
        delta = (await _receive(ws))["payload"]["data"]["orderBook"]
        await ws.send(json.dumps({"id": "1", "type": "complete"}))
    assert snapshot["kind"] == "SNAPSHOT" and snapshot["previousSequence"] is None
    assert [b["price"] for b in snapshot["bids"]] == ["89999.99", "89999.98"]
    assert delta["kind"] == "DELTA" and delta["previousSequence"] == snapshot["sequence"]
    assert {"price": "90000", "quantity": "0.625"} in delta["bids"]
