"""risk: limits per scope, each scope's state and P&L marks, the transitions' audit trail;
an index of users' cancel commands (the cancel rate)

Revision ID: 0016_risk
Revises: 0015_bots
Create Date: 2026-12-04 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_risk"
down_revision: str | None = "0015_bots"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AMOUNT = sa.Numeric(38, 18)
SCOPES = "('ORDER', 'BOT', 'FOLLOW', 'USER', 'MARKET', 'PLATFORM')"
STATES = "('ACTIVE', 'REDUCING', 'HALTED')"
KINDS = (
    "('ORDER_NOTIONAL', 'ORDER_RATE', 'CANCEL_RATE', 'TRADES_PER_DAY', 'ASSET_EXPOSURE',"
    " 'TOTAL_EXPOSURE', 'CONCENTRATION', 'STALE_MARKET_DATA', 'DAILY_LOSS', 'WEEKLY_LOSS',"
    " 'DRAWDOWN', 'CONSECUTIVE_LOSSES')"
)
ACTIONS = "('BLOCK_ENTRIES', 'CANCEL_ORDERS', 'REDUCE_TO_FLAT', 'COOL_DOWN')"


def _created_at(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "risk_limits",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("scope_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("threshold", AMOUNT, nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("warn_ratio", sa.Numeric(5, 4), server_default="0.8", nullable=False),
        sa.Column("cooldown_seconds", sa.Integer(), nullable=True),
        sa.Column("set_by", sa.BigInteger(), nullable=True),
        sa.Column("requires_two_factor", sa.Boolean(), server_default="false", nullable=False),
        _created_at("created_at"),
        _created_at("updated_at"),
        sa.CheckConstraint(f"scope IN {SCOPES}", name=op.f("ck_risk_limits_scope_known")),
        sa.CheckConstraint(f"kind IN {KINDS}", name=op.f("ck_risk_limits_kind_known")),
        sa.CheckConstraint(f"action IN {ACTIONS}", name=op.f("ck_risk_limits_action_known")),
        sa.CheckConstraint("threshold > 0", name=op.f("ck_risk_limits_threshold_positive")),
        sa.CheckConstraint(
            "warn_ratio > 0 AND warn_ratio <= 1", name=op.f("ck_risk_limits_warn_ratio_range")
        ),
        sa.CheckConstraint(
            "(action = 'COOL_DOWN') = (cooldown_seconds IS NOT NULL)"
            " AND (cooldown_seconds IS NULL OR cooldown_seconds > 0)",
            name=op.f("ck_risk_limits_cooldown_with_its_action"),
        ),
        sa.ForeignKeyConstraint(["set_by"], ["users.id"], name=op.f("fk_risk_limits_set_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_limits")),
        sa.UniqueConstraint(
            "scope", "scope_id", "kind", name=op.f("uq_risk_limits_scope_scope_id_kind")
        ),
    )
    op.create_table(
        "risk_states",
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("scope_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.Text(), server_default="ACTIVE", nullable=False),
        _created_at("since"),
        sa.Column("cooldown_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("limit_id", sa.BigInteger(), nullable=True),
        sa.Column("marks_day", sa.Date(), nullable=True),
        sa.Column("day_start_pnl", AMOUNT, nullable=True),
        sa.Column("week_start_pnl", AMOUNT, nullable=True),
        sa.Column("peak_pnl", AMOUNT, nullable=True),
        sa.Column("realised_pnl", AMOUNT, nullable=True),
        sa.Column("last_pnl", AMOUNT, nullable=True),
        sa.Column("consecutive_losses", sa.Integer(), server_default="0", nullable=False),
        _created_at("updated_at"),
        sa.CheckConstraint(f"scope IN {SCOPES}", name=op.f("ck_risk_states_scope_known")),
        sa.CheckConstraint(f"state IN {STATES}", name=op.f("ck_risk_states_state_known")),
        sa.CheckConstraint(
            "cooldown_until IS NULL OR state = 'HALTED'",
            name=op.f("ck_risk_states_cooldown_only_when_halted"),
        ),
        sa.ForeignKeyConstraint(
            ["limit_id"],
            ["risk_limits.id"],
            name=op.f("fk_risk_states_limit_id_risk_limits"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("scope", "scope_id", name=op.f("pk_risk_states")),
    )
    op.create_table(
        "risk_transitions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("scope_id", sa.BigInteger(), nullable=False),
        sa.Column("from_state", sa.Text(), nullable=False),
        sa.Column("to_state", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("limit_id", sa.BigInteger(), nullable=True),
        sa.Column("actor_id", sa.BigInteger(), nullable=True),
        _created_at("at"),
        sa.CheckConstraint(f"scope IN {SCOPES}", name=op.f("ck_risk_transitions_scope_known")),
        sa.CheckConstraint(
            f"from_state IN {STATES} AND to_state IN {STATES}",
            name=op.f("ck_risk_transitions_states_known"),
        ),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["users.id"], name=op.f("fk_risk_transitions_actor_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_transitions")),
    )
    op.create_index(
        op.f("ix_risk_transitions_scope_scope_id_id"),
        "risk_transitions",
        ["scope", "scope_id", "id"],
    )
    op.create_index(
        "ix_order_commands_user_cancels",
        "order_commands",
        ["user_id", "created_at"],
        postgresql_where=sa.text("kind IN ('CANCEL', 'CANCEL_ALL')"),
    )


def downgrade() -> None:
    op.drop_index("ix_order_commands_user_cancels", table_name="order_commands")
    op.drop_table("risk_transitions")
    op.drop_table("risk_states")
    op.drop_table("risk_limits")
