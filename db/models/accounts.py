"""Tables of accounts: users, refresh tokens, recovery codes, KYC, the audit log, API keys,
security events."""

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
    Index,
    LargeBinary,
    SmallInteger,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base
from db.models.columns import AMOUNT, _created_at, _pk


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
    # a sub-account (a bot's wallet): the user it belongs to; it has no login of its own
    owner_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"), index=True)
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
