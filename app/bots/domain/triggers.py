"""The bots' price bands on one market, indexed by price (pure): which bots a trade wakes.

The live runtime keeps one ``PriceTriggers`` per market: after each step it sets the
bot's band (``bot.watch(state)[symbol]``), and on a trade it steps only the bots
``crossed(price)`` names, so 10,000 bots whose bands a price does not reach cost
nothing. Two lists sorted by (bound, bot id) hold the low and the high bounds:
``crossed`` bisects each and takes the bots from there on (lows at or above the price,
highs at or below it), plus the bots that need every price: O(log n + k) for k bots
named, no scan of the others. ``set`` and ``remove`` bisect too (a list insertion moves
the entries after it, a memory move, not a Python loop). A ``PriceBand.NONE`` bot is not
held at all.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from decimal import Decimal
from operator import itemgetter

from app.bots.domain.runtime import PriceBand

_BOUND = itemgetter(0)


class PriceTriggers:
    def __init__(self) -> None:
        self._bands: dict[int, PriceBand] = {}  # held: neither NONE nor empty
        self._lows: list[tuple[Decimal, int]] = []  # by (low, bot id)
        self._highs: list[tuple[Decimal, int]] = []  # by (high, bot id)
        self._every: dict[int, None] = {}  # in the order set

    def __len__(self) -> int:
        return len(self._bands)

    def band(self, bot_id: int) -> PriceBand:
        return self._bands.get(bot_id, PriceBand.NONE)

    def set(self, bot_id: int, band: PriceBand) -> None:
        """The bot's band from now on (it replaces the one it had)."""
        self.remove(bot_id)
        band = band if band.every else PriceBand.outside(band.low, band.high)
        if band == PriceBand.NONE:
            return  # nothing to wake it for
        self._bands[bot_id] = band
        if band.every:
            self._every[bot_id] = None
            return
        if band.low is not None:
            insort(self._lows, (band.low, bot_id))
        if band.high is not None:
            insort(self._highs, (band.high, bot_id))

    def remove(self, bot_id: int) -> None:
        band = self._bands.pop(bot_id, None)
        if band is None:
            return
        if band.every:
            del self._every[bot_id]
            return
        if band.low is not None:
            del self._lows[bisect_left(self._lows, (band.low, bot_id))]
        if band.high is not None:
            del self._highs[bisect_left(self._highs, (band.high, bot_id))]

    def crossed(self, price: Decimal) -> list[int]:
        """The bots whose band ``price`` reaches (each once): lows at or above it, highs
        at or below it, and those that need every price."""
        lows = self._lows[bisect_left(self._lows, price, key=_BOUND) :]
        highs = self._highs[: bisect_right(self._highs, price, key=_BOUND)]
        return [b for _, b in lows] + [b for _, b in highs] + list(self._every)
