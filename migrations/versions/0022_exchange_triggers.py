"""exchange triggers: stops the platform holds for connected exchange accounts

- ``exchange_orders.status`` may be ARMED: an emulated stop held by the platform, not
  sent; the trigger job claims it under its row lock (ARMED -> PENDING_SUBMIT, once) and
  sends its child order with the row's own client order id.
- ``exchange_orders.triggered_at``, ``trigger_price``: when and at which trade price it
  fired; ``trigger_note``: why the last check of an armed order did not fire it
  (STALE_PRICES, or the risk error's code).
- a partial index on the armed orders, which the trigger job reads.
- ``exchange_order_lists``: an OCO or a bracket on a connected account (the platform
  holds it); its legs are orders with ``exchange_orders.list_id`` and ``list_role``
  (ENTRY, TAKE_PROFIT, STOP_LOSS).

Revision ID: 0022_exchange_triggers
Revises: 0021_risk_guard
Create Date: 2026-12-05 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022_exchange_triggers"
down_revision: str | None = "0021_risk_guard"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AMOUNT = sa.Numeric(38, 18)
_STATUS = "ck_exchange_orders_status_known"
_OLD = "('PENDING_SUBMIT', 'OPEN', 'PARTIALLY_FILLED', 'FILLED', 'CANCELED', 'REJECTED')"
_NEW = "('ARMED', 'PENDING_SUBMIT', 'OPEN', 'PARTIALLY_FILLED', 'FILLED', 'CANCELED', 'REJECTED')"


def _created_at(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(),
                     nullable=False)  # fmt: skip


def upgrade() -> None:
    op.add_column(
        "exchange_orders", sa.Column("triggered_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("exchange_orders", sa.Column("trigger_price", AMOUNT, nullable=True))
    op.add_column("exchange_orders", sa.Column("trigger_note", sa.Text(), nullable=True))
    op.drop_constraint(op.f(_STATUS), "exchange_orders", type_="check")
    op.create_check_constraint(op.f(_STATUS), "exchange_orders", f"status IN {_NEW}")
    op.create_table(
        "exchange_order_lists",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("connection_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("take_profit_price", AMOUNT, nullable=True),
        sa.Column("stop_loss_price", AMOUNT, nullable=True),
        sa.Column("stop_loss_limit_price", AMOUNT, nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        _created_at("created_at"),
        _created_at("updated_at"),
        sa.CheckConstraint(
            "kind IN ('OCO', 'BRACKET')", name=op.f("ck_exchange_order_lists_kind_known")
        ),
        sa.CheckConstraint(
            "status IN ('ACTIVE', 'DONE', 'CANCELED')",
            name=op.f("ck_exchange_order_lists_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["exchange_connections.id"],
            name=op.f("fk_exchange_order_lists_connection_id_exchange_connections"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_exchange_order_lists_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exchange_order_lists")),
    )
    op.create_index(
        op.f("ix_exchange_order_lists_connection_id_id"),
        "exchange_order_lists",
        ["connection_id", "id"],
    )
    op.add_column("exchange_orders", sa.Column("list_id", sa.BigInteger(), nullable=True))
    op.add_column("exchange_orders", sa.Column("list_role", sa.Text(), nullable=True))
    op.create_foreign_key(
        op.f("fk_exchange_orders_list_id_exchange_order_lists"),
        "exchange_orders",
        "exchange_order_lists",
        ["list_id"],
        ["id"],
    )
    op.create_check_constraint(
        op.f("ck_exchange_orders_list_role_known"),
        "exchange_orders",
        "list_role IN ('ENTRY', 'TAKE_PROFIT', 'STOP_LOSS')",
    )
    op.create_index(
        op.f("ix_exchange_orders_list_id"),
        "exchange_orders",
        ["list_id"],
        postgresql_where=sa.text("list_id IS NOT NULL"),
    )
    op.create_index(
        "ix_exchange_orders_armed",
        "exchange_orders",
        ["connection_id"],
        postgresql_where=sa.text("status = 'ARMED'"),
    )


def downgrade() -> None:
    op.drop_index("ix_exchange_orders_armed", table_name="exchange_orders")
    op.drop_index(op.f("ix_exchange_orders_list_id"), table_name="exchange_orders")
    op.drop_constraint(op.f("ck_exchange_orders_list_role_known"), "exchange_orders",
                       type_="check")  # fmt: skip
    op.drop_constraint(op.f("fk_exchange_orders_list_id_exchange_order_lists"),
                       "exchange_orders", type_="foreignkey")  # fmt: skip
    op.drop_column("exchange_orders", "list_role")
    op.drop_column("exchange_orders", "list_id")
    op.drop_table("exchange_order_lists")
    op.execute("UPDATE exchange_orders SET status = 'CANCELED' WHERE status = 'ARMED'")
    op.drop_constraint(op.f(_STATUS), "exchange_orders", type_="check")
    op.create_check_constraint(op.f(_STATUS), "exchange_orders", f"status IN {_OLD}")
    op.drop_column("exchange_orders", "trigger_note")
    op.drop_column("exchange_orders", "trigger_price")
    op.drop_column("exchange_orders", "triggered_at")
