"""Order-book streams of an exchange's market, made by polling its REST order book every
``EXCHANGE_BOOK_POLL_SECONDS``, or, where the exchange's WebSocket is followed
(``ExchangeConnector.book_streamed``: Binance, OKX), from it (``BookWatcher``).

One ``BookPoller`` per (exchange, symbol, depth) in a process, shared by every
subscriber (and the order-book cache of app/exchanges/market_data.py shares the fetches
between processes): it polls while it has listeners and stops with the last. Its
sequence numbers are its own (1 for its first book), so every subscriber of the process
sees the same numbers: a snapshot is the book as of a sequence, a delta the levels that
changed between two polls (amount 0: the level left the top ``depth``) with
``sequence`` and ``previous_sequence``. A poll that fails (the exchange unavailable,
rate limited) is retried with backoff, doubling up to ``MAX_BACKOFF_SECONDS``; the
stream goes on. A listener that falls ``QUEUE_SIZE`` changes behind is dropped
(``TransientError``: subscribe again, for a new snapshot)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from app.core.errors import TransientError, UserError
from app.exchanges import market_data
from app.exchanges.domain.catalogue import ExchangeId
from app.exchanges.domain.marketdata import (
    ExchangeBook,
    Level,
    changed_levels,
    check_depth,
    check_symbol,
)
from app.runtime import Runtime

log = logging.getLogger(__name__)
QUEUE_SIZE = 64
MAX_BACKOFF_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class BookChange:
    """A snapshot (``previous_sequence`` None: the whole top ``depth``) or a delta."""

    symbol: str
    sequence: int
    previous_sequence: int | None
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


@dataclass(eq=False)
class BookPoller:
    rt: Runtime
    exchange: ExchangeId
    symbol: str
    depth: int
    sequence: int = 0
    book: ExchangeBook | None = None
    listeners: set[asyncio.Queue[BookChange | None]] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    polls: int = 0  # requests made (for tests and logs)
    first_poll: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def snapshot(self) -> BookChange:
        async with self.first_poll:  # listeners arriving together share the first poll
            if self.book is None:
                self._apply(await self._fetch())
        assert self.book is not None
        return BookChange(self.symbol, self.sequence, None, self.book.bids, self.book.asks)

    async def _fetch(self) -> ExchangeBook:
        self.polls += 1
        return await market_data.order_book(
            self.rt, exchange=self.exchange, symbol=self.symbol, depth=self.depth
        )

    def _apply(self, book: ExchangeBook) -> BookChange | None:
        before, self.book = self.book, book
        if before is None:
            self.sequence += 1
            return None
        bids, asks = changed_levels(before.bids, book.bids), changed_levels(before.asks, book.asks)
        if not bids and not asks:
            return None
        self.sequence += 1
        return BookChange(self.symbol, self.sequence, self.sequence - 1, tuple(bids), tuple(asks))

    def start(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._poll(), name=f"book-poll-{self.exchange}")

    async def _poll(self) -> None:
        every = self.rt.settings.exchange_book_poll_seconds
        wait = every
        while self.listeners:
            await asyncio.sleep(wait)
            try:
                change = self._apply(await self._fetch())
            except (UserError, TransientError) as error:  # the exchange's, Redis': later
                wait = min(MAX_BACKOFF_SECONDS, wait * 2)
                log.warning("order book poll failed", extra={
                    "exchange": self.exchange.value, "error": error.code})  # fmt: skip
                continue
            except Exception:  # a bug: the listeners are told to subscribe again
                log.exception("order book polling stopped", extra={
                    "exchange": self.exchange.value})  # fmt: skip
                self._end_listeners()
                return
            wait = every
            if change is not None:
                self._publish(change)

    def _end_listeners(self) -> None:
        for queue in list(self.listeners):
            self._drop(queue)

    def _publish(self, change: BookChange) -> None:
        for queue in list(self.listeners):
            try:
                queue.put_nowait(change)
            except asyncio.QueueFull:
                self._drop(queue)

    def _drop(self, queue: asyncio.Queue[BookChange | None]) -> None:
        """The listener is told (None) that its stream ended: it subscribes again."""
        self.listeners.discard(queue)
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()  # room for the None
        queue.put_nowait(None)


@dataclass(eq=False)
class BookWatcher(BookPoller):
    """A ``BookPoller`` whose changes come from the exchange's WebSocket (``ccxt.pro``
    watch_order_book, where ``ExchangeConnector.book_streamed``) instead of polls: the
    snapshot as the poller's; then each book the stream gives, compared with the last,
    is a delta with the next sequence number, so subscribers see the same contract. A
    dropped stream, or one whose book went wrong (a gap in the exchange's sequence, a
    checksum that does not match: the ccxt edge drops the book), is opened again
    (backoff, doubling): ccxt takes a new snapshot of its own, and the comparison with
    the last book sent covers the gap."""

    streamed: int = 0  # books the stream gave (for tests and logs)

    async def _poll(self) -> None:
        wait = self.rt.settings.exchange_book_poll_seconds
        while self.listeners:
            try:
                async with self.rt.exchanges.book_stream(self.exchange) as stream:
                    while self.listeners:
                        book = await stream.book(self.symbol, self.depth)
                        self.streamed += 1
                        change = self._apply(book)
                        wait = self.rt.settings.exchange_book_poll_seconds
                        if change is not None:
                            self._publish(change)
            except (UserError, TransientError) as error:
                log.warning("order book stream interrupted", extra={
                    "exchange": self.exchange.value, "error": error.code})  # fmt: skip
            except Exception:  # a bug: the listeners are told to subscribe again
                log.exception("order book stream stopped", extra={
                    "exchange": self.exchange.value})  # fmt: skip
                self._end_listeners()
                return
            await asyncio.sleep(wait)
            wait = min(MAX_BACKOFF_SECONDS, wait * 2)


@dataclass
class BookPollers:
    """This process's pollers by (exchange, symbol, depth)."""

    running: dict[tuple[ExchangeId, str, int], BookPoller] = field(default_factory=dict)

    def get(self, rt: Runtime, exchange: ExchangeId, symbol: str, depth: int) -> BookPoller:
        key = (exchange, symbol, depth)
        poller = self.running.get(key)
        if poller is None or (poller.task is not None and poller.task.get_loop()
                              is not asyncio.get_running_loop()):  # fmt: skip
            kind = BookWatcher if rt.exchanges.book_streamed(exchange) else BookPoller
            poller = self.running[key] = kind(rt, exchange, symbol, depth)
        return poller

    def release(self, poller: BookPoller) -> None:
        if poller.listeners:
            return
        if poller.task is not None:
            poller.task.cancel()
        key = (poller.exchange, poller.symbol, poller.depth)
        if self.running.get(key) is poller:
            del self.running[key]


async def book_changes(
    rt: Runtime, *, exchange: ExchangeId, symbol: str, depth: int
) -> AsyncIterator[BookChange]:
    """A snapshot, then the deltas, for as long as the caller iterates."""
    symbol, depth = check_symbol(symbol), check_depth(depth)
    pollers = rt.coalescer("exchange-book-pollers", BookPollers)
    poller = pollers.get(rt, exchange, symbol, depth)
    queue: asyncio.Queue[BookChange | None] = asyncio.Queue(QUEUE_SIZE)
    poller.listeners.add(queue)  # before the snapshot: no change is missed after it
    try:
        first = await poller.snapshot()
        poller.start()
        yield first
        while True:
            change = await queue.get()
            if change is None:
                raise TransientError("The order book stream fell behind: subscribe again")
            if change.sequence > first.sequence:
                yield change
    finally:
        poller.listeners.discard(queue)
        pollers.release(poller)
