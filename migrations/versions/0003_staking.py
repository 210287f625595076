"""staking: products, their rates by day, stakes, daily rewards; the seeded catalogue

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 01:30:00.000000
"""

from collections.abc import Sequence
from datetime import date
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of app/staking/catalogue.py at the time of this revision.
# asset, kind, lock days, APY %, compounding, min amount, max per user, capacity
CATALOGUE = [
    ("USDT", "FLEXIBLE", None, "4", False, "10", "100000", "50000000"),
    ("USDT", "LOCKED", 30, "6", False, "10", "100000", "20000000"),
    ("USDT", "LOCKED", 60, "7", False, "10", "100000", "20000000"),
    ("USDT", "LOCKED", 90, "8", False, "10", "200000", "20000000"),
    ("USDT", "LOCKED", 120, "10", False, "10", "200000", "20000000"),
    ("BTC", "FLEXIBLE", None, "2", True, "0.001", "10", "2000"),
    ("BTC", "LOCKED", 30, "3", False, "0.001", "10", "1000"),
    ("BTC", "LOCKED", 90, "4", False, "0.001", "10", "1000"),
    ("BTC", "LOCKED", 120, "5", False, "0.001", "10", "1000"),
    ("ETH", "FLEXIBLE", None, "3", True, "0.01", "200", "50000"),
    ("ETH", "LOCKED", 30, "4", False, "0.01", "200", "20000"),
    ("ETH", "LOCKED", 60, "4.5", False, "0.01", "200", "20000"),
    ("ETH", "LOCKED", 90, "5.5", False, "0.01", "200", "20000"),
    ("ETH", "LOCKED", 120, "6", False, "0.01", "200", "20000"),
    ("SOL", "FLEXIBLE", None, "5", True, "0.1", "10000", "2000000"),
    ("SOL", "LOCKED", 30, "7", True, "0.1", "10000", "1000000"),
    ("SOL", "LOCKED", 60, "8", True, "0.1", "10000", "1000000"),
    ("SOL", "LOCKED", 90, "10", True, "0.1", "10000", "1000000"),
    ("SOL", "LOCKED", 120, "12", True, "0.1", "20000", "1000000"),
]
RATES_EFFECTIVE_FROM = date(2000, 1, 1)


def _created_at() -> sa.Column:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def _amount(name: str, *, default: bool = False) -> sa.Column:
    return sa.Column(
        name,
        sa.Numeric(precision=38, scale=18),
        server_default="0" if default else None,
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "staking_products",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("asset", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("lock_days", sa.SmallInteger(), nullable=True),
        sa.Column("compounding", sa.Boolean(), nullable=False),
        _amount("min_amount"),
        _amount("max_per_user"),
        _amount("capacity"),
        _amount("staked_total", default=True),
        sa.Column("status", sa.Text(), server_default="ACTIVE", nullable=False),
        _created_at(),
        sa.CheckConstraint(
            "kind IN ('FLEXIBLE', 'LOCKED')", name=op.f("ck_staking_products_kind_known")
        ),
        sa.CheckConstraint(
            "status IN ('ACTIVE', 'CLOSED')", name=op.f("ck_staking_products_status_known")
        ),
        sa.CheckConstraint(
            "(kind = 'FLEXIBLE' AND lock_days IS NULL)"
            " OR (kind = 'LOCKED' AND lock_days IN (30, 60, 90, 120))",
            name=op.f("ck_staking_products_term_matches_kind"),
        ),
        sa.CheckConstraint(
            "min_amount > 0 AND max_per_user >= min_amount AND capacity >= max_per_user",
            name=op.f("ck_staking_products_limits"),
        ),
        sa.CheckConstraint(
            "staked_total >= 0", name=op.f("ck_staking_products_staked_total_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["asset"], ["currencies.code"], name=op.f("fk_staking_products_asset_currencies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staking_products")),
    )
    op.create_table(
        "staking_product_rates",
        sa.Column("product_id", sa.BigInteger(), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("apy", sa.Numeric(precision=7, scale=4), nullable=False),
        _created_at(),
        sa.CheckConstraint("apy BETWEEN 2 AND 18", name=op.f("ck_staking_product_rates_apy_range")),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["staking_products.id"],
            name=op.f("fk_staking_product_rates_product_id_staking_products"),
        ),
        sa.PrimaryKeyConstraint(
            "product_id", "effective_from", name=op.f("pk_staking_product_rates")
        ),
    )
    op.create_table(
        "stakes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("product_id", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        _amount("principal"),
        _amount("accrued_rewards", default=True),
        _amount("forfeited_rewards", default=True),
        _amount("term_rewards", default=True),
        sa.Column("status", sa.Text(), server_default="ACTIVE", nullable=False),
        sa.Column("auto_renew", sa.Boolean(), nullable=False),
        sa.Column("staked_account_id", sa.BigInteger(), nullable=False),
        sa.Column("available_account_id", sa.BigInteger(), nullable=False),
        sa.Column("staked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("term_started_on", sa.Date(), nullable=False),
        sa.Column("accrued_through", sa.Date(), nullable=False),
        sa.Column("matures_on", sa.Date(), nullable=True),
        sa.Column("renewals", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        _created_at(),
        sa.CheckConstraint(
            "status IN ('ACTIVE', 'MATURED', 'REDEEMED')", name=op.f("ck_stakes_status_known")
        ),
        sa.CheckConstraint(
            "(status = 'ACTIVE') = (principal > 0)", name=op.f("ck_stakes_principal_while_active")
        ),
        sa.CheckConstraint(
            "principal >= 0 AND accrued_rewards >= 0 AND forfeited_rewards >= 0"
            " AND term_rewards >= 0",
            name=op.f("ck_stakes_amounts_non_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["available_account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_stakes_available_account_id_ledger_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["currency"], ["currencies.code"], name=op.f("fk_stakes_currency_currencies")
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["staking_products.id"],
            name=op.f("fk_stakes_product_id_staking_products"),
        ),
        sa.ForeignKeyConstraint(
            ["staked_account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_stakes_staked_account_id_ledger_accounts"),
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_stakes_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stakes")),
        postgresql_with={"fillfactor": 50},
    )
    op.create_index(
        op.f("ix_stakes_matures_on"),
        "stakes",
        ["matures_on"],
        unique=False,
        postgresql_where=sa.text("status = 'ACTIVE'"),
    )
    op.create_index(
        op.f("ix_stakes_product_id_user_id"), "stakes", ["product_id", "user_id"], unique=False
    )
    op.create_index(op.f("ix_stakes_user_id_id"), "stakes", ["user_id", "id"], unique=False)
    op.create_table(
        "staking_rewards",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("stake_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("accrual_date", sa.Date(), nullable=False),
        _amount("principal"),
        sa.Column("apy", sa.Numeric(precision=7, scale=4), nullable=False),
        sa.Column("daily_rate", sa.Numeric(), nullable=False),
        _amount("amount"),
        sa.Column("compounded", sa.Boolean(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        _created_at(),
        sa.CheckConstraint("amount > 0", name=op.f("ck_staking_rewards_positive")),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_staking_rewards_entry_id_journal_entries"),
            initially="DEFERRED",
            deferrable=True,
        ),
        sa.ForeignKeyConstraint(
            ["stake_id"], ["stakes.id"], name=op.f("fk_staking_rewards_stake_id_stakes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staking_rewards")),
        sa.UniqueConstraint(
            "stake_id", "accrual_date", name=op.f("uq_staking_rewards_stake_id_accrual_date")
        ),
    )
    op.create_index(
        op.f("ix_staking_rewards_entry_id"), "staking_rewards", ["entry_id"], unique=False
    )
    op.create_index(
        op.f("ix_staking_rewards_user_id_id"), "staking_rewards", ["user_id", "id"], unique=False
    )
    _seed_catalogue()


def _seed_catalogue() -> None:
    connection = op.get_bind()
    for asset, kind, lock_days, apy, compounding, minimum, maximum, capacity in CATALOGUE:
        product_id = connection.execute(
            sa.text(
                "INSERT INTO staking_products"
                " (asset, kind, lock_days, compounding, min_amount, max_per_user, capacity)"
                " VALUES (:asset, :kind, :lock_days, :compounding, :min, :max, :capacity)"
                " RETURNING id"
            ),
            {
                "asset": asset,
                "kind": kind,
                "lock_days": lock_days,
                "compounding": compounding,
                "min": Decimal(minimum),
                "max": Decimal(maximum),
                "capacity": Decimal(capacity),
            },
        ).scalar_one()
        connection.execute(
            sa.text(
                "INSERT INTO staking_product_rates (product_id, effective_from, apy)"
                " VALUES (:product_id, :effective_from, :apy)"
            ),
            {"product_id": product_id, "effective_from": RATES_EFFECTIVE_FROM, "apy": Decimal(apy)},
        )


def downgrade() -> None:
    op.drop_index(op.f("ix_staking_rewards_user_id_id"), table_name="staking_rewards")
    op.drop_index(op.f("ix_staking_rewards_entry_id"), table_name="staking_rewards")
    op.drop_table("staking_rewards")
    op.drop_index(op.f("ix_stakes_user_id_id"), table_name="stakes")
    op.drop_index(op.f("ix_stakes_product_id_user_id"), table_name="stakes")
    op.drop_index(op.f("ix_stakes_matures_on"), table_name="stakes")
    op.drop_table("stakes")
    op.drop_table("staking_product_rates")
    op.drop_table("staking_products")
