"""Tables of staking: products, their rates, stakes, rewards."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Numeric,
    SmallInteger,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base
from db.models.columns import AMOUNT, _created_at, _pk


class StakingProduct(Base):
    """What users can stake into. ``staked_total`` is the principal of the ACTIVE stakes
    (compounded rewards included), kept with every change; new stakes must fit under
    ``capacity``. The APY lives in ``staking_product_rates`` (it changes by day)."""

    __tablename__ = "staking_products"
    __table_args__ = (
        CheckConstraint("kind IN ('FLEXIBLE', 'LOCKED')", name="kind_known"),
        CheckConstraint("status IN ('ACTIVE', 'CLOSED')", name="status_known"),
        CheckConstraint(
            "(kind = 'FLEXIBLE' AND lock_days IS NULL)"
            " OR (kind = 'LOCKED' AND lock_days IN (30, 60, 90, 120))",
            name="term_matches_kind",
        ),
        CheckConstraint(
            "min_amount > 0 AND max_per_user >= min_amount AND capacity >= max_per_user",
            name="limits",
        ),
        CheckConstraint("staked_total >= 0", name="staked_total_non_negative"),
    )

    id: Mapped[int] = _pk()
    asset: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    kind: Mapped[str] = mapped_column(Text)
    lock_days: Mapped[int | None] = mapped_column(SmallInteger)
    compounding: Mapped[bool] = mapped_column(Boolean)
    min_amount: Mapped[Decimal] = mapped_column(AMOUNT)
    max_per_user: Mapped[Decimal] = mapped_column(AMOUNT)
    capacity: Mapped[Decimal] = mapped_column(AMOUNT)
    staked_total: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    status: Mapped[str] = mapped_column(Text, server_default="ACTIVE")
    created_at: Mapped[datetime] = _created_at()


class StakingProductRate(Base):
    """A product's APY (percent) from ``effective_from`` on: accrual day D uses the row
    with the latest ``effective_from`` <= D. A change made on day T applies from T + 1."""

    __tablename__ = "staking_product_rates"
    __table_args__ = (CheckConstraint("apy BETWEEN 2 AND 18", name="apy_range"),)

    product_id: Mapped[int] = mapped_column(ForeignKey("staking_products.id"), primary_key=True)
    effective_from: Mapped[date] = mapped_column(Date, primary_key=True)
    apy: Mapped[Decimal] = mapped_column(Numeric(7, 4))
    created_at: Mapped[datetime] = _created_at()


class Stake(Base):
    """One subscription to a product. ``principal`` is what is staked now (it grows with
    compounded rewards); the user's STAKED balance of a currency is the sum of the
    principals of their ACTIVE stakes in it. ``accrued_through`` is the last UTC day paid;
    the current term runs from ``term_started_on`` to ``matures_on`` (exclusive, LOCKED
    only). The ledger account ids are kept so the accrual SQL needs no account look-up.
    Every ACTIVE row is updated once a day (no indexed column changes): pages half empty
    (fillfactor 50) let those updates stay HOT, without index writes."""

    __tablename__ = "stakes"
    __table_args__ = (
        CheckConstraint("status IN ('ACTIVE', 'MATURED', 'REDEEMED')", name="status_known"),
        CheckConstraint("(status = 'ACTIVE') = (principal > 0)", name="principal_while_active"),
        CheckConstraint(
            "principal >= 0 AND accrued_rewards >= 0 AND forfeited_rewards >= 0"
            " AND term_rewards >= 0",
            name="amounts_non_negative",
        ),
        Index(None, "user_id", "id"),
        Index(None, "product_id", "user_id"),
        Index(None, "matures_on", postgresql_where="status = 'ACTIVE'"),
        {"postgresql_with": {"fillfactor": 50}},
    )

    id: Mapped[int] = _pk()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("staking_products.id"))
    currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    principal: Mapped[Decimal] = mapped_column(AMOUNT)
    accrued_rewards: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    forfeited_rewards: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    term_rewards: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    status: Mapped[str] = mapped_column(Text, server_default="ACTIVE")
    auto_renew: Mapped[bool] = mapped_column(Boolean)
    staked_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    available_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    staked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    term_started_on: Mapped[date] = mapped_column(Date)
    accrued_through: Mapped[date] = mapped_column(Date)
    matures_on: Mapped[date | None] = mapped_column(Date)
    renewals: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created_at()


class StakingReward(Base):
    """One day's reward of one stake: at most one row per (stake, day), written in the
    transaction of its postings, so a day is never paid twice. ``account_id`` is where it
    went (STAKED when compounded, else AVAILABLE). The journal entry is written later in
    the same transaction, hence the deferred foreign key. ``user_id``, ``currency`` and
    ``account_id`` copy the stake's and have no foreign keys of their own: the stake's
    cover them, and three more checks per row would double the cost of the daily insert."""

    __tablename__ = "staking_rewards"
    __table_args__ = (
        UniqueConstraint("stake_id", "accrual_date"),
        CheckConstraint("amount > 0", name="positive"),
        Index(None, "user_id", "id"),
        Index(None, "entry_id"),
    )

    id: Mapped[int] = _pk()
    stake_id: Mapped[int] = mapped_column(ForeignKey("stakes.id"))
    user_id: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(Text)
    accrual_date: Mapped[date] = mapped_column(Date)
    principal: Mapped[Decimal] = mapped_column(AMOUNT)
    apy: Mapped[Decimal] = mapped_column(Numeric(7, 4))
    daily_rate: Mapped[Decimal] = mapped_column(Numeric)
    amount: Mapped[Decimal] = mapped_column(AMOUNT)
    compounded: Mapped[bool] = mapped_column(Boolean)
    account_id: Mapped[int] = mapped_column(BigInteger)
    entry_id: Mapped[int] = mapped_column(
        ForeignKey("journal_entries.id", deferrable=True, initially="DEFERRED")
    )
    created_at: Mapped[datetime] = _created_at()
