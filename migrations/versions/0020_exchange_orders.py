"""exchange orders: orders on users' connected exchange accounts and their fills

- ``exchange_orders``: one row per order, written PENDING_SUBMIT with our client order
  id before the exchange is asked (so an unknown outcome is looked up, never re-sent);
  unique (connection_id, client_order_id); a partial index on the live ones, which the
  poller reads.
- ``exchange_fills``: each trade once, unique (connection_id, symbol, trade_id).

Revision ID: 0020_exchange_orders
Revises: 0019_exchange_custody
Create Date: 2026-12-04 23:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_exchange_orders"
down_revision: str | None = "0019_exchange_custody"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AMOUNT = sa.Numeric(38, 18)


def _created_at(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(),
                     nullable=False)  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "exchange_orders",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("connection_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("client_order_id", sa.Text(), nullable=False),
        sa.Column("exchange_order_id", sa.Text(), nullable=True),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("side", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("quantity", AMOUNT, nullable=False),
        sa.Column("price", AMOUNT, nullable=True),
        sa.Column("stop_price", AMOUNT, nullable=True),
        sa.Column("filled", AMOUNT, server_default="0", nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("emulated", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("reject_code", sa.Text(), nullable=True),
        _created_at("created_at"),
        _created_at("updated_at"),
        sa.CheckConstraint(
            "status IN ('PENDING_SUBMIT', 'OPEN', 'PARTIALLY_FILLED', 'FILLED', 'CANCELED',"
            " 'REJECTED')",
            name=op.f("ck_exchange_orders_status_known"),
        ),
        sa.CheckConstraint("side IN ('BUY', 'SELL')", name=op.f("ck_exchange_orders_side_known")),
        sa.CheckConstraint(
            "type IN ('LIMIT', 'MARKET', 'STOP_LOSS', 'STOP_LOSS_LIMIT')",
            name=op.f("ck_exchange_orders_type_known"),
        ),
        sa.CheckConstraint(
            "quantity > 0 AND filled >= 0 AND filled <= quantity",
            name=op.f("ck_exchange_orders_amounts"),
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["exchange_connections.id"],
            name=op.f("fk_exchange_orders_connection_id_exchange_connections"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_exchange_orders_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exchange_orders")),
        sa.UniqueConstraint(
            "connection_id",
            "client_order_id",
            name=op.f("uq_exchange_orders_connection_id_client_order_id"),
        ),
    )
    op.create_index(
        op.f("ix_exchange_orders_connection_id_id"), "exchange_orders", ["connection_id", "id"]
    )
    op.create_index(
        "ix_exchange_orders_live",
        "exchange_orders",
        ["connection_id"],
        postgresql_where=sa.text("status IN ('PENDING_SUBMIT', 'OPEN', 'PARTIALLY_FILLED')"),
    )
    op.create_table(
        "exchange_fills",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("connection_id", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("trade_id", sa.Text(), nullable=False),
        sa.Column("price", AMOUNT, nullable=False),
        sa.Column("quantity", AMOUNT, nullable=False),
        sa.Column("fee", AMOUNT, server_default="0", nullable=False),
        sa.Column("fee_currency", sa.Text(), nullable=True),
        sa.Column("filled_at", sa.DateTime(timezone=True), nullable=False),
        _created_at("created_at"),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["exchange_connections.id"],
            name=op.f("fk_exchange_fills_connection_id_exchange_connections"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["exchange_orders.id"],
            name=op.f("fk_exchange_fills_order_id_exchange_orders"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exchange_fills")),
        sa.UniqueConstraint(
            "connection_id",
            "symbol",
            "trade_id",
            name=op.f("uq_exchange_fills_connection_id_symbol_trade_id"),
        ),
    )
    op.create_index(op.f("ix_exchange_fills_order_id"), "exchange_fills", ["order_id"])


def downgrade() -> None:
    op.drop_table("exchange_fills")
    op.drop_table("exchange_orders")
