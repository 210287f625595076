"""Staking products: the catalogue a user chooses from (reads, quotes) and the admin's
create and update (audited). Stakes themselves are in ``app.staking.staking``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import audit
from app.core.errors import BelowStakingMinimum, NotFound, StakingLimitExceeded
from app.core.money import CurrencySpec, parse_amount
from app.runtime import Runtime
from app.staking import rules
from app.staking.rules import ProductKind, ProductStatus
from app.wallets.wallets import get_enabled_currency, spec
from db.models import StakingProductRate
from db.session import in_transaction


@dataclass(frozen=True, slots=True)
class Product:
    """A staking product with its rates as seen on one day."""

    id: int
    asset: str
    kind: ProductKind
    lock_days: int | None
    compounding: bool
    min_amount: Decimal
    max_per_user: Decimal
    capacity: Decimal
    staked_total: Decimal
    status: ProductStatus
    created_at: datetime
    scale: int
    apy: Decimal  # in force today
    next_apy: Decimal | None  # a change that applies from next_apy_from
    next_apy_from: date | None

    @property
    def apr(self) -> Decimal:
        return rules.apr(self.apy)

    @property
    def remaining_capacity(self) -> Decimal:
        return max(self.capacity - self.staked_total, Decimal(0))

    @property
    def apy_for_new_stakes(self) -> Decimal:
        """A stake made today first earns tomorrow, at a change announced today."""
        return self.next_apy if self.next_apy is not None else self.apy

    @property
    def currency(self) -> CurrencySpec:
        return CurrencySpec(code=self.asset, scale=self.scale)


@dataclass(frozen=True, slots=True)
class QuoteResult:
    product: Product
    amount: Decimal
    apy: Decimal
    apr: Decimal
    daily_rate: Decimal
    value_date: date
    matures_on: date | None
    quote: rules.Quote


_PRODUCTS_SQL = text(
    """
    SELECT p.id, p.asset, p.kind, p.lock_days, p.compounding, p.min_amount, p.max_per_user,
           p.capacity, p.staked_total, p.status, p.created_at, c.scale,
           (SELECT r.apy FROM staking_product_rates r
             WHERE r.product_id = p.id AND r.effective_from <= :today
             ORDER BY r.effective_from DESC LIMIT 1) AS apy,
           n.apy AS next_apy, n.effective_from AS next_apy_from
    FROM staking_products p
    JOIN currencies c ON c.code = p.asset
    LEFT JOIN LATERAL (
        SELECT r.apy, r.effective_from FROM staking_product_rates r
        WHERE r.product_id = p.id AND r.effective_from > :today
        ORDER BY r.effective_from LIMIT 1
    ) n ON true
    WHERE (CAST(:ids AS bigint[]) IS NULL OR p.id = ANY(CAST(:ids AS bigint[])))
      AND (CAST(:asset AS text) IS NULL OR p.asset = CAST(:asset AS text))
      AND (CAST(:include_closed AS boolean) OR p.status = 'ACTIVE')
    ORDER BY p.asset, p.lock_days NULLS FIRST, p.id
    """
)


def _product(row: Any) -> Product:
    return Product(
        id=row.id,
        asset=row.asset,
        kind=ProductKind(row.kind),
        lock_days=row.lock_days,
        compounding=row.compounding,
        min_amount=row.min_amount,
        max_per_user=row.max_per_user,
        capacity=row.capacity,
        staked_total=row.staked_total,
        status=ProductStatus(row.status),
        created_at=row.created_at,
        scale=row.scale,
        apy=row.apy,
        next_apy=row.next_apy,
        next_apy_from=row.next_apy_from,
    )


async def list_products(
    session: AsyncSession,
    *,
    today: date,
    asset: str | None = None,
    include_closed: bool = False,
    ids: Sequence[int] | None = None,
) -> list[Product]:
    rows = await session.execute(
        _PRODUCTS_SQL,
        {
            "today": today,
            "ids": list(ids) if ids is not None else None,
            "asset": asset.strip().upper() if asset else None,
            "include_closed": include_closed or ids is not None,
        },
    )
    return [_product(row) for row in rows]


async def products_by_ids(
    session: AsyncSession, ids: Sequence[int], *, today: date
) -> list[Product | None]:
    found = {p.id: p for p in await list_products(session, today=today, ids=ids)}
    return [found.get(i) for i in ids]


async def get_product(session: AsyncSession, product_id: int, *, today: date) -> Product:
    (product,) = await products_by_ids(session, [product_id], today=today)
    if product is None:
        raise NotFound("No such staking product", field="productId")
    return product


async def staking_quote(*, rt: Runtime, product_id: int, amount: Decimal) -> QuoteResult:
    """What ``amount`` would earn in the product, day by day exactly as the job pays it,
    at the rate a stake made now starts with."""
    today = rules.utc_day(rt.now())
    async with rt.sessions() as session:
        product = await get_product(session, product_id, today=today)
    value = parse_amount(amount, product.currency)
    check_amount_range(product, value, staked_already=Decimal(0))
    apy = product.apy_for_new_stakes
    start = today + timedelta(days=1)
    return QuoteResult(
        product=product,
        amount=value,
        apy=apy,
        apr=rules.apr(apy),
        daily_rate=rules.daily_rate(apy),
        value_date=start,
        matures_on=rules.maturity_date(start, product.lock_days),
        quote=rules.quote(
            value,
            apy=apy,
            scale=product.scale,
            compounding=product.compounding,
            lock_days=product.lock_days,
        ),
    )


async def create_product(
    *,
    rt: Runtime,
    actor_id: int | None,
    asset: str,
    kind: ProductKind,
    lock_days: int | None,
    apy: Decimal,
    compounding: bool,
    min_amount: Decimal,
    max_per_user: Decimal,
    capacity: Decimal,
) -> Product:
    """Admin only. The rate applies from today (a stake made today first earns tomorrow)."""

    async def work(session: AsyncSession) -> Product:
        actor = await audit.require_admin(session, actor_id)
        term = rules.check_term(kind, lock_days)
        rules.check_apy(apy)
        coin = spec(await get_enabled_currency(session, asset, field="asset"))
        minimum = parse_amount(min_amount, coin, field="minAmount")
        maximum = parse_amount(max_per_user, coin, field="maxPerUser")
        size = parse_amount(capacity, coin, field="capacity")
        rules.check_limits(min_amount=minimum, max_per_user=maximum, capacity=size)
        today = rules.utc_day(rt.now())
        product_id = (
            await session.execute(
                text(
                    "INSERT INTO staking_products (asset, kind, lock_days, compounding,"
                    " min_amount, max_per_user, capacity) VALUES (:asset, :kind, :lock_days,"
                    " :compounding, :min, :max, :capacity) RETURNING id"
                ),
                {
                    "asset": coin.code,
                    "kind": kind.value,
                    "lock_days": term,
                    "compounding": compounding,
                    "min": minimum,
                    "max": maximum,
                    "capacity": size,
                },
            )
        ).scalar_one()
        session.add(StakingProductRate(product_id=product_id, effective_from=today, apy=apy))
        await session.flush()
        await audit.record(
            session,
            actor_id=actor.id,
            action="staking_product.create",
            target=f"staking_product:{product_id}",
            details={
                "asset": coin.code,
                "kind": kind.value,
                "lockDays": term,
                "apy": str(apy),
                "compounding": compounding,
                "minAmount": str(minimum),
                "maxPerUser": str(maximum),
                "capacity": str(size),
            },
        )
        return await get_product(session, product_id, today=today)

    return await in_transaction(rt.sessions, work)


async def update_product(
    *,
    rt: Runtime,
    actor_id: int | None,
    product_id: int,
    apy: Decimal | None = None,
    min_amount: Decimal | None = None,
    max_per_user: Decimal | None = None,
    capacity: Decimal | None = None,
    status: ProductStatus | None = None,
) -> Product:
    """Admin only. A new APY applies from the next accrual day (tomorrow, UTC); the
    days before keep the rate they had, even when the job pays them later. Closing stops
    new stakes and renewals; running stakes keep earning until they end."""

    async def work(session: AsyncSession) -> Product:
        actor = await audit.require_admin(session, actor_id)
        if apy is not None:
            rules.check_apy(apy)
        await lock_product(session, product_id)
        today = rules.utc_day(rt.now())
        product = await get_product(session, product_id, today=today)
        coin = product.currency
        changes: dict[str, Decimal | str] = {}
        limits = {
            "min_amount": _parsed(min_amount, coin, "minAmount", product.min_amount, changes),
            "max_per_user": _parsed(
                max_per_user, coin, "maxPerUser", product.max_per_user, changes
            ),
            "capacity": _parsed(capacity, coin, "capacity", product.capacity, changes),
        }
        rules.check_limits(**limits)
        if status is not None and status is not product.status:
            changes["status"] = status.value
        await session.execute(
            text(
                "UPDATE staking_products SET min_amount = :min_amount,"
                " max_per_user = :max_per_user, capacity = :capacity, status = :status"
                " WHERE id = :id"
            ),
            {**limits, "status": (status or product.status).value, "id": product_id},
        )
        if apy is not None:
            await session.execute(
                text(
                    "INSERT INTO staking_product_rates (product_id, effective_from, apy)"
                    " VALUES (:id, :day, :apy)"
                    " ON CONFLICT (product_id, effective_from) DO UPDATE SET apy = :apy"
                ),
                {"id": product_id, "day": today + timedelta(days=1), "apy": apy},
            )
            changes["apy"] = str(apy)
            changes["apyFrom"] = (today + timedelta(days=1)).isoformat()
        await audit.record(
            session,
            actor_id=actor.id,
            action="staking_product.update",
            target=f"staking_product:{product_id}",
            details={k: str(v) for k, v in changes.items()},
        )
        return await get_product(session, product_id, today=today)

    return await in_transaction(rt.sessions, work)


def _parsed(
    value: Decimal | None,
    coin: CurrencySpec,
    field: str,
    current: Decimal,
    changes: dict[str, Decimal | str],
) -> Decimal:
    if value is None:
        return current
    parsed = parse_amount(value, coin, field=field)
    changes[field] = str(parsed)
    return parsed


async def lock_product(session: AsyncSession, product_id: int) -> None:
    locked = await session.scalar(
        text("SELECT id FROM staking_products WHERE id = :id FOR UPDATE"), {"id": product_id}
    )
    if locked is None:
        raise NotFound("No such staking product", field="productId")


def check_amount_range(product: Product, value: Decimal, *, staked_already: Decimal) -> None:
    if value < product.min_amount:
        raise BelowStakingMinimum(
            f"The minimum stake is {plain(product.min_amount)} {product.asset}", field="amount"
        )
    if staked_already + value > product.max_per_user:
        left = max(product.max_per_user - staked_already, Decimal(0))
        raise StakingLimitExceeded(
            f"At most {plain(product.max_per_user)} {product.asset} per user"
            f" ({plain(left)} left for you)",
            field="amount",
        )


def plain(value: Decimal) -> str:
    return f"{value.normalize():f}"
