"""What every topic of the catalogue is made of: ``Topic``, ``Event``, the channel name."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, NamedTuple, Protocol, Self, TypeVar

Wire = dict[str, Any]


class Payload(Protocol):
    """A topic's payload: ``to_wire`` is its JSON object as stored and published."""

    def to_wire(self) -> Wire: ...

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self: ...


P = TypeVar("P", bound=Payload)


@dataclass(frozen=True, slots=True)
class Topic(Generic[P]):
    """A topic: its name (a market's topic: the prefix of ``<name>:<symbol>``), its
    payload type, and whether it is per market."""

    name: str
    payload: type[P]
    per_market: bool = False

    def named(self, symbol: str | None = None) -> str:
        """The name stored in the outbox and subscribed to (a market's: with its symbol)."""
        if self.per_market != (symbol is not None):
            raise ValueError(f"{self.name}: a symbol goes with a market's topic only")
        return f"{self.name}:{symbol}" if symbol is not None else self.name

    def parse(self, wire: Mapping[str, Any]) -> P:
        """The payload of one of this topic's events, from its JSON object."""
        return self.payload.from_wire(wire)

    def event(self, user_id: int | None, payload: P, *, symbol: str | None = None) -> Event:
        return Event(self.named(symbol), user_id, payload)


class EventRow(NamedTuple):
    """An event as the outbox stores it (``app.events.outbox.EVENTS``)."""

    topic: str
    user_id: int | None
    payload: str  # JSON


@dataclass(frozen=True, slots=True)
class Event:
    """One event: ``topic`` is the full name (with a market's symbol), ``user_id`` its
    owner (None: public)."""

    topic: str
    user_id: int | None
    payload: Payload

    def json(self) -> str:
        return json.dumps(self.payload.to_wire())

    def row(self) -> EventRow:
        """One row of ``outbox.insert_sql``'s arrays."""
        return EventRow(topic=self.topic, user_id=self.user_id, payload=self.json())


def channel(prefix: str, topic: str, user_id: int | None) -> str:
    """The one builder of pub/sub channel names (``topic``: a ``Topic.named`` name)."""
    return f"{prefix}events:{topic}" + (f":user:{user_id}" if user_id is not None else "")


def plain(amount: Decimal) -> str:
    """An amount without trailing zeros or exponent: "100", "0.5"."""
    return format(amount.normalize(), "f")


def opt(value: Any, convert: Callable[[Any], Any]) -> Any:
    """``convert(value)``, None for None."""
    return None if value is None else convert(value)
