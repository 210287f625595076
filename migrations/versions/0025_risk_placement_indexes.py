"""risk placement indexes: what the placement's risk context reads, by key

- ``ix_orders_user_id_created_at`` (orders: user_id, created_at): a person's orders of
  today and of the last minute (TRADES_PER_DAY, ORDER_RATE) counted from today's rows
  only, newest first, never an earlier day's.
- ``ix_risk_states_not_active`` (risk_states: scope, scope_id, partial: state <> 'ACTIVE'):
  the non-ACTIVE states of a batch's scopes, without reading the ACTIVE rows every scope
  that ever had a state keeps.

Revision ID: 0025_risk_placement_indexes
Revises: 0024_exchange_copies
Create Date: 2026-12-05 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025_risk_placement_indexes"
down_revision: str | None = "0024_exchange_copies"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_orders_user_id_created_at"), "orders", ["user_id", "created_at"])
    op.create_index(
        "ix_risk_states_not_active",
        "risk_states",
        ["scope", "scope_id"],
        postgresql_where=sa.text("state <> 'ACTIVE'"),
    )


def downgrade() -> None:
    op.drop_index("ix_risk_states_not_active", table_name="risk_states")
    op.drop_index(op.f("ix_orders_user_id_created_at"), table_name="orders")
