"""Helpers for staking tests: a settable clock, users, products by catalogue entry, and
short names for the service calls."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import insert, select, text

from app.runtime import Runtime
from app.staking import staking
from app.staking.accrual import AccrualRun, accrue_due_days
from db.models import OutboxEvent, Stake, StakingReward, User
from tests.support.money import fund

_keys = itertools.count()


@dataclass
class Clock:
    """``rt.clock``: a fixed instant the test moves by hand."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    def set_day(self, day: date, hour: int = 10) -> None:
        self.now = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def at(rt: Runtime, year: int, month: int, day: int, hour: int = 10) -> Clock:
    clock = Clock(datetime(year, month, day, hour, tzinfo=UTC))
    rt.clock = clock
    return clock


async def make_user(rt: Runtime, name: str, *, funds: dict[str, str] | None = None) -> int:
    async with rt.sessions() as session, session.begin():
        uid = await session.scalar(
            insert(User)
            .values(
                email=f"{name}@stake.test",
                display_name=name.title(),
                password_hash="x",
                email_verified_at=rt.now(),
            )
            .returning(User.id)
        )
    for currency, amount in (funds or {}).items():
        await fund(rt, uid, currency, amount)
    return uid


async def product_id(rt: Runtime, asset: str, lock_days: int | None = None) -> int:
    """The seeded catalogue product of ``asset`` with that term (None: flexible)."""
    async with rt.sessions() as session:
        return await session.scalar(
            text(
                "SELECT id FROM staking_products WHERE asset = :asset"
                " AND lock_days IS NOT DISTINCT FROM CAST(:days AS smallint)"
                " ORDER BY id LIMIT 1"
            ),
            {"asset": asset, "days": lock_days},
        )


async def stake(
    rt: Runtime, uid: int, product: int, amount: str, *, auto_renew: bool = False
) -> Stake:
    return await staking.stake(
        rt=rt,
        user_id=uid,
        product_id=product,
        amount=Decimal(amount),
        auto_renew=auto_renew,
        idempotency_key=f"stake-{next(_keys)}",
    )


async def unstake(
    rt: Runtime, uid: int, stake_id: int, amount: str, *, accept_penalty: bool = False
) -> staking.Unstaked:
    return await staking.unstake(
        rt=rt,
        user_id=uid,
        stake_id=stake_id,
        amount=Decimal(amount),
        accept_penalty=accept_penalty,
        idempotency_key=f"unstake-{next(_keys)}",
    )


async def run_job(rt: Runtime) -> AccrualRun:
    return await accrue_due_days(rt)


async def daily_runs(rt: Runtime, clock: Clock, days: int) -> None:
    """The job a few minutes after each of the next ``days`` midnights."""
    for _ in range(days):
        clock.set_day(clock.now.date() + timedelta(days=1), hour=0)
        clock.advance(minutes=5)
        await run_job(rt)


async def reload(rt: Runtime, stake_id: int) -> Stake:
    async with rt.sessions() as session:
        row = await session.get(Stake, stake_id)
    assert row is not None
    return row


async def rewards_of(rt: Runtime, stake_id: int) -> list[tuple[date, Decimal]]:
    async with rt.sessions() as session:
        rows = (
            await session.execute(
                select(StakingReward.accrual_date, StakingReward.amount)
                .where(StakingReward.stake_id == stake_id)
                .order_by(StakingReward.accrual_date)
            )
        ).all()
    return [(d, a) for d, a in rows]


async def balance(rt: Runtime, uid: int, currency: str, kind: str = "AVAILABLE") -> Decimal:
    async with rt.sessions() as session:
        value = await session.scalar(
            text(
                "SELECT balance FROM ledger_accounts"
                " WHERE user_id = :uid AND currency = :cur AND kind = :kind"
            ),
            {"uid": uid, "cur": currency, "kind": kind},
        )
    return Decimal(0) if value is None else value


async def events(rt: Runtime, topic_prefix: str = "staking.") -> list[OutboxEvent]:
    async with rt.sessions() as session:
        rows = (
            await session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.topic.startswith(topic_prefix))
                .order_by(OutboxEvent.id)
            )
        ).all()
    return list(rows)
