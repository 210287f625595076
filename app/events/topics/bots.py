"""Bots' topic: what one step of a bot changed, to its owner (the ``botUpdates``
subscription). Written by the step, in its transaction (``app.bots.runner``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

from app.events.topics.base import Event, Topic, Wire


@dataclass(frozen=True, slots=True)
class BotDecided:
    """A bot's step: its status after it, the steps stored so far, and the decisions it
    made (``decisions``: how many; ``last_decision_id``: the newest one's row id, 0 when
    it made none; read them with ``Bot.decisions``)."""

    bot_id: int
    status: str
    paused: bool
    steps: int
    decisions: int
    last_decision_id: int
    at: datetime

    def to_wire(self) -> Wire:
        return {
            "botId": self.bot_id,
            "status": self.status,
            "paused": self.paused,
            "steps": self.steps,
            "decisions": self.decisions,
            "lastDecisionId": self.last_decision_id,
            "at": self.at.isoformat(),
        }

    @classmethod
    def from_wire(cls, w: Mapping[str, Any]) -> Self:
        return cls(
            bot_id=w["botId"],
            status=w["status"],
            paused=w["paused"],
            steps=w["steps"],
            decisions=w["decisions"],
            last_decision_id=w["lastDecisionId"],
            at=datetime.fromisoformat(w["at"]),
        )


BOTS = Topic("bots", BotDecided)


def bot_decided(user_id: int, payload: BotDecided) -> Event:
    return BOTS.event(user_id, payload)
