"""Group commit: calls that arrive while a batch is being written go together in the next.

``Coalescer.submit(item)`` queues the item and awaits its own result. A worker task takes
everything queued (at most ``max_batch``) and hands it to ``run`` in one call; what
arrives meanwhile waits for the next batch. So a lone call is run at once, alone, and
under load each batch carries the calls that came in during the previous one: the cost
of a transaction (its locks, round trips and commit) is shared instead of paid per call.

``run`` answers with one result per item, in order: a value, or the exception that call
raises. An exception out of ``run`` itself is every item's. A caller cancelled while its
item is still queued is left out of the batch.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741
R = TypeVar("R")

Run = Callable[[list[I]], Awaitable[Sequence[R | BaseException]]]


class Coalescer(Generic[I, R]):
    def __init__(self, run: Run[I, R], *, max_batch: int, concurrency: int = 1) -> None:
        self._run = run
        self._max_batch = max_batch
        self._concurrency = concurrency
        self._queue: deque[tuple[I, asyncio.Future[R]]] = deque()
        self._workers: set[asyncio.Task[None]] = set()

    async def submit(self, item: I) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((item, future))
        # workers of a loop that has gone (tests run one loop each) no longer count
        self._workers = {w for w in self._workers if not w.done() and w.get_loop() is loop}
        if len(self._workers) < self._concurrency:
            worker = loop.create_task(self._work())
            self._workers.add(worker)
        return await future

    async def _work(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                return
            try:
                results = await self._run([item for item, _ in batch])
            except BaseException as error:  # every item's; a cancellation ends the worker too
                for _, future in batch:
                    if future.done():
                        continue
                    if isinstance(error, asyncio.CancelledError):
                        future.cancel()
                    else:
                        future.set_exception(error)
                if not isinstance(error, Exception):
                    raise
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _take(self) -> list[tuple[I, asyncio.Future[R]]]:
        batch: list[tuple[I, asyncio.Future[R]]] = []
        while self._queue and len(batch) < self._max_batch:
            item, future = self._queue.popleft()
            if not future.done():  # its caller was cancelled while it waited
                batch.append((item, future))
        return batch
