"""exchange bot figures: cancels asked of exchange orders by a kill switch or a risk action

- ``exchange_orders.forced_cancel_at``: when the user's kill switch (their exchange
  bots' orders) or their USER scope's risk action (every live order of theirs at the
  exchanges) asked for the order's cancel, in that change's transaction.
- ``exchange_orders.forced_cancel_sent_at``: when that cancel was last claimed to be
  sent (after the commit; the ``exchange-cancels`` job sends it again once the retry
  period is past while the order is still live: an exchange that was down). Apart from
  ``cancel_requested_at`` (0026: any cancel asked, counted by CANCEL_RATE).
- ``ix_exchange_orders_forced_cancel`` (user_id, partial: asked and still live): what
  the sends and the job read.

Revision ID: 0027_exchange_bot_figures
Revises: 0026_exchange_disarm
Create Date: 2026-12-06 01:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027_exchange_bot_figures"
down_revision: str | None = "0026_exchange_disarm"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("exchange_orders", sa.Column("forced_cancel_at", sa.DateTime(timezone=True)))
    op.add_column("exchange_orders", sa.Column("forced_cancel_sent_at", sa.DateTime(timezone=True)))
    op.create_index(
        "ix_exchange_orders_forced_cancel",
        "exchange_orders",
        ["user_id"],
        postgresql_where=sa.text(
            "forced_cancel_at IS NOT NULL"
            " AND status IN ('PENDING_SUBMIT', 'OPEN', 'PARTIALLY_FILLED', 'ARMED')"
        ),
    )


def downgrade() -> None:
    op.drop_index("ix_exchange_orders_forced_cancel", table_name="exchange_orders")
    op.drop_column("exchange_orders", "forced_cancel_sent_at")
    op.drop_column("exchange_orders", "forced_cancel_at")
