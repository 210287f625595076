"""Tables of wallets: currencies, reference prices, transfers, deposits, deposit addresses,
withdrawals."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    SmallInteger,
    Text,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base
from db.models.columns import AMOUNT, _created_at, _pk


class Currency(Base):
    __tablename__ = "currencies"
    __table_args__ = (
        CheckConstraint("kind IN ('FIAT', 'CRYPTO')", name="kind_known"),
        CheckConstraint("scale BETWEEN 0 AND 18", name="scale_range"),
        CheckConstraint("min_withdrawal >= 0 AND withdrawal_fee >= 0", name="fees_non_negative"),
    )

    code: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    scale: Mapped[int] = mapped_column(SmallInteger)
    min_withdrawal: Mapped[Decimal] = mapped_column(AMOUNT)
    withdrawal_fee: Mapped[Decimal] = mapped_column(AMOUNT)
    enabled: Mapped[bool] = mapped_column(Boolean, server_default="true")


class ReferencePrice(Base):
    """USD value of one unit, kept current by the trading work (seeded for now)."""

    __tablename__ = "reference_prices"
    __table_args__ = (CheckConstraint("usd_price > 0", name="positive"),)

    currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"), primary_key=True)
    usd_price: Mapped[Decimal] = mapped_column(AMOUNT)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Transfer(Base):
    __tablename__ = "transfers"
    __table_args__ = (
        CheckConstraint("amount > 0", name="positive"),
        CheckConstraint("sender_id <> recipient_id", name="not_to_self"),
    )

    id: Mapped[int] = _pk()
    sender_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    recipient_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    amount: Mapped[Decimal] = mapped_column(AMOUNT)
    memo: Mapped[str | None] = mapped_column(Text)
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"))
    created_at: Mapped[datetime] = _created_at()


class Deposit(Base):
    """A card payment (a Stripe PaymentIntent) or an on-chain transfer an admin credited.
    ``credited_amount`` is what the ledger currently holds for the user from it: credits
    minus what refunds and disputes took back (refunded/disputed: totals Stripe reported)."""

    __tablename__ = "deposits"
    __table_args__ = (
        CheckConstraint("method IN ('CARD', 'CRYPTO')", name="method_known"),
        CheckConstraint(
            "credited_amount >= 0 AND refunded_amount >= 0 AND disputed_amount >= 0",
            name="amounts_non_negative",
        ),
        CheckConstraint(
            "status IN ('PENDING', 'SUCCEEDED', 'FAILED', 'REFUNDED', 'DISPUTED',"
            " 'AMOUNT_MISMATCH')",
            name="status_known",
        ),
        CheckConstraint("amount > 0", name="positive"),
        Index(None, "user_id", "id"),
    )

    id: Mapped[int] = _pk()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    amount: Mapped[Decimal] = mapped_column(AMOUNT)
    method: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default="PENDING")
    payment_intent_id: Mapped[str | None] = mapped_column(Text, unique=True)
    tx_hash: Mapped[str | None] = mapped_column(Text, unique=True)
    address: Mapped[str | None] = mapped_column(Text)
    credited_amount: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    refunded_amount: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    disputed_amount: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    dispute_won: Mapped[bool] = mapped_column(Boolean, server_default="false")
    failure_reason: Mapped[str | None] = mapped_column(Text)
    review_reason: Mapped[str | None] = mapped_column(Text)  # status AMOUNT_MISMATCH: why
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class ProcessedWebhookEvent(Base):
    """Stripe event ids already handled; inserted in the transaction of the credit."""

    __tablename__ = "processed_webhook_events"

    event_id: Mapped[str] = mapped_column(Text, primary_key=True)
    event_type: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = _created_at()


class DepositAddress(Base):
    __tablename__ = "deposit_addresses"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"), primary_key=True)
    address: Mapped[str] = mapped_column(Text, unique=True)
    created_at: Mapped[datetime] = _created_at()


class Withdrawal(Base):
    __tablename__ = "withdrawals"
    __table_args__ = (
        CheckConstraint(
            "status IN ('PENDING_REVIEW', 'APPROVED', 'SENT', 'REJECTED', 'CANCELED', 'FAILED')",
            name="status_known",
        ),
        CheckConstraint("amount > 0 AND fee >= 0", name="amounts"),
        Index(None, "user_id", "id"),
        Index(None, "status", "id"),
    )
    # fetch updated_at (and other server values) on flush instead of expiring them
    __mapper_args__ = {"eager_defaults": True}

    # BY DEFAULT: the id is drawn first (nextval) so the hold and its journal entry can
    # carry the reference "withdrawal:<id>" before the row exists.
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    amount: Mapped[Decimal] = mapped_column(AMOUNT)
    fee: Mapped[Decimal] = mapped_column(AMOUNT)
    usd_value: Mapped[Decimal] = mapped_column(AMOUNT)
    destination_address: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    hold_id: Mapped[int] = mapped_column(ForeignKey("holds.id"), unique=True)
    tx_hash: Mapped[str | None] = mapped_column(Text)
    reviewed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    review_reason: Mapped[str | None] = mapped_column(Text)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
