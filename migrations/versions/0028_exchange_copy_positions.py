"""exchange copy positions: a follow on a connected exchange account keeps positions

- ``exchange_orders.follow_id`` (nullable, FK ``follows``): the follow an order at an
  exchange was sent for (a copy, or a close of the follow's positions).
- ``exchange_fills.follow_id`` (nullable, FK ``follows``): set when the fill has been
  applied to that follow's position (``app.social.follow_positions``): a fill is applied
  once, by its id, however often its event is read.
- ``follows.closing_at`` (nullable): an exchange follow whose positions are being sold
  at the exchange (unfollow with closePositions, a stop-loss that closes), since when;
  cleared when nothing is left to sell (``app.social.copy_exchange``).

Revision ID: 0028_exchange_copy_positions
Revises: 0027_exchange_bot_figures
Create Date: 2026-12-06 01:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0028_exchange_copy_positions"
down_revision: str | None = "0027_exchange_bot_figures"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _follow() -> sa.Column:
    return sa.Column("follow_id", sa.BigInteger(), sa.ForeignKey("follows.id"), nullable=True)


def upgrade() -> None:
    op.add_column("exchange_orders", _follow())
    op.add_column("exchange_fills", _follow())
    op.add_column("follows", sa.Column("closing_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_exchange_orders_follow_id",
        "exchange_orders",
        ["follow_id"],
        postgresql_where=sa.text("follow_id IS NOT NULL"),
    )
    op.create_index(
        "ix_follows_closing", "follows", ["id"], postgresql_where=sa.text("closing_at IS NOT NULL")
    )


def downgrade() -> None:
    op.drop_index("ix_follows_closing", table_name="follows")
    op.drop_index("ix_exchange_orders_follow_id", table_name="exchange_orders")
    op.drop_column("follows", "closing_at")
    op.drop_column("exchange_fills", "follow_id")
    op.drop_column("exchange_orders", "follow_id")
