"""Candles and the price path the simulated venue assumes inside each one.

A candle says where the price opened, closed and how far it went, not in which order.
The simulated venue walks a path of four points, ``open → first extreme → second extreme
→ close``, straight lines between them, so every price between two points was traded.
Which extreme comes first is the ``PathMode``:

    OHLC            open → high → low → close, for every candle.
    OLHC            open → low → high → close, for every candle.
    ADVERSE_FIRST   (the default, conservative) the extreme that hurts the account first,
                    chosen at each candle's open from what the account holds then:
                    - holding the base currency (long): the LOW first (OLHC): a holder's
                      stop-losses fire before its take-profits, and a sell limit above
                      fills only after the drop has been lived through;
                    - holding none (flat): the HIGH first (OHLC): buy stops fire at the
                      high before any dip, a buy limit fills at the low only afterwards,
                      so an entry and a same-candle exit never both ride the range.

Prices are taken in whole ticks (``MarketSpec.nearest_ticks``: rounded down to the tick).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from app.core.errors import InvariantViolation
from app.trading.domain.orders import MarketSpec


class PathMode(StrEnum):
    ADVERSE_FIRST = "ADVERSE_FIRST"
    OHLC = "OHLC"
    OLHC = "OLHC"


@dataclass(frozen=True, slots=True)
class Candle:
    """One interval of trades: prices in the quote currency, ``volume`` in the base."""

    open_time: datetime  # UTC
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    interval: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if not (
            0 < self.low <= min(self.open, self.close)
            and max(self.open, self.close) <= self.high
            and self.volume >= 0
        ):
            raise InvariantViolation(f"not a candle: {self!r}")

    @property
    def close_time(self) -> datetime:
        return self.open_time + self.interval


def path_points(
    candle: Candle, market: MarketSpec, mode: PathMode, *, holding: bool
) -> tuple[int, int, int, int]:
    """The four points, in ticks, the price is assumed to pass in ``candle``."""
    o, h, lo, c = (
        market.nearest_ticks(p) for p in (candle.open, candle.high, candle.low, candle.close)
    )
    low_first = mode is PathMode.OLHC or (mode is PathMode.ADVERSE_FIRST and holding)
    return (o, lo, h, c) if low_first else (o, h, lo, c)
