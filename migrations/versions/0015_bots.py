"""bots: trading bots with a sub-account each (users.owner_id), their decisions, the
commands each step sends, and the alerts their webhooks queue

Revision ID: 0015_bots
Revises: 0014_market_trades
Create Date: 2026-12-04 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015_bots"
down_revision: str | None = "0014_market_trades"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AMOUNT = sa.Numeric(38, 18)
NOW = sa.text("now()")


def _id() -> sa.Column:
    return sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False)


def _bot_id(table: str) -> sa.Column:
    return sa.Column(
        "bot_id",
        sa.BigInteger(),
        sa.ForeignKey("bots.id", name=op.f(f"fk_{table}_bot_id_bots"), ondelete="CASCADE"),
        nullable=False,
    )


def _created() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False)


def upgrade() -> None:
    op.add_column("users", sa.Column("owner_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(op.f("fk_users_owner_id_users"), "users", "users", ["owner_id"], ["id"])
    op.create_index(op.f("ix_users_owner_id"), "users", ["owner_id"])
    op.create_table(
        "bots",
        _id(),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("symbols", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("quote", sa.Text(), nullable=False),
        sa.Column("budget", AMOUNT, nullable=False),
        sa.Column("allocation", postgresql.JSONB(), nullable=False),
        sa.Column("settings", postgresql.JSONB(), nullable=False),
        sa.Column("state", postgresql.JSONB(), nullable=False),
        sa.Column("status", sa.Text(), server_default="RUNNING", nullable=False),
        sa.Column("paused", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("close_on_stop", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("steps", sa.Integer(), server_default="0", nullable=False),
        sa.Column("wake_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_price", AMOUNT, nullable=True),
        sa.Column("watch_low", AMOUNT, nullable=True),
        sa.Column("watch_high", AMOUNT, nullable=True),
        sa.Column("watch_all", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("webhook_token", sa.Text(), nullable=True),
        sa.Column("webhook_secret_hash", sa.Text(), nullable=True),
        sa.Column("ip_allowlist", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        _created(),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "kind IN ('DCA', 'GRID', 'REBALANCE', 'SIGNAL')", name=op.f("ck_bots_kind")
        ),
        sa.CheckConstraint(
            "status IN ('RUNNING', 'STOPPING', 'STOPPED')", name=op.f("ck_bots_status")
        ),
        sa.CheckConstraint("budget > 0", name=op.f("ck_bots_budget_positive")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_bots_user_id_users")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["users.id"], name=op.f("fk_bots_account_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["quote"], ["currencies.code"], name=op.f("fk_bots_quote_currencies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bots")),
        sa.UniqueConstraint("account_id", name=op.f("uq_bots_account_id")),
        sa.UniqueConstraint("webhook_token", name=op.f("uq_bots_webhook_token")),
    )
    op.create_index(op.f("ix_bots_user_id_id"), "bots", ["user_id", "id"])
    op.create_index(
        op.f("ix_bots_id"), "bots", ["id"], postgresql_where="status <> 'STOPPED' AND NOT paused"
    )
    watching = "status = 'RUNNING' AND NOT paused"
    for name, column in (("ix_bots_watch_low", "watch_low"), ("ix_bots_watch_high", "watch_high")):
        op.create_index(name, "bots", [sa.text("(symbols[1])"), column], postgresql_where=watching)
    op.create_index(
        "ix_bots_watch_all", "bots", ["id"], postgresql_where=f"{watching} AND watch_all"
    )
    op.create_index(
        "ix_bots_wake_at",
        "bots",
        ["wake_at"],
        postgresql_where="status <> 'STOPPED' AND NOT paused",
    )
    op.create_table(
        "bot_decisions",
        _id(),
        _bot_id("bot_decisions"),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("client_order_id", sa.Text(), nullable=True),
        _created(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bot_decisions")),
    )
    op.create_index(op.f("ix_bot_decisions_bot_id_id"), "bot_decisions", ["bot_id", "id"])
    op.create_table(
        "bot_commands",
        _id(),
        _bot_id("bot_commands"),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("client_order_id", sa.Text(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=True),
        sa.Column("request", postgresql.JSONB(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("order_id", sa.BigInteger(), nullable=True),
        sa.Column("ack_code", sa.Text(), nullable=True),
        sa.Column("ended", sa.Boolean(), server_default="false", nullable=False),
        _created(),
        sa.CheckConstraint("kind IN ('PLACE', 'CANCEL')", name=op.f("ck_bot_commands_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bot_commands")),
    )
    op.create_index(op.f("ix_bot_commands_bot_id_id"), "bot_commands", ["bot_id", "id"])
    op.create_index(
        op.f("ix_bot_commands_bot_id"),
        "bot_commands",
        ["bot_id"],
        postgresql_where="sent_at IS NULL",
    )
    op.create_table(
        "bot_alerts",
        _id(),
        _bot_id("bot_alerts"),
        sa.Column("alert_id", sa.Text(), nullable=False),
        sa.Column("alert", postgresql.JSONB(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        _created(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bot_alerts")),
        sa.UniqueConstraint("bot_id", "alert_id", name=op.f("uq_bot_alerts_bot_id_alert_id")),
    )
    op.create_index(
        op.f("ix_bot_alerts_bot_id"),
        "bot_alerts",
        ["bot_id"],
        postgresql_where="processed_at IS NULL",
    )


def downgrade() -> None:
    op.drop_table("bot_alerts")
    op.drop_table("bot_commands")
    op.drop_table("bot_decisions")
    op.drop_table("bots")
    op.drop_index(op.f("ix_users_owner_id"), table_name="users")
    op.drop_constraint(op.f("fk_users_owner_id_users"), "users", type_="foreignkey")
    op.drop_column("users", "owner_id")
