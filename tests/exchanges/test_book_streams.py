"""Subscriptions to an exchange's order book where its WebSocket is followed
(``ccxt.pro``'s watch_order_book: Binance's diff depth stream, OKX's ``books`` channel,
against the stand-ins): the same contract as the polled ones (a snapshot, then deltas
with sequence and previousSequence), the deltas from the stream, not from polls; a
dropped stream is opened again and the stream of deltas goes on without a gap in its
numbers. OKX's updates carry a sequence and a checksum: a gap or a wrong checksum drops
the book and takes a new snapshot (a resync), and the subscribers' book is right after."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from decimal import Decimal

import pytest

from app.exchanges.book_polling import BookPollers, BookWatcher, book_changes
from app.exchanges.domain.catalogue import ExchangeId
from tests.exchanges.test_book_subscriptions import TIMEOUT, _next, polling  # noqa: F401

pytestmark = pytest.mark.usefixtures("polling")  # a fast poll period, the backoff's start

# per exchange: its book stream's topic at the stand-in, its REST order book's path
STREAMED = {
    "binance": ("{lower}@depth", "/api/v3/depth"),
    "okx": ("books:{dashed}", "/api/v5/market/books"),
}


async def _until(check) -> None:
    """Once ``check()`` holds (the test's own timeout otherwise)."""

    async def wait() -> None:
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    await asyncio.wait_for(wait(), TIMEOUT)


def _topic(name: str, symbol: str) -> str:
    base, quote = symbol.split("/")
    return STREAMED[name][0].format(lower=f"{base}{quote}".lower(), dashed=f"{base}-{quote}")


def _subscribed(server, topic: str):
    return _until(lambda: any(topic in t for s in list(server.streams) for t in s.topics))


def _book(snapshot, deltas, side: str) -> list:
    """A subscriber's side of the book: the snapshot's levels with the deltas applied."""
    levels = dict(getattr(snapshot, side))
    for delta in deltas:
        for price, quantity in getattr(delta, side):
            if quantity:
                levels[price] = quantity
            else:
                levels.pop(price, None)
    return sorted(levels.items(), reverse=side == "bids")


@pytest.mark.parametrize("name", STREAMED)
async def test_deltas_come_from_the_exchange_s_websocket(rt, exchanges, name):
    server = exchanges[name]
    tape = server.tapes["BTC/USDT"]
    rest = STREAMED[name][1]
    changes = book_changes(rt, exchange=ExchangeId(name), symbol="BTC/USDT", depth=3)
    async with aclosing(changes):
        snapshot = await _next(changes)
        (watcher,) = rt.coalescer("exchange-book-pollers", BookPollers).running.values()
        assert isinstance(watcher, BookWatcher)
        assert list(snapshot.bids) == tape.bids[:3] and list(snapshot.asks) == tape.asks[:3]
        await _subscribed(server, _topic(name, "BTC/USDT"))
        await _until(lambda: watcher.streamed)  # its own snapshot taken
        fetched = server.public_count(rest)
        tape.move(Decimal("0.01"))
        delta = await _next(changes)
        tape.move(Decimal("0.01"))
        second = await _next(changes)
        assert server.public_count(rest) == fetched  # no poll: the stream
    assert (delta.sequence, delta.previous_sequence) == (snapshot.sequence + 1, snapshot.sequence)
    assert (second.sequence, second.previous_sequence) == (delta.sequence + 1, delta.sequence)
    assert second.bids[0] == tape.bids[0]
    assert (snapshot.bids[2][0], Decimal(0)) in delta.bids
    assert rt.coalescer("exchange-book-pollers", BookPollers).running == {}  # stopped
    await _until(lambda: not server.stream_count())


@pytest.mark.parametrize("name", STREAMED)
async def test_a_dropped_book_stream_is_opened_again_and_the_deltas_go_on(rt, exchanges, name):
    server = exchanges[name]
    tape = server.tapes["ETH/USDT"]
    changes = book_changes(rt, exchange=ExchangeId(name), symbol="ETH/USDT", depth=2)
    async with aclosing(changes):
        snapshot = await _next(changes)
        await _subscribed(server, _topic(name, "ETH/USDT"))
        server.refuse_streams = True
        server.drop_streams()
        await _until(lambda: not server.stream_count())
        tape.move(Decimal("0.05"))  # in the gap: seen in the new stream's snapshot
        server.refuse_streams = False
        delta = await _next(changes)
        assert delta.previous_sequence == snapshot.sequence
        assert delta.bids[0] == tape.bids[0]
        await _subscribed(server, _topic(name, "ETH/USDT"))
        tape.move(Decimal("0.05"))
        after = await _next(changes)
    assert after.previous_sequence == delta.sequence and after.bids[0] == tape.bids[0]


@pytest.mark.parametrize("fault", ["checksum", "gap"])
async def test_a_wrong_checksum_or_a_gap_at_okx_resyncs_the_book(rt, exchanges, fault):
    server = exchanges["okx"]
    tape = server.tapes["BTC/USDT"]
    changes = book_changes(rt, exchange=ExchangeId.OKX, symbol="BTC/USDT", depth=5)
    async with aclosing(changes):
        snapshot = await _next(changes)
        await _subscribed(server, "books:BTC-USDT")
        (watcher,) = rt.coalescer("exchange-book-pollers", BookPollers).running.values()
        await _until(lambda: watcher.streamed)
        assert server.book_snapshots == ["BTC-USDT"]
        server.book_faults.append(fault)
        tape.move(Decimal("0.01"))  # spoilt: "checksum" garbled, "gap" lost
        if fault == "gap":
            tape.move(Decimal("0.01"))  # its prevSeqId names the lost update
        await _until(lambda: len(server.book_snapshots) == 2)  # dropped, subscribed again
        deltas = []
        while _book(snapshot, deltas, "bids") != tape.bids[:5]:
            deltas.append(await _next(changes))
        tape.move(Decimal("0.01"))
        deltas.append(await _next(changes))
    assert server.book_snapshots == ["BTC-USDT"] * 2
    assert _book(snapshot, deltas, "bids") == tape.bids[:5]
    assert _book(snapshot, deltas, "asks") == tape.asks[:5]
    numbers = [(d.sequence, d.previous_sequence) for d in deltas]
    assert numbers == [(snapshot.sequence + n + 1, snapshot.sequence + n)
                       for n in range(len(deltas))]  # fmt: skip
