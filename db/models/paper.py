"""Tables of paper trading: paper accounts, their command and tick log (the source of
truth: the simulated venue is rebuilt from it), the orders (with their OCO and bracket
lists) and fills mirrored from it for queries, and the paper book (its own ledger
accounts, entries and postings: never the real ledger's tables)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base
from db.models.columns import AMOUNT, _created_at, _pk


class PaperAccount(Base):
    """A user's paper account on one market. ``generation`` counts resets: the log,
    orders and fills of the current one are the account's; ``starting_balances`` and
    ``started_at`` are the current generation's start."""

    __tablename__ = "paper_accounts"
    __table_args__ = (
        CheckConstraint("status IN ('OPEN', 'CLOSED')", name="status_known"),
        Index(None, "user_id", "id"),
        Index(None, "market_id", "status"),
    )

    id: Mapped[int] = _pk()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    market_id: Mapped[int] = mapped_column(ForeignKey("markets.id"))
    name: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default="OPEN")
    generation: Mapped[int] = mapped_column(Integer, server_default="0")
    starting_balances: Mapped[dict] = mapped_column(JSONB)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_trade_id: Mapped[int] = mapped_column(BigInteger, server_default="0")
    created_at: Mapped[datetime] = _created_at()
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # an exchange's market (ccxt id): its public trades are the prices, ``last_trade_id``
    # a ``market_trades`` id (app/paper/exchange_feed.py); NULL: the platform's market
    exchange: Mapped[str | None] = mapped_column(Text)


class PaperLogEntry(Base):
    """Append-only: what the account's simulated venue was given, in order (a TICK of
    the live market, a SUBMIT or a CANCEL of an order or of a list), numbered per
    generation from 1."""

    __tablename__ = "paper_log"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('TICK', 'SUBMIT', 'CANCEL', 'SUBMIT_LIST', 'CANCEL_LIST')",
            name="kind_known",
        ),
        UniqueConstraint("paper_account_id", "generation", "seq"),
    )

    id: Mapped[int] = _pk()
    paper_account_id: Mapped[int] = mapped_column(ForeignKey("paper_accounts.id"))
    generation: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _created_at()


class PaperOrderList(Base):
    """An OCO or a bracket of a paper account (its legs: ``paper_orders`` rows with its
    id, named ``<client_list_id>:<i>``)."""

    __tablename__ = "paper_order_lists"
    __table_args__ = (
        CheckConstraint("kind IN ('OCO', 'BRACKET')", name="kind_known"),
        UniqueConstraint("paper_account_id", "generation", "client_list_id"),
    )

    id: Mapped[int] = _pk()
    paper_account_id: Mapped[int] = mapped_column(ForeignKey("paper_accounts.id"))
    generation: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(Text)
    client_list_id: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()


class PaperOrder(Base):
    """An order of a paper account as its venue last reported it (mirrored); a list's
    leg has the list's id and its role (LEG, ENTRY, TAKE_PROFIT, STOP_LOSS)."""

    __tablename__ = "paper_orders"
    __table_args__ = (
        UniqueConstraint("paper_account_id", "generation", "order_id"),
        Index(None, "paper_account_id", "id"),
        Index(None, "list_id"),
        # a paper bot's orders, by the client order ids its state tracks (``app.bots``)
        Index(None, "paper_account_id", "client_order_id", "generation"),
    )

    id: Mapped[int] = _pk()
    paper_account_id: Mapped[int] = mapped_column(ForeignKey("paper_accounts.id"))
    generation: Mapped[int] = mapped_column(Integer)
    order_id: Mapped[int] = mapped_column(BigInteger)  # the venue's
    client_order_id: Mapped[str] = mapped_column(Text)
    side: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(Text)
    quantity: Mapped[Decimal | None] = mapped_column(AMOUNT)  # None: refused unparsed
    filled_quantity: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    price: Mapped[Decimal | None] = mapped_column(AMOUNT)
    stop_price: Mapped[Decimal | None] = mapped_column(AMOUNT)
    status: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    list_id: Mapped[int | None] = mapped_column(ForeignKey("paper_order_lists.id"))
    list_role: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _created_at()


class PaperFill(Base):
    """A fill of a paper order (the venue's ``OrderFilled``, numbered as its event)."""

    __tablename__ = "paper_fills"
    __table_args__ = (
        UniqueConstraint("paper_account_id", "generation", "number"),
        Index(None, "paper_account_id", "id"),
        Index(None, "paper_account_id", "generation", "order_id"),  # an order's fills
    )

    id: Mapped[int] = _pk()
    paper_account_id: Mapped[int] = mapped_column(ForeignKey("paper_accounts.id"))
    generation: Mapped[int] = mapped_column(Integer)
    number: Mapped[int] = mapped_column(BigInteger)
    order_id: Mapped[int] = mapped_column(BigInteger)
    client_order_id: Mapped[str] = mapped_column(Text)
    side: Mapped[str] = mapped_column(Text)
    liquidity: Mapped[str] = mapped_column(Text)
    price: Mapped[Decimal] = mapped_column(AMOUNT)
    quantity: Mapped[Decimal] = mapped_column(AMOUNT)
    quote_amount: Mapped[Decimal] = mapped_column(AMOUNT)
    fee: Mapped[Decimal] = mapped_column(AMOUNT)
    filled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("paper_journal_entries.id"))
    created_at: Mapped[datetime] = _created_at()


class PaperLedgerAccount(Base):
    """The paper book's balances: a paper account's PAPER_AVAILABLE / PAPER_HELD per
    currency (never negative), and PAPER_EQUITY per currency (no account: the source of
    play money, negative by what the paper accounts hold)."""

    __tablename__ = "paper_ledger_accounts"
    __table_args__ = (
        UniqueConstraint(
            "paper_account_id", "currency", "kind", postgresql_nulls_not_distinct=True
        ),
        CheckConstraint(
            "kind IN ('PAPER_AVAILABLE', 'PAPER_HELD', 'PAPER_EQUITY')", name="kind_known"
        ),
        CheckConstraint(
            "(paper_account_id IS NULL) = (kind = 'PAPER_EQUITY')", name="kind_matches_owner"
        ),
        CheckConstraint("paper_account_id IS NULL OR balance >= 0", name="balance_non_negative"),
    )

    id: Mapped[int] = _pk()
    paper_account_id: Mapped[int | None] = mapped_column(ForeignKey("paper_accounts.id"))
    currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    kind: Mapped[str] = mapped_column(Text)
    balance: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    created_at: Mapped[datetime] = _created_at()


class PaperJournalEntry(Base):
    """Append-only, as the real journal's."""

    __tablename__ = "paper_journal_entries"

    id: Mapped[int] = _pk()
    paper_account_id: Mapped[int] = mapped_column(ForeignKey("paper_accounts.id"))
    kind: Mapped[str] = mapped_column(Text)
    reference: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()


class PaperPosting(Base):
    __tablename__ = "paper_postings"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="non_zero"),
        Index(None, "account_id", "id"),
        Index(None, "entry_id"),
    )

    id: Mapped[int] = _pk()
    entry_id: Mapped[int] = mapped_column(ForeignKey("paper_journal_entries.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("paper_ledger_accounts.id"))
    currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    amount: Mapped[Decimal] = mapped_column(AMOUNT)
    balance_after: Mapped[Decimal] = mapped_column(AMOUNT)
    created_at: Mapped[datetime] = _created_at()
