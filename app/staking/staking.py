"""Staking: stake, unstake, auto-renew and the reads of stakes and rewards (the products
are in ``app.staking.products``).

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
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import (
    NotAuthenticated,
    NotFound,
    PenaltyNotAccepted,
    StakeNotActive,
    StakingCapacityExceeded,
    StakingProductClosed,
    UnstakeExceedsStake,
    ValidationFailed,
)
from app.core.money import parse_amount
from app.ledger import idempotency
from app.ledger import journal as ledger
from app.ledger.rules import AccountKind, Leg, move
from app.runtime import Runtime
from app.staking import rules
from app.staking.accrual import settle_stake
from app.staking.products import Product, check_amount_range, get_product, lock_product, plain
from app.staking.rules import ProductKind, ProductStatus, StakeStatus
from app.wallets.wallets import get_enabled_currency
from db.models import Stake, StakingReward
from db.queries import Page, keyset_page
from db.session import in_transaction

STAKE_OPERATION = "stake"
UNSTAKE_OPERATION = "unstake"


@dataclass(frozen=True, slots=True)
class Unstaked:
    stake: Stake
    returned: Decimal
    forfeited: Decimal


# --- reads -------------------------------------------------------------------------------


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
        await lock_product(session, product_id)
        product = await get_product(session, product_id, today=rules.utc_day(now))
        if product.status is not ProductStatus.ACTIVE:
            raise StakingProductClosed(field="productId")
        await get_enabled_currency(session, product.asset, field="productId")
        value = parse_amount(amount, product.currency)
        check_amount_range(
            product, value, staked_already=await _staked_in(session, user_id, product)
        )
        if value > product.remaining_capacity:
            raise StakingCapacityExceeded(
                f"{plain(product.remaining_capacity)} {product.asset} of capacity is left",
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
                f"At most {plain(row.principal)} {row.currency} is staked", field="amount"
            )
        early = product.kind is ProductKind.LOCKED
        if early and not accept_penalty:
            raise PenaltyNotAccepted(
                f"Redeeming before {row.matures_on} forfeits this term's rewards"
                f" ({plain(row.term_rewards)} {row.currency} so far)",
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
    await lock_product(session, owner.product_id)
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
