"""Tables of trading: markets, order lists, orders, order commands, fills, positions, equity
snapshots."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
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
from db.models.columns import AMOUNT, BIG_INT, FEE_RATE, LIVE_ORDER, _created_at, _pk


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
    exact fee accumulator (see ``app.trading.domain.matching``); ``priority`` the command seq that
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
        Index(None, "user_id", "created_at"),  # the risk engine's counts of today's orders
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
