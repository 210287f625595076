"""Run a strategy over a sequence of candles on the simulated venue.

For each candle, in order: the venue plays it (``SimulatedVenue.advance``: arrivals,
triggers and fills along its path); at its close the strategy gets a ``Tick`` (the
candle, its fills since the last tick, its cash and position) and answers intents,
which go to the venue at once (each becomes a ``Decision`` with the venue's answer); a
strategy with a ``follow_up`` (``Reactive``: the bots) is then given the venue's events
those intents caused (cancels' ends, refusals, fills at latency 0), in the venue's order,
and its answer goes to the venue in turn, until it has nothing more to say (at most
MAX_FOLLOW_UPS rounds); then the equity is marked at the close.

The result is plain frozen data, timestamps UTC and amounts ``Decimal``:

    decisions   every intent: when, at which candle, what, why, and the outcome ("OK"
                or the refusal's code)
    fills       the venue's ``OrderFilled`` events, in order
    equity      one ``EquityPoint`` per candle, at its close: cash (the quote currency,
                available and held) + position (the base, available and held) x close
                (an ``EquityCurve``: plain rows, each made a point when read)
    fees        the sum of the fills' fees (quote currency)
    trades      round trips: from a flat position (in the base, counted from the
                strategy's own fills) back to flat; a trade still open at the end is
                not among them (it is in the last equity point)
    risk_events with ``limits``: each order they refused and each transition of the
                account's risk state, at its simulated time (``protections``: the risk
                limits are looked at each close, before the strategy decides)

Same candles, strategy, balances and settings (seed included): the same result, byte for
byte (``result_json``). ``progress``, when given, is called with the number of candles
played after each one (a caller's progress bar or row; it cannot change the run).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import starmap
from typing import overload

from app.backtesting.domain.protections import Protections, RiskEvent
from app.backtesting.domain.strategies import (
    CancelList,
    CancelOrder,
    Intent,
    Reactive,
    Strategy,
    SubmitList,
    Tick,
    make_tick,
)
from app.core.errors import InvariantViolation
from app.risk.domain.limits import Limit
from app.trading.domain.orders import EPOCH, MarketSpec, OrderType, Side
from app.venues.domain.paths import Candle
from app.venues.domain.simulated import SimulatedVenue, SimulationSettings
from app.venues.domain.venue import OrderAck, OrderEnded, OrderFilled

SUBMIT, CANCEL = "SUBMIT", "CANCEL"
SUBMIT_LIST, CANCEL_LIST = "SUBMIT_LIST", "CANCEL_LIST"
MAX_FOLLOW_UPS = 100  # rounds of a reactive strategy's answers in one close


@dataclass(frozen=True, slots=True)
class Decision:
    at: datetime  # the candle's close
    candle: int  # its index
    action: str  # SUBMIT, CANCEL, SUBMIT_LIST or CANCEL_LIST
    client_order_id: str  # a list's: its client list id
    side: Side | None
    type: OrderType | None
    quantity: Decimal | None
    price: Decimal | None  # a limit price
    reason: str
    outcome: str  # "OK" or the refusal's code


@dataclass(frozen=True, slots=True)
class EquityPoint:
    at: datetime  # the candle's close
    price: Decimal  # the close
    cash: Decimal  # the quote currency, available and held
    position: Decimal  # the base currency, available and held
    equity: Decimal  # cash + position x price, in the quote currency


EquityRow = tuple[datetime, Decimal, Decimal, Decimal, Decimal]  # EquityPoint's fields


class EquityCurve(Sequence[EquityPoint]):
    """A run's equity points, held as rows of their values and made ``EquityPoint``s when
    read. A year of one-minute candles has half a million points: as objects they would
    cost the garbage collector more than the rest of the run (rows of values it stops
    looking at); equal to any sequence of the same points."""

    __slots__ = ("_rows",)

    def __init__(self, rows: Iterable[EquityRow]) -> None:
        self._rows = tuple(rows)

    @property
    def rows(self) -> tuple[EquityRow, ...]:
        return self._rows

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> EquityPoint: ...

    @overload
    def __getitem__(self, index: slice) -> EquityCurve: ...

    def __getitem__(self, index: int | slice) -> EquityPoint | EquityCurve:
        if isinstance(index, slice):
            return EquityCurve(self._rows[index])
        return EquityPoint(*self._rows[index])

    def __iter__(self) -> Iterator[EquityPoint]:
        return starmap(EquityPoint, self._rows)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EquityCurve):
            return self._rows == other._rows
        if isinstance(other, Sequence) and not isinstance(other, str):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._rows)

    def __repr__(self) -> str:
        return f"EquityCurve({tuple(self)!r})"


@dataclass(frozen=True, slots=True)
class Trade:
    """A round trip, flat to flat (long only: spot)."""

    opened_at: datetime  # the first buy's fill
    closed_at: datetime  # the fill that made the position flat again
    quantity: Decimal  # bought in all (= sold)
    entry_value: Decimal  # paid for it, before fees
    exit_value: Decimal  # received, before fees
    fees: Decimal
    pnl: Decimal  # exit_value - entry_value - fees

    @property
    def entry_price(self) -> Decimal:
        return self.entry_value / self.quantity

    @property
    def exit_price(self) -> Decimal:
        return self.exit_value / self.quantity


@dataclass(frozen=True, slots=True)
class RunResult:
    strategy: str
    symbol: str
    interval: timedelta  # the bar length the metrics annualise with (``run_backtest``)
    settings: SimulationSettings
    decisions: tuple[Decision, ...]
    fills: tuple[OrderFilled, ...]
    equity: Sequence[EquityPoint]  # an EquityCurve (or any sequence of the points)
    fees: Decimal
    trades: tuple[Trade, ...]
    risk_events: tuple[RiskEvent, ...] = ()  # with risk limits: refusals and transitions


def run_backtest(
    strategy: Strategy,
    candles: Sequence[Candle],
    *,
    market: MarketSpec,
    balances: Mapping[str, Decimal],
    settings: SimulationSettings = SimulationSettings(),
    progress: Callable[[int], None] | None = None,
    bar: timedelta | None = None,
    limits: Sequence[Limit] = (),
) -> RunResult:
    """``bar``: the bar length the metrics annualise with; by default the first candle's
    (1 hour without candles). Calendar months differ in length: their bar is a year / 12.
    ``limits``: risk limits the account trades under (``protections``)."""
    start = candles[0].open_time if candles else EPOCH
    guard = Protections(limits, market=market, start=start) if limits else None
    venue = SimulatedVenue(market, balances=balances, settings=settings, start=start, gate=guard)
    decisions: list[Decision] = []
    equity: list[EquityRow] = []
    mark, decide, advance = equity.append, strategy.decide, venue.advance
    seen, changes, decided = 0, -1, True
    quote, base = market.quote, market.base
    reactive = strategy if isinstance(strategy, Reactive) else None
    for index, candle in enumerate(candles):
        fills: tuple[OrderFilled, ...] = ()
        ended: tuple[OrderEnded, ...] = ()
        moved = advance(candle)
        if guard is not None:  # the P&L limits at the close, before the strategy decides
            moved = guard.at_close(venue, candle) or moved
        if moved or decided:  # else no event and the balances read are true
            if venue.event_count > seen:
                new = venue.events(after=seen)
                seen += len(new)
                fills = tuple(e for e in new if isinstance(e, OrderFilled))
                ended = tuple(e for e in new if isinstance(e, OrderEnded))
            if venue.changes != changes:
                changes, money = venue.changes, venue.balance(quote)
                available, cash = money.available, money.total
                position = venue.balance(base).total
        tick = make_tick(index, candle, fills, available, position, ended)
        intents = decide(tick)
        decided = bool(intents)
        for intent in intents:
            decisions.append(_decide(venue, market, tick, intent))
        if reactive is not None:  # what its orders caused at this close, answered at this close
            made = len(decisions)
            seen = _follow_up(reactive, venue, market, tick, decisions, seen)
            decided = decided or len(decisions) > made
        if decided:
            if venue.changes != changes:  # the holds of what was submitted
                changes, money = venue.changes, venue.balance(quote)
                available, cash = money.available, money.total
                position = venue.balance(base).total
        close = candle.close
        mark((venue.now, close, cash, position, cash + position * close))  # now: the close
        if progress is not None:
            progress(index + 1)
    fills = tuple(e for e in venue.events() if isinstance(e, OrderFilled))
    return RunResult(
        strategy=strategy.name,
        symbol=market.symbol,
        interval=bar or (candles[0].interval if candles else timedelta(hours=1)),
        settings=settings,
        decisions=tuple(decisions),
        fills=fills,
        equity=EquityCurve(equity),
        fees=sum((f.fee for f in fills), Decimal(0)),
        trades=round_trips(fills),
        risk_events=() if guard is None else tuple(guard.events),
    )


def _decide(venue: SimulatedVenue, market: MarketSpec, tick: Tick, intent: Intent) -> Decision:
    at = tick.candle.close_time
    if isinstance(intent, CancelOrder):
        ack = venue.cancel(client_order_id=intent.client_order_id)
        return Decision(
            at, tick.index, CANCEL, intent.client_order_id, None, None, None, None,
            intent.reason, _outcome(ack),
        )  # fmt: skip
    if isinstance(intent, SubmitList | CancelList):
        return _decide_list(venue, market, tick, intent)
    request = intent.request
    ack = venue.submit(
        symbol=market.symbol, client_order_id=intent.client_order_id, request=request
    )
    return Decision(
        at, tick.index, SUBMIT, intent.client_order_id, request.side, request.type,
        request.quantity, request.price, intent.reason, _outcome(ack),
    )  # fmt: skip


def _decide_list(
    venue: SimulatedVenue, market: MarketSpec, tick: Tick, intent: SubmitList | CancelList
) -> Decision:
    """A list's decision: side, type, quantity and price of its first order (an OCO's
    first leg, a bracket's entry)."""
    at, list_id = tick.candle.close_time, intent.client_list_id
    if isinstance(intent, CancelList):
        code = venue.cancel_list(client_list_id=list_id).code
        return Decision(
            at, tick.index, CANCEL_LIST, list_id, None, None, None, None, intent.reason,
            code or "OK",
        )  # fmt: skip
    ack = venue.submit_list(
        symbol=market.symbol, client_list_id=list_id, oco=intent.oco, bracket=intent.bracket
    )
    first = intent.oco[0] if intent.oco else intent.bracket.entry if intent.bracket else None
    if first is None:
        return Decision(
            at, tick.index, SUBMIT_LIST, list_id, None, None, None, None, intent.reason,
            ack.code or "OK",
        )  # fmt: skip
    return Decision(
        at, tick.index, SUBMIT_LIST, list_id, first.side, first.type, first.quantity,
        first.price, intent.reason, ack.code or "OK",
    )  # fmt: skip


def _follow_up(
    strategy: Reactive,
    venue: SimulatedVenue,
    market: MarketSpec,
    tick: Tick,
    decisions: list[Decision],
    seen: int,
) -> int:
    """Give ``strategy`` what its intents caused until it answers nothing; the events it
    saw are not in the next tick."""
    for _ in range(MAX_FOLLOW_UPS):
        caused = venue.events(after=seen)
        seen += len(caused)
        intents = strategy.follow_up(caused) if caused else []
        if not intents:
            return seen
        for intent in intents:
            decisions.append(_decide(venue, market, tick, intent))
    raise InvariantViolation(f"{strategy.name} still answering after {MAX_FOLLOW_UPS} rounds")


def _outcome(ack: OrderAck) -> str:
    return ack.code or "OK"


def round_trips(fills: Sequence[OrderFilled]) -> tuple[Trade, ...]:
    """Flat-to-flat round trips of the fills, in order (sells beyond the position, of a
    starting balance, are not counted)."""
    trades: list[Trade] = []
    position = Decimal(0)
    opened: datetime | None = None
    bought = entry = exit_ = fees = Decimal(0)
    for fill in fills:
        if fill.side is Side.BUY:
            if position == 0:
                opened = fill.at
                bought = entry = exit_ = fees = Decimal(0)
            position += fill.quantity
            bought += fill.quantity
            entry += fill.value
            fees += fill.fee
            continue
        if position <= 0:
            continue
        position -= fill.quantity
        exit_ += fill.value
        fees += fill.fee
        if position <= 0:
            assert opened is not None
            trades.append(Trade(opened, fill.at, bought, entry, exit_, fees, exit_ - entry - fees))
            position = Decimal(0)
    return tuple(trades)


def result_json(result: RunResult) -> str:
    """The result as canonical JSON (Decimals and times as strings, keys sorted)."""
    plain = asdict(replace(result, equity=tuple(result.equity)))
    if not plain["risk_events"]:
        del plain["risk_events"]  # a run without limits: as before they existed
    return json.dumps(plain, default=str, sort_keys=True, separators=(",", ":"))
