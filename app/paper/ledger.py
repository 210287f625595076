"""The paper book's write path: balanced entries of paper accounts only, in the paper
tables (``paper_ledger_accounts``, ``paper_journal_entries``, ``paper_postings``).

The rules are the ledger's (``app.ledger.rules.check_balanced``: balanced per currency,
one book), and an entry with a real account is refused before anything is written; the
real journal refuses paper accounts the same way. A paper account's balance never goes
negative (checked here; a CHECK constraint is the backstop). Accounts are made on first
use and locked in primary-key order, as the real journal does.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import InsufficientFunds, InvariantViolation
from app.ledger.rules import AccountKind, AccountRef, Leg, check_balanced
from db.raw import driver

_MAKE = """
    INSERT INTO paper_ledger_accounts (paper_account_id, currency, kind)
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[])
    ON CONFLICT DO NOTHING
"""
_LOCK = """
    SELECT a.id, a.paper_account_id, a.currency, a.kind, a.balance
    FROM paper_ledger_accounts a
    JOIN unnest($1::bigint[], $2::text[], $3::text[]) AS w(paper_account_id, currency, kind)
      ON a.paper_account_id IS NOT DISTINCT FROM w.paper_account_id
     AND a.currency = w.currency AND a.kind = w.kind
    ORDER BY a.id
    FOR UPDATE OF a
"""
_ENTRY = """
    INSERT INTO paper_journal_entries (paper_account_id, kind, reference)
    VALUES ($1, $2, $3) RETURNING id
"""
_POSTINGS = """
    INSERT INTO paper_postings (entry_id, account_id, currency, amount, balance_after)
    SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::numeric[], $5::numeric[])
"""
_UPDATE = """
    UPDATE paper_ledger_accounts a SET balance = v.balance
    FROM unnest($1::bigint[], $2::numeric[]) AS v(id, balance) WHERE a.id = v.id
"""
_BALANCES = """
    SELECT paper_account_id, currency, kind, balance FROM paper_ledger_accounts
    WHERE paper_account_id = ANY($1::bigint[]) ORDER BY paper_account_id, currency, kind
"""


def paper_ref(paper_account_id: int, currency: str, kind: AccountKind) -> AccountRef:
    return AccountRef(currency, kind, paper_account_id=paper_account_id)


async def post(
    session: AsyncSession,
    *,
    paper_account_id: int,
    kind: str,
    legs: Sequence[Leg],
    reference: str | None = None,
) -> int:
    """Write one balanced entry of the paper book; its id. ``InsufficientFunds`` (nothing
    written) when a paper account would go negative; ``InvariantViolation`` when a leg
    is not of the paper book."""
    check_balanced(legs)
    if not all(leg.account.paper for leg in legs):
        raise InvariantViolation("a paper entry with a real account")
    amounts: dict[AccountRef, Decimal] = {}
    for leg in legs:
        amounts[leg.account] = amounts.get(leg.account, Decimal(0)) + leg.amount
    refs = list(amounts)
    keys = [
        [r.paper_account_id for r in refs],
        [r.currency for r in refs],
        [r.kind.value for r in refs],
    ]
    connection = await driver(session)
    await connection.execute(_MAKE, *keys)
    rows = await connection.fetch(_LOCK, *keys)
    accounts = {
        paper_ref(r["paper_account_id"], r["currency"], AccountKind(r["kind"]))
        if r["paper_account_id"] is not None
        else AccountRef(r["currency"], AccountKind(r["kind"])): (r["id"], r["balance"])
        for r in rows
    }
    if set(accounts) != set(refs):
        raise InvariantViolation(f"paper ledger accounts missing: {set(refs) - set(accounts)}")
    after = {ref: accounts[ref][1] + amount for ref, amount in amounts.items()}
    for ref, balance in after.items():
        if ref.paper_account_id is not None and balance < 0:
            raise InsufficientFunds(f"Insufficient paper {ref.currency} balance")
    entry_id: int = await connection.fetchval(_ENTRY, paper_account_id, kind, reference)
    nonzero = [ref for ref in refs if amounts[ref]]
    await connection.execute(
        _POSTINGS,
        entry_id,
        [accounts[r][0] for r in nonzero],
        [r.currency for r in nonzero],
        [amounts[r] for r in nonzero],
        [after[r] for r in nonzero],
    )
    await connection.execute(
        _UPDATE, [accounts[r][0] for r in nonzero], [after[r] for r in nonzero]
    )
    return entry_id


async def balances(session: AsyncSession, paper_account_id: int) -> dict[AccountRef, Decimal]:
    """The paper account's ledger balances (PAPER_AVAILABLE and PAPER_HELD per currency)."""
    (found,) = await balances_by_account_ids(session, [paper_account_id])
    return found


async def balances_by_account_ids(
    session: AsyncSession, ids: Sequence[int]
) -> list[dict[AccountRef, Decimal]]:
    """``balances`` of each paper account of ``ids``, in their order, in one statement."""
    connection = await driver(session)
    found: dict[int, dict[AccountRef, Decimal]] = {i: {} for i in ids}
    for r in await connection.fetch(_BALANCES, list(ids)):
        ref = paper_ref(r["paper_account_id"], r["currency"], AccountKind(r["kind"]))
        found[r["paper_account_id"]][ref] = r["balance"]
    return [found[i] for i in ids]
