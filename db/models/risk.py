"""Tables of the risk engine: limits, each scope's state (and the marks its P&L limits
are measured from), the transitions' audit trail; and the index the cancel rate reads."""

from __future__ import annotations

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
    Integer,
    Numeric,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base
from db.models.columns import AMOUNT, _created_at, _pk
from db.models.trading import OrderCommand

SCOPES = "('ORDER', 'BOT', 'FOLLOW', 'USER', 'MARKET', 'PLATFORM')"
STATES = "('ACTIVE', 'REDUCING', 'HALTED')"
KINDS = (
    "('ORDER_NOTIONAL', 'ORDER_RATE', 'CANCEL_RATE', 'TRADES_PER_DAY', 'ASSET_EXPOSURE',"
    " 'TOTAL_EXPOSURE', 'CONCENTRATION', 'STALE_MARKET_DATA', 'DAILY_LOSS', 'WEEKLY_LOSS',"
    " 'DRAWDOWN', 'CONSECUTIVE_LOSSES')"
)
ACTIONS = "('BLOCK_ENTRIES', 'CANCEL_ORDERS', 'REDUCE_TO_FLAT', 'COOL_DOWN')"


class RiskLimit(Base):
    """One limit of a scope (at most one per kind): a threshold, what happens when it is
    reached and when it nears (``warn_ratio``). ``set_by``: who set it; its reset needs
    their two-factor code when ``requires_two_factor``."""

    __tablename__ = "risk_limits"
    __table_args__ = (
        CheckConstraint(f"scope IN {SCOPES}", name="scope_known"),
        CheckConstraint(f"kind IN {KINDS}", name="kind_known"),
        CheckConstraint(f"action IN {ACTIONS}", name="action_known"),
        CheckConstraint("threshold > 0", name="threshold_positive"),
        CheckConstraint("warn_ratio > 0 AND warn_ratio <= 1", name="warn_ratio_range"),
        CheckConstraint(
            "(action = 'COOL_DOWN') = (cooldown_seconds IS NOT NULL)"
            " AND (cooldown_seconds IS NULL OR cooldown_seconds > 0)",
            name="cooldown_with_its_action",
        ),
        UniqueConstraint("scope", "scope_id", "kind"),
    )

    id: Mapped[int] = _pk()
    scope: Mapped[str] = mapped_column(Text)
    scope_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(Text)
    threshold: Mapped[Decimal] = mapped_column(AMOUNT)
    action: Mapped[str] = mapped_column(Text)
    warn_ratio: Mapped[Decimal] = mapped_column(Numeric(5, 4), server_default="0.8")
    cooldown_seconds: Mapped[int | None] = mapped_column(Integer)
    set_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    requires_two_factor: Mapped[bool] = mapped_column(Boolean, server_default="false")
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _created_at()


NOT_ACTIVE = "state <> 'ACTIVE'"


class RiskState(Base):
    """A scope's state (a scope without a row is ACTIVE) and, for its P&L limits, the
    marks they are measured from (``app.risk.domain.pnl.Marks``; NULL until first seen)."""

    __tablename__ = "risk_states"
    __table_args__ = (
        CheckConstraint(f"scope IN {SCOPES}", name="scope_known"),
        CheckConstraint(f"state IN {STATES}", name="state_known"),
        CheckConstraint(
            "cooldown_until IS NULL OR state = 'HALTED'", name="cooldown_only_when_halted"
        ),
        # the few states a placement must read (most rows are ACTIVE)
        Index("ix_risk_states_not_active", "scope", "scope_id", postgresql_where=NOT_ACTIVE),
    )

    scope: Mapped[str] = mapped_column(Text, primary_key=True)
    scope_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    state: Mapped[str] = mapped_column(Text, server_default="ACTIVE")
    since: Mapped[datetime] = _created_at()
    cooldown_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str | None] = mapped_column(Text)
    limit_id: Mapped[int | None] = mapped_column(ForeignKey("risk_limits.id", ondelete="SET NULL"))
    marks_day: Mapped[date | None] = mapped_column(Date)
    day_start_pnl: Mapped[Decimal | None] = mapped_column(AMOUNT)
    week_start_pnl: Mapped[Decimal | None] = mapped_column(AMOUNT)
    peak_pnl: Mapped[Decimal | None] = mapped_column(AMOUNT)
    realised_pnl: Mapped[Decimal | None] = mapped_column(AMOUNT)
    last_pnl: Mapped[Decimal | None] = mapped_column(AMOUNT)
    consecutive_losses: Mapped[int] = mapped_column(Integer, server_default="0")
    updated_at: Mapped[datetime] = _created_at()


class RiskTransition(Base):
    """The audit trail: every change of a scope's state, why, and who made it
    (``actor_id`` NULL: the risk engine, ``limit_id`` the limit that fired)."""

    __tablename__ = "risk_transitions"
    __table_args__ = (
        CheckConstraint(f"scope IN {SCOPES}", name="scope_known"),
        CheckConstraint(f"from_state IN {STATES} AND to_state IN {STATES}", name="states_known"),
        Index(None, "scope", "scope_id", "id"),
    )

    id: Mapped[int] = _pk()
    scope: Mapped[str] = mapped_column(Text)
    scope_id: Mapped[int] = mapped_column(BigInteger)
    from_state: Mapped[str] = mapped_column(Text)
    to_state: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    limit_id: Mapped[int | None] = mapped_column(BigInteger)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = _created_at()


# The cancel rate (CANCEL_RATE limits) counts a user's cancels of the last minute: only
# the cancel commands are in this index, so placing orders does not maintain it.
USER_CANCELS = Index(
    "ix_order_commands_user_cancels",
    OrderCommand.__table__.c.user_id,
    OrderCommand.__table__.c.created_at,
    postgresql_where=text("kind IN ('CANCEL', 'CANCEL_ALL')"),
)
