"""Tables of trading bots: the bots (settings, state, their sub-account or paper
account), every decision with its reason, the commands each step sends (stored before
they are sent), and the alerts their webhooks queued."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base
from db.models.columns import AMOUNT, _created_at, _pk

WATCHING = "status = 'RUNNING' AND NOT paused"


class Bot(Base):
    """One bot. Its money sits in a sub-account of its own (``account_id``: a users row
    whose ``owner_id`` is ``user_id``), funded from the owner's wallet when it starts and
    emptied back when it has stopped, so no bot can spend another's budget. A paper bot
    has a paper account of its own instead (``paper_account_id``, the owner's, opened
    with its budget as play money), and no sub-account. An exchange bot trades on its
    owner's connected exchange account (``exchange_account_id``): no sub-account, its
    budget bounds what its orders may commit (``app.bots.venues.ExchangeBots``).

    ``state`` is the machine's state (``app.bots.domain.codec``); ``status`` and the
    ``watch_*`` columns repeat what it says so the worker can select without decoding it.
    ``steps`` counts the steps stored (each one's commands carry it)."""

    __tablename__ = "bots"
    __table_args__ = (
        CheckConstraint("kind IN ('DCA', 'GRID', 'REBALANCE', 'SIGNAL')", name="kind"),
        CheckConstraint("status IN ('RUNNING', 'STOPPING', 'STOPPED')", name="status"),
        CheckConstraint("budget > 0", name="budget_positive"),
        # a bot trades as a live sub-account, on a paper account or on a connected
        # exchange account: exactly one
        CheckConstraint(
            "num_nonnulls(account_id, paper_account_id, exchange_account_id) = 1",
            name="one_venue",
        ),
        Index(None, "user_id", "id"),
        Index(None, "id", postgresql_where="status <> 'STOPPED' AND NOT paused"),
        # which bots a trade at a price wakes (``app.bots.worker``)
        Index("ix_bots_watch_low", text("(symbols[1])"), "watch_low", postgresql_where=WATCHING),
        Index("ix_bots_watch_high", text("(symbols[1])"), "watch_high", postgresql_where=WATCHING),
        Index("ix_bots_watch_all", "id", postgresql_where=f"{WATCHING} AND watch_all"),
        Index(
            "ix_bots_exchange_account_id",
            "exchange_account_id",
            postgresql_where="status <> 'STOPPED' AND exchange_account_id IS NOT NULL",
        ),
        Index("ix_bots_wake_at", "wake_at", postgresql_where="status <> 'STOPPED' AND NOT paused"),
    )

    id: Mapped[int] = _pk()
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"), nullable=False)
    account_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"), unique=True)
    # a paper bot's: play money on a paper account of its own (no sub-account)
    paper_account_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("paper_accounts.id"), unique=True
    )
    # an exchange bot's: the connected account it trades on (shared: the money stays at
    # the exchange), and its markets as the exchange stated them (``MarketSpec`` JSON)
    exchange_account_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("exchange_connections.id")
    )
    market_specs: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    symbols: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
    quote: Mapped[str] = mapped_column(ForeignKey("currencies.code"), nullable=False)
    budget: Mapped[Decimal] = mapped_column(AMOUNT, nullable=False)
    allocation: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    state: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default="RUNNING")
    paused: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    close_on_stop: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    steps: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    wake_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_price: Mapped[Decimal | None] = mapped_column(AMOUNT)
    # the prices it must be told of (``runtime.PriceBand``): at or below ``watch_low``,
    # at or above ``watch_high``, or every one (``watch_all``)
    watch_low: Mapped[Decimal | None] = mapped_column(AMOUNT)
    watch_high: Mapped[Decimal | None] = mapped_column(AMOUNT)
    watch_all: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="true")
    # the signal webhook: the path token, the secret's SHA-256, the allowed sources
    webhook_token: Mapped[str | None] = mapped_column(Text, unique=True)
    webhook_secret_hash: Mapped[str | None] = mapped_column(Text)
    ip_allowlist: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default="{}"
    )
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _created_at()
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BotDecision(Base):
    """What a bot decided and why, in the order it decided (append-only)."""

    __tablename__ = "bot_decisions"
    __table_args__ = (Index(None, "bot_id", "id"),)

    id: Mapped[int] = _pk()
    bot_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("bots.id", ondelete="CASCADE"), nullable=False
    )
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    action: Mapped[str] = mapped_column(Text, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    client_order_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()


class BotCommand(Base):
    """A command a step decided, stored with the step and sent after it commits; sent
    again after a crash (same client order id: the venue takes it once). ``ack_code``
    is the venue's refusal; ``ended`` that the bot was told of the refusal."""

    __tablename__ = "bot_commands"
    __table_args__ = (
        CheckConstraint("kind IN ('PLACE', 'CANCEL')", name="kind"),
        Index(None, "bot_id", "id"),
        Index(None, "bot_id", postgresql_where="sent_at IS NULL"),
    )

    id: Mapped[int] = _pk()
    bot_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("bots.id", ondelete="CASCADE"), nullable=False
    )
    step: Mapped[int] = mapped_column(Integer, nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    client_order_id: Mapped[str] = mapped_column(Text, nullable=False)
    symbol: Mapped[str | None] = mapped_column(Text)
    request: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    order_id: Mapped[int | None] = mapped_column(BigInteger)
    ack_code: Mapped[str | None] = mapped_column(Text)
    ended: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    created_at: Mapped[datetime] = _created_at()


class BotAlert(Base):
    """An alert a signal bot's webhook accepted, queued for the bot (once per alert id)."""

    __tablename__ = "bot_alerts"
    __table_args__ = (
        UniqueConstraint("bot_id", "alert_id"),
        Index(None, "bot_id", postgresql_where="processed_at IS NULL"),
    )

    id: Mapped[int] = _pk()
    bot_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("bots.id", ondelete="CASCADE"), nullable=False
    )
    alert_id: Mapped[str] = mapped_column(Text, nullable=False)
    alert: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created_at()
