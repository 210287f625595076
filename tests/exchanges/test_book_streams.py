"""Subscriptions to an exchange's order book where its WebSocket is followed (Binance:
``ccxt.pro``'s watch_order_book against the stand-in's diff depth stream): the same
contract as the polled ones (a snapshot, then deltas with sequence and
previousSequence), the deltas from the stream, not from polls; a dropped stream is
opened again and the stream of deltas goes on without a gap in its numbers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from decimal import Decimal

import pytest

from app.exchanges.book_polling import BookPollers, BookWatcher, book_changes
from app.exchanges.domain.catalogue import ExchangeId

TIMEOUT = 10.0


@pytest.fixture
async def fast(rt, exchanges) -> AsyncIterator[None]:
    original = rt.settings
    rt.settings = original.model_copy(
        update={"exchange_book_poll_seconds": 0.1, "exchange_book_cache_seconds": 0.05}
    )
    yield
    rt.settings = original


async def _next(changes):
    return await asyncio.wait_for(anext(changes), TIMEOUT)


async def _subscribed(server, topic: str) -> None:
    async def check() -> None:
        while not any(topic in t for s in list(server.streams) for t in s.topics):  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    await asyncio.wait_for(check(), TIMEOUT)


async def test_deltas_come_from_the_exchange_s_websocket(rt, fast, exchanges):
    server = exchanges["binance"]
    tape = server.tapes["BTC/USDT"]
    changes = book_changes(rt, exchange=ExchangeId.BINANCE, symbol="BTC/USDT", depth=3)
    async with aclosing(changes):
        snapshot = await _next(changes)
        (watcher,) = rt.coalescer("exchange-book-pollers", BookPollers).running.values()
        assert isinstance(watcher, BookWatcher)
        assert list(snapshot.bids) == tape.bids[:3] and list(snapshot.asks) == tape.asks[:3]
        await _subscribed(server, "btcusdt@depth")
        await asyncio.wait_for(_received(watcher), TIMEOUT)  # its own snapshot taken
        fetched = server.public_count("/api/v3/depth")
        tape.move(Decimal("0.01"))
        delta = await _next(changes)
        tape.move(Decimal("0.01"))
        second = await _next(changes)
        assert server.public_count("/api/v3/depth") == fetched  # no poll: the stream
    assert (delta.sequence, delta.previous_sequence) == (snapshot.sequence + 1, snapshot.sequence)
    assert (second.sequence, second.previous_sequence) == (delta.sequence + 1, delta.sequence)
    assert second.bids[0] == tape.bids[0]
    assert (snapshot.bids[2][0], Decimal(0)) in delta.bids
    assert rt.coalescer("exchange-book-pollers", BookPollers).running == {}  # stopped
    await asyncio.wait_for(_closed(server), TIMEOUT)


async def _received(watcher) -> None:
    while not watcher.streamed:  # noqa: ASYNC110
        await asyncio.sleep(0.02)


async def _closed(server) -> None:
    while server.stream_count():  # noqa: ASYNC110
        await asyncio.sleep(0.02)


async def test_a_dropped_book_stream_is_opened_again_and_the_deltas_go_on(rt, fast, exchanges):
    server = exchanges["binance"]
    tape = server.tapes["ETH/USDT"]
    changes = book_changes(rt, exchange=ExchangeId.BINANCE, symbol="ETH/USDT", depth=2)
    async with aclosing(changes):
        snapshot = await _next(changes)
        await _subscribed(server, "ethusdt@depth")
        server.refuse_streams = True
        server.drop_streams()
        await asyncio.wait_for(_closed(server), TIMEOUT)
        tape.move(Decimal("0.05"))  # in the gap: seen in the new stream's snapshot
        server.refuse_streams = False
        delta = await _next(changes)
        assert delta.previous_sequence == snapshot.sequence
        assert delta.bids[0] == tape.bids[0]
        await _subscribed(server, "ethusdt@depth")
        tape.move(Decimal("0.05"))
        after = await _next(changes)
    assert after.previous_sequence == delta.sequence and after.bids[0] == tape.bids[0]
