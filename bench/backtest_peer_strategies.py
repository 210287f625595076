"""Our two strategies written for backtesting.py (the peer of ``python -m bench backtest``),
and what it takes to run them on our candles and read back what they traded.

The peer's assumptions, which our runner is given too: a market order decided at a
candle's close fills at the next candle's open; a limit order fills at its price when the
candle reaches it (at the open when it opens beyond); no volume cap; no slippage.

How the two are made to compute the same thing:

- Quantities: ``FractionalBacktest`` with ``fractional_unit`` = the market's lot, so the
  peer trades whole lots and its prices are per lot (we read them back in ticks).
- Fees: the peer's commission is a function that charges our fee (the rate of the amount,
  rounded up to the quote currency's unit) on each trade it opens and closes. The market
  has one rate for makers and takers (the peer cannot tell them apart). A sell that closes
  several of the peer's trades (DCA's take-profit) is charged per trade, so the peer's
  fees may then exceed ours by a few units; no decision depends on them.
- Decisions: each strategy does our strategy's arithmetic in ``Decimal`` from prices in
  ticks (the peer's floats are read back exactly), and compares the moving averages as
  exact integer sums (``fast_sum * slow > slow_sum * fast``), so no float rounding can
  turn a decision.
- The first candle: the peer calls ``next()`` from its second bar on, our runner from the
  first; the peer's data gets one flat bar before our first candle (``peer_frame``).
- Within one bar the peer fills its orders in the order they were placed, as our venue
  does at an open; a take-profit reached later in the candle fills after the open's buy.
  The DCA strategy folds its fills in that order (a sell at the open first), as ours
  reads them from the venue's events.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import numpy as np
import pandas as pd
from backtesting import Strategy  # type: ignore[import-untyped]

from app.trading.domain.orders import BPS, MarketSpec
from app.venues.domain.paths import Candle

Execution = tuple[int, str, int, int]  # candle index, BUY or SELL, price in ticks, lots


def peer_frame(candles: Sequence[Candle]) -> pd.DataFrame:
    """The candles as the peer's OHLCV frame, after one flat bar at the first open."""
    first = candles[0]
    flat = Candle(first.open_time - first.interval, *(first.open,) * 4, Decimal(0))
    rows = [flat, *candles]
    return pd.DataFrame(
        {
            "Open": [float(c.open) for c in rows],
            "High": [float(c.high) for c in rows],
            "Low": [float(c.low) for c in rows],
            "Close": [float(c.close) for c in rows],
            "Volume": [float(c.volume) for c in rows],
        },
        index=pd.DatetimeIndex([c.open_time for c in rows]),
    )


@dataclass(frozen=True, slots=True)
class Units:
    """The peer's per-lot float prices and our ticks, both ways."""

    market: MarketSpec

    @property
    def lot(self) -> float:
        return float(self.market.lot_size)

    def ticks(self, peer_price: float) -> int:
        return round(peer_price / (float(self.market.tick_size) * self.lot))

    def price(self, peer_price: float) -> Decimal:
        return self.market.price(self.ticks(peer_price))

    def peer_price(self, price: Decimal) -> float:
        return float(price) * self.lot

    def commission(self) -> Callable[[float, float], float]:
        """Our fee on ``size`` lots at ``price`` (per lot): the rate, rounded up to the
        quote currency's unit. One rate: the peer cannot tell a maker from a taker."""
        spec = self.market
        if spec.maker_fee != spec.taker_fee:
            raise ValueError("the peer charges one rate: give the market one fee")
        numerator, denominator = spec.taker_fee_numerator, spec.fee_denominator
        per_tick_lot, quote_unit = spec.units_per_tick_lot, float(spec.quote_unit)

        def commission(size: float, price: float) -> float:
            notional = self.ticks(price) * abs(round(size)) * per_tick_lot
            return -(-notional * numerator // denominator) * quote_unit

        return commission


def _fee_units(market: MarketSpec, notional_units: int) -> int:
    return -(-notional_units * market.taker_fee_numerator // market.fee_denominator)


class PeerDollarCostAveraging(Strategy):  # type: ignore[misc]
    """``strategies.DollarCostAveraging`` for the peer: every ``every`` candles a market
    buy of ``amount`` (whole lots); with ``take_profit``, after each buy, one limit sell of
    the whole position at its average cost (fees included) x (1 + take_profit)."""

    units: Any = None  # a Units (every parameter is a class attribute the run sets)
    amount = Decimal(100)
    every = 60
    take_profit: Decimal | None = None

    def init(self) -> None:
        self._quantity = Decimal(0)  # bought and not sold
        self._cost = Decimal(0)  # what it cost, fees included
        self._take_profit_order: Any = None
        self._closed_seen = 0

    def next(self) -> None:
        bar = len(self.data) - 1
        index = bar - 1  # our candle's (the peer's first bar is the flat one)
        bought = self._account(bar)
        if self.take_profit is not None and bought and self._quantity > 0:
            self._replace_take_profit()
        if index % self.every == 0:
            market = self.units.market
            close = self.units.price(self.data.Close[-1])
            lots = (self.amount / close / market.lot_size).to_integral_value(ROUND_FLOOR)
            if lots > 0:
                self.buy(size=int(lots))

    def _account(self, bar: int) -> bool:
        """Fold this bar's fills into the position (sells at the open first, then buys,
        then the take-profit reached later); whether any bought. Only the trades opened
        or closed at this bar are looked at: the newest open ones, the closed ones not
        seen yet."""
        broker, units, market = self._broker, self.units, self.units.market
        opened, closed = broker.trades, broker.closed_trades
        if not (closed[self._closed_seen :] or (opened and opened[-1].entry_bar == bar)):
            return False
        buys: dict[int, int] = {}  # ticks -> lots opened at this bar
        fresh = closed[self._closed_seen :]
        for trade in [*fresh, *reversed(opened)]:
            if trade.entry_bar == bar:
                ticks = units.ticks(trade.entry_price)
                buys[ticks] = buys.get(ticks, 0) + abs(round(trade.size))
            elif trade not in fresh:
                break  # older open trades
        sells: dict[int, int] = {}
        for trade in fresh:
            ticks = units.ticks(trade.exit_price)
            sells[ticks] = sells.get(ticks, 0) + abs(round(trade.size))
        self._closed_seen = len(closed)
        if sells and self._take_profit_order not in broker.orders:
            self._take_profit_order = None  # it filled (whole: there is no volume cap)
        at_open = units.ticks(self.data.Open[-1])
        order = [(t, q) for t, q in sells.items() if t == at_open]
        order += [(t, -q) for t, q in buys.items()]
        order += [(t, q) for t, q in sells.items() if t != at_open]
        for ticks, lots in order:
            quantity = market.quantity(abs(lots))
            if lots < 0:  # a buy
                value = market.price(ticks) * quantity
                fee = market.quote_amount(
                    _fee_units(market, market.notional_units(ticks, abs(lots)))
                )
                self._quantity += quantity
                self._cost += value + fee
                continue
            if self._quantity:
                self._cost -= self._cost * quantity / self._quantity
            self._quantity -= quantity
            if self._quantity <= 0:
                self._quantity, self._cost = Decimal(0), Decimal(0)
        return bool(buys)

    def _replace_take_profit(self) -> None:
        assert self.take_profit is not None
        if self._take_profit_order is not None and self._take_profit_order in self.orders:
            self._take_profit_order.cancel()
        market = self.units.market
        average = self._cost / self._quantity
        target = average * (1 + self.take_profit)
        tick_size = market.tick_size
        price = (target / tick_size).to_integral_value(ROUND_CEILING) * tick_size
        lots = market.to_lots(self._quantity)
        self._take_profit_order = self.sell(size=lots, limit=self.units.peer_price(price))


def _sums(ticks: np.ndarray, window: int, skip: int) -> np.ndarray:
    """Rolling sums of ``window`` values (NaN until the window is full after ``skip``)."""
    totals = np.full(len(ticks), np.nan)
    cumulative = np.concatenate(([0], np.cumsum(ticks[skip:])))
    sums = cumulative[window:] - cumulative[:-window]
    totals[skip + window - 1 :] = sums
    return totals


class PeerMovingAverageCrossover(Strategy):  # type: ignore[misc]
    """``strategies.MovingAverageCrossover`` for the peer: buys a ``fraction`` of equity
    (within the hold for its worst price and the fee) when the fast simple moving average
    of the closes crosses above the slow one, flat; sells it all when it crosses below."""

    units: Any = None
    fast = 10
    slow = 30
    fraction = Decimal("0.5")
    max_slippage_bps = 100

    def init(self) -> None:
        ticks = np.rint(
            np.asarray(self.data.Close) / (float(self.units.market.tick_size) * self.units.lot)
        ).astype(np.int64)
        # the windows start at the first real candle (after the flat bar)
        self.fast_sum = self.I(_sums, ticks, self.fast, 1, name="fast sum", overlay=False)
        self.slow_sum = self.I(_sums, ticks, self.slow, 1, name="slow sum", overlay=False)

    def next(self) -> None:
        fast, slow = self.fast, self.slow
        above = int(self.fast_sum[-1]) * slow > int(self.slow_sum[-1]) * fast
        was_above = int(self.fast_sum[-2]) * slow > int(self.slow_sum[-2]) * fast
        if above and not was_above and not self.position:
            lots = self._size()
            if lots > 0:
                self.buy(size=lots)
        elif not above and was_above and self.position.size > 0:
            self.position.close()

    def _size(self) -> int:
        market = self.units.market
        close = self.units.price(self.data.Close[-1])
        cash = Decimal(f"{self.equity:.{market.quote_scale}f}")  # flat: equity is cash
        budget = min(cash * self.fraction, cash)
        fee = max(market.maker_fee, market.taker_fee)
        worst = close * (BPS + self.max_slippage_bps) / BPS
        lots = (budget / (1 + fee) / worst / market.lot_size).to_integral_value(ROUND_FLOOR)
        return int(lots)


def peer_executions(stats: Any, units: Units) -> list[Execution]:
    """What the peer traded, per candle, side and price (its trades, opened and closed,
    read back in our ticks and lots; several trades closed at once are one sell)."""
    broker = stats._strategy._broker
    found: dict[tuple[int, str, int], int] = {}
    for trade in [*broker.closed_trades, *broker.trades]:
        lots = abs(round(trade.size))
        key = (trade.entry_bar - 1, "BUY", units.ticks(trade.entry_price))
        found[key] = found.get(key, 0) + lots
        if trade.exit_bar is not None:
            key = (trade.exit_bar - 1, "SELL", units.ticks(trade.exit_price))
            found[key] = found.get(key, 0) + lots
    return sorted((*key, lots) for key, lots in found.items())
