"""What the count limits see of a user's orders at exchanges, at an exchange placement.

``app.risk.gate``'s context (``CONTEXT_SQL``, the platform placement's hot path) counts
the user's platform orders and cancels only. At a placement on a connected exchange
account (``orders.check_risk``) the user's figures also count, in one small statement
read only when a count limit applies (``watched``):

    ORDER_RATE       + exchange orders created in the last minute
    TRADES_PER_DAY   + exchange orders created since 00:00 UTC (armed stops included:
                       an order placed is counted when it is placed, not when it fires)
    CANCEL_RATE      + exchange orders whose cancel was asked in the last minute
                       (``cancel_requested_at``: at the exchange, or an armed stop
                       disarmed by its owner or its list)

so a limit reached by orders sent to exchanges refuses the next exchange order. The
platform's own placement still counts platform orders only."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.risk.domain.limits import Figures, Limit, LimitKind
from db.models import ExchangeOrder

COUNTS = frozenset({LimitKind.ORDER_RATE, LimitKind.TRADES_PER_DAY, LimitKind.CANCEL_RATE})


def watched(limits: Iterable[Limit]) -> bool:
    """Whether one of ``limits`` watches a count."""
    return any(limit.kind in COUNTS for limit in limits)


async def with_exchange_counts(
    session: AsyncSession, user_id: int, figures: Figures, now: datetime
) -> Figures:
    """``figures`` (the platform's) plus ``user_id``'s exchange orders and cancels."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    minute = now - timedelta(minutes=1)
    mine = ExchangeOrder.user_id == user_id
    cancels = (
        select(func.count())
        .where(mine, ExchangeOrder.cancel_requested_at >= minute)
        .scalar_subquery()
    )
    today, last_minute, canceled = (
        await session.execute(
            select(
                func.count(),
                func.count().filter(ExchangeOrder.created_at >= minute),
                cancels,
            ).where(mine, ExchangeOrder.created_at >= day)
        )
    ).one()
    return replace(
        figures,
        orders_today=figures.orders_today + int(today),
        orders_last_minute=figures.orders_last_minute + int(last_minute),
        cancels_last_minute=figures.cancels_last_minute + int(canceled),
    )
