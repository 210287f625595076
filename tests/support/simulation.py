"""Helpers for simulated-venue and backtest tests (pure: no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from app.backtesting.domain.evaluation import venue_candles
from app.marketdata.domain.synthetic import Synthetic, generate_candles
from app.trading.domain.orders import MarketSpec
from app.venues.domain.paths import Candle

SYMBOL = "BTC/USDT"
# fees: maker 0.1 %, taker 0.2 %; 0.01 USDT x 0.001 BTC = 10 units of 0.000001 USDT
SPEC = MarketSpec(
    symbol=SYMBOL,
    base="BTC",
    quote="USDT",
    base_scale=8,
    quote_scale=6,
    tick_size=Decimal("0.01"),
    lot_size=Decimal("0.001"),
    min_notional=Decimal(0),
    maker_fee=Decimal("0.001"),
    taker_fee=Decimal("0.002"),
)
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def random_candle(hour: int, open_: int, close: int, up: int, down: int, volume: int) -> Candle:
    """A candle of ``SPEC`` from ticks: it reaches ``up`` ticks above its body and
    ``down`` below (never under one tick)."""
    high, low = max(open_, close) + up, max(1, min(open_, close) - down)
    return Candle(
        T0 + timedelta(hours=hour),
        SPEC.price(open_),
        SPEC.price(high),
        SPEC.price(low),
        SPEC.price(close),
        Decimal(volume),
    )


def generated_candles(
    count: int, *, seed: int = 0, interval: timedelta = timedelta(hours=1), **model: object
) -> list[Candle]:
    """``count`` candles of ``SPEC`` from the seeded generator (geometric Brownian motion
    with jumps, ``app.marketdata.domain.synthetic``), as the simulated venue takes them;
    ``model`` overrides ``Synthetic``'s other parameters (``price=Decimal(100)``...)."""
    series = Synthetic(count, interval=interval, seed=seed, **model)  # type: ignore[arg-type]
    stored = generate_candles(series, tick_size=SPEC.tick_size, lot_size=SPEC.lot_size)
    return venue_candles(stored, interval)
