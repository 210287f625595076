"""Tables of social trading: leaders, invites, follows, follow positions, copies, profit share,
leader statistics."""

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
    Numeric,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base
from db.models.columns import AMOUNT, _created_at, _pk


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
        Index("ix_follows_closing", "id", postgresql_where=text("closing_at IS NOT NULL")),
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
    # copies go to this connected exchange account of the follower (NULL: the platform)
    exchange_account_id: Mapped[int | None] = mapped_column(ForeignKey("exchange_connections.id"))
    # an exchange follow whose positions are being sold there, since (app/social/copy_exchange.py)
    closing_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


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
        Index(
            "ix_copies_exchange_pending",
            "id",
            postgresql_where=text("status = 'PENDING' AND exchange_account_id IS NOT NULL"),
        ),
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
    # a copy bound for the follower's exchange account (``app.social.copy_exchange``):
    # the account, and the order sent there
    exchange_account_id: Mapped[int | None] = mapped_column(ForeignKey("exchange_connections.id"))
    exchange_order_id: Mapped[int | None] = mapped_column(ForeignKey("exchange_orders.id"))
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
