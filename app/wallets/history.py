"""A user's transaction history: every change of their available balances."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from db.queries import Page, check_page_size, decode_cursor, encode_cursor

CURSOR_KIND = "postings"  # transactions are keyset-paged on the posting id

_HISTORY_SQL = text(
    """
    SELECT * FROM (
        SELECT p.id AS posting_id, p.currency, p.amount, p.balance_after, p.created_at,
               e.reference, e.memo,
               CASE
                 WHEN e.kind = 'TRANSFER' AND p.amount < 0 THEN 'TRANSFER_OUT'
                 WHEN e.kind = 'TRANSFER' THEN 'TRANSFER_IN'
                 WHEN e.kind IN ('CARD_DEPOSIT', 'CRYPTO_DEPOSIT', 'DISPUTE_WON') THEN 'DEPOSIT'
                 WHEN e.kind = 'HOLD' AND w.id IS NOT NULL THEN 'WITHDRAWAL'
                 WHEN e.kind = 'HOLD' THEN 'HOLD'
                 WHEN e.kind = 'HOLD_VOID' THEN 'RELEASE'
                 WHEN e.kind IN ('REFUND', 'DISPUTE') OR d.id IS NOT NULL AND p.amount < 0
                   THEN 'REFUND'
                 WHEN e.kind = 'CORRECTION' THEN 'CORRECTION'
                 WHEN e.kind = 'STAKE' THEN 'STAKE'
                 WHEN e.kind = 'UNSTAKE' THEN 'UNSTAKE'
                 WHEN e.kind LIKE 'STAKING%' THEN 'STAKING_REWARD'
                 ELSE 'OTHER'
               END AS kind,
               CASE WHEN w.id IS NOT NULL AND e.kind = 'HOLD' THEN w.fee END AS fee,
               coalesce(w.status, d.status, 'COMPLETED') AS status,
               cu.display_name AS counterparty_name, cu.handle AS counterparty_handle
        FROM postings p
        JOIN ledger_accounts a ON a.id = p.account_id
        JOIN journal_entries e ON e.id = p.entry_id
        LEFT JOIN transfers t ON t.entry_id = e.id
        LEFT JOIN users cu ON cu.id = CASE WHEN t.sender_id = :user_id THEN t.recipient_id
                                           ELSE t.sender_id END
        LEFT JOIN withdrawals w ON w.id = CASE WHEN e.reference LIKE 'withdrawal:%%'
              THEN CAST(substr(e.reference, 12) AS bigint) END
        LEFT JOIN deposits d ON d.id = CASE WHEN e.reference LIKE 'deposit:%%'
              THEN CAST(substr(e.reference, 9) AS bigint) END
        WHERE a.user_id = :user_id AND a.kind = 'AVAILABLE'
          AND (CAST(:before_id AS bigint) IS NULL OR p.id < :before_id)
          AND (CAST(:currency AS text) IS NULL OR p.currency = :currency)
          AND (CAST(:since AS timestamptz) IS NULL OR p.created_at >= :since)
          AND (CAST(:until AS timestamptz) IS NULL OR p.created_at < :until)
    ) h
    WHERE CAST(:kinds AS text[]) IS NULL OR h.kind = ANY(CAST(:kinds AS text[]))
    ORDER BY h.posting_id DESC
    LIMIT :limit
    """
)


@dataclass(frozen=True, slots=True)
class HistoryItem:
    posting_id: int
    kind: str
    currency: str
    amount: Decimal
    fee: Decimal | None
    balance_after: Decimal
    counterparty_name: str | None
    counterparty_handle: str | None
    status: str
    reference: str | None
    memo: str | None
    created_at: datetime


async def list_history(
    session: AsyncSession,
    *,
    user_id: int,
    first: int,
    after: str | None,
    currency: str | None = None,
    kinds: list[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Page[HistoryItem]:
    """Newest first, keyset-paged on the posting id."""
    check_page_size(first)
    rows = (
        (
            await session.execute(
                _HISTORY_SQL,
                {
                    "user_id": user_id,
                    "before_id": decode_cursor(after, kind=CURSOR_KIND) if after else None,
                    "currency": currency.strip().upper() if currency else None,
                    "since": since,
                    "until": until,
                    "kinds": kinds or None,
                    "limit": first + 1,
                },
            )
        )
        .mappings()
        .all()
    )
    items = [
        HistoryItem(
            posting_id=r["posting_id"],
            kind=r["kind"],
            currency=r["currency"],
            amount=r["amount"],
            fee=r["fee"],
            balance_after=r["balance_after"],
            counterparty_name=r["counterparty_name"],
            counterparty_handle=r["counterparty_handle"],
            status=r["status"],
            reference=r["reference"],
            memo=r["memo"],
            created_at=r["created_at"],
        )
        for r in rows[:first]
    ]
    return Page(
        items=[(encode_cursor(i.posting_id, kind=CURSOR_KIND), i) for i in items],
        has_next_page=len(rows) > first,
        has_previous_page=after is not None,
    )
