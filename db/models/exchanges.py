"""Tables of connected exchange accounts: one row per connection, its API credentials
sealed (app/exchanges/domain/sealing.py: never stored in the clear), what the exchange
said the key may do at its last check. A disconnected row keeps no secret (a check
constraint says so)."""

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
    LargeBinary,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base
from db.models.columns import AMOUNT, _created_at, _pk

EXCHANGE_IDS = ("binance", "kraken", "okx", "bybit", "coinbase")
CONNECTION_STATUSES = ("ACTIVE", "SUSPENDED", "DISCONNECTED")


class ExchangeConnection(Base):
    """``status``: ACTIVE (the last check passed, or could not reach the exchange),
    SUSPENDED (a check found the key refused or allowing withdrawals: ``last_check_code``
    says which), DISCONNECTED (the secret erased). The id is taken before the insert
    (``BY DEFAULT`` identity): the sealed secret's associated data names it."""

    __tablename__ = "exchange_connections"
    __table_args__ = (
        CheckConstraint(f"exchange IN {EXCHANGE_IDS!r}", name="exchange_known"),
        CheckConstraint(f"status IN {CONNECTION_STATUSES!r}", name="status_known"),
        CheckConstraint("length(label) BETWEEN 1 AND 64", name="label_length"),
        CheckConstraint(
            "(status = 'DISCONNECTED') = (key_id IS NULL AND wrapped_key IS NULL"
            " AND sealed_secret IS NULL)",
            name="secret_until_disconnected",
        ),
        Index(None, "user_id", "id"),
        Index(None, "status", "last_checked_at"),
        Index(None, "status", "sync_attempted_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    exchange: Mapped[str] = mapped_column(Text)
    label: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default="ACTIVE")
    key_id: Mapped[str | None] = mapped_column(Text)  # the master key's that wraps the data key
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    sealed_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    can_read: Mapped[bool | None] = mapped_column(Boolean)
    can_trade: Mapped[bool | None] = mapped_column(Boolean)
    can_withdraw: Mapped[bool | None] = mapped_column(Boolean)
    ip_restricted: Mapped[bool | None] = mapped_column(Boolean)
    last_checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_check_code: Mapped[str | None] = mapped_column(Text)  # None: the check passed
    created_at: Mapped[datetime] = _created_at()
    disconnected_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # exchange custody (app/exchanges/custody.py): the mirror is as of ``synced_at`` (the
    # reading last applied); ``sync_attempted_at`` is when a sync last started (the
    # periodic job claims connections by it)
    synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sync_attempted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


SYNC_TRIGGERS = ("CONNECT", "SCHEDULED", "MANUAL", "DISCONNECT")
SYNC_OUTCOMES = ("CHANGED", "UNCHANGED", "FAILED", "SUPERSEDED", "CLOSED")


class ExchangeSync(Base):
    """One run of reconciling a connection's mirror with the exchange, whatever came of
    it: CHANGED (``journal_entry_id`` posted ``changes``), UNCHANGED, FAILED
    (``error_code`` says why; nothing posted), SUPERSEDED (a newer reading was applied
    meanwhile), CLOSED (disconnected: the mirror zeroed). ``unmirrored``: currencies the
    exchange holds that the platform does not know (by code: total)."""

    __tablename__ = "exchange_syncs"
    __table_args__ = (
        CheckConstraint(f"trigger IN {SYNC_TRIGGERS!r}", name="trigger_known"),
        CheckConstraint(f"outcome IN {SYNC_OUTCOMES!r}", name="outcome_known"),
        CheckConstraint("(outcome = 'FAILED') = (error_code IS NOT NULL)", name="failed_has_code"),
        Index(None, "connection_id", "id"),
    )

    id: Mapped[int] = _pk()
    connection_id: Mapped[int] = mapped_column(ForeignKey("exchange_connections.id"))
    trigger: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(Text)
    changes: Mapped[list[dict[str, str]]] = mapped_column(JSONB, server_default="[]")
    unmirrored: Mapped[dict[str, str]] = mapped_column(JSONB, server_default="{}")
    journal_entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"))
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created_at()


ORDER_STATUSES = (
    "ARMED", "PENDING_SUBMIT", "OPEN", "PARTIALLY_FILLED", "FILLED", "CANCELED", "REJECTED"
)  # fmt: skip
ORDER_SIDES = ("BUY", "SELL")
ORDER_TYPES = ("LIMIT", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT")


LIST_KINDS = ("OCO", "BRACKET")
LIST_STATUSES = ("ACTIVE", "DONE", "CANCELED")
LIST_ROLES = ("ENTRY", "TAKE_PROFIT", "STOP_LOSS")


class ExchangeOrderList(Base):
    """An OCO or a bracket on a connected account, held by the platform
    (app/exchanges/order_lists.py): its legs are ``ExchangeOrder`` rows with its
    ``list_id``; a bracket's exits are added once its entry has ended with a fill."""

    __tablename__ = "exchange_order_lists"
    __table_args__ = (
        CheckConstraint(f"kind IN {LIST_KINDS!r}", name="kind_known"),
        CheckConstraint(f"status IN {LIST_STATUSES!r}", name="status_known"),
        Index(None, "connection_id", "id"),
    )

    id: Mapped[int] = _pk()
    connection_id: Mapped[int] = mapped_column(ForeignKey("exchange_connections.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(Text)
    symbol: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    # a bracket's exits, placed for what its entry filled
    take_profit_price: Mapped[Decimal | None] = mapped_column(AMOUNT)
    stop_loss_price: Mapped[Decimal | None] = mapped_column(AMOUNT)
    stop_loss_limit_price: Mapped[Decimal | None] = mapped_column(AMOUNT)
    note: Mapped[str | None] = mapped_column(Text)  # why its exits could not be placed
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _created_at()


class ExchangeOrder(Base):
    """An order on a connected account. The row (its ``client_order_id`` ours, made
    before the request) is written PENDING_SUBMIT before the exchange is asked: an
    unknown outcome is looked up by that id, never re-sent (app/exchanges/orders.py)."""

    __tablename__ = "exchange_orders"
    __table_args__ = (
        CheckConstraint(f"status IN {ORDER_STATUSES!r}", name="status_known"),
        CheckConstraint(f"side IN {ORDER_SIDES!r}", name="side_known"),
        CheckConstraint(f"type IN {ORDER_TYPES!r}", name="type_known"),
        CheckConstraint("quantity > 0 AND filled >= 0 AND filled <= quantity", name="amounts"),
        CheckConstraint(f"list_role IN {LIST_ROLES!r}", name="list_role_known"),
        UniqueConstraint("connection_id", "client_order_id"),
        Index(None, "list_id", postgresql_where=text("list_id IS NOT NULL")),
        Index(None, "connection_id", "id"),
        Index(
            "ix_exchange_orders_live",
            "connection_id",
            postgresql_where=text("status IN ('PENDING_SUBMIT', 'OPEN', 'PARTIALLY_FILLED')"),
        ),
        Index(
            "ix_exchange_orders_armed", "connection_id", postgresql_where=text("status = 'ARMED'")
        ),
        Index(
            "ix_exchange_orders_follow_id",
            "follow_id",
            postgresql_where=text("follow_id IS NOT NULL"),
        ),
        # the count limits at an exchange placement (app/exchanges/risk_counts.py): a
        # user's orders of today, and their cancels of the last minute
        Index(None, "user_id", "created_at"),
        Index(
            "ix_exchange_orders_cancels",
            "user_id",
            "cancel_requested_at",
            postgresql_where=text("cancel_requested_at IS NOT NULL"),
        ),
        Index(
            "ix_exchange_orders_forced_cancel",
            "user_id",
            postgresql_where=text(
                "forced_cancel_at IS NOT NULL"
                " AND status IN ('PENDING_SUBMIT', 'OPEN', 'PARTIALLY_FILLED', 'ARMED')"
            ),
        ),
    )

    id: Mapped[int] = _pk()
    connection_id: Mapped[int] = mapped_column(ForeignKey("exchange_connections.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    client_order_id: Mapped[str] = mapped_column(Text)
    exchange_order_id: Mapped[str | None] = mapped_column(Text)
    symbol: Mapped[str] = mapped_column(Text)
    side: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(Text)
    quantity: Mapped[Decimal] = mapped_column(AMOUNT)
    price: Mapped[Decimal | None] = mapped_column(AMOUNT)
    stop_price: Mapped[Decimal | None] = mapped_column(AMOUNT)
    filled: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    status: Mapped[str] = mapped_column(Text)
    emulated: Mapped[bool] = mapped_column(Boolean, server_default="false")
    reject_code: Mapped[str | None] = mapped_column(Text)
    # an emulated stop (app/exchanges/triggers.py): when and at which price it fired, and
    # why the last check of it, still ARMED, did not fire it
    triggered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    trigger_price: Mapped[Decimal | None] = mapped_column(AMOUNT)
    trigger_note: Mapped[str | None] = mapped_column(Text)
    # when a cancel of it was last asked (its owner's, or its list's): CANCEL_RATE counts it
    cancel_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # a leg of an OCO or a bracket, and its role in it
    list_id: Mapped[int | None] = mapped_column(ForeignKey("exchange_order_lists.id"))
    list_role: Mapped[str | None] = mapped_column(Text)
    # the follow it was sent for: a copy, or a close of the follow's positions
    follow_id: Mapped[int | None] = mapped_column(ForeignKey("follows.id"))
    # a kill switch's or a risk action's cancel, asked in its transaction and sent after
    # it (at most once per retry period): app/exchanges/cancel_requests.py
    forced_cancel_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    forced_cancel_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _created_at()


class ExchangeFill(Base):
    """A trade of an order at its exchange, recorded once: unique on the exchange's
    trade id (per account and market: some exchanges number trades per market)."""

    __tablename__ = "exchange_fills"
    __table_args__ = (
        UniqueConstraint("connection_id", "symbol", "trade_id"),
        Index(None, "order_id"),
    )

    id: Mapped[int] = _pk()
    connection_id: Mapped[int] = mapped_column(ForeignKey("exchange_connections.id"))
    order_id: Mapped[int] = mapped_column(ForeignKey("exchange_orders.id"))
    symbol: Mapped[str] = mapped_column(Text)
    trade_id: Mapped[str] = mapped_column(Text)
    price: Mapped[Decimal] = mapped_column(AMOUNT)
    quantity: Mapped[Decimal] = mapped_column(AMOUNT)
    fee: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    fee_currency: Mapped[str | None] = mapped_column(Text)
    filled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created_at()
    # the follow whose position it has been applied to (app/social/follow_positions.py)
    follow_id: Mapped[int | None] = mapped_column(ForeignKey("follows.id"))
