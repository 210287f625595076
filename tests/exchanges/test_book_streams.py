"""Subscriptions to an exchange's order book where its WebSocket is followed (Binance:
``ccxt.pro``'s watch_order_book against the stand-in's diff depth stream): the same
contract as the polled ones (a snapshot, then deltas with sequence and
previousSequence), the deltas from the stream, not from polls; a dropped stream is
opened again and the stream of deltas goes on without a gap in its numbers."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from decimal import Decimal

import pytest

from app.exchanges.book_polling import BookPollers, BookWatcher, book_changes
from app.exchanges.domain.catalogue import ExchangeId
from tests.exchanges.test_book_subscriptions import TIMEOUT, _next, polling  # noqa: F401

pytestmark = pytest.mark.usefixtures("polling")  # a fast poll period, the backoff's start


async def _until(check) -> None:
    """Once ``check()`` holds (the test's own timeout otherwise)."""

    async def wait() -> None:
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    await asyncio.wait_for(wait(), TIMEOUT)


def _subscribed(server, topic: str):
    return _until(lambda: any(topic in t for s in list(server.streams) for t in s.topics))


async def test_deltas_come_from_the_exchange_s_websocket(rt, exchanges):
    server = exchanges["binance"]
    tape = server.tapes["BTC/USDT"]
    changes = book_changes(rt, exchange=ExchangeId.BINANCE, symbol="BTC/USDT", depth=3)
    async with aclosing(changes):
        snapshot = await _next(changes)
        (watcher,) = rt.coalescer("exchange-book-pollers", BookPollers).running.values()
        assert isinstance(watcher, BookWatcher)
        assert list(snapshot.bids) == tape.bids[:3] and list(snapshot.asks) == tape.asks[:3]
        await _subscribed(server, "btcusdt@depth")
        await _until(lambda: watcher.streamed)  # its own snapshot taken
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
    await _until(lambda: not server.stream_count())


async def test_a_dropped_book_stream_is_opened_again_and_the_deltas_go_on(rt, exchanges):
    server = exchanges["binance"]
    tape = server.tapes["ETH/USDT"]
    changes = book_changes(rt, exchange=ExchangeId.BINANCE, symbol="ETH/USDT", depth=2)
    async with aclosing(changes):
        snapshot = await _next(changes)
        await _subscribed(server, "ethusdt@depth")
        server.refuse_streams = True
        server.drop_streams()
        await _until(lambda: not server.stream_count())
        tape.move(Decimal("0.05"))  # in the gap: seen in the new stream's snapshot
        server.refuse_streams = False
        delta = await _next(changes)
        assert delta.previous_sequence == snapshot.sequence
        assert delta.bids[0] == tape.bids[0]
        await _subscribed(server, "ethusdt@depth")
        tape.move(Decimal("0.05"))
        after = await _next(changes)
    assert after.previous_sequence == delta.sequence and after.bids[0] == tape.bids[0]
