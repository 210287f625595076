"""merge staking and partner access

Revision ID: 0005
Revises: 0003, 0004
Create Date: 2026-11-21 01:09:38.377999
"""

from collections.abc import Sequence

revision: str = "0005"
down_revision: tuple[str, str] = ("0003", "0004")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
