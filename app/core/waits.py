"""Waiting with a time limit, without losing a cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable


async def within(awaitable: Awaitable[object], timeout: float) -> bool:  # noqa: ASYNC109
    """Await ``awaitable`` for at most ``timeout`` seconds; whether it finished in time.

    Not ``asyncio.wait_for``: on Python 3.11 that swallows a cancellation arriving just as
    the awaited thing completes, and the cancelled task runs on; a shutdown then waits
    for it forever (seen with an engine stopped as it was woken). ``asyncio.timeout``
    passes the cancellation on."""
    try:
        async with asyncio.timeout(timeout):
            await awaitable
    except TimeoutError:
        return False
    return True
