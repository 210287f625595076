"""Backtesting's topic: a backtest's status and progress, to its owner (the
``backtestProgress`` subscription)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from app.events.topics.base import Event, Topic, Wire


@dataclass(frozen=True, slots=True)
class BacktestProgress:
    """A backtest's status (QUEUED, RUNNING, DONE, FAILED with a reason) and how many of
    its candles are done."""

    backtest_id: int
    status: str
    reason: str | None
    candles_done: int
    candles_total: int

    def to_wire(self) -> Wire:
        return {
            "id": self.backtest_id,
            "status": self.status,
            "reason": self.reason,
            "candlesDone": self.candles_done,
            "candlesTotal": self.candles_total,
        }

    @classmethod
    def from_wire(cls, w: Mapping[str, Any]) -> Self:
        return cls(
            backtest_id=w["id"],
            status=w["status"],
            reason=w["reason"],
            candles_done=w["candlesDone"],
            candles_total=w["candlesTotal"],
        )


BACKTEST_PROGRESS = Topic("backtests", BacktestProgress)


def backtest_progress(user_id: int, payload: BacktestProgress) -> Event:
    return BACKTEST_PROGRESS.event(user_id, payload)
