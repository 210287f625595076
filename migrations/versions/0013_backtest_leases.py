"""backtests: a lease on each run (owner, expiry, attempts) so that a run a stopped server
left is run again; the decisions of each run

Revision ID: 0013_backtest_leases
Revises: 0012_paper_order_lists
Create Date: 2026-12-20 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_backtest_leases"
down_revision: str | None = "0012_paper_order_lists"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = "status IN ('QUEUED', 'RUNNING')"


def upgrade() -> None:
    op.add_column("backtests", sa.Column("lease_owner", sa.Text(), nullable=True))
    op.add_column(
        "backtests", sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "backtests", sa.Column("attempts", sa.Integer(), server_default="0", nullable=False)
    )
    # a run left RUNNING by a server of before the leases has no owner: run it again
    op.execute("UPDATE backtests SET status = 'QUEUED', candles_done = 0 WHERE status = 'RUNNING'")
    op.create_check_constraint(
        op.f("ck_backtests_leased"), "backtests", "status <> 'RUNNING' OR lease_owner IS NOT NULL"
    )
    op.create_check_constraint(op.f("ck_backtests_attempts"), "backtests", "attempts >= 0")
    op.create_index(op.f("ix_backtests_id"), "backtests", ["id"], postgresql_where=ACTIVE)
    op.create_table(
        "backtest_decisions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("backtest_id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("candle", sa.Integer(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("client_order_id", sa.Text(), nullable=False),
        sa.Column("side", sa.Text(), nullable=True),
        sa.Column("type", sa.Text(), nullable=True),
        sa.Column("quantity", sa.Numeric(), nullable=True),
        sa.Column("price", sa.Numeric(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "action IN ('SUBMIT', 'CANCEL')", name=op.f("ck_backtest_decisions_action")
        ),
        sa.ForeignKeyConstraint(
            ["backtest_id"],
            ["backtests.id"],
            name=op.f("fk_backtest_decisions_backtest_id_backtests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backtest_decisions")),
    )
    op.create_index(
        op.f("ix_backtest_decisions_backtest_id_id"), "backtest_decisions", ["backtest_id", "id"]
    )


def downgrade() -> None:
    op.drop_table("backtest_decisions")
    op.drop_index(op.f("ix_backtests_id"), table_name="backtests")
    op.drop_constraint(op.f("ck_backtests_attempts"), "backtests", type_="check")
    op.drop_constraint(op.f("ck_backtests_leased"), "backtests", type_="check")
    op.drop_column("backtests", "attempts")
    op.drop_column("backtests", "lease_expires_at")
    op.drop_column("backtests", "lease_owner")
