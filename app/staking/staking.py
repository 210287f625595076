"""Staking: products (admin), stake, unstake, auto-renew, quotes and the reads.

Money (see ``app.ledger.rules`` for the sign convention and ``staking_accrual`` for the
daily rewards and maturities):

    stake                 user AVAILABLE -x     user STAKED +x
    unstake               user STAKED -x        user AVAILABLE +(x - f), STAKING_REWARDS +f

where f, the forfeit, is non-zero only for a locked stake redeemed before maturity:
its share of the current term's rewards (times the ``STAKING_EARLY_REDEMPTION_FORFEIT``
setting) goes back to the staking-rewards account.

Before an unstake changes a stake, the stake's finished days are paid with the job's own
statements (``staking_accrual.settle_stake``), so every day is paid on the principal held
all day, whether the job or the unstake gets there first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import audit
from app.core.errors import (
    BelowStakingMinimum,
    NotAuthenticated,
    NotFound,
    PenaltyNotAccepted,
    StakeNotActive,
    StakingCapacityExceeded,
    StakingLimitExceeded,
    StakingProductClosed,
    UnstakeExceedsStake,
    ValidationFailed,
)
from app.core.money import CurrencySpec, parse_amount
from app.ledger import idempotency
from app.ledger import journal as ledger
from app.ledger.rules import AccountKind, Leg, move
from app.runtime import Runtime
from app.staking import rules
from app.staking.accrual import settle_stake
from app.staking.rules import ProductKind, ProductStatus, StakeStatus
from app.wallets.wallets import get_enabled_currency, spec
from db.models import Stake, StakingProductRate, StakingReward
from db.queries import Page, keyset_page
from db.session import in_transaction

STAKE_OPERATION = "stake"
UNSTAKE_OPERATION = "unstake"


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
class Unstaked:
    stake: Stake
    returned: Decimal
    forfeited: Decimal


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


# --- reads -------------------------------------------------------------------------------


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


async def stakes_by_ids(session: AsyncSession, ids: Sequence[int]) -> list[Stake | None]:
    rows = (await session.scalars(select(Stake).where(Stake.id.in_(ids)))).all()
    found = {row.id: row for row in rows}
    return [found.get(i) for i in ids]


async def active_stakes_by_user_ids(
    session: AsyncSession, user_ids: Sequence[int]
) -> list[list[Stake]]:
    """Each user's ACTIVE stakes, oldest first (one query)."""
    rows = (
        await session.scalars(
            select(Stake)
            .where(Stake.user_id.in_(user_ids), Stake.status == StakeStatus.ACTIVE.value)
            .order_by(Stake.id)
        )
    ).all()
    by_user: dict[int, list[Stake]] = {uid: [] for uid in user_ids}
    for row in rows:
        by_user[row.user_id].append(row)
    return [by_user[uid] for uid in user_ids]


async def list_rewards(
    session: AsyncSession, *, user_id: int, first: int, after: str | None
) -> Page[StakingReward]:
    """The user's reward payments, newest first."""
    return await keyset_page(
        session,
        select(StakingReward).where(StakingReward.user_id == user_id),
        key=StakingReward.id,
        first=first,
        after=after,
        descending=True,
    )


async def staking_quote(*, rt: Runtime, product_id: int, amount: Decimal) -> QuoteResult:
    """What ``amount`` would earn in the product, day by day exactly as the job pays it,
    at the rate a stake made now starts with."""
    today = rules.utc_day(rt.now())
    async with rt.sessions() as session:
        product = await get_product(session, product_id, today=today)
    value = parse_amount(amount, product.currency)
    _check_amount_range(product, value, staked_already=Decimal(0))
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


# --- admin: products ---------------------------------------------------------------------


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
        await _lock_product(session, product_id)
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


async def _lock_product(session: AsyncSession, product_id: int) -> None:
    locked = await session.scalar(
        text("SELECT id FROM staking_products WHERE id = :id FOR UPDATE"), {"id": product_id}
    )
    if locked is None:
        raise NotFound("No such staking product", field="productId")


# --- stake ---------------------------------------------------------------------------------


async def stake(
    *,
    rt: Runtime,
    user_id: int | None,
    product_id: int,
    amount: Decimal,
    auto_renew: bool,
    idempotency_key: str,
) -> Stake:
    """Move ``amount`` from available to staked in a new stake. The same key with the
    same request returns the original stake."""
    if user_id is None:
        raise NotAuthenticated()
    idempotency.check_key(idempotency_key)
    params = {"productId": product_id, "amount": str(amount), "autoRenew": auto_renew}

    async def work(session: AsyncSession) -> Stake:
        replay = await idempotency.claim(
            session, user_id=user_id, key=idempotency_key, operation=STAKE_OPERATION, params=params
        )
        if replay is not None:
            return await _get_stake(session, replay["stake_id"])
        now = rt.now()
        await _lock_product(session, product_id)
        product = await get_product(session, product_id, today=rules.utc_day(now))
        if product.status is not ProductStatus.ACTIVE:
            raise StakingProductClosed(field="productId")
        await get_enabled_currency(session, product.asset, field="productId")
        value = parse_amount(amount, product.currency)
        _check_amount_range(
            product, value, staked_already=await _staked_in(session, user_id, product)
        )
        if value > product.remaining_capacity:
            raise StakingCapacityExceeded(
                f"{_plain(product.remaining_capacity)} {product.asset} of capacity is left",
                field="amount",
            )
        available = ledger.user_account(user_id, product.asset)
        staked = ledger.user_account(user_id, product.asset, AccountKind.STAKED)
        accounts = await ledger.lock_accounts(session, [available, staked])
        term_start = rules.value_date(now)
        row = Stake(
            user_id=user_id,
            product_id=product.id,
            currency=product.asset,
            principal=value,
            status=StakeStatus.ACTIVE.value,
            auto_renew=auto_renew and product.kind is ProductKind.LOCKED,
            staked_account_id=accounts[staked].id,
            available_account_id=accounts[available].id,
            staked_at=now,
            term_started_on=term_start,
            accrued_through=term_start - timedelta(days=1),
            matures_on=rules.maturity_date(term_start, product.lock_days),
        )
        session.add(row)
        await session.flush()
        await ledger.post(
            session, kind="STAKE", legs=move(value, available, staked), reference=f"stake:{row.id}"
        )
        await _add_to_total(session, product.id, value)
        await idempotency.remember(
            session, user_id=user_id, key=idempotency_key, response={"stake_id": row.id}
        )
        return row

    return await in_transaction(rt.sessions, work)


def _check_amount_range(product: Product, value: Decimal, *, staked_already: Decimal) -> None:
    if value < product.min_amount:
        raise BelowStakingMinimum(
            f"The minimum stake is {_plain(product.min_amount)} {product.asset}", field="amount"
        )
    if staked_already + value > product.max_per_user:
        left = max(product.max_per_user - staked_already, Decimal(0))
        raise StakingLimitExceeded(
            f"At most {_plain(product.max_per_user)} {product.asset} per user"
            f" ({_plain(left)} left for you)",
            field="amount",
        )


async def _staked_in(session: AsyncSession, user_id: int, product: Product) -> Decimal:
    total = await session.scalar(
        text(
            "SELECT coalesce(sum(principal), 0) FROM stakes"
            " WHERE user_id = :user_id AND product_id = :product_id AND status = 'ACTIVE'"
        ),
        {"user_id": user_id, "product_id": product.id},
    )
    return Decimal(total)


async def _add_to_total(session: AsyncSession, product_id: int, delta: Decimal) -> None:
    await session.execute(
        text("UPDATE staking_products SET staked_total = staked_total + :delta WHERE id = :id"),
        {"delta": delta, "id": product_id},
    )


# --- unstake -------------------------------------------------------------------------------


async def unstake(
    *,
    rt: Runtime,
    user_id: int | None,
    stake_id: int,
    amount: Decimal,
    accept_penalty: bool,
    idempotency_key: str,
) -> Unstaked:
    """Return ``amount`` of a stake to the available balance. A locked stake before
    maturity needs ``accept_penalty`` and forfeits its share of this term's rewards."""
    if user_id is None:
        raise NotAuthenticated()
    idempotency.check_key(idempotency_key)
    params = {"stakeId": stake_id, "amount": str(amount), "acceptPenalty": accept_penalty}

    async def work(session: AsyncSession) -> Unstaked:
        replay = await idempotency.claim(
            session,
            user_id=user_id,
            key=idempotency_key,
            operation=UNSTAKE_OPERATION,
            params=params,
        )
        if replay is not None:
            return Unstaked(
                stake=await _get_stake(session, replay["stake_id"]),
                returned=Decimal(replay["returned"]),
                forfeited=Decimal(replay["forfeited"]),
            )
        now = rt.now()
        row = await _lock_own_stake(session, user_id=user_id, stake_id=stake_id)
        product = await get_product(session, row.product_id, today=rules.utc_day(now))
        available = ledger.user_account(user_id, row.currency)
        staked = ledger.user_account(user_id, row.currency, AccountKind.STAKED)
        rewards_account = ledger.system_account(row.currency, AccountKind.STAKING_REWARDS)
        await ledger.lock_accounts(session, [available, staked, rewards_account])
        if row.status == StakeStatus.ACTIVE.value:
            await settle_stake(
                session,
                stake_id=row.id,
                product_id=row.product_id,
                accrued_through=row.accrued_through,
                now=now,
            )
            row = await _reload_stake(session, row.id)
        if row.status != StakeStatus.ACTIVE.value:
            raise StakeNotActive(
                f"This stake is {row.status.lower()}: nothing is staked", field="stakeId"
            )
        value = parse_amount(amount, product.currency)
        if value > row.principal:
            raise UnstakeExceedsStake(
                f"At most {_plain(row.principal)} {row.currency} is staked", field="amount"
            )
        early = product.kind is ProductKind.LOCKED
        if early and not accept_penalty:
            raise PenaltyNotAccepted(
                f"Redeeming before {row.matures_on} forfeits this term's rewards"
                f" ({_plain(row.term_rewards)} {row.currency} so far)",
                field="acceptPenalty",
            )
        redemption = rules.redeem(
            amount=value,
            principal=row.principal,
            term_rewards=row.term_rewards,
            forfeit_share=rt.settings.staking_early_redemption_forfeit,
            early=early,
            scale=product.scale,
        )
        legs = [
            Leg(staked, -value),
            Leg(available, redemption.returned),
            Leg(rewards_account, redemption.forfeited),
        ]
        await ledger.post(
            session,
            kind="UNSTAKE",
            legs=[leg for leg in legs if leg.amount != 0],
            reference=f"stake:{row.id}",
        )
        row.principal -= value
        row.term_rewards -= redemption.term_rewards_released
        row.forfeited_rewards += redemption.forfeited
        if row.principal == 0:
            row.status = StakeStatus.REDEEMED.value
            row.ended_at = now
        await session.flush()
        await _add_to_total(session, row.product_id, -value)
        response = {
            "stake_id": row.id,
            "returned": str(redemption.returned),
            "forfeited": str(redemption.forfeited),
        }
        await idempotency.remember(session, user_id=user_id, key=idempotency_key, response=response)
        return Unstaked(stake=row, returned=redemption.returned, forfeited=redemption.forfeited)

    return await in_transaction(rt.sessions, work)


async def set_auto_renew(
    *, rt: Runtime, user_id: int | None, stake_id: int, auto_renew: bool
) -> Stake:
    """Turn renewal at maturity on or off (locked stakes only)."""
    if user_id is None:
        raise NotAuthenticated()

    async def work(session: AsyncSession) -> Stake:
        row = await _lock_own_stake(session, user_id=user_id, stake_id=stake_id)
        if row.status != StakeStatus.ACTIVE.value:
            raise StakeNotActive(field="stakeId")
        if row.matures_on is None:
            raise ValidationFailed("Flexible stakes do not renew", field="autoRenew")
        row.auto_renew = auto_renew
        await session.flush()
        return row

    return await in_transaction(rt.sessions, work)


async def _lock_own_stake(session: AsyncSession, *, user_id: int, stake_id: int) -> Stake:
    """Lock the product, then the stake (the staking lock order)."""
    owner = (
        await session.execute(
            text("SELECT user_id, product_id FROM stakes WHERE id = :id"), {"id": stake_id}
        )
    ).one_or_none()
    if owner is None or owner.user_id != user_id:
        raise NotFound("No such stake", field="stakeId")
    await _lock_product(session, owner.product_id)
    return await _reload_stake(session, stake_id, lock=True)


async def _reload_stake(session: AsyncSession, stake_id: int, *, lock: bool = False) -> Stake:
    statement = select(Stake).where(Stake.id == stake_id)
    if lock:
        statement = statement.with_for_update()
    row = await session.scalar(statement.execution_options(populate_existing=True))
    assert row is not None
    return row


async def _get_stake(session: AsyncSession, stake_id: int) -> Stake:
    row = await session.get(Stake, stake_id)
    assert row is not None
    return row


def _plain(value: Decimal) -> str:
    return f"{value.normalize():f}"


# --- invariants ----------------------------------------------------------------------------

_INVARIANTS = {
    "STAKED balance differs from the active stakes": """
        SELECT a.user_id, a.currency, a.balance, coalesce(s.total, 0) FROM ledger_accounts a
        LEFT JOIN (SELECT user_id, currency, sum(principal) AS total FROM stakes
                   WHERE status = 'ACTIVE' GROUP BY user_id, currency) s
          ON s.user_id = a.user_id AND s.currency = a.currency
        WHERE a.kind = 'STAKED' AND a.balance <> coalesce(s.total, 0)""",
    "stake of a user without a STAKED account": """
        SELECT s.id FROM stakes s LEFT JOIN ledger_accounts a ON a.id = s.staked_account_id
        WHERE s.status = 'ACTIVE' AND (a.kind IS DISTINCT FROM 'STAKED'
              OR a.user_id <> s.user_id OR a.currency <> s.currency)""",
    "product total differs from its active stakes": """
        SELECT p.id, p.staked_total, coalesce(s.total, 0) FROM staking_products p
        LEFT JOIN (SELECT product_id, sum(principal) AS total FROM stakes
                   WHERE status = 'ACTIVE' GROUP BY product_id) s ON s.product_id = p.id
        WHERE p.staked_total <> coalesce(s.total, 0)""",
    "stake's accrued rewards differ from its reward rows": """
        SELECT s.id, s.accrued_rewards, coalesce(r.total, 0) FROM stakes s
        LEFT JOIN (SELECT stake_id, sum(amount) AS total FROM staking_rewards
                   GROUP BY stake_id) r ON r.stake_id = s.id
        WHERE s.accrued_rewards <> coalesce(r.total, 0)""",
    "balance_after differs from the running sum of the account's postings": """
        SELECT id, account_id, balance_after, running FROM (
            SELECT p.id, p.account_id, p.balance_after,
                   sum(p.amount) OVER (PARTITION BY p.account_id ORDER BY p.id) AS running
            FROM postings p
            WHERE p.account_id IN (
                SELECT p2.account_id FROM postings p2 JOIN journal_entries e ON e.id = p2.entry_id
                WHERE e.kind IN ('STAKE', 'UNSTAKE', 'STAKING_REWARD'))
        ) r WHERE balance_after <> running""",
    "reward without its posting": """
        SELECT r.id FROM staking_rewards r
        WHERE NOT EXISTS (SELECT 1 FROM postings p
                          WHERE p.entry_id = r.entry_id AND p.account_id = r.account_id)""",
}


async def check_invariants(session: AsyncSession) -> list[str]:
    """Every broken staking invariant, as readable lines; empty when all hold."""
    problems = []
    for name, sql in _INVARIANTS.items():
        for row in (await session.execute(text(sql))).all():
            problems.append(f"{name}: {tuple(row)}")
    return problems
