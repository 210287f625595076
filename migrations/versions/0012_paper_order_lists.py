"""paper order lists: OCO and bracket lists of paper accounts, their legs' list and role,
and the log's list entries

Revision ID: 0012_paper_order_lists
Revises: 0011_paper_trading
Create Date: 2026-12-04 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_paper_order_lists"
down_revision: str | None = "0011_paper_trading"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = "kind IN ('TICK', 'SUBMIT', 'CANCEL', 'SUBMIT_LIST', 'CANCEL_LIST')"
OLD_KINDS = "kind IN ('TICK', 'SUBMIT', 'CANCEL')"


def upgrade() -> None:
    op.create_table(
        "paper_order_lists",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("paper_account_id", sa.BigInteger(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("client_list_id", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('OCO', 'BRACKET')", name=op.f("ck_paper_order_lists_kind_known")
        ),
        sa.ForeignKeyConstraint(
            ["paper_account_id"],
            ["paper_accounts.id"],
            name=op.f("fk_paper_order_lists_paper_account_id_paper_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paper_order_lists")),
        sa.UniqueConstraint(
            "paper_account_id",
            "generation",
            "client_list_id",
            name=op.f("uq_paper_order_lists_paper_account_id_generation_client_list_id"),
        ),
    )
    op.add_column("paper_orders", sa.Column("list_id", sa.BigInteger(), nullable=True))
    op.add_column("paper_orders", sa.Column("list_role", sa.Text(), nullable=True))
    op.create_foreign_key(
        op.f("fk_paper_orders_list_id_paper_order_lists"),
        "paper_orders",
        "paper_order_lists",
        ["list_id"],
        ["id"],
    )
    op.create_index(op.f("ix_paper_orders_list_id"), "paper_orders", ["list_id"], unique=False)
    op.drop_constraint(op.f("ck_paper_log_kind_known"), "paper_log", type_="check")
    op.create_check_constraint(op.f("ck_paper_log_kind_known"), "paper_log", KINDS)


def downgrade() -> None:
    # refused (the check fails) while a log holds list entries: without them its account
    # could not be rebuilt
    op.drop_constraint(op.f("ck_paper_log_kind_known"), "paper_log", type_="check")
    op.create_check_constraint(op.f("ck_paper_log_kind_known"), "paper_log", OLD_KINDS)
    op.drop_index(op.f("ix_paper_orders_list_id"), table_name="paper_orders")
    op.drop_constraint(
        op.f("fk_paper_orders_list_id_paper_order_lists"), "paper_orders", type_="foreignkey"
    )
    op.drop_column("paper_orders", "list_role")
    op.drop_column("paper_orders", "list_id")
    op.drop_table("paper_order_lists")
