"""A model of what a runtime owes a bot (``app.bots.domain.runtime``'s docstring), and a
run of a bot on simulated venues (one per market) through it, two ways: every price tick
given (``banded=False``), or only the ticks its band reaches (``watch`` of the state at
that moment) with the catch-up ticks (``banded=True``). Both wake it with a
``TimerTick`` at ``wake_at`` the same way, so the two runs of the same incoming events
must give the same steps, but for the ticks the band leaves out (``Feed.acts``)."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from app.bots.domain.runtime import (
    Bot,
    CancelOrder,
    Command,
    Decision,
    Event,
    PlaceOrder,
    PriceTick,
    TimerTick,
    from_venue,
)
from app.trading.domain.orders import MarketSpec
from app.venues.domain.paths import Candle
from app.venues.domain.simulated import SimulatedVenue, SimulationSettings

MAX_STEPS = 100_000  # a run this long is a bot that keeps waking itself


@dataclass(frozen=True)
class Stepped:
    event: Event
    commands: tuple[Command, ...]
    decisions: tuple[Decision, ...]
    state: Any
    woken: bool  # a wake-up due at once follows (the state is not the bot's last word)


@dataclass
class Feed:
    """The runtime model: ``offer`` an incoming event (a trade's tick, a venue's event,
    an alert, a stop, time passing); it steps the bot as a runtime would."""

    bot: Bot[Any]
    state: Any
    banded: bool
    steps: list[Stepped] = field(default_factory=list)
    latest: dict[str, PriceTick] = field(default_factory=dict)  # each market's last trade
    seen: dict[str, Decimal] = field(default_factory=dict)  # the last price given the bot
    woken: datetime | None = None  # the time of the last wake-up
    sent: int = 0  # steps whose commands were taken (``commands``)

    def offer(self, event: Event) -> None:
        self._wake(until=event.at)
        if isinstance(event, PriceTick):
            self.latest[event.symbol] = event
            band = self.bot.watch(self.state).get(event.symbol)
            if self.banded and (band is None or not band.reaches(event.price)):
                return
        self._give(event)

    def catch_up(self) -> None:
        """What a runtime does before the next event: the latest prices."""
        self._catch_up(skip=None)

    def commands(self) -> list[Command]:
        """The commands of the steps since the last call, to send."""
        out = [c for s in self.steps[self.sent :] for c in s.commands]
        self.sent = len(self.steps)
        return out

    @property
    def acts(self) -> list[tuple[Event, tuple[Command, ...], tuple[Decision, ...]]]:
        """Each step that sent or decided something, with its event."""
        return [(s.event, s.commands, s.decisions) for s in self.steps if s.commands or s.decisions]

    @property
    def others(self) -> list[tuple[Event, Any]]:
        """Each step of an event other than a price, with the state it left."""
        return [(s.event, s.state) for s in self.steps if not isinstance(s.event, PriceTick)]

    def _wake(self, *, until: datetime) -> None:
        while (due := self.bot.wake_at(self.state)) is not None and due <= until:
            if self.woken is not None and due <= self.woken:
                return  # woken for it already
            self.woken = due
            self._give(TimerTick(due))

    def _give(self, event: Event) -> None:
        self._catch_up(skip=event.symbol if isinstance(event, PriceTick) else None)
        self._step(event)

    def _catch_up(self, *, skip: str | None) -> None:
        for symbol in list(self.bot.watch(self.state)):
            tick = self.latest.get(symbol)
            if symbol != skip and tick is not None and self.seen.get(symbol) != tick.price:
                self._step(tick)

    def _step(self, event: Event) -> None:
        assert len(self.steps) < MAX_STEPS
        self.state, commands, decisions = self.bot.step(self.state, event)
        due = self.bot.wake_at(self.state)
        overdue = due is not None and due <= event.at and (self.woken is None or due > self.woken)
        self.steps.append(Stepped(event, commands, decisions, self.state, overdue))
        if isinstance(event, PriceTick):
            self.seen[event.symbol] = event.price
        if overdue:
            self.woken = event.at  # due already: at once
            self._give(TimerTick(event.at))


def run_on_venues(
    bot: Bot[Any],
    paths: Mapping[MarketSpec, Sequence[Candle]],
    *,
    banded: bool,
    balances: Mapping[str, Mapping[str, Decimal]],
    settings: SimulationSettings | None = None,
    extra: Mapping[int, Sequence[Event]] | None = None,
) -> Feed:
    """The bot on a simulated venue per market (``balances`` by symbol), candle by
    candle: the venues play the candle, their new events come first, then ``extra``
    events of that candle (ticks inside it, alerts, timer ticks, stops), then each
    market's close. What its commands cause on a venue comes next, before anything
    else, in the venue's order."""
    some = next(iter(paths.values()))
    venues = {
        spec.symbol: SimulatedVenue(
            spec,
            balances=balances[spec.symbol],
            settings=settings or SimulationSettings(volume_share=None, latency=0),
            start=some[0].open_time,
        )
        for spec in paths
    }
    seen = dict.fromkeys(venues, 0)
    symbol_of: dict[str, str] = {}  # client order id -> symbol
    feed = Feed(bot, bot.start(some[0].open_time), banded=banded)

    def venue_events() -> list[Event]:
        out: list[Event] = []
        for symbol, venue in venues.items():
            new = venue.events(after=seen[symbol])
            seen[symbol] += len(new)
            out.extend(e for e in map(from_venue, new) if e is not None)
        return out

    for index in range(len(some)):
        for spec, candles in paths.items():
            venues[spec.symbol].advance(candles[index])
        first: deque[Event] = deque(venue_events())
        others: deque[Event] = deque((extra or {}).get(index, ()))
        others.extend(
            PriceTick(candles[index].close_time, spec.symbol, candles[index].close)
            for spec, candles in paths.items()
        )
        while first or others:
            feed.offer(first.popleft() if first else others.popleft())
            for command in feed.commands():
                if isinstance(command, PlaceOrder):
                    symbol_of[command.client_order_id] = command.symbol
                    venues[command.symbol].submit(
                        symbol=command.symbol,
                        client_order_id=command.client_order_id,
                        request=command.request,
                    )
                else:
                    assert isinstance(command, CancelOrder)
                    symbol = symbol_of[command.client_order_id]
                    venues[symbol].cancel(client_order_id=command.client_order_id)
            first.extend(venue_events())
    return feed
