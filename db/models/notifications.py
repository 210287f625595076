"""Tables of notifications: notifications, preferences, price alerts."""

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
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base
from db.models.columns import AMOUNT, _created_at, _pk


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
