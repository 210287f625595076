"""The daily accrual job on PostgreSQL: hand-computed rewards (rate change mid-term,
partial unstake, leap year), idempotency (twice, concurrently), catch-up, maturity with
and without auto-renew, early redemption; ledger and staking invariants after each test.

Daily rates (bc, see tests/staking/test_staking_domain.py), per 1000 USDT (scale 6) a day:
4 %: 0.107459   6 %: 0.159653   9 %: 0.236131.
"""

from __future__ import annotations

import asyncio
import random
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, text, update

from app.core.errors import PenaltyNotAccepted
from app.runtime import build_runtime
from app.staking import products as product_service
from app.staking import rules, staking
from db.models import Stake, StakingReward, User
from tests.support.staking import (
    at,
    balance,
    daily_runs,
    events,
    make_user,
    product_id,
    reload,
    rewards_of,
    run_job,
    stake,
    unstake,
)

USDT_4 = Decimal("0.107459")
USDT_6 = Decimal("0.159653")
USDT_9 = Decimal("0.236131")


@pytest.fixture(autouse=True)
async def _staking_invariants(rt):
    yield
    async with rt.sessions() as session:
        problems = await staking.check_invariants(session)
    assert problems == [], "staking invariants broken:\n" + "\n".join(problems)


async def _admin(rt) -> int:
    uid = await make_user(rt, "admin")
    async with rt.sessions() as session, session.begin():
        await session.execute(update(User).where(User.id == uid).values(role="ADMIN"))
    return uid


async def test_flexible_simple_rewards_go_to_available_each_day(rt):
    clock = at(rt, 2026, 3, 2)
    alice = await make_user(rt, "alice", funds={"USDT": "5000"})
    row = await stake(rt, alice, await product_id(rt, "USDT"), "1000")
    assert (row.term_started_on, row.accrued_through) == (date(2026, 3, 3), date(2026, 3, 2))

    clock.set_day(date(2026, 3, 3), hour=0)
    assert (await run_job(rt)).paid == 0  # the stake's first day has not finished yet
    await daily_runs(rt, clock, 3)  # pays 3, 4 and 5 March

    assert await rewards_of(rt, row.id) == [
        (date(2026, 3, 3), USDT_4),
        (date(2026, 3, 4), USDT_4),
        (date(2026, 3, 5), USDT_4),
    ]
    assert await balance(rt, alice, "USDT") == Decimal(4000) + 3 * USDT_4
    assert await balance(rt, alice, "USDT", "STAKED") == Decimal(1000)
    after = await reload(rt, row.id)
    assert (after.principal, after.accrued_rewards) == (Decimal(1000), 3 * USDT_4)


async def test_rate_change_mid_term_applies_from_the_next_day(rt):
    clock = at(rt, 2026, 3, 2)
    admin = await _admin(rt)
    alice = await make_user(rt, "alice", funds={"USDT": "10000"})
    locked = await product_id(rt, "USDT", 30)
    row = await stake(rt, alice, locked, "1000")
    assert row.matures_on == date(2026, 4, 2)  # term: 3 March to 1 April

    await daily_runs(rt, clock, 10)  # now 12 March 00:05; paid through 11 March
    clock.set_day(date(2026, 3, 12), hour=12)
    product = await product_service.update_product(
        rt=rt, actor_id=admin, product_id=locked, apy=Decimal(9)
    )
    assert (product.apy, product.next_apy, product.next_apy_from) == (
        Decimal(6),
        Decimal(9),
        date(2026, 3, 13),
    )
    await daily_runs(rt, clock, 21)  # through 2 April 00:05: the last day, then maturity

    paid = await rewards_of(rt, row.id)
    assert len(paid) == 30
    assert [a for _, a in paid] == [USDT_6] * 10 + [USDT_9] * 20  # 12 March still at 6 %
    assert paid[9][0] == date(2026, 3, 12) and paid[10][0] == date(2026, 3, 13)
    total = 10 * USDT_6 + 20 * USDT_9
    assert total == Decimal("6.31915")
    ended = await reload(rt, row.id)
    assert (ended.status, ended.principal, ended.accrued_rewards) == ("MATURED", 0, total)
    assert await balance(rt, alice, "USDT") == Decimal(10000) + total
    assert await balance(rt, alice, "USDT", "STAKED") == 0
    async with rt.sessions() as session:
        last_day = (
            await session.execute(
                text(
                    "SELECT e.kind, p.amount, p.balance_after FROM postings p"
                    " JOIN journal_entries e ON e.id = p.entry_id"
                    " JOIN ledger_accounts a ON a.id = p.account_id"
                    " WHERE a.user_id = :uid AND a.kind = 'AVAILABLE' ORDER BY p.id DESC LIMIT 2"
                ),
                {"uid": alice},
            )
        ).all()
    # the last reward and the principal back, two entries on the same account and day
    assert [tuple(r) for r in last_day] == [
        ("UNSTAKE", Decimal(1000), Decimal(10000) + total),
        ("STAKING_REWARD", USDT_9, Decimal(9000) + total),
    ]


async def test_partial_unstake_of_a_compounding_stake(rt):
    """10 SOL at 5 %, compounding (scale 9): three days, 4 SOL out, two more days."""
    clock = at(rt, 2026, 3, 2)
    bob = await make_user(rt, "bob", funds={"SOL": "100"})
    row = await stake(rt, bob, await product_id(rt, "SOL"), "10")
    await daily_runs(rt, clock, 2)  # 4 March 00:05: paid 3 and 4 March
    clock.set_day(date(2026, 3, 6), hour=10)  # the job missed 5 March: the unstake pays it
    done = await unstake(rt, bob, row.id, "4")
    assert (done.returned, done.forfeited) == (Decimal(4), 0)
    assert done.stake.principal == Decimal("6.004010953")  # 10.004010953 - 4
    clock.set_day(date(2026, 3, 8), hour=0)
    await run_job(rt)  # 6 and 7 March on 6.004010953

    assert [a for _, a in await rewards_of(rt, row.id)] == [
        Decimal("0.001336806"),  # 10.000000000 * r5
        Decimal("0.001336984"),  # 10.001336806 * r5
        Decimal("0.001337163"),  # 10.002673790 * r5
        Decimal("0.000802619"),  # 6.004010953 * r5
        Decimal("0.000802727"),  # 6.004813572 * r5
    ]
    assert await balance(rt, bob, "SOL", "STAKED") == Decimal("6.005616299")
    assert await balance(rt, bob, "SOL") == Decimal(94)
    assert (await reload(rt, row.id)).principal == Decimal("6.005616299")


async def test_leap_year_term_counts_29_february(rt):
    clock = at(rt, 2028, 2, 27, hour=23)
    carol = await make_user(rt, "carol", funds={"USDT": "1000"})
    row = await stake(rt, carol, await product_id(rt, "USDT", 30), "1000")
    assert row.matures_on == date(2028, 3, 29)  # 28 Feb + 30 days, through 29 Feb
    clock.set_day(date(2028, 3, 30), hour=0)
    run = await run_job(rt)  # one catch-up run: 31 days
    assert len(run.days) == 31

    paid = await rewards_of(rt, row.id)
    assert [d for d, _ in paid][:3] == [date(2028, 2, 28), date(2028, 2, 29), date(2028, 3, 1)]
    assert len(paid) == 30 and {a for _, a in paid} == {USDT_6}
    assert paid[-1][0] == date(2028, 3, 28)
    assert (await reload(rt, row.id)).status == "MATURED"
    assert await balance(rt, carol, "USDT") == Decimal(1000) + 30 * USDT_6  # + 4.78959


async def test_running_twice_and_concurrently_pays_once(rt, settings):
    clock = at(rt, 2026, 3, 2)
    stakes = []
    for i, (asset, days, amount) in enumerate(
        [("USDT", None, "1000"), ("SOL", None, "10"), ("USDT", 30, "500"), ("BTC", None, "0.5")]
    ):
        uid = await make_user(rt, f"u{i}", funds={asset: "2000"})
        stakes.append(await stake(rt, uid, await product_id(rt, asset, days), amount))
    clock.set_day(date(2026, 3, 6), hour=0)

    other = build_runtime(
        settings, database_url=settings.database_url, redis_url=settings.redis_url
    )
    other.clock = clock
    try:
        runs = await asyncio.gather(run_job(rt), run_job(other), run_job(rt))
    finally:
        await other.aclose()
    assert sum(r.paid for r in runs) == 4 * 3  # 4 stakes, 3 March to 5 March
    assert (await run_job(rt)).paid == 0
    async with rt.sessions() as session:
        count = await session.scalar(select(text("count(*)")).select_from(StakingReward))
        entries = await session.scalar(
            text("SELECT count(*) FROM journal_entries WHERE kind = 'STAKING_REWARD'")
        )
    assert count == 12
    assert entries == 3  # one rewards entry per day


async def test_five_missed_days_are_paid_as_five_normal_days(rt):
    clock = at(rt, 2026, 3, 2)
    daily = await make_user(rt, "daily", funds={"SOL": "50"})
    first = await stake(rt, daily, await product_id(rt, "SOL"), "12.345678901")
    await daily_runs(rt, clock, 6)  # 3 to 8 March: pays 3 to 7 March, a day a run

    clock.set_day(date(2026, 3, 8), hour=10)
    late = await make_user(rt, "late", funds={"SOL": "50"})
    second = await stake(rt, late, await product_id(rt, "SOL"), "12.345678901")
    clock.set_day(date(2026, 3, 14), hour=0)  # 9 to 13 March were not paid: job down
    clock.advance(minutes=5)
    run = await run_job(rt)
    assert [d.day for d in run.days] == [date(2026, 3, d) for d in range(8, 14)]

    normal = [a for _, a in await rewards_of(rt, first.id)][:5]
    caught_up = [a for _, a in await rewards_of(rt, second.id)]
    assert caught_up == normal
    assert normal == list(
        rules.rewards(
            Decimal("12.345678901"),
            rate=rules.daily_rate(Decimal(5)),
            scale=9,
            days=5,
            compounding=True,
        )
    )


async def test_maturity_with_auto_renew_starts_a_new_term(rt):
    clock = at(rt, 2026, 3, 2)
    dave = await make_user(rt, "dave", funds={"USDT": "1000"})
    row = await stake(rt, dave, await product_id(rt, "USDT", 30), "1000", auto_renew=True)
    clock.set_day(date(2026, 4, 2), hour=0)
    await run_job(rt)

    renewed = await reload(rt, row.id)
    assert renewed.status == "ACTIVE"
    assert (renewed.term_started_on, renewed.matures_on) == (date(2026, 4, 2), date(2026, 5, 2))
    assert (renewed.renewals, renewed.term_rewards, renewed.principal) == (1, 0, Decimal(1000))
    assert await balance(rt, dave, "USDT", "STAKED") == Decimal(1000)
    assert await balance(rt, dave, "USDT") == 30 * USDT_6
    sent = await events(rt)
    topics = [e.topic for e in sent]
    assert topics.count("staking.reward_paid") == 30
    assert topics[-1] == "staking.stake_renewed"
    assert sent[0].user_id == dave
    assert sent[0].payload == {
        "date": "2026-03-03",
        "rewards": [
            {
                "stakeId": row.id,
                "productId": row.product_id,
                "currency": "USDT",
                "amount": "0.159653",
                "compounded": False,
            }
        ],
    }
    assert sent[-1].payload["nextTermEndsOn"] == "2026-05-02"

    # the second term earns from 2 April; turning auto-renew off pays it out at the end
    await staking.set_auto_renew(rt=rt, user_id=dave, stake_id=row.id, auto_renew=False)
    clock.set_day(date(2026, 5, 3), hour=0)
    await run_job(rt)
    ended = await reload(rt, row.id)
    assert (ended.status, ended.renewals) == ("MATURED", 1)
    assert await balance(rt, dave, "USDT") == Decimal(1000) + 60 * USDT_6
    matured = [e for e in await events(rt) if e.topic == "staking.stake_matured"]
    assert [e.payload["principal"] for e in matured] == ["1000"]


async def test_a_closed_product_does_not_renew(rt):
    clock = at(rt, 2026, 3, 2)
    admin = await _admin(rt)
    erin = await make_user(rt, "erin", funds={"USDT": "1000"})
    locked = await product_id(rt, "USDT", 30)
    row = await stake(rt, erin, locked, "1000", auto_renew=True)
    await product_service.update_product(
        rt=rt, actor_id=admin, product_id=locked, status=staking.ProductStatus.CLOSED
    )
    clock.set_day(date(2026, 4, 2), hour=0)
    await run_job(rt)
    assert (await reload(rt, row.id)).status == "MATURED"
    assert await balance(rt, erin, "USDT") == Decimal(1000) + 30 * USDT_6


async def test_early_redemption_needs_the_penalty_and_forfeits_the_terms_rewards(rt):
    clock = at(rt, 2026, 3, 2)
    fay = await make_user(rt, "fay", funds={"USDT": "10000"})
    row = await stake(rt, fay, await product_id(rt, "USDT", 30), "1000")
    clock.set_day(date(2026, 3, 8), hour=0)
    await run_job(rt)  # 3 to 7 March: 5 * 0.159653 = 0.798265 paid to available
    clock.set_day(date(2026, 3, 8), hour=10)
    assert await balance(rt, fay, "USDT") == Decimal(9000) + 5 * USDT_6

    with pytest.raises(PenaltyNotAccepted):
        await unstake(rt, fay, row.id, "1000")
    assert await balance(rt, fay, "USDT", "STAKED") == Decimal(1000)

    done = await unstake(rt, fay, row.id, "1000", accept_penalty=True)
    assert (done.returned, done.forfeited) == (Decimal("999.201735"), Decimal("0.798265"))
    assert await balance(rt, fay, "USDT") == Decimal(10000)  # the principal, no rewards
    ended = await reload(rt, row.id)
    assert (ended.status, ended.principal, ended.forfeited_rewards) == (
        "REDEEMED",
        0,
        Decimal("0.798265"),
    )
    async with rt.sessions() as session:
        rewards_account = await session.scalar(
            text(
                "SELECT balance FROM ledger_accounts"
                " WHERE user_id IS NULL AND kind = 'STAKING_REWARDS' AND currency = 'USDT'"
            )
        )
    assert rewards_account == 0  # paid out, then given back


async def test_partial_early_redemption_with_a_configured_forfeit_share(rt):
    clock = at(rt, 2026, 3, 2)
    gus = await make_user(rt, "gus", funds={"USDT": "1000"})
    row = await stake(rt, gus, await product_id(rt, "USDT", 30), "1000")
    clock.set_day(date(2026, 3, 8), hour=10)  # the unstake pays 3 to 7 March first
    original = rt.settings
    rt.settings = original.model_copy(update={"staking_early_redemption_forfeit": Decimal("0.5")})
    try:
        done = await unstake(rt, gus, row.id, "400", accept_penalty=True)
    finally:
        rt.settings = original
    # 400/1000 of 0.798265 = 0.319306; half of it: 0.159653
    assert (done.returned, done.forfeited) == (Decimal("399.840347"), Decimal("0.159653"))
    left = await reload(rt, row.id)
    assert (left.principal, left.term_rewards) == (Decimal(600), Decimal("0.478959"))
    clock.set_day(date(2026, 4, 2), hour=0)
    await run_job(rt)  # the rest matures without penalty
    assert await balance(rt, gus, "USDT") == (
        Decimal("399.840347") + 5 * USDT_6 + 25 * Decimal("0.095792") + 600
    )  # 600 * r6 = 0.09579215247...


async def test_sql_rewards_equal_the_python_computation_to_the_last_unit(rt):
    """Random principals with every decimal place their currency has, in every seeded
    product, over days that compound: each reward the SQL paid equals
    ``daily_reward(principal, daily_rate(apy), scale)`` computed in Python."""
    clock = at(rt, 2026, 3, 2)
    rng = random.Random(2026)
    async with rt.sessions() as session:
        products = await product_service.list_products(session, today=clock.now.date())
    for n in range(60):
        product = rng.choice(products)
        units = rng.randint(
            int(product.min_amount.scaleb(product.scale)),
            int(product.max_per_user.scaleb(product.scale)),
        )
        amount = Decimal(units).scaleb(-product.scale)
        uid = await make_user(rt, f"r{n}", funds={product.asset: str(amount)})
        await stake(rt, uid, product.id, str(amount))
    clock.set_day(date(2026, 3, 2) + timedelta(days=4), hour=0)
    assert len((await run_job(rt)).days) == 3

    scales = {p.id: p.scale for p in products}
    async with rt.sessions() as session:
        rows = (
            await session.execute(
                select(StakingReward, Stake.product_id).join(
                    Stake, Stake.id == StakingReward.stake_id
                )
            )
        ).all()
    assert len(rows) == 180
    for reward, product in rows:
        assert reward.daily_rate == rules.daily_rate(reward.apy)
        expected = rules.daily_reward(reward.principal, reward.daily_rate, scales[product])
        assert reward.amount == expected, (reward.principal, reward.apy)
