"""exchange copies: copy trading onto a follower's connected exchange account, and paper
accounts on an exchange's market

- ``follows.exchange_account_id`` (nullable, FK ``exchange_connections``): the follower's
  exchange account its copies go to; NULL copies on the platform, as before.
- ``copies.exchange_account_id`` (nullable): the account a copy was planned for (kept on
  the copy: a follow may name another account later); ``copies.exchange_order_id``
  (nullable, FK ``exchange_orders``): the order sent for it.
- ``paper_accounts.exchange`` (nullable, a ccxt exchange id): the account fills against
  that exchange's public trades (``market_trades``, source ``exchange:<id>``) rather
  than the platform's; ``last_trade_id`` then counts ``market_trades.id``.

Revision ID: 0024_exchange_copies
Revises: 0023_exchange_bots
Create Date: 2026-12-05 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024_exchange_copies"
down_revision: str | None = "0023_exchange_bots"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _reference(name: str, table: str) -> sa.Column:
    return sa.Column(name, sa.BigInteger(), sa.ForeignKey(f"{table}.id"), nullable=True)


def upgrade() -> None:
    op.add_column("follows", _reference("exchange_account_id", "exchange_connections"))
    op.add_column("copies", _reference("exchange_account_id", "exchange_connections"))
    op.add_column("copies", _reference("exchange_order_id", "exchange_orders"))
    op.add_column("paper_accounts", sa.Column("exchange", sa.Text(), nullable=True))
    # the sender's queue: PENDING copies bound for an exchange
    op.create_index(
        "ix_copies_exchange_pending",
        "copies",
        ["id"],
        postgresql_where=sa.text("status = 'PENDING' AND exchange_account_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_column("paper_accounts", "exchange")
    op.drop_index("ix_copies_exchange_pending", table_name="copies")
    op.drop_column("copies", "exchange_order_id")
    op.drop_column("copies", "exchange_account_id")
    op.drop_column("follows", "exchange_account_id")
