"""card deposits: held for review (AMOUNT_MISMATCH, review_reason) and won disputes

Revision ID: 0008_webhook_review
Revises: 0007
Create Date: 2026-12-03 14:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_webhook_review"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES = "'PENDING', 'SUCCEEDED', 'FAILED', 'REFUNDED', 'DISPUTED'"


def upgrade() -> None:
    op.add_column(
        "deposits",
        sa.Column("dispute_won", sa.Boolean(), server_default="false", nullable=False),
    )
    op.add_column("deposits", sa.Column("review_reason", sa.Text(), nullable=True))
    op.drop_constraint(op.f("ck_deposits_status_known"), "deposits", type_="check")
    op.create_check_constraint(
        op.f("ck_deposits_status_known"),
        "deposits",
        f"status IN ({_STATUSES}, 'AMOUNT_MISMATCH')",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_deposits_status_known"), "deposits", type_="check")
    op.create_check_constraint(
        op.f("ck_deposits_status_known"), "deposits", f"status IN ({_STATUSES})"
    )
    op.drop_column("deposits", "review_reason")
    op.drop_column("deposits", "dispute_won")
