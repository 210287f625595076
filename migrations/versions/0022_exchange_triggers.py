"""exchange triggers: stops the platform holds for connected exchange accounts

- ``exchange_orders.status`` may be ARMED: an emulated stop held by the platform, not
  sent; the trigger job claims it under its row lock (ARMED -> PENDING_SUBMIT, once) and
  sends its child order with the row's own client order id.
- ``exchange_orders.triggered_at``, ``trigger_price``: when and at which trade price it
  fired; ``trigger_note``: why the last check of an armed order did not fire it
  (STALE_PRICES, or the risk error's code).
- a partial index on the armed orders, which the trigger job reads.

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

_STATUS = "ck_exchange_orders_status_known"
_OLD = "('PENDING_SUBMIT', 'OPEN', 'PARTIALLY_FILLED', 'FILLED', 'CANCELED', 'REJECTED')"
_NEW = (
    "('ARMED', 'PENDING_SUBMIT', 'OPEN', 'PARTIALLY_FILLED', 'FILLED', 'CANCELED',"
    " 'REJECTED')"
)


def upgrade() -> None:
    op.add_column(
        "exchange_orders", sa.Column("triggered_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("exchange_orders", sa.Column("trigger_price", sa.Numeric(38, 18), nullable=True))
    op.add_column("exchange_orders", sa.Column("trigger_note", sa.Text(), nullable=True))
    op.drop_constraint(op.f(_STATUS), "exchange_orders", type_="check")
    op.create_check_constraint(op.f(_STATUS), "exchange_orders", f"status IN {_NEW}")
    op.create_index(
        "ix_exchange_orders_armed",
        "exchange_orders",
        ["connection_id"],
        postgresql_where=sa.text("status = 'ARMED'"),
    )


def downgrade() -> None:
    op.drop_index("ix_exchange_orders_armed", table_name="exchange_orders")
    op.execute("UPDATE exchange_orders SET status = 'CANCELED' WHERE status = 'ARMED'")
    op.drop_constraint(op.f(_STATUS), "exchange_orders", type_="check")
    op.create_check_constraint(op.f(_STATUS), "exchange_orders", f"status IN {_OLD}")
    op.drop_column("exchange_orders", "trigger_note")
    op.drop_column("exchange_orders", "trigger_price")
    op.drop_column("exchange_orders", "triggered_at")
