"""Automatic copy trading: leader fills become follower orders, follower fills become
follow positions, and a follow whose loss reaches its stop-loss pauses.

Two consumers of the outbox topic ``fills`` (``app.events.event_log``), run together by
``run_once`` (the background job) and ``run_worker`` (``python -m app copy-worker``):

``copy-trading`` (``copy_placement.copy_batch``): each fill of an ACTIVE leader becomes a
copy per ACTIVE follow (``copy_planning``: PENDING with the order's parameters, or SKIPPED
with the reason), placed through the ordinary order path and marked PLACED or SKIPPED.

Then the copies bound for followers' exchange accounts are sent, after the batch has
committed and outside any transaction (``copy_exchange.send_pending``), and so are the
closes of follows being closed at their exchange (``exchange_close.send_closes``).

``copy-positions`` (``follow_positions.apply_follower_fills``): each fill of a copy or
close order is applied to ``follow_positions`` exactly once; a follow whose loss reaches
its stop-loss pauses and, if asked, its positions are sold
(``follow_close.close_follow_positions``).

What copies and closes share (the LIMIT IOC order, what is in flight) is in
``copy_orders``; this module also reads a follow's copies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.runtime import Runtime
from app.social import copy_exchange, exchange_close
from app.social.copy_placement import copy_batch
from app.social.follow_positions import apply_follower_fills
from db.models import Copy
from db.queries import Page, keyset_page, rows_by_ids

log = logging.getLogger(__name__)


# --- reads -------------------------------------------------------------------------------


async def list_copies(
    session: AsyncSession, *, follow_id: int, first: int, after: str | None
) -> Page[Copy]:
    """A follow's copies, newest first."""
    return await keyset_page(
        session,
        select(Copy).where(Copy.follow_id == follow_id),
        key=Copy.id,
        first=first,
        after=after,
        descending=True,
    )


async def copies_by_ids(session: AsyncSession, ids: Sequence[int]) -> list[Copy | None]:
    return await rows_by_ids(session, Copy, ids)


# --- running -----------------------------------------------------------------------------


async def run_once(rt: Runtime) -> int:
    """Both consumers until neither has anything left: the background job."""
    total = 0
    while True:
        handled = await copy_batch(rt) + await apply_follower_fills(rt)
        # copies bound for exchange accounts, sent once the batch has committed
        handled += await copy_exchange.send_pending(rt)
        handled += await exchange_close.send_closes(rt)
        total += handled
        if not handled:
            return total


async def run_worker(rt: Runtime) -> None:
    """The copy worker (``python -m app copy-worker``): both consumers, woken by the
    engines' NOTIFY and polling besides, until cancelled."""
    while True:
        try:
            handled = await run_once(rt)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("copy worker batch failed")
            handled = 0
        if not handled:
            await rt.applied.next_applied(rt.settings.copy_poll_seconds)
