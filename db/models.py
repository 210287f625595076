"""Tables. Alembic migrations create them; a test fails when the two disagree."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    LargeBinary,
    Numeric,
    SmallInteger,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base


def _pk() -> Mapped[int]:
    return mapped_column(BigInteger, Identity(always=True), primary_key=True)


AMOUNT = Numeric(38, 18)


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('USER', 'ADMIN')", name="role_known"),
        CheckConstraint("email = lower(email)", name="email_normalised"),
        CheckConstraint("kyc_level BETWEEN 0 AND 2", name="kyc_level_known"),
        CheckConstraint(
            "kyc_status IN ('NONE', 'PENDING', 'APPROVED', 'REJECTED')", name="kyc_status_known"
        ),
        CheckConstraint("handle ~ '^[a-z0-9_]{3,30}$'", name="handle_format"),
    )

    id: Mapped[int] = _pk()
    email: Mapped[str] = mapped_column(Text, unique=True)
    display_name: Mapped[str] = mapped_column(Text)
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text, server_default="USER")
    email_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    totp_secret: Mapped[str | None] = mapped_column(Text)
    totp_pending_secret: Mapped[str | None] = mapped_column(Text)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    # Access tokens issued before this instant are refused (password reset, "log out everywhere").
    tokens_valid_after: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    handle: Mapped[str | None] = mapped_column(Text, unique=True)
    kyc_level: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    kyc_status: Mapped[str] = mapped_column(Text, server_default="NONE")
    # Set when a refund or dispute found the money already gone: review before more payouts.
    flagged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    flag_reason: Mapped[str | None] = mapped_column(Text)
    # The kill switch: false cancels every order and refuses new ones (setTradingEnabled).
    trading_enabled: Mapped[bool] = mapped_column(Boolean, server_default="true")
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class RefreshToken(Base):
    """One row per issued refresh token; only the SHA-256 of the token is stored.

    Tokens of one login form a family. Rotation marks the old row ``used_at`` and
    inserts its successor; presenting a used token revokes the whole family.
    """

    __tablename__ = "refresh_tokens"
    __table_args__ = (Index(None, "family_id"), Index(None, "user_id"))

    id: Mapped[int] = _pk()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    family_id: Mapped[uuid.UUID]
    token_hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    created_at: Mapped[datetime] = _created_at()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RecoveryCode(Base):
    """Two-factor recovery codes, stored as keyed hashes; each works once."""

    __tablename__ = "recovery_codes"
    __table_args__ = (UniqueConstraint("user_id", "code_hash"),)

    id: Mapped[int] = _pk()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    code_hash: Mapped[bytes] = mapped_column(LargeBinary)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created_at()


# --- money -------------------------------------------------------------------------------


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


class LedgerAccount(Base):
    """One balance: a user's AVAILABLE / HELD / STAKED per currency, or a system account.
    ``balance`` always equals the sum of the account's postings (checked by tests)."""

    __tablename__ = "ledger_accounts"
    __table_args__ = (
        UniqueConstraint("user_id", "currency", "kind", postgresql_nulls_not_distinct=True),
        CheckConstraint("user_id IS NULL OR balance >= 0", name="user_balance_non_negative"),
        CheckConstraint(
            "(user_id IS NOT NULL) = (kind IN ('AVAILABLE', 'HELD', 'STAKED'))",
            name="kind_matches_owner",
        ),
    )

    id: Mapped[int] = _pk()
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    kind: Mapped[str] = mapped_column(Text)
    balance: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
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


class OutboxEvent(Base):
    """Events for subscribers, written in the transaction of the change they describe and
    relayed to Redis afterwards. Redis is delivery, this table is the record."""

    __tablename__ = "outbox"
    __table_args__ = (Index(None, "published_at", "id"), Index(None, "txid", "id"))

    id: Mapped[int] = _pk()
    # the writing transaction's id: consumers with a checkpoint read in (txid, id) order
    # below the oldest running transaction (app/services/event_log.py)
    txid: Mapped[int] = mapped_column(
        BigInteger, server_default=text("(pg_current_xact_id())::text::bigint")
    )
    topic: Mapped[str] = mapped_column(Text)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    payload: Mapped[dict] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _created_at()
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


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


class KycLimit(Base):
    __tablename__ = "kyc_limits"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    daily_deposit_usd: Mapped[Decimal] = mapped_column(AMOUNT)
    daily_withdrawal_usd: Mapped[Decimal] = mapped_column(AMOUNT)


class KycSubmission(Base):
    __tablename__ = "kyc_submissions"
    __table_args__ = (
        CheckConstraint("status IN ('PENDING', 'APPROVED', 'REJECTED')", name="status_known"),
        Index(None, "status", "id"),
        Index(None, "user_id"),
        # at most one submission per user waits for review
        Index(
            "uq_kyc_submissions_user_id_pending",
            "user_id",
            unique=True,
            postgresql_where="status = 'PENDING'",
        ),
    )

    id: Mapped[int] = _pk()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    full_name: Mapped[str] = mapped_column(Text)
    country: Mapped[str] = mapped_column(Text)
    date_of_birth: Mapped[date] = mapped_column(Date)
    document_type: Mapped[str] = mapped_column(Text)
    document_number_hash: Mapped[bytes] = mapped_column(LargeBinary)
    document_number_last4: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default="PENDING")
    level_granted: Mapped[int | None] = mapped_column(SmallInteger)
    reviewed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditLog(Base):
    """Every admin action: who, what, when, on what, with which request id."""

    __tablename__ = "audit_log"
    __table_args__ = (Index(None, "created_at"),)

    id: Mapped[int] = _pk()
    actor_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(Text)
    target: Mapped[str] = mapped_column(Text)
    details: Mapped[dict] = mapped_column(JSONB, server_default="{}")
    request_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()


# --- partner access -----------------------------------------------------------------------


class ApiKey(Base):
    """A partner's API key. Only the SHA-256 of the secret is stored (it has 256 bits of
    entropy); the secret itself is shown once, when the key is created."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("cardinality(scopes) > 0", name="has_scopes"),
        Index(None, "user_id", "id"),
    )

    id: Mapped[int] = _pk()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    prefix: Mapped[str] = mapped_column(Text)  # the secret's first characters, to recognise it
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    allowed_ips: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")  # CIDRs
    trusted_documents_only: Mapped[bool] = mapped_column(Boolean, server_default="false")
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created_at()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_ip: Mapped[str | None] = mapped_column(Text)


class SecurityEvent(Base):
    """Append-only trail of security-relevant events of an account (logins, two-factor,
    password resets, API keys, withdrawals). ``user_id`` is null for a failed login on
    an unknown address."""

    __tablename__ = "security_events"
    __table_args__ = (Index(None, "user_id", "id"),)

    id: Mapped[int] = _pk()
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(Text)
    ip_address: Mapped[str | None] = mapped_column(Text)
    user_agent: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict] = mapped_column(JSONB, server_default="{}")
    request_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()


# --- staking -----------------------------------------------------------------------------


class StakingProduct(Base):
    """What users can stake into. ``staked_total`` is the principal of the ACTIVE stakes
    (compounded rewards included), kept with every change; new stakes must fit under
    ``capacity``. The APY lives in ``staking_product_rates`` (it changes by day)."""

    __tablename__ = "staking_products"
    __table_args__ = (
        CheckConstraint("kind IN ('FLEXIBLE', 'LOCKED')", name="kind_known"),
        CheckConstraint("status IN ('ACTIVE', 'CLOSED')", name="status_known"),
        CheckConstraint(
            "(kind = 'FLEXIBLE' AND lock_days IS NULL)"
            " OR (kind = 'LOCKED' AND lock_days IN (30, 60, 90, 120))",
            name="term_matches_kind",
        ),
        CheckConstraint(
            "min_amount > 0 AND max_per_user >= min_amount AND capacity >= max_per_user",
            name="limits",
        ),
        CheckConstraint("staked_total >= 0", name="staked_total_non_negative"),
    )

    id: Mapped[int] = _pk()
    asset: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    kind: Mapped[str] = mapped_column(Text)
    lock_days: Mapped[int | None] = mapped_column(SmallInteger)
    compounding: Mapped[bool] = mapped_column(Boolean)
    min_amount: Mapped[Decimal] = mapped_column(AMOUNT)
    max_per_user: Mapped[Decimal] = mapped_column(AMOUNT)
    capacity: Mapped[Decimal] = mapped_column(AMOUNT)
    staked_total: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    status: Mapped[str] = mapped_column(Text, server_default="ACTIVE")
    created_at: Mapped[datetime] = _created_at()


class StakingProductRate(Base):
    """A product's APY (percent) from ``effective_from`` on: accrual day D uses the row
    with the latest ``effective_from`` <= D. A change made on day T applies from T + 1."""

    __tablename__ = "staking_product_rates"
    __table_args__ = (CheckConstraint("apy BETWEEN 2 AND 18", name="apy_range"),)

    product_id: Mapped[int] = mapped_column(ForeignKey("staking_products.id"), primary_key=True)
    effective_from: Mapped[date] = mapped_column(Date, primary_key=True)
    apy: Mapped[Decimal] = mapped_column(Numeric(7, 4))
    created_at: Mapped[datetime] = _created_at()


class Stake(Base):
    """One subscription to a product. ``principal`` is what is staked now (it grows with
    compounded rewards); the user's STAKED balance of a currency is the sum of the
    principals of their ACTIVE stakes in it. ``accrued_through`` is the last UTC day paid;
    the current term runs from ``term_started_on`` to ``matures_on`` (exclusive, LOCKED
    only). The ledger account ids are kept so the accrual SQL needs no account look-up.
    Every ACTIVE row is updated once a day (no indexed column changes): pages half empty
    (fillfactor 50) let those updates stay HOT, without index writes."""

    __tablename__ = "stakes"
    __table_args__ = (
        CheckConstraint("status IN ('ACTIVE', 'MATURED', 'REDEEMED')", name="status_known"),
        CheckConstraint("(status = 'ACTIVE') = (principal > 0)", name="principal_while_active"),
        CheckConstraint(
            "principal >= 0 AND accrued_rewards >= 0 AND forfeited_rewards >= 0"
            " AND term_rewards >= 0",
            name="amounts_non_negative",
        ),
        Index(None, "user_id", "id"),
        Index(None, "product_id", "user_id"),
        Index(None, "matures_on", postgresql_where="status = 'ACTIVE'"),
        {"postgresql_with": {"fillfactor": 50}},
    )

    id: Mapped[int] = _pk()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("staking_products.id"))
    currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    principal: Mapped[Decimal] = mapped_column(AMOUNT)
    accrued_rewards: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    forfeited_rewards: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    term_rewards: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    status: Mapped[str] = mapped_column(Text, server_default="ACTIVE")
    auto_renew: Mapped[bool] = mapped_column(Boolean)
    staked_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    available_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    staked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    term_started_on: Mapped[date] = mapped_column(Date)
    accrued_through: Mapped[date] = mapped_column(Date)
    matures_on: Mapped[date | None] = mapped_column(Date)
    renewals: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created_at()


class StakingReward(Base):
    """One day's reward of one stake: at most one row per (stake, day), written in the
    transaction of its postings, so a day is never paid twice. ``account_id`` is where it
    went (STAKED when compounded, else AVAILABLE). The journal entry is written later in
    the same transaction, hence the deferred foreign key. ``user_id``, ``currency`` and
    ``account_id`` copy the stake's and have no foreign keys of their own: the stake's
    cover them, and three more checks per row would double the cost of the daily insert."""

    __tablename__ = "staking_rewards"
    __table_args__ = (
        UniqueConstraint("stake_id", "accrual_date"),
        CheckConstraint("amount > 0", name="positive"),
        Index(None, "user_id", "id"),
        Index(None, "entry_id"),
    )

    id: Mapped[int] = _pk()
    stake_id: Mapped[int] = mapped_column(ForeignKey("stakes.id"))
    user_id: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(Text)
    accrual_date: Mapped[date] = mapped_column(Date)
    principal: Mapped[Decimal] = mapped_column(AMOUNT)
    apy: Mapped[Decimal] = mapped_column(Numeric(7, 4))
    daily_rate: Mapped[Decimal] = mapped_column(Numeric)
    amount: Mapped[Decimal] = mapped_column(AMOUNT)
    compounded: Mapped[bool] = mapped_column(Boolean)
    account_id: Mapped[int] = mapped_column(BigInteger)
    entry_id: Mapped[int] = mapped_column(
        ForeignKey("journal_entries.id", deferrable=True, initially="DEFERRED")
    )
    created_at: Mapped[datetime] = _created_at()


# --- trading -----------------------------------------------------------------------------

FEE_RATE = Numeric(10, 8)
BIG_INT = Numeric(78, 0)  # exact integers beyond 64 bits (fee accumulators)
LIVE_ORDER = "status IN ('NEW', 'OPEN', 'PARTIALLY_FILLED', 'UNTRIGGERED', 'TRIGGERED', 'PENDING')"


class Market(Base):
    """A spot market of the platform's own venue. ``next_seq`` numbers the market's
    commands (taken under this row's lock, so commands commit in sequence order);
    ``applied_seq`` is the last command the engine applied, ``book_seq`` the last one that
    changed the book, written in the engine's batch transaction with its effects."""

    __tablename__ = "markets"
    __table_args__ = (
        CheckConstraint("status IN ('OPEN', 'HALTED')", name="status_known"),
        CheckConstraint("base <> quote", name="two_currencies"),
        CheckConstraint("applied_seq <= next_seq AND book_seq <= applied_seq", name="sequences"),
    )

    id: Mapped[int] = _pk()
    symbol: Mapped[str] = mapped_column(Text, unique=True)
    base: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    quote: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    tick_size: Mapped[Decimal] = mapped_column(AMOUNT)
    lot_size: Mapped[Decimal] = mapped_column(AMOUNT)
    min_notional: Mapped[Decimal] = mapped_column(AMOUNT)
    maker_fee: Mapped[Decimal] = mapped_column(FEE_RATE)
    taker_fee: Mapped[Decimal] = mapped_column(FEE_RATE)
    status: Mapped[str] = mapped_column(Text, server_default="OPEN")
    reference_price: Mapped[Decimal] = mapped_column(AMOUNT)  # seeds the market maker
    last_price: Mapped[Decimal | None] = mapped_column(AMOUNT)
    next_seq: Mapped[int] = mapped_column(BigInteger, server_default="0")
    applied_seq: Mapped[int] = mapped_column(BigInteger, server_default="0")
    book_seq: Mapped[int] = mapped_column(BigInteger, server_default="0")
    last_trade_id: Mapped[int] = mapped_column(BigInteger, server_default="0")


class OrderList(Base):
    """OCO (two orders: the first to fill or trigger cancels the other) or BRACKET (an
    entry, then a take-profit and a stop-loss as an OCO once the entry has filled)."""

    __tablename__ = "order_lists"
    __table_args__ = (
        CheckConstraint("kind IN ('OCO', 'BRACKET')", name="kind_known"),
        UniqueConstraint("user_id", "client_list_id"),
    )

    id: Mapped[int] = _pk()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    market_id: Mapped[int] = mapped_column(ForeignKey("markets.id"))
    kind: Mapped[str] = mapped_column(Text)
    client_list_id: Mapped[str] = mapped_column(Text)
    request_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()


class Order(Base):
    """One order and its life. ``book_price`` is what the engine matches with: the limit
    price, or a market type's worst acceptable price. ``fee_numerator`` is the engine's
    exact fee accumulator (see ``app.domain.matching``); ``priority`` the command seq that
    gave a resting order its place in the queue."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("side IN ('BUY', 'SELL')", name="side_known"),
        CheckConstraint(
            "status IN ('NEW', 'OPEN', 'PARTIALLY_FILLED', 'FILLED', 'CANCELED', 'REJECTED',"
            " 'EXPIRED', 'UNTRIGGERED', 'TRIGGERED', 'PENDING')",
            name="status_known",
        ),
        CheckConstraint(
            "quantity > 0 AND filled_quantity >= 0 AND filled_quantity <= quantity",
            name="quantities",
        ),
        UniqueConstraint("user_id", "client_order_id"),
        Index(None, "user_id", "id"),
        Index(None, "user_id", "market_id", postgresql_where=LIVE_ORDER),
        Index(
            "ix_orders_resting",
            "market_id",
            "side",
            "book_price",
            postgresql_where="status IN ('OPEN', 'PARTIALLY_FILLED')",
        ),
        Index(None, "list_id"),
    )

    id: Mapped[int] = _pk()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    market_id: Mapped[int] = mapped_column(ForeignKey("markets.id"))
    client_order_id: Mapped[str] = mapped_column(Text)
    request_hash: Mapped[str] = mapped_column(Text)
    list_id: Mapped[int | None] = mapped_column(ForeignKey("order_lists.id"))
    list_role: Mapped[str | None] = mapped_column(Text)
    side: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(Text)
    time_in_force: Mapped[str] = mapped_column(Text)
    post_only: Mapped[bool] = mapped_column(Boolean, server_default="false")
    status: Mapped[str] = mapped_column(Text)
    quantity: Mapped[Decimal] = mapped_column(AMOUNT)
    price: Mapped[Decimal | None] = mapped_column(AMOUNT)  # the limit price, as given
    book_price: Mapped[Decimal] = mapped_column(AMOUNT)
    stop_price: Mapped[Decimal | None] = mapped_column(AMOUNT)
    trailing_offset: Mapped[Decimal | None] = mapped_column(AMOUNT)
    trailing_offset_type: Mapped[str | None] = mapped_column(Text)
    activation_price: Mapped[Decimal | None] = mapped_column(AMOUNT)
    trailing_active: Mapped[bool] = mapped_column(Boolean, server_default="false")
    trailing_extreme: Mapped[Decimal | None] = mapped_column(AMOUNT)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    filled_quantity: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    executed_value: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")  # quote
    fees: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")  # quote
    fee_numerator: Mapped[Decimal] = mapped_column(BIG_INT, server_default="0")
    priority: Mapped[int | None] = mapped_column(BigInteger)
    hold_id: Mapped[int | None] = mapped_column(ForeignKey("holds.id"))
    reason: Mapped[str | None] = mapped_column(Text)  # why it was rejected, canceled, expired
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _created_at()


class OrderCommand(Base):
    """The engine's input, in sequence per market: PLACE, CANCEL, CANCEL_ALL, AMEND, ARM
    (a conditional order for the trigger engine), EXPIRE_DUE. Replaying a market's
    commands rebuilds its book."""

    __tablename__ = "order_commands"

    market_id: Mapped[int] = mapped_column(ForeignKey("markets.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    args: Mapped[dict] = mapped_column(JSONB, server_default="{}")
    # what the engine made of it: OK or the code of the error (AMEND / CANCEL outcomes)
    outcome: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()


class Fill(Base):
    """One side of a trade: each trade writes the maker's and the taker's fill, with the
    journal entry that settled it."""

    __tablename__ = "fills"
    __table_args__ = (
        CheckConstraint("liquidity IN ('MAKER', 'TAKER')", name="liquidity_known"),
        UniqueConstraint("market_id", "trade_id", "liquidity"),
        Index(None, "user_id", "id"),
        Index(None, "order_id", "id"),
        Index(None, "market_id", "created_at"),
    )

    id: Mapped[int] = _pk()
    market_id: Mapped[int] = mapped_column(ForeignKey("markets.id"))
    trade_id: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int] = mapped_column(BigInteger)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    side: Mapped[str] = mapped_column(Text)
    liquidity: Mapped[str] = mapped_column(Text)
    price: Mapped[Decimal] = mapped_column(AMOUNT)
    quantity: Mapped[Decimal] = mapped_column(AMOUNT)
    quote_amount: Mapped[Decimal] = mapped_column(AMOUNT)
    fee: Mapped[Decimal] = mapped_column(AMOUNT)
    fee_currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"))
    created_at: Mapped[datetime] = _created_at()


class Position(Base):
    """A user's cost basis in one asset, from trading: ``quantity`` bought and not yet
    sold, what it cost in USD, and the USD profit realized by selling."""

    __tablename__ = "positions"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"), primary_key=True)
    quantity: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    cost_usd: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    realized_pnl_usd: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    updated_at: Mapped[datetime] = _created_at()


class EquitySnapshot(Base):
    """A user's total equity in USD at one moment, for charts."""

    __tablename__ = "equity_snapshots"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    taken_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    equity_usd: Mapped[Decimal] = mapped_column(AMOUNT)


# --- Social trading (issue 5) ---------------------------------------------------------


class Leader(Base):
    """A user others may follow. ``status`` STOPPED: no new copies; followers keep what
    they hold."""

    __tablename__ = "leaders"
    __table_args__ = (
        CheckConstraint(
            "profit_share_percent >= 0 AND profit_share_percent <= 30", name="profit_share_range"
        ),
        CheckConstraint("minimum_allocation >= 0", name="minimum_allocation_positive"),
        CheckConstraint("visibility IN ('PUBLIC', 'INVITE_ONLY')", name="visibility_known"),
        CheckConstraint("status IN ('ACTIVE', 'STOPPED')", name="status_known"),
    )

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    display_name: Mapped[str] = mapped_column(Text)
    bio: Mapped[str] = mapped_column(Text, server_default="")
    profit_share_percent: Mapped[Decimal] = mapped_column(Numeric(5, 2))
    minimum_allocation: Mapped[Decimal] = mapped_column(AMOUNT)
    visibility: Mapped[str] = mapped_column(Text, server_default="PUBLIC")
    status: Mapped[str] = mapped_column(Text, server_default="ACTIVE")
    created_at: Mapped[datetime] = _created_at()
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LeaderInvite(Base):
    """Who may follow an INVITE_ONLY leader."""

    __tablename__ = "leader_invites"

    leader_id: Mapped[int] = mapped_column(ForeignKey("leaders.user_id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    created_at: Mapped[datetime] = _created_at()


class Follow(Base):
    """One follower copying one leader. Amounts are in ``quote`` (the currency copied
    orders spend). At most one follow per (follower, leader) that is not STOPPED."""

    __tablename__ = "follows"
    __table_args__ = (
        CheckConstraint("status IN ('ACTIVE', 'PAUSED', 'STOPPED')", name="status_known"),
        CheckConstraint(
            "mode IN ('FIXED_AMOUNT', 'FIXED_RATIO', 'EQUITY_PROPORTIONAL')", name="mode_known"
        ),
        CheckConstraint("allocation > 0", name="allocation_positive"),
        CheckConstraint("follower_id <> leader_id", name="not_self"),
        Index(
            "uq_follows_live",
            "follower_id",
            "leader_id",
            unique=True,
            postgresql_where="status <> 'STOPPED'",
        ),
        Index(None, "leader_id", "status"),
        Index(None, "follower_id", "id"),
    )

    id: Mapped[int] = _pk()
    follower_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    leader_id: Mapped[int] = mapped_column(ForeignKey("leaders.user_id"))
    status: Mapped[str] = mapped_column(Text, server_default="ACTIVE")
    pause_reason: Mapped[str | None] = mapped_column(Text)
    mode: Mapped[str] = mapped_column(Text)
    quote: Mapped[str] = mapped_column(ForeignKey("currencies.code"), server_default="USDT")
    allocation: Mapped[Decimal] = mapped_column(AMOUNT)
    fixed_amount: Mapped[Decimal | None] = mapped_column(AMOUNT)  # FIXED_AMOUNT: quote/order
    ratio: Mapped[Decimal | None] = mapped_column(AMOUNT)  # FIXED_RATIO: x leader quantity
    max_order_notional: Mapped[Decimal | None] = mapped_column(AMOUNT)
    max_position_per_asset: Mapped[Decimal | None] = mapped_column(AMOUNT)  # quote value
    allowed_symbols: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    slippage_tolerance: Mapped[Decimal] = mapped_column(Numeric(10, 8), server_default="0.01")
    stop_loss_percent: Mapped[Decimal | None] = mapped_column(Numeric(10, 4))
    close_on_stop_loss: Mapped[bool] = mapped_column(Boolean, server_default="false")
    high_water_mark: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _created_at()
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class FollowPosition(Base):
    """What a follower holds of one asset because of one follow (copied buys less
    mirrored sells), its cost in the follow's quote, and the profit realized."""

    __tablename__ = "follow_positions"

    follow_id: Mapped[int] = mapped_column(ForeignKey("follows.id"), primary_key=True)
    currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"), primary_key=True)
    quantity: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    cost: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    realized_pnl: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    # bumped by every fill applied: names the close order taken from this state
    version: Mapped[int] = mapped_column(BigInteger, server_default="0")
    updated_at: Mapped[datetime] = _created_at()


class Copy(Base):
    """One leader fill as seen by one follow: the follower order placed for it
    (PENDING until placed, then PLACED), or SKIPPED with the reason."""

    __tablename__ = "copies"
    __table_args__ = (
        CheckConstraint("status IN ('PENDING', 'PLACED', 'SKIPPED')", name="status_known"),
        UniqueConstraint("follow_id", "leader_fill_id"),
        Index(None, "follow_id", "id"),
        Index(None, "order_id"),
    )

    id: Mapped[int] = _pk()
    follow_id: Mapped[int] = mapped_column(ForeignKey("follows.id"))
    leader_fill_id: Mapped[int] = mapped_column(ForeignKey("fills.id"))
    status: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)  # why SKIPPED
    market_id: Mapped[int] = mapped_column(ForeignKey("markets.id"))
    side: Mapped[str] = mapped_column(Text)
    quantity: Mapped[Decimal | None] = mapped_column(AMOUNT)
    price: Mapped[Decimal | None] = mapped_column(AMOUNT)  # the copy's limit (slippage)
    client_order_id: Mapped[str | None] = mapped_column(Text)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    # of the order's fills, the quantity already applied to the follow's positions
    filled_quantity: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _created_at()


class ProfitShareSettlement(Base):
    """The leader's share of a follower's realized profit above the follow's high-water
    mark, moved through the ledger once per follow and day."""

    __tablename__ = "profit_share_settlements"
    __table_args__ = (UniqueConstraint("follow_id", "period"), Index(None, "leader_id", "id"))

    id: Mapped[int] = _pk()
    follow_id: Mapped[int] = mapped_column(ForeignKey("follows.id"))
    leader_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    follower_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    period: Mapped[date] = mapped_column(Date)
    realized_pnl: Mapped[Decimal] = mapped_column(AMOUNT)  # cumulative, at settlement
    high_water_mark_before: Mapped[Decimal] = mapped_column(AMOUNT)
    high_water_mark_after: Mapped[Decimal] = mapped_column(AMOUNT)
    amount: Mapped[Decimal] = mapped_column(AMOUNT)
    currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"))
    created_at: Mapped[datetime] = _created_at()


class LeaderStat(Base):
    """A leader's statistics over one period (D7, D30, D90, ALL), computed by the
    leaderboard job. ``ranked`` is false below the minimum number of trades."""

    __tablename__ = "leader_stats"
    __table_args__ = (
        CheckConstraint("period IN ('D7', 'D30', 'D90', 'ALL')", name="period_known"),
    )

    leader_id: Mapped[int] = mapped_column(ForeignKey("leaders.user_id"), primary_key=True)
    period: Mapped[str] = mapped_column(Text, primary_key=True)
    roi: Mapped[Decimal | None] = mapped_column(AMOUNT)
    pnl: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    win_rate: Mapped[Decimal | None] = mapped_column(AMOUNT)
    max_drawdown: Mapped[Decimal | None] = mapped_column(AMOUNT)
    sharpe: Mapped[Decimal | None] = mapped_column(AMOUNT)
    sortino: Mapped[Decimal | None] = mapped_column(AMOUNT)
    followers: Mapped[int] = mapped_column(BigInteger, server_default="0")
    aum: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    trades: Mapped[int] = mapped_column(BigInteger, server_default="0")
    ranked: Mapped[bool] = mapped_column(Boolean, server_default="false")
    computed_at: Mapped[datetime] = _created_at()


class EventConsumer(Base):
    """A consumer's checkpoint in the outbox, as (txid, id): events are read in that order
    and only below the oldest running transaction, so none committed late is skipped."""

    __tablename__ = "event_consumers"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    last_txid: Mapped[int] = mapped_column(BigInteger, server_default="0")
    last_id: Mapped[int] = mapped_column(BigInteger, server_default="0")
    updated_at: Mapped[datetime] = _created_at()


class Notification(Base):
    """A message to one user. ``source`` identifies the event it came from, so an
    event consumed twice notifies once."""

    __tablename__ = "notifications"
    __table_args__ = (
        CheckConstraint(
            "type IN ('TRADE', 'RISK', 'PRICE', 'WALLET', 'SOCIAL', 'SYSTEM')", name="type_known"
        ),
        CheckConstraint("priority IN ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')", name="priority_known"),
        UniqueConstraint("user_id", "source"),
        Index(None, "user_id", "id"),
        Index("ix_notifications_unread", "user_id", postgresql_where="read_at IS NULL"),
    )

    id: Mapped[int] = _pk()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    type: Mapped[str] = mapped_column(Text)
    priority: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(Text)  # global ID of the object it is about
    source: Mapped[str | None] = mapped_column(Text)
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    emailed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created_at()


class NotificationPreference(Base):
    """Which priorities a user also receives by email."""

    __tablename__ = "notification_preferences"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    email_priorities: Mapped[list[str]] = mapped_column(
        ARRAY(Text), server_default="{HIGH,CRITICAL}"
    )
    updated_at: Mapped[datetime] = _created_at()


class PriceAlert(Base):
    """Fires once when the market's last price crosses ``price`` in ``direction``."""

    __tablename__ = "price_alerts"
    __table_args__ = (
        CheckConstraint("direction IN ('ABOVE', 'BELOW')", name="direction_known"),
        CheckConstraint("status IN ('ACTIVE', 'TRIGGERED', 'DELETED')", name="status_known"),
        CheckConstraint("price > 0", name="price_positive"),
        Index(None, "user_id", "id"),
        Index("ix_price_alerts_active", "market_id", postgresql_where="status = 'ACTIVE'"),
    )

    id: Mapped[int] = _pk()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    market_id: Mapped[int] = mapped_column(ForeignKey("markets.id"))
    direction: Mapped[str] = mapped_column(Text)
    price: Mapped[Decimal] = mapped_column(AMOUNT)
    status: Mapped[str] = mapped_column(Text, server_default="ACTIVE")
    created_at: Mapped[datetime] = _created_at()
    triggered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
