"""What the risk engine tells a user: a limit near its threshold (once a day per limit:
the source ``risk-warning:<limit>:<day>`` is unique per user, so a second warning of the
same day is a no-op wherever it comes from), a limit reached. Both checks, before an
order (``gate.warn_pre_trade``) and after fills (``triggers``), warn through here, and
both warn the scope's person: a bot's owner (its sub-account reads no notifications), so
the owner's and their bots' orders share one warning a day per limit."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from app.notifications.notifications import NewNotification
from app.notifications.rules import Draft, NotificationType, Priority
from app.risk.domain.limits import Limit


def warning_source(limit_id: int, day: date) -> str:
    """The once-a-day key of a limit's warning (the same in ``CONTEXT_SQL``)."""
    return f"risk-warning:{limit_id}:{day.isoformat()}"


def warning(user_id: int, limit: Limit, value: Decimal, day: date) -> NewNotification:
    """``limit``'s figure has reached its warning ratio (``value``)."""
    share = (100 * value / limit.threshold).quantize(Decimal(1))
    body = (
        f"Your risk limit {limit.describe()} is at {plain(value)} ({share} %):"
        f" at {plain(limit.threshold)} its action ({limit.action.value}) is taken."
    )
    draft = Draft(NotificationType.RISK, Priority.MEDIUM, "Risk limit near", body)
    return NewNotification(user_id, warning_source(limit.id, day), draft)


def plain(value: Decimal) -> str:
    return format(value.normalize(), "f")
