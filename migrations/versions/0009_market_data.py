"""market data: candles per source (imported files, later exchanges)

Revision ID: 0009_market_data
Revises: 0008_webhook_review
Create Date: 2026-12-10 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_market_data"
down_revision: str | None = "0008_webhook_review"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AMOUNT = sa.Numeric(38, 18)


def upgrade() -> None:
    op.create_table(
        "market_candles",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("interval", sa.Text(), nullable=False),
        sa.Column("open_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("open", AMOUNT, nullable=False),
        sa.Column("high", AMOUNT, nullable=False),
        sa.Column("low", AMOUNT, nullable=False),
        sa.Column("close", AMOUNT, nullable=False),
        sa.Column("volume", AMOUNT, nullable=False),
        sa.Column("quote_volume", AMOUNT, nullable=True),
        sa.Column("trades", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "source ~ '^(file|exchange):[a-z0-9][a-z0-9._-]{0,39}$'",
            name=op.f("ck_market_candles_source"),
        ),
        sa.CheckConstraint(
            "low > 0 AND high >= GREATEST(open, close)", name=op.f("ck_market_candles_high")
        ),
        sa.CheckConstraint("low <= LEAST(open, close)", name=op.f("ck_market_candles_low")),
        sa.CheckConstraint(
            "volume >= 0 AND COALESCE(quote_volume, 0) >= 0 AND COALESCE(trades, 0) >= 0",
            name=op.f("ck_market_candles_volumes"),
        ),
        sa.PrimaryKeyConstraint(
            "source", "symbol", "interval", "open_time", name=op.f("pk_market_candles")
        ),
    )


def downgrade() -> None:
    op.drop_table("market_candles")
