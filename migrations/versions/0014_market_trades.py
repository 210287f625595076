"""market trades: trades per source and symbol (imported files, later exchanges)

Revision ID: 0014_market_trades
Revises: 0013_backtest_leases
Create Date: 2026-12-12 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_market_trades"
down_revision: str | None = "0013_backtest_leases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AMOUNT = sa.Numeric(38, 18)


def upgrade() -> None:
    op.create_table(
        "market_trades",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("trade_id", sa.Text(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("price", AMOUNT, nullable=False),
        sa.Column("amount", AMOUNT, nullable=False),
        sa.Column("side", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "source ~ '^(file|exchange):[a-z0-9][a-z0-9._-]{0,39}$'",
            name=op.f("ck_market_trades_source"),
        ),
        sa.CheckConstraint(
            "length(trade_id) BETWEEN 1 AND 128", name=op.f("ck_market_trades_trade_id")
        ),
        sa.CheckConstraint("price > 0 AND amount > 0", name=op.f("ck_market_trades_positive")),
        sa.CheckConstraint("side IN ('BUY', 'SELL')", name=op.f("ck_market_trades_side")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_market_trades")),
        sa.UniqueConstraint(
            "source", "symbol", "trade_id", name=op.f("uq_market_trades_source_symbol_trade_id")
        ),
    )
    op.create_index(
        op.f("ix_market_trades_source_symbol_time_id"),
        "market_trades",
        ["source", "symbol", "time", "id"],
    )


def downgrade() -> None:
    op.drop_table("market_trades")
