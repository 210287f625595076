"""paper bots: a bot trades either as a live sub-account or on a paper account of its own

- ``bots.paper_account_id`` (nullable, unique, FK paper_accounts): the paper account a
  paper bot was opened with. ``bots.account_id`` becomes nullable (a paper bot has no
  sub-account: no users row, no real money), and the CHECK ``one_venue`` makes exactly
  one of the two set, so the runner always knows where a bot trades. Unique, as
  ``account_id`` is: one bot per paper account, and the index the bots job uses to find
  the bot a paper account's event concerns.
- ``ix_paper_orders_paper_account_id_client_order_id_generation``: the runner reads a
  paper bot's orders by its client order ids, the latest run's row of each (as it reads
  a live bot's through ``orders``' unique (user_id, client_order_id)); without it each
  read scanned every order the account ever had.
- ``ix_paper_fills_paper_account_id_generation_order_id``: and those orders' fills by
  venue order id; without it, every fill of the account.

Revision ID: 0018_paper_bots
Revises: 0017_exchange_accounts
Create Date: 2026-12-06 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_paper_bots"
down_revision: str | None = "0017_exchange_accounts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("bots", "account_id", existing_type=sa.BigInteger(), nullable=True)
    op.add_column("bots", sa.Column("paper_account_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_bots_paper_account_id_paper_accounts"),
        "bots",
        "paper_accounts",
        ["paper_account_id"],
        ["id"],
    )
    op.create_unique_constraint(op.f("uq_bots_paper_account_id"), "bots", ["paper_account_id"])
    op.create_check_constraint(
        op.f("ck_bots_one_venue"), "bots", "num_nonnulls(account_id, paper_account_id) = 1"
    )
    op.create_index(
        op.f("ix_paper_orders_paper_account_id_client_order_id_generation"),
        "paper_orders",
        ["paper_account_id", "client_order_id", "generation"],
    )
    op.create_index(
        op.f("ix_paper_fills_paper_account_id_generation_order_id"),
        "paper_fills",
        ["paper_account_id", "generation", "order_id"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_paper_fills_paper_account_id_generation_order_id"), table_name="paper_fills"
    )
    op.drop_index(
        op.f("ix_paper_orders_paper_account_id_client_order_id_generation"),
        table_name="paper_orders",
    )
    op.execute("DELETE FROM bots WHERE paper_account_id IS NOT NULL")
    op.drop_constraint(op.f("ck_bots_one_venue"), "bots", type_="check")
    op.drop_constraint(op.f("uq_bots_paper_account_id"), "bots", type_="unique")
    op.drop_constraint(op.f("fk_bots_paper_account_id_paper_accounts"), "bots", type_="foreignkey")
    op.drop_column("bots", "paper_account_id")
    op.alter_column("bots", "account_id", existing_type=sa.BigInteger(), nullable=False)
