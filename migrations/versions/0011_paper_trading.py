"""paper trading: paper accounts, their log, mirrored orders and fills, the paper book

Revision ID: 0011_paper_trading
Revises: 0010_backtests
Create Date: 2026-12-12 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011_paper_trading"
down_revision: str | None = "0010_backtests"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (
    "paper_postings",
    "paper_fills",
    "paper_journal_entries",
    "paper_ledger_accounts",
    "paper_orders",
    "paper_log",
    "paper_accounts",
)


def upgrade() -> None:
    op.create_table(
        "paper_accounts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("market_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default="OPEN", nullable=False),
        sa.Column("generation", sa.Integer(), server_default="0", nullable=False),
        sa.Column("starting_balances", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_trade_id", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('OPEN', 'CLOSED')", name=op.f("ck_paper_accounts_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["market_id"], ["markets.id"], name=op.f("fk_paper_accounts_market_id_markets")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_paper_accounts_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paper_accounts")),
    )
    op.create_index(
        op.f("ix_paper_accounts_market_id_status"),
        "paper_accounts",
        ["market_id", "status"],
        unique=False,
    )
    op.create_index(
        op.f("ix_paper_accounts_user_id_id"), "paper_accounts", ["user_id", "id"], unique=False
    )
    op.create_table(
        "paper_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("paper_account_id", sa.BigInteger(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('TICK', 'SUBMIT', 'CANCEL')", name=op.f("ck_paper_log_kind_known")
        ),
        sa.ForeignKeyConstraint(
            ["paper_account_id"],
            ["paper_accounts.id"],
            name=op.f("fk_paper_log_paper_account_id_paper_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paper_log")),
        sa.UniqueConstraint(
            "paper_account_id",
            "generation",
            "seq",
            name=op.f("uq_paper_log_paper_account_id_generation_seq"),
        ),
    )
    op.create_table(
        "paper_orders",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("paper_account_id", sa.BigInteger(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("client_order_id", sa.Text(), nullable=False),
        sa.Column("side", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("quantity", sa.Numeric(precision=38, scale=18), nullable=True),
        sa.Column(
            "filled_quantity",
            sa.Numeric(precision=38, scale=18),
            server_default="0",
            nullable=False,
        ),
        sa.Column("price", sa.Numeric(precision=38, scale=18), nullable=True),
        sa.Column("stop_price", sa.Numeric(precision=38, scale=18), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["paper_account_id"],
            ["paper_accounts.id"],
            name=op.f("fk_paper_orders_paper_account_id_paper_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paper_orders")),
        sa.UniqueConstraint(
            "paper_account_id",
            "generation",
            "order_id",
            name=op.f("uq_paper_orders_paper_account_id_generation_order_id"),
        ),
    )
    op.create_index(
        op.f("ix_paper_orders_paper_account_id_id"),
        "paper_orders",
        ["paper_account_id", "id"],
        unique=False,
    )
    op.create_table(
        "paper_ledger_accounts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("paper_account_id", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column(
            "balance", sa.Numeric(precision=38, scale=18), server_default="0", nullable=False
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(paper_account_id IS NULL) = (kind = 'PAPER_EQUITY')",
            name=op.f("ck_paper_ledger_accounts_kind_matches_owner"),
        ),
        sa.CheckConstraint(
            "kind IN ('PAPER_AVAILABLE', 'PAPER_HELD', 'PAPER_EQUITY')",
            name=op.f("ck_paper_ledger_accounts_kind_known"),
        ),
        sa.CheckConstraint(
            "paper_account_id IS NULL OR balance >= 0",
            name=op.f("ck_paper_ledger_accounts_balance_non_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["currency"],
            ["currencies.code"],
            name=op.f("fk_paper_ledger_accounts_currency_currencies"),
        ),
        sa.ForeignKeyConstraint(
            ["paper_account_id"],
            ["paper_accounts.id"],
            name=op.f("fk_paper_ledger_accounts_paper_account_id_paper_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paper_ledger_accounts")),
        sa.UniqueConstraint(
            "paper_account_id",
            "currency",
            "kind",
            name=op.f("uq_paper_ledger_accounts_paper_account_id_currency_kind"),
            postgresql_nulls_not_distinct=True,
        ),
    )
    op.create_table(
        "paper_journal_entries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("paper_account_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["paper_account_id"],
            ["paper_accounts.id"],
            name=op.f("fk_paper_journal_entries_paper_account_id_paper_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paper_journal_entries")),
    )
    op.create_table(
        "paper_fills",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("paper_account_id", sa.BigInteger(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("client_order_id", sa.Text(), nullable=False),
        sa.Column("side", sa.Text(), nullable=False),
        sa.Column("liquidity", sa.Text(), nullable=False),
        sa.Column("price", sa.Numeric(precision=38, scale=18), nullable=False),
        sa.Column("quantity", sa.Numeric(precision=38, scale=18), nullable=False),
        sa.Column("quote_amount", sa.Numeric(precision=38, scale=18), nullable=False),
        sa.Column("fee", sa.Numeric(precision=38, scale=18), nullable=False),
        sa.Column("filled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["paper_journal_entries.id"],
            name=op.f("fk_paper_fills_entry_id_paper_journal_entries"),
        ),
        sa.ForeignKeyConstraint(
            ["paper_account_id"],
            ["paper_accounts.id"],
            name=op.f("fk_paper_fills_paper_account_id_paper_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paper_fills")),
        sa.UniqueConstraint(
            "paper_account_id",
            "generation",
            "number",
            name=op.f("uq_paper_fills_paper_account_id_generation_number"),
        ),
    )
    op.create_index(
        op.f("ix_paper_fills_paper_account_id_id"),
        "paper_fills",
        ["paper_account_id", "id"],
        unique=False,
    )
    op.create_table(
        "paper_postings",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=38, scale=18), nullable=False),
        sa.Column("balance_after", sa.Numeric(precision=38, scale=18), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_paper_postings_non_zero")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["paper_ledger_accounts.id"],
            name=op.f("fk_paper_postings_account_id_paper_ledger_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["currency"], ["currencies.code"], name=op.f("fk_paper_postings_currency_currencies")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["paper_journal_entries.id"],
            name=op.f("fk_paper_postings_entry_id_paper_journal_entries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paper_postings")),
    )
    op.create_index(
        op.f("ix_paper_postings_account_id_id"),
        "paper_postings",
        ["account_id", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_paper_postings_entry_id"), "paper_postings", ["entry_id"], unique=False
    )


def downgrade() -> None:
    for table in TABLES:
        op.drop_table(table)
