"""Exchange custody in the ledger: a connected exchange account's own book, its mirror of
what the exchange holds (EXCHANGE_FREE, EXCHANGE_USED per currency) against the
exchange as counterparty (EXCHANGE_COUNTERPARTY per currency), in the ledger's tables.

The accounts are found by ``exchange_account_id`` (the platform's by user and kind:
``journal.lock_accounts`` refuses these), locked here, and their entries written by the
journal's one write path (``JournalBatch``, the accounts handed over with ``adopt``).
The caller holds the connection's row lock, so one writer at a time changes a
connection's custody; the accounts are locked all the same, in primary-key order."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import InvariantViolation
from app.ledger.journal import JournalBatch, LockedAccount
from app.ledger.rules import EXCHANGE_KINDS, AccountKind, AccountRef, Leg
from db.models import LedgerAccount


def custody_account(exchange_account_id: int, currency: str, kind: AccountKind) -> AccountRef:
    return AccountRef(currency, kind, exchange_account_id=exchange_account_id)


def _ref(row: LedgerAccount) -> AccountRef:
    if row.exchange_account_id is None:
        raise InvariantViolation(f"ledger account {row.id} is not exchange custody")
    return custody_account(row.exchange_account_id, row.currency, AccountKind(row.kind))


async def lock_custody(
    session: AsyncSession, exchange_account_id: int, wanted: Iterable[AccountRef] = ()
) -> dict[AccountRef, LockedAccount]:
    """Every custody account of the connection, locked in primary-key order, the
    ``wanted`` ones made first where missing."""
    refs = list(wanted)
    if any(r.exchange_account_id != exchange_account_id for r in refs):
        raise InvariantViolation("custody accounts of another connection")
    if refs:
        await session.execute(
            insert(LedgerAccount)
            .values(
                [
                    {
                        "exchange_account_id": exchange_account_id,
                        "currency": r.currency,
                        "kind": r.kind.value,
                    }
                    for r in refs
                ]
            )
            .on_conflict_do_nothing()
        )
    rows = await session.scalars(
        select(LedgerAccount)
        .where(LedgerAccount.exchange_account_id == exchange_account_id)
        .order_by(LedgerAccount.id)
        .with_for_update()
    )
    return {_ref(row): LockedAccount(row.id, row.balance) for row in rows}


async def post_custody(
    session: AsyncSession,
    *,
    exchange_account_id: int,
    kind: str,
    legs: Sequence[Leg],
    accounts: dict[AccountRef, LockedAccount],
    reference: str | None = None,
) -> int:
    """Write one entry of the connection's custody (its accounts locked by
    ``lock_custody``); the entry's id. The journal refuses an entry off its flow or
    with an account of another book (``InvariantViolation``)."""
    if any(leg.account.kind not in EXCHANGE_KINDS for leg in legs):
        raise InvariantViolation("a custody entry with a platform account")
    journal = JournalBatch()
    journal.adopt(accounts)
    number = await journal.post(session, kind=kind, legs=legs, reference=reference)
    return (await journal.flush(session))[number]


async def custody_by_connection_ids(
    session: AsyncSession, ids: Sequence[int]
) -> list[dict[AccountRef, Decimal]]:
    """The custody balances of each connection of ``ids``, in their order (one query)."""
    found: dict[int, dict[AccountRef, Decimal]] = {i: {} for i in ids}
    rows = await session.scalars(
        select(LedgerAccount).where(LedgerAccount.exchange_account_id.in_(list(ids)))
    )
    for row in rows:
        found[row.exchange_account_id or 0][_ref(row)] = row.balance
    return [found[i] for i in ids]
