"""exchange accounts: users' connections to their own accounts at external exchanges,
the API credentials sealed (AES-256-GCM envelope encryption)

Revision ID: 0017_exchange_accounts
Revises: 0016_risk
Create Date: 2026-12-20 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_exchange_accounts"
down_revision: str | None = "0016_risk"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "exchange_connections",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("exchange", sa.Text(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default="ACTIVE", nullable=False),
        sa.Column("key_id", sa.Text(), nullable=True),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("sealed_secret", sa.LargeBinary(), nullable=True),
        sa.Column("can_read", sa.Boolean(), nullable=True),
        sa.Column("can_trade", sa.Boolean(), nullable=True),
        sa.Column("can_withdraw", sa.Boolean(), nullable=True),
        sa.Column("ip_restricted", sa.Boolean(), nullable=True),
        sa.Column("last_checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_check_code", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("disconnected_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "exchange IN ('binance', 'kraken', 'okx', 'bybit', 'coinbase')",
            name=op.f("ck_exchange_connections_exchange_known"),
        ),
        sa.CheckConstraint(
            "status IN ('ACTIVE', 'SUSPENDED', 'DISCONNECTED')",
            name=op.f("ck_exchange_connections_status_known"),
        ),
        sa.CheckConstraint(
            "length(label) BETWEEN 1 AND 64", name=op.f("ck_exchange_connections_label_length")
        ),
        sa.CheckConstraint(
            "(status = 'DISCONNECTED') = (key_id IS NULL AND wrapped_key IS NULL"
            " AND sealed_secret IS NULL)",
            name=op.f("ck_exchange_connections_secret_until_disconnected"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_exchange_connections_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exchange_connections")),
    )
    op.create_index(
        op.f("ix_exchange_connections_user_id_id"), "exchange_connections", ["user_id", "id"]
    )
    op.create_index(
        op.f("ix_exchange_connections_status_last_checked_at"),
        "exchange_connections",
        ["status", "last_checked_at"],
    )


def downgrade() -> None:
    op.drop_table("exchange_connections")
