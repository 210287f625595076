"""backtests: requests, status and progress, metrics, equity points and trades

Revision ID: 0010_backtests
Revises: 0009_market_data
Create Date: 2026-12-12 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010_backtests"
down_revision: str | None = "0009_market_data"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EXACT = sa.Numeric()
JSONB = postgresql.JSONB(astext_type=sa.Text())


def _id() -> sa.Column:
    return sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False)


def _at(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "backtests",
        _id(),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("strategy", sa.Text(), nullable=False),
        sa.Column("parameters", JSONB, nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("interval", sa.Text(), nullable=False),
        _at("start"),
        _at("end"),
        sa.Column("settings", JSONB, nullable=False),
        sa.Column("balances", JSONB, nullable=False),
        sa.Column("fees", JSONB, nullable=False),
        sa.Column("market", JSONB, nullable=True),
        sa.Column("candles_total", sa.Integer(), nullable=False),
        sa.Column("candles_done", sa.Integer(), nullable=False),
        sa.Column("metrics", JSONB, nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        _at("started_at", True),
        _at("finished_at", True),
        sa.CheckConstraint(
            "status IN ('QUEUED', 'RUNNING', 'DONE', 'FAILED')", name=op.f("ck_backtests_status")
        ),
        sa.CheckConstraint(
            "candles_done >= 0 AND candles_done <= candles_total",
            name=op.f("ck_backtests_progress"),
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_backtests_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backtests")),
    )
    op.create_index(op.f("ix_backtests_user_id_id"), "backtests", ["user_id", "id"])
    op.create_table(
        "backtest_equity_points",
        _id(),
        sa.Column("backtest_id", sa.BigInteger(), nullable=False),
        _at("at"),
        sa.Column("price", EXACT, nullable=False),
        sa.Column("cash", EXACT, nullable=False),
        sa.Column("position", EXACT, nullable=False),
        sa.Column("equity", EXACT, nullable=False),
        sa.ForeignKeyConstraint(
            ["backtest_id"],
            ["backtests.id"],
            name=op.f("fk_backtest_equity_points_backtest_id_backtests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backtest_equity_points")),
    )
    op.create_index(
        op.f("ix_backtest_equity_points_backtest_id_id"),
        "backtest_equity_points",
        ["backtest_id", "id"],
    )
    op.create_table(
        "backtest_trades",
        _id(),
        sa.Column("backtest_id", sa.BigInteger(), nullable=False),
        _at("opened_at"),
        _at("closed_at"),
        sa.Column("quantity", EXACT, nullable=False),
        sa.Column("entry_value", EXACT, nullable=False),
        sa.Column("exit_value", EXACT, nullable=False),
        sa.Column("fees", EXACT, nullable=False),
        sa.Column("pnl", EXACT, nullable=False),
        sa.ForeignKeyConstraint(
            ["backtest_id"],
            ["backtests.id"],
            name=op.f("fk_backtest_trades_backtest_id_backtests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backtest_trades")),
    )
    op.create_index(
        op.f("ix_backtest_trades_backtest_id_id"), "backtest_trades", ["backtest_id", "id"]
    )


def downgrade() -> None:
    op.drop_table("backtest_trades")
    op.drop_table("backtest_equity_points")
    op.drop_table("backtests")
