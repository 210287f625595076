"""The marks a scope's P&L limits are measured from, independent of storage.

A scope's P&L is its realised plus unrealised profit in USD (positions at average cost,
``app.trading.domain.positions``). ``observe`` moves the marks each time the scope's
fills are looked at:

    day_start    the P&L last seen before today (00:00 UTC) began
    week_start   the same for the week (Monday 00:00 UTC)
    peak         the highest P&L seen
    realised     the realised part last seen: when it fell since, that was a losing
                 close (``consecutive_losses`` + 1); when it rose, a winning one (0)

so today's loss is ``day_start - pnl``, the drawdown ``peak - pnl``. A close is what one
look saw: fills looked at together (one consumer batch) count as one close. A reset
(``restart``) measures from the P&L of that moment again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from app.risk.domain.limits import ZERO, Figures


def week_of(day: date) -> date:
    """The Monday of ``day``'s week."""
    return day - timedelta(days=day.weekday())


@dataclass(frozen=True, slots=True)
class Marks:
    day: date
    day_start: Decimal
    week_start: Decimal
    peak: Decimal
    realised: Decimal
    pnl: Decimal  # the last seen
    consecutive_losses: int = 0

    @classmethod
    def start(cls, *, now: datetime, pnl: Decimal, realised: Decimal) -> Marks:
        return cls(now.date(), pnl, pnl, pnl, realised, pnl)

    def observe(self, *, now: datetime, pnl: Decimal, realised: Decimal) -> Marks:
        today = now.date()
        day_start, week_start = self.day_start, self.week_start
        if today > self.day:
            day_start = self.pnl
            if week_of(today) > week_of(self.day):
                week_start = self.pnl
        losses = self.consecutive_losses
        if realised < self.realised:
            losses += 1
        elif realised > self.realised:
            losses = 0
        return Marks(
            day=max(today, self.day),
            day_start=day_start,
            week_start=week_start,
            peak=max(self.peak, pnl),
            realised=realised,
            pnl=pnl,
            consecutive_losses=losses,
        )

    def restart(self) -> Marks:
        """After a reset: every figure from the P&L of now."""
        return replace(
            self,
            day_start=self.pnl,
            week_start=self.pnl,
            peak=self.pnl,
            consecutive_losses=0,
        )

    def figures(self, base: Figures | None = None) -> Figures:
        """``base`` with the P&L figures these marks give."""
        f = base or Figures()
        return replace(
            f,
            loss_today=max(ZERO, self.day_start - self.pnl),
            loss_this_week=max(ZERO, self.week_start - self.pnl),
            drawdown=max(ZERO, self.peak - self.pnl),
            consecutive_losses=self.consecutive_losses,
        )
