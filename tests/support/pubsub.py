"""Waiting for a server's pub/sub hub: Redis keeps no message for a channel nobody
listens on, so a test publishes only once the hub has subscribed (not after a sleep:
under load a sleep is too short)."""

from __future__ import annotations

import asyncio

from app.runtime import Runtime


async def subscribed(rt: Runtime, *names: str, within: float = 10.0) -> None:
    """Until the server's hub listens on every channel of ``names``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        counts = dict(await rt.redis.pubsub_numsub(*names))
        missing = [n for n in names if not counts.get(n.encode(), 0)]
        if not missing:
            return
        if loop.time() > deadline:
            raise AssertionError(f"nobody subscribed to {missing}")
        await asyncio.sleep(0.02)
