"""A backtest's lifecycle in its row, and the lease that makes a run safe to restart.

QUEUED -> RUNNING -> DONE, or FAILED with a reason. A process runs a backtest only after
claiming it (``claim``): the row goes RUNNING with a lease, an owner (the process and a
token of this claim) and an expiry on the database's clock, ``LEASE`` ahead, renewed while
the run goes on (``renew``). What may be claimed: a QUEUED backtest, or a RUNNING one
whose lease expired (its process stopped: a deploy, a crash); rows are locked with SKIP
LOCKED, so two processes never claim the same one. A run writes only while its row still
names its owner (``holds``), so a process that lost its lease cannot overwrite the run that
replaced it. A claimed run starts again from the first candle (the run is deterministic:
the same inputs give the same result), so nothing of an earlier attempt is kept.

``attempts`` counts the claims of a backtest that did not finish; the claim after
``MAX_ATTEMPTS`` of them fails it instead (``GAVE_UP``), so a run that takes its process
down every time does not loop. A graceful stop hands the run back (``release``: QUEUED,
the attempt not counted). Each change of status writes a ``BACKTEST_PROGRESS`` event."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from app.events import outbox, topics
from db.models import Backtest

QUEUED, RUNNING, DONE, FAILED = "QUEUED", "RUNNING", "DONE", "FAILED"
LEASE = timedelta(seconds=30)  # renewed every third of it
MAX_ATTEMPTS = 3
GAVE_UP = "Stopped {attempts} times before finishing (the server running it went away)"
PROCESS = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class Lease:
    backtest_id: int
    owner: str
    length: timedelta


def _claimable() -> ColumnElement[bool]:
    return or_(
        Backtest.status == QUEUED,
        and_(Backtest.status == RUNNING, Backtest.lease_expires_at < func.now()),
    )


async def claim(
    session: AsyncSession,
    *,
    limit: int,
    started_at: datetime,
    backtest_id: int | None = None,
    length: timedelta = LEASE,
) -> list[Lease]:
    """Up to ``limit`` claimable backtests (``backtest_id``: that one only), oldest first,
    RUNNING under a lease of ``length`` from now; those out of attempts FAILED instead."""
    statement = (
        select(Backtest, func.now())
        .where(_claimable())
        .order_by(Backtest.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=Backtest)
        .execution_options(populate_existing=True)
    )
    if backtest_id is not None:
        statement = statement.where(Backtest.id == backtest_id)
    found = (await session.execute(statement)).all()
    leases = [_take(row, now, started_at, length) for row, now in found]
    await session.flush()
    for row, _ in found:
        await emit(session, row)
    return [lease for lease in leases if lease is not None]


def _take(row: Backtest, now: datetime, started_at: datetime, length: timedelta) -> Lease | None:
    if row.attempts >= MAX_ATTEMPTS:
        end(row, FAILED, at=started_at, reason=GAVE_UP.format(attempts=row.attempts))
        return None
    owner = f"{PROCESS}:{secrets.token_hex(6)}"
    row.status, row.reason, row.started_at, row.candles_done = RUNNING, None, started_at, 0
    row.lease_owner, row.lease_expires_at, row.attempts = owner, now + length, row.attempts + 1
    return Lease(row.id, owner, length)


async def renew(session: AsyncSession, lease: Lease) -> bool:
    """Push the lease's expiry ``lease.length`` ahead; False when it is no longer held."""
    result = await session.execute(
        update(Backtest)
        .where(_held(lease))
        .values(lease_expires_at=func.now() + lease.length)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def _held(lease: Lease) -> ColumnElement[bool]:
    return and_(
        Backtest.id == lease.backtest_id,
        Backtest.status == RUNNING,
        Backtest.lease_owner == lease.owner,
    )


async def locked_if_held(session: AsyncSession, lease: Lease) -> Backtest | None:
    """The backtest's row, locked, while ``lease`` still holds it; else None."""
    statement = select(Backtest).where(_held(lease)).with_for_update()
    return await session.scalar(statement.execution_options(populate_existing=True))


def end(row: Backtest, status: str, *, at: datetime, reason: str | None = None) -> None:
    """DONE or FAILED: the lease goes."""
    row.status, row.reason, row.finished_at = status, reason, at
    row.lease_owner = row.lease_expires_at = None


def release(row: Backtest) -> None:
    """Handed back by a process that stops: QUEUED again, this attempt not counted."""
    row.status, row.candles_done, row.attempts = QUEUED, 0, max(row.attempts - 1, 0)
    row.lease_owner = row.lease_expires_at = None


def progress_payload(row: Backtest) -> topics.BacktestProgress:
    """What the ``backtestProgress`` subscription receives."""
    return topics.BacktestProgress(
        backtest_id=row.id,
        status=row.status,
        reason=row.reason,
        candles_done=row.candles_done,
        candles_total=row.candles_total,
    )


async def emit(session: AsyncSession, row: Backtest) -> None:
    await outbox.write(session, topics.backtest_progress(row.user_id, progress_payload(row)))
