"""Reconciling exchange custody with the exchanges: on demand (``sync_account``, rate
limited per user) and periodically (``sync_due``, a background job).

A sync reads the account's balances through the connector, outside any transaction,
then, in one transaction with the connection's row locked, posts the difference and
records the run (``app.exchanges.custody``). A reading the exchange refused (key
invalid, unavailable, rate limited) is recorded as FAILED with its code and changes
nothing; two syncs at once take turns on the row lock, and the later one finds nothing
left to post."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from app.accounts.rate_limits import Budget, draw
from app.core.errors import NotFound, UserError
from app.exchanges import custody
from app.exchanges.accounts import DISCONNECTED, accounts_by_ids, balances, claim_due
from app.exchanges.domain.accounts import Balance
from app.exchanges.domain.custody import holding_of
from app.runtime import Runtime
from db.models import ExchangeConnection, ExchangeSync

log = logging.getLogger(__name__)
ACTIVE = "ACTIVE"


@dataclass(frozen=True, slots=True)
class Synced:
    connection: ExchangeConnection
    sync: ExchangeSync
    error: UserError | None  # why the exchange could not be read (the sync is FAILED)


def _budget(rt: Runtime) -> Budget:
    return Budget("exchange-sync", rt.settings.exchange_sync_requests_per_minute, 60.0)


async def sync_account(rt: Runtime, *, user_id: int, connection_id: int) -> Synced:
    """Reconcile the user's connection now (``NotFound`` if it is not theirs or is
    disconnected; ``RateLimited`` over the per-user budget, nothing read)."""
    async with rt.reads() as session:
        row = (await accounts_by_ids(session, user_id=user_id, ids=[connection_id])).get(
            connection_id
        )
    if row is None:
        raise NotFound("No such exchange account of yours", field="id")
    decision = await draw(rt, _budget(rt), str(user_id), 1)
    if not decision.allowed:
        raise decision.refuse("Too many exchange syncs: try again in a minute")
    synced = await _sync(rt, row, trigger=custody.MANUAL)
    if synced is None:
        raise NotFound("No such exchange account of yours", field="id")
    if synced.error is not None:  # recorded as the account's last sync; the caller is told
        raise synced.error
    return synced


async def _read(rt: Runtime, row: ExchangeConnection) -> list[Balance] | UserError:
    """The exchange's balances, each one the ledger can hold; or why not."""
    try:
        found = await balances(rt, row)
        for balance in found:
            holding_of(balance)  # ExchangeRejected: a negative or impossible amount
    except UserError as error:
        return error
    return found


async def _sync(rt: Runtime, row: ExchangeConnection, *, trigger: str) -> Synced | None:
    """Read the exchange, then apply the reading with the row locked (None: the
    connection was disconnected meanwhile; nothing written)."""
    read_at = rt.now()
    reading = await _read(rt, row)
    async with rt.sessions() as session, session.begin():
        locked = await session.scalar(
            select(ExchangeConnection)
            .where(ExchangeConnection.id == row.id, ExchangeConnection.status != DISCONNECTED)
            .with_for_update()
        )
        if locked is None:
            return None
        locked.sync_attempted_at = max(read_at, locked.sync_attempted_at or read_at)
        if isinstance(reading, UserError):
            sync = await custody.record_failure(session, locked, trigger=trigger, error=reading,
                                                read_at=read_at)  # fmt: skip
        else:
            sync = await custody.apply_reading(session, locked, trigger=trigger,
                                               balances=reading, read_at=read_at)  # fmt: skip
    log.info("exchange account synced", extra={"connection": row.id, "outcome": sync.outcome,
             "code": sync.error_code})  # fmt: skip
    return Synced(locked, sync, reading if isinstance(reading, UserError) else None)


async def sync_due(rt: Runtime, *, limit: int = 50) -> int:
    """Reconcile the active connections whose last sync started more than
    EXCHANGE_SYNC_AFTER_SECONDS ago (a background job). Each is claimed first (its
    ``sync_attempted_at`` moved on), so processes running the job share the work."""
    cutoff = rt.now() - timedelta(seconds=rt.settings.exchange_sync_after_seconds)
    attempted = ExchangeConnection.sync_attempted_at
    due = await claim_due(
        rt, attempted, ExchangeConnection.status == ACTIVE,
        attempted.is_(None) | (attempted < cutoff), limit=limit,
    )  # fmt: skip
    for row in due:
        await _sync(rt, row, trigger=custody.SCHEDULED)
    return len(due)
