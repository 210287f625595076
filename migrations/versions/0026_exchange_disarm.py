"""exchange disarm: the count limits at an exchange placement count exchange orders

- ``exchange_orders.cancel_requested_at``: when a cancel of the order was last asked (at
  the exchange, or an armed stop disarmed by its owner or its list): CANCEL_RATE counts
  the cancels of the last minute.
- ``ix_exchange_orders_user_id_created_at``: a user's exchange orders of today and of the
  last minute (TRADES_PER_DAY, ORDER_RATE), from today's rows only.
- ``ix_exchange_orders_cancels`` (user_id, cancel_requested_at; partial: asked): the
  last minute's cancels.

Revision ID: 0026_exchange_disarm
Revises: 0025_risk_placement_indexes
Create Date: 2026-12-06 01:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026_exchange_disarm"
down_revision: str | None = "0025_risk_placement_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "exchange_orders",
        sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        op.f("ix_exchange_orders_user_id_created_at"),
        "exchange_orders",
        ["user_id", "created_at"],
    )
    op.create_index(
        "ix_exchange_orders_cancels",
        "exchange_orders",
        ["user_id", "cancel_requested_at"],
        postgresql_where=sa.text("cancel_requested_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_exchange_orders_cancels", table_name="exchange_orders")
    op.drop_index(op.f("ix_exchange_orders_user_id_created_at"), table_name="exchange_orders")
    op.drop_column("exchange_orders", "cancel_requested_at")
