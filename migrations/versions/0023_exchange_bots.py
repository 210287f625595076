"""exchange bots: a bot can trade on a connected exchange account

- ``bots.exchange_account_id`` (FK ``exchange_connections``): the connected account a
  bot trades on (no sub-account, no paper account: the money stays at the exchange).
  Several bots may share one account. The CHECK ``one_venue`` becomes one of three:
  exactly one of ``account_id``, ``paper_account_id``, ``exchange_account_id``.
- ``bots.market_specs`` (JSONB, nullable): an exchange bot's markets as the exchange
  stated them when it was created (tick, lot, minimum notional, fees): the runner sizes
  its orders by them without asking the exchange in its transaction.
- an index on ``exchange_account_id`` for the bots that are not STOPPED (the bots job
  wakes them by the account whose orders changed).

Revision ID: 0023_exchange_bots
Revises: 0022_exchange_triggers
Create Date: 2026-12-05 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0023_exchange_bots"
down_revision: str | None = "0022_exchange_triggers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("bots", sa.Column("exchange_account_id", sa.BigInteger(), nullable=True))
    op.add_column("bots", sa.Column("market_specs", postgresql.JSONB(), nullable=True))
    op.create_foreign_key(
        op.f("fk_bots_exchange_account_id_exchange_connections"),
        "bots",
        "exchange_connections",
        ["exchange_account_id"],
        ["id"],
    )
    op.drop_constraint(op.f("ck_bots_one_venue"), "bots", type_="check")
    op.create_check_constraint(
        op.f("ck_bots_one_venue"),
        "bots",
        "num_nonnulls(account_id, paper_account_id, exchange_account_id) = 1",
    )
    op.create_index(
        "ix_bots_exchange_account_id",
        "bots",
        ["exchange_account_id"],
        postgresql_where=sa.text("status <> 'STOPPED' AND exchange_account_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_bots_exchange_account_id", table_name="bots")
    op.execute("DELETE FROM bots WHERE exchange_account_id IS NOT NULL")
    op.drop_constraint(op.f("ck_bots_one_venue"), "bots", type_="check")
    op.create_check_constraint(
        op.f("ck_bots_one_venue"), "bots", "num_nonnulls(account_id, paper_account_id) = 1"
    )
    op.drop_constraint(
        op.f("fk_bots_exchange_account_id_exchange_connections"), "bots", type_="foreignkey"
    )
    op.drop_column("bots", "market_specs")
    op.drop_column("bots", "exchange_account_id")
