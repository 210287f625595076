"""Tables of the double-entry ledger: accounts, journal entries, postings, holds, idempotency
keys."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base
from db.models.columns import AMOUNT, _created_at, _pk

_EXCHANGE_KINDS = "('EXCHANGE_FREE', 'EXCHANGE_USED', 'EXCHANGE_COUNTERPARTY')"


class LedgerAccount(Base):
    """One balance: a user's AVAILABLE / HELD / STAKED per currency, a system account, or
    a connected exchange account's custody (``exchange_account_id`` set: its mirror of
    the exchange's balances and its counterparty, a book of its own).
    ``balance`` always equals the sum of the account's postings (checked by tests)."""

    __tablename__ = "ledger_accounts"
    __table_args__ = (
        # exchange_account_id last: a system account is still found by (NULL, currency, kind)
        UniqueConstraint(
            "user_id",
            "currency",
            "kind",
            "exchange_account_id",
            postgresql_nulls_not_distinct=True,
        ),
        CheckConstraint("user_id IS NULL OR balance >= 0", name="user_balance_non_negative"),
        CheckConstraint(
            "(user_id IS NOT NULL) = (kind IN ('AVAILABLE', 'HELD', 'STAKED'))",
            name="kind_matches_owner",
        ),
        CheckConstraint(
            f"(exchange_account_id IS NOT NULL) = (kind IN {_EXCHANGE_KINDS})",
            name="exchange_kind_matches_owner",
        ),
        CheckConstraint(
            "kind NOT IN ('EXCHANGE_FREE', 'EXCHANGE_USED') OR balance >= 0",
            name="exchange_mirror_non_negative",
        ),
        Index(
            None,
            "exchange_account_id",
            "currency",
            "kind",
            postgresql_where="exchange_account_id IS NOT NULL",
        ),
    )

    id: Mapped[int] = _pk()
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    kind: Mapped[str] = mapped_column(Text)
    balance: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    exchange_account_id: Mapped[int | None] = mapped_column(ForeignKey("exchange_connections.id"))
    created_at: Mapped[datetime] = _created_at()


class JournalEntry(Base):
    """Append-only. A mistake is corrected by a new entry, never by an UPDATE."""

    __tablename__ = "journal_entries"

    id: Mapped[int] = _pk()
    kind: Mapped[str] = mapped_column(Text)
    reference: Mapped[str | None] = mapped_column(Text)
    memo: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()


class Posting(Base):
    __tablename__ = "postings"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="non_zero"),
        Index(None, "account_id", "id"),
        Index(None, "entry_id"),
    )

    id: Mapped[int] = _pk()
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    amount: Mapped[Decimal] = mapped_column(AMOUNT)
    balance_after: Mapped[Decimal] = mapped_column(AMOUNT)
    created_at: Mapped[datetime] = _created_at()


class Hold(Base):
    """Two-phase: PENDING moves funds AVAILABLE -> HELD; then POSTED (spent) or VOIDED
    (released). Orders post in parts, so ``remaining`` shrinks until it reaches zero."""

    __tablename__ = "holds"
    __table_args__ = (
        CheckConstraint("status IN ('PENDING', 'POSTED', 'VOIDED')", name="status_known"),
        CheckConstraint("amount > 0 AND remaining >= 0 AND remaining <= amount", name="amounts"),
        Index(None, "user_id", "status"),
    )

    id: Mapped[int] = _pk()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    amount: Mapped[Decimal] = mapped_column(AMOUNT)
    remaining: Mapped[Decimal] = mapped_column(AMOUNT)
    status: Mapped[str] = mapped_column(Text, server_default="PENDING")
    reference: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IdempotencyKey(Base):
    """Stored in the same transaction as the effect; same key + same request returns the
    stored response, a different request under the same key is refused."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index(None, "created_at"),)

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    operation: Mapped[str] = mapped_column(Text)
    request_hash: Mapped[str] = mapped_column(Text)
    response: Mapped[dict | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _created_at()
