"""The risk tests' engines: small placement batches, several at once, so that the orders
of one trader meet in different transactions, which take turns on the trader's row."""

from __future__ import annotations

import pytest

from tests.support.trading import FAST_ENGINE, running_engines


@pytest.fixture
async def engines(rt, monkeypatch):
    fast = FAST_ENGINE | {"trading_placement_batch": 3, "trading_placement_concurrency": 4}
    monkeypatch.setattr(rt, "settings", rt.settings.model_copy(update=fast))
    monkeypatch.setattr(rt, "_coalescers", {})  # placements batched by these settings
    async with running_engines(rt) as running:
        yield running
