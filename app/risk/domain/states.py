"""Scopes and their states, independent of storage.

A limit and a state belong to a scope, named by ``ScopeRef`` (scope, id):

    ORDER     each order of a user, one at a time (id: the user's)
    BOT       a bot's orders (id: the bot's)
    FOLLOW    a follow's copy orders (id: the follow's)
    USER      a user's account (id: the user's)
    MARKET    every order on a market (id: the market's)
    PLATFORM  every order (id: 0)

Each scope is in one state (``TRANSITIONS`` is the whole truth; ``apply`` refuses
anything else)::

    ACTIVE ─reduce─► REDUCING ─halt─► HALTED
      │                 │  ▲              │
      │                 └──┼──reset───────┼──► ACTIVE
      └──────halt──────────┼──────────────┘
                           HALTED ─cool_down_over─► ACTIVE (when it halted for a period)

ACTIVE admits every order, REDUCING only orders that reduce exposure, HALTED none
(cancels only). A trigger only ever makes a state stricter; a person (the user who set
the limit, or an admin) resets it, or the cool-down ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from app.risk.domain.errors import RiskStateConflict

PLATFORM_ID = 0


class Scope(StrEnum):
    ORDER = "ORDER"
    BOT = "BOT"
    FOLLOW = "FOLLOW"
    USER = "USER"
    MARKET = "MARKET"
    PLATFORM = "PLATFORM"


# the order in which a proposed order's scopes are checked (and a binding one named)
SCOPE_ORDER = tuple(Scope)
ADMIN_SCOPES = frozenset({Scope.MARKET, Scope.PLATFORM})


class ScopeRef(NamedTuple):
    scope: Scope
    id: int

    def __str__(self) -> str:
        return self.scope.value if self.scope is Scope.PLATFORM else f"{self.scope.value} {self.id}"


class RiskState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"  # only orders that reduce exposure
    HALTED = "HALTED"  # cancels only


SEVERITY: Mapping[RiskState, int] = {
    RiskState.ACTIVE: 0,
    RiskState.REDUCING: 1,
    RiskState.HALTED: 2,
}


class StateEvent(StrEnum):
    REDUCE = "REDUCE"  # a limit's action (or an admin): only reducing orders
    HALT = "HALT"  # cancels only
    RESET = "RESET"  # by a person
    COOL_DOWN_OVER = "COOL_DOWN_OVER"  # a halt for a period ended


TRANSITIONS: Mapping[tuple[RiskState, StateEvent], RiskState] = {
    (RiskState.ACTIVE, StateEvent.REDUCE): RiskState.REDUCING,
    (RiskState.ACTIVE, StateEvent.HALT): RiskState.HALTED,
    (RiskState.REDUCING, StateEvent.HALT): RiskState.HALTED,
    (RiskState.REDUCING, StateEvent.RESET): RiskState.ACTIVE,
    (RiskState.HALTED, StateEvent.RESET): RiskState.ACTIVE,
    (RiskState.HALTED, StateEvent.COOL_DOWN_OVER): RiskState.ACTIVE,
}


def apply(state: RiskState, event: StateEvent) -> RiskState:
    """The state after ``event``; ``RiskStateConflict`` for a pair not in the table."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise RiskStateConflict(
            f"A scope that is {state.value} cannot take {event.value.lower().replace('_', ' ')}"
        ) from None


def event_towards(state: RiskState) -> StateEvent:
    """The event a trigger applies to reach ``state`` (REDUCING or HALTED)."""
    if state is RiskState.REDUCING:
        return StateEvent.REDUCE
    if state is RiskState.HALTED:
        return StateEvent.HALT
    raise ValueError("a trigger never makes a scope ACTIVE")


def stricter(target: RiskState, than: RiskState) -> bool:
    return SEVERITY[target] > SEVERITY[than]


@dataclass(frozen=True, slots=True)
class ScopeStatus:
    """A scope's stored state: since when, until when for a cool-down, why, and the
    limit that moved it (None: a person did)."""

    ref: ScopeRef
    state: RiskState = RiskState.ACTIVE
    since: datetime | None = None
    cooldown_until: datetime | None = None
    reason: str | None = None
    limit_id: int | None = None

    def effective(self, now: datetime) -> RiskState:
        """The state orders meet at ``now``: a cool-down that has ended is ACTIVE (the
        transition is recorded later, by whoever next looks)."""
        if (
            self.state is RiskState.HALTED
            and self.cooldown_until is not None
            and self.cooldown_until <= now
        ):
            return RiskState.ACTIVE
        return self.state

    def cool_down_over(self, now: datetime) -> bool:
        return self.state is RiskState.HALTED and self.effective(now) is RiskState.ACTIVE
