"""Closed-loop runs: each worker takes the next item as soon as its previous one is done."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from bench.loadgen import percentile_ms

T = TypeVar("T")
Send = Callable[[T], Awaitable[str]]  # does one item, returns the name of its outcome


@dataclass(frozen=True, slots=True)
class RunStats:
    completed: int
    seconds: float
    outcomes: dict[str, int]
    p50_ms: float
    p99_ms: float

    @property
    def per_second(self) -> float:
        return self.completed / self.seconds if self.seconds > 0 else 0.0


async def _work(
    items: Iterator[T], send: Send[T], outcomes: Counter[str], latencies: list[float]
) -> None:
    for item in items:  # shared by every worker: each item is taken once
        began = time.perf_counter()
        outcomes[await send(item)] += 1
        latencies.append(time.perf_counter() - began)


async def run_closed_loop(items: Sequence[T], senders: Sequence[Send[T]]) -> RunStats:
    """One worker per sender (the concurrency); any exception stops the run."""
    pending = iter(items)
    outcomes: Counter[str] = Counter()
    latencies: list[float] = []
    started = time.perf_counter()
    async with asyncio.TaskGroup() as workers:
        for send in senders:
            workers.create_task(_work(pending, send, outcomes, latencies))
    seconds = time.perf_counter() - started
    latencies.sort()
    return RunStats(
        completed=len(latencies),
        seconds=round(seconds, 3),
        outcomes=dict(outcomes),
        p50_ms=percentile_ms(latencies, 0.50),
        p99_ms=percentile_ms(latencies, 0.99),
    )


@dataclass(frozen=True, slots=True)
class WarmedRun:
    warmup: RunStats
    measured: RunStats


async def run_after_warmup(
    warmup: Sequence[T], items: Sequence[T], senders: Sequence[Send[T]]
) -> WarmedRun:
    """A warm-up (connections, caches, prepared statements), then the measured run."""
    return WarmedRun(await run_closed_loop(warmup, senders), await run_closed_loop(items, senders))
