"""A bot as a backtest ``Strategy`` (pure): the same state machine the live and paper
runtimes step, run by ``app.backtesting.domain.runner.run_backtest`` over candles on
the simulated venue.

At each candle's close the bot is given, in order: the venue's events since the last
close (its fills and its orders' ends, in the venue's numbering; a submission the venue
refused is such an end), the close as a ``PriceTick``, then the alerts received up to
the close (``signals``, each once, in time order, each with its own time: a bot acts on
an alert at the close, at the close's price, as it would act on it live at the last
price). The commands of all those steps go to the venue in order, as intents with their
reasons: ``PlaceOrder`` is ``Submit``, ``CancelOrder`` is the backtest's
``CancelOrder``. The runner then gives it what its commands caused at once
(``follow_up``: a cancel's end, a refusal, a fill at latency 0), as a live runtime
would, so a bot that waits for a cancel's end acts at the same close. The runner trades
one market, so a command for another is a bug (``InvariantViolation``): a rebalance bot
backtests over one asset and its quote currency.

It gives the bot every close, so it owes no catch-up tick (the bot has seen the last
price) and reads no band (``watch``); it gives no wake-ups either: a bot acts on a timer
at the next close.

``state`` and ``decisions`` are the bot's after the last tick; ``on_step``, when given,
sees each state (the property tests check invariants with it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from app.backtesting.domain import strategies
from app.backtesting.domain.strategies import Intent, Submit, Tick
from app.bots.domain.runtime import (
    Bot,
    CancelOrder,
    Command,
    Decision,
    Event,
    PriceTick,
    Signal,
    from_venue,
)
from app.core.errors import InvariantViolation
from app.trading.domain.orders import MarketSpec
from app.venues.domain.venue import VenueEvent

S = TypeVar("S")


class BotStrategy(Generic[S]):
    def __init__(
        self,
        bot: Bot[S],
        market: MarketSpec,
        *,
        signals: Iterable[Signal] = (),
        on_step: Callable[[S], None] | None = None,
        name: str | None = None,
    ) -> None:
        self.bot, self.market, self.on_step = bot, market, on_step
        self.name = name or f"bot:{bot.kind.value.lower()}"
        self.state: S | None = None
        self.decisions: list[Decision] = []
        self._signals = deque(sorted(signals, key=lambda signal: signal.at))

    def decide(self, tick: Tick) -> list[Intent]:
        at = tick.candle.close_time
        if self.state is None:
            self.state = self.bot.start(tick.candle.open_time)
        venue_events: list[VenueEvent] = [*tick.fills, *tick.ended]
        venue_events.sort(key=lambda e: e.number)
        events: list[Event] = [e for e in map(from_venue, venue_events) if e is not None]
        events.append(PriceTick(at, self.market.symbol, tick.candle.close))
        while self._signals and self._signals[0].at <= at:
            events.append(self._signals.popleft())
        return self._steps(events)

    def follow_up(self, events: tuple[VenueEvent, ...]) -> list[Intent]:
        """What the bot answers to what its orders caused at this close."""
        return self._steps([e for e in map(from_venue, events) if e is not None])

    def _steps(self, events: list[Event]) -> list[Intent]:
        state = self.state
        assert state is not None
        intents: list[Intent] = []
        for event in events:
            state, commands, decisions = self.bot.step(state, event)
            self.decisions.extend(decisions)
            intents.extend(self._intent(command) for command in commands)
            if self.on_step is not None:
                self.on_step(state)
        self.state = state
        return intents

    def _intent(self, command: Command) -> Intent:
        if isinstance(command, CancelOrder):
            return strategies.CancelOrder(command.client_order_id, command.reason)
        if command.symbol != self.market.symbol:
            raise InvariantViolation(f"the backtest trades {self.market.symbol}: {command.symbol}")
        return Submit(command.client_order_id, command.request, command.reason)
