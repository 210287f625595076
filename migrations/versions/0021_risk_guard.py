"""risk guard: backtests run under risk limits

- ``backtests.risk_limits`` (JSONB, default ``[]``): the limits a backtest ran under, as
  ``setRiskLimit`` takes them (scope, kind, threshold, action, warnRatio,
  cooldownSeconds).
- ``backtest_risk_events``: each refusal of an order by those limits and each transition
  of the simulated account's state, at its simulated time, with its reason; read in pages
  by (backtest_id, id) like the decisions.

Revision ID: 0021_risk_guard
Revises: 0020_exchange_orders
Create Date: 2026-12-04 23:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0021_risk_guard"
down_revision: str | None = "0020_exchange_orders"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "backtests",
        sa.Column("risk_limits", postgresql.JSONB(), server_default="[]", nullable=False),
    )
    op.create_table(
        "backtest_risk_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("backtest_id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("candle", sa.Integer(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("limit_kind", sa.Text(), nullable=True),
        sa.Column("value", sa.Numeric(), nullable=True),
        sa.Column("client_order_id", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["backtest_id"],
            ["backtests.id"],
            name=op.f("fk_backtest_risk_events_backtest_id_backtests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backtest_risk_events")),
    )
    op.create_index(
        op.f("ix_backtest_risk_events_backtest_id_id"),
        "backtest_risk_events",
        ["backtest_id", "id"],
    )


def downgrade() -> None:
    op.drop_table("backtest_risk_events")
    op.drop_column("backtests", "risk_limits")
