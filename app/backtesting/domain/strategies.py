"""Strategies as deterministic state machines.

In: one ``Tick`` per candle, at its close: the candle, the strategy's own fills since the
last tick, its account (cash and position), and its orders that ended since the last tick
without their last fill (canceled, expired, rejected). Out: ``Submit`` / ``CancelOrder``
intents (``SubmitList`` / ``CancelList`` for OCO and bracket lists) with client order ids
derived from the strategy's name, the candle's index and the step (``"ma:42:buy"``), each
with its reason. A strategy sees the candles one at a time, so it cannot look ahead:
whatever it decides at candle t depends on candles 0..t and the fills they produced only.

    MovingAverageCrossover   buys when the fast simple moving average of the closes
                             crosses above the slow one (and it holds nothing), sells the
                             whole position when it crosses below. Size: a fraction of
                             equity, or a fixed quantity.
    DollarCostAveraging      buys a fixed quote amount every N candles; with a
                             take-profit, keeps one limit sell of the whole position at
                             its average cost (fees included) x (1 + take_profit),
                             replaced after every buy.
    WindowSums               the crossover's two moving averages, kept from running
                             sums (equal to summing each window in the context's
                             precision, which is done instead when that would round).

Market orders carry ``max_slippage_bps`` (their worst price, from the last close).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from decimal import (
    MAX_EMAX,
    MAX_PREC,
    MIN_EMIN,
    ROUND_CEILING,
    ROUND_FLOOR,
    Context,
    Decimal,
    Inexact,
    InvalidOperation,
    getcontext,
)
from typing import Protocol, runtime_checkable

from app.core.errors import InvariantViolation
from app.trading.domain.lists import Bracket
from app.trading.domain.orders import BPS, MarketSpec, OrderRequest, OrderType, Side
from app.venues.domain.paths import Candle
from app.venues.domain.venue import OrderEnded, OrderFilled, VenueEvent


@dataclass(frozen=True, slots=True)
class Tick:
    index: int  # the candle's, from 0
    candle: Candle  # just closed
    fills: tuple[OrderFilled, ...]  # the strategy's own, since the last tick
    cash: Decimal  # the quote currency: available (not held by orders)
    position: Decimal  # the base currency: total (available and held)
    ended: tuple[OrderEnded, ...] = ()  # its orders that ended unfilled or part filled


_new = object.__new__
_SET_INDEX, _SET_CANDLE, _SET_FILLS, _SET_CASH, _SET_POSITION, _SET_ENDED = (
    getattr(Tick, name).__set__ for name in Tick.__slots__
)


def make_tick(
    index: int,
    candle: Candle,
    fills: tuple[OrderFilled, ...],
    cash: Decimal,
    position: Decimal,
    ended: tuple[OrderEnded, ...],
) -> Tick:
    """``Tick(index, candle, fills, cash, position, ended)`` in half the time (the runner
    makes one per candle): its slots set directly, as the frozen class's ``__init__``
    does through ``object.__setattr__``."""
    tick = _new(Tick)
    _SET_INDEX(tick, index)
    _SET_CANDLE(tick, candle)
    _SET_FILLS(tick, fills)
    _SET_CASH(tick, cash)
    _SET_POSITION(tick, position)
    _SET_ENDED(tick, ended)
    return tick


@dataclass(frozen=True, slots=True)
class Submit:
    client_order_id: str
    request: OrderRequest
    reason: str


@dataclass(frozen=True, slots=True)
class CancelOrder:
    client_order_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class SubmitList:
    """An OCO (``oco``) or a bracket (``bracket``); its legs are ``<client_list_id>:<i>``."""

    client_list_id: str
    reason: str
    oco: tuple[OrderRequest, OrderRequest] | None = None
    bracket: Bracket | None = None


@dataclass(frozen=True, slots=True)
class CancelList:
    client_list_id: str
    reason: str


Intent = Submit | CancelOrder | SubmitList | CancelList


class Strategy(Protocol):
    name: str

    def decide(self, tick: Tick) -> list[Intent]: ...


@runtime_checkable
class Reactive(Protocol):
    """A strategy that also reacts, at the same close, to what its intents caused on the
    venue (``follow_up``: the venue's events since, in its order), as a live runtime
    reacts to each event: the bots (``app.bots.domain.backtest``)."""

    name: str

    def decide(self, tick: Tick) -> list[Intent]: ...

    def follow_up(self, events: tuple[VenueEvent, ...]) -> list[Intent]: ...


def _lots_worth(market: MarketSpec, quote: Decimal, price: Decimal) -> Decimal:
    """The largest whole number of lots ``quote`` buys at ``price``."""
    if quote <= 0:
        return Decimal(0)
    lots = (quote / price / market.lot_size).to_integral_value(ROUND_FLOOR)
    return market.lot_size * lots


def _show(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.0001'))}"


def _crossed(fast_ma: Decimal, way: str, slow_ma: Decimal) -> str:
    return f"fast SMA {_show(fast_ma)} crossed {way} slow SMA {_show(slow_ma)}"


# Sums that are never rounded (additions within this precision are exact).
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[InvalidOperation, Inexact])


class WindowSums:
    """The last ``slow`` closes and the sums of the last ``fast`` and ``slow`` of them,
    kept as each close comes and goes, so an average costs one division instead of a
    window's additions.

    The averages are those of ``sum(window) / n`` in the current context. The closes are
    positive and multiples of 10^e, e the finest exponent seen, and so are the sums and
    every partial sum; below 10^(precision + e) (``bound``) each fits in the context's
    precision, so it is exact. The running sums are added to in the current context: a
    result below the bound is exact, and one at or above it is a result the plain sums
    might round too. Then the sums are taken again exactly from the window, and while
    they are not below the bound the windows are summed the plain way."""

    def __init__(self, fast: int, slow: int) -> None:
        self.fast, self.slow = fast, slow
        self._fast, self._slow = Decimal(fast), Decimal(slow)  # the divisors, made once
        self.closes: deque[Decimal] = deque(maxlen=slow)
        self.fast_sum = self.slow_sum = Decimal(0)  # exact when ``_exact``
        self._exact = True
        self._quantum = Decimal("NaN")  # the last close's exponent, as a Decimal
        self._finest = 0  # the finest exponent of a close seen
        self._precision = 0  # the context's, for which ``_bound`` was computed
        self._bound = Decimal(0)  # 10^(precision + finest)

    def update(self, close: Decimal) -> tuple[Decimal, Decimal] | None:
        """Take ``close``; the fast and slow averages once ``slow`` closes are in."""
        closes, fast, slow = self.closes, self.fast, self.slow
        if not close.same_quantum(self._quantum):
            self._new_quantum(close)
        precision = getcontext().prec
        if precision != self._precision:
            self._precision = precision
            self._bound = _EXACT.scaleb(Decimal(1), precision + self._finest)
        n = len(closes)
        fast_sum, slow_sum = self.fast_sum, self.slow_sum
        try:
            if n >= fast:
                fast_sum -= closes[-fast]
                if n == slow:
                    slow_sum -= closes[0]
            fast_sum += close
            slow_sum += close
        except ArithmeticError:  # a context that traps rounding: as at the bound
            slow_sum = self._bound
        closes.append(close)
        self.fast_sum, self.slow_sum = fast_sum, slow_sum
        if not (self._exact and slow_sum < self._bound):  # the fast sum is smaller still
            self._exact = self._sum_again()
        if n + 1 < slow:
            return None
        if self._exact:
            return self.fast_sum / self._fast, self.slow_sum / self._slow
        window = list(closes)
        return sum(window[-fast:], Decimal(0)) / fast, sum(window, Decimal(0)) / slow

    def _sum_again(self) -> bool:
        """The sums taken exactly from the window; whether they are below the bound."""
        window = list(self.closes)
        self.fast_sum = self.slow_sum = Decimal(0)
        for k, close in enumerate(window):
            self.slow_sum = _EXACT.add(self.slow_sum, close)
            if k >= len(window) - self.fast:
                self.fast_sum = _EXACT.add(self.fast_sum, close)
        return self.slow_sum < self._bound

    def _new_quantum(self, close: Decimal) -> None:
        self._quantum = close
        exponent = close.as_tuple().exponent
        assert isinstance(exponent, int), "a close is a finite number"
        self._finest = min(self._finest, exponent)
        self._precision = 0  # the bound is computed again


class MovingAverageCrossover:
    def __init__(
        self,
        market: MarketSpec,
        *,
        fast: int,
        slow: int,
        fraction: Decimal | None = None,
        quantity: Decimal | None = None,
        max_slippage_bps: int = 100,
        name: str = "ma",
    ) -> None:
        if not 0 < fast < slow or (fraction is None) == (quantity is None):
            raise InvariantViolation("0 < fast < slow, and a fraction or a quantity (one)")
        if fraction is not None and not 0 < fraction <= 1:
            raise InvariantViolation("the fraction of equity is in (0, 1]")
        self.market, self.name = market, name
        self.fast, self.slow = fast, slow
        self.fraction, self.quantity = fraction, quantity
        self.max_slippage_bps = max_slippage_bps
        self._above: bool | None = None  # fast above slow at the last tick
        self._sums = WindowSums(fast, slow)

    def decide(self, tick: Tick) -> list[Intent]:
        averages = self._sums.update(tick.candle.close)
        if averages is None:
            return []
        fast_ma, slow_ma = averages
        above, was_above = fast_ma > slow_ma, self._above
        self._above = above
        if above and was_above is False and tick.position == 0:
            quantity = self._size(tick)
            if quantity <= 0:
                return []
            reason = _crossed(fast_ma, "above", slow_ma)
            return [self._market(tick, Side.BUY, quantity, reason)]
        if not above and was_above is True and tick.position > 0:
            quantity = _lots_worth(self.market, tick.position, Decimal(1))
            if quantity <= 0:
                return []
            reason = _crossed(fast_ma, "below", slow_ma)
            return [self._market(tick, Side.SELL, quantity, reason)]
        return []

    def _size(self, tick: Tick) -> Decimal:
        if self.quantity is not None:
            return self.quantity
        assert self.fraction is not None
        close = tick.candle.close
        equity = tick.cash + tick.position * close
        budget = min(equity * self.fraction, tick.cash)
        # the hold: the worst price, plus the larger fee
        fee = max(self.market.maker_fee, self.market.taker_fee)
        worst = close * (BPS + self.max_slippage_bps) / BPS
        return _lots_worth(self.market, budget / (1 + fee), worst)

    def _market(self, tick: Tick, side: Side, quantity: Decimal, reason: str) -> Submit:
        return Submit(
            f"{self.name}:{tick.index}:{side.value.lower()}",
            OrderRequest(side, OrderType.MARKET, quantity, max_slippage_bps=self.max_slippage_bps),
            reason,
        )


class DollarCostAveraging:
    def __init__(
        self,
        market: MarketSpec,
        *,
        quote_amount: Decimal,
        every: int,
        take_profit: Decimal | None = None,
        max_slippage_bps: int = 100,
        name: str = "dca",
    ) -> None:
        if quote_amount <= 0 or every < 1 or (take_profit is not None and take_profit <= 0):
            raise InvariantViolation("a positive amount, every >= 1, a positive take-profit")
        self.market, self.name = market, name
        self.quote_amount, self.every, self.take_profit = quote_amount, every, take_profit
        self.max_slippage_bps = max_slippage_bps
        self._quantity = Decimal(0)  # bought and not sold
        self._cost = Decimal(0)  # what it cost, fees included
        self._take_profit_id: str | None = None  # the resting limit sell

    def decide(self, tick: Tick) -> list[Intent]:
        bought = self._account(tick.fills)
        intents: list[Intent] = []
        if self.take_profit is not None and bought and self._quantity > 0:
            intents.extend(self._replace_take_profit(tick))
        if tick.index % self.every == 0:
            quantity = _lots_worth(self.market, self.quote_amount, tick.candle.close)
            if quantity > 0:
                reason = f"every {self.every} candles: {self.quote_amount} {self.market.quote}"
                request = OrderRequest(
                    Side.BUY, OrderType.MARKET, quantity, max_slippage_bps=self.max_slippage_bps
                )
                intents.append(Submit(f"{self.name}:{tick.index}:buy", request, reason))
        return intents

    def _account(self, fills: tuple[OrderFilled, ...]) -> bool:
        """Fold the fills into the position; whether any bought."""
        bought = False
        for fill in fills:
            if fill.side is Side.BUY:
                bought = True
                self._quantity += fill.quantity
                self._cost += fill.value + fill.fee
                continue
            if self._quantity:
                self._cost -= self._cost * fill.quantity / self._quantity
            self._quantity -= fill.quantity
            if fill.client_order_id == self._take_profit_id and fill.remaining == 0:
                self._take_profit_id = None
            if self._quantity <= 0:
                self._quantity, self._cost = Decimal(0), Decimal(0)
        return bought

    def _replace_take_profit(self, tick: Tick) -> list[Intent]:
        assert self.take_profit is not None
        intents: list[Intent] = []
        if self._take_profit_id is not None:
            intents.append(CancelOrder(self._take_profit_id, "replaced after a buy"))
        average = self._cost / self._quantity
        target = average * (1 + self.take_profit)
        tick_size = self.market.tick_size
        price = (target / tick_size).to_integral_value(ROUND_CEILING) * tick_size
        self._take_profit_id = f"{self.name}:{tick.index}:tp"
        reason = f"average cost {_show(average)} + {self.take_profit * 100}%"
        request = OrderRequest(Side.SELL, OrderType.LIMIT, self._quantity, price=price)
        intents.append(Submit(self._take_profit_id, request, reason))
        return intents
