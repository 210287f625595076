"""The daily staking accrual: set-based SQL over all stakes, one UTC day per transaction.

Money (the sign convention of ``app.ledger.rules``; STAKING_REWARDS is a system account
that goes negative by what the platform has paid out in rewards):

    reward, simple        STAKING_REWARDS -r    user AVAILABLE +r
    reward, compounding   STAKING_REWARDS -r    user STAKED +r     (principal grows by r)
    maturity              user STAKED -p        user AVAILABLE +p
    renewal               no money moves: a new term starts on the maturity day

One day D ("day-batch") is two statements in one transaction, after the products are
locked and two journal entry ids are drawn (the reward rows carry theirs before the
entry row exists: a deferred foreign key):

1. ``_ACCRUE_SQL``: lock every ACTIVE stake whose last paid day is D - 1 (and whose
   term has not ended), insert one ``staking_rewards`` row per stake with a reward
   above zero (unique per stake and day), advance ``accrued_through`` to D, add
   compounded rewards to principal and product totals, write one reward event per user.
2. ``_SETTLE_SQL``: stakes whose term ends with D mature (or renew); then the day's
   journal entries, one for the rewards (kind STAKING_REWARD) and one for the principal
   returned at maturity (kind UNSTAKE, as a user's own redemption), each with one
   posting per ledger account; the accounts are locked in primary-key order and updated
   once, and ``balance_after`` is derived from that update (in entry order).

Idempotent: a stake is picked only while its ``accrued_through`` is D - 1, under a row
lock (a concurrent run re-checks the condition after the first commits and skips it),
and the unique (stake_id, accrual_date) row is the backstop: a second payment would
fail the whole transaction. Two processes at once serialize on the product locks.

Catch-up: the job runs every day from the oldest unpaid day up to yesterday, one
transaction each, in order, so compounding and maturities happen exactly as if it had
run every day. Rates are looked up per day (``staking_product_rates``), so a late run
pays each day at the rate of that day.

Lock order, everywhere in staking: products, then stakes, then ledger accounts (in id
order). ``stake`` locks a product then accounts; ``unstake`` a product, the stake, then
its accounts, before settling that one stake's due days with these same statements.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache, partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import InvariantViolation
from app.core.logs import request_id_var
from app.events import topics
from app.runtime import Runtime
from app.staking import rules
from db.raw import driver
from db.session import in_transaction

log = logging.getLogger(__name__)

STAKE_FILTER = "/*one stake*/"  # replaced by a condition on the stake id parameter

_PRODUCTS_SQL = """
    SELECT p.id, p.asset, p.compounding, c.scale,
           (SELECT r.apy FROM staking_product_rates r
             WHERE r.product_id = p.id AND r.effective_from <= $1
             ORDER BY r.effective_from DESC LIMIT 1) AS apy
    FROM staking_products p JOIN currencies c ON c.code = p.asset
    WHERE $2::bigint IS NULL OR p.id = $2
    ORDER BY p.id
    FOR UPDATE OF p
"""

_ENSURE_REWARD_ACCOUNTS_SQL = """
    INSERT INTO ledger_accounts (user_id, currency, kind)
    SELECT NULL, c, 'STAKING_REWARDS' FROM unnest($1::text[]) AS c
    ON CONFLICT DO NOTHING
"""

# Two entry ids drawn ahead: reward rows carry theirs before the entry row is written.
_NEXT_ENTRY_IDS_SQL = """
    SELECT nextval(pg_get_serial_sequence('journal_entries', 'id')) AS rewards,
           nextval(pg_get_serial_sequence('journal_entries', 'id')) AS maturities
"""

_ACCRUE_SQL = f"""
    WITH rate AS (
        SELECT * FROM unnest($1::bigint[], $2::numeric[], $3::numeric[], $4::int[],
                             $5::boolean[])
            AS r(product_id, daily_rate, apy, scale, compounding)
    ), due AS MATERIALIZED (
        SELECT s.id, s.user_id, s.product_id, s.currency, s.principal,
               r.daily_rate, r.apy, r.compounding,
               trunc(s.principal * r.daily_rate, r.scale) AS amount,
               CASE WHEN r.compounding THEN s.staked_account_id
                    ELSE s.available_account_id END AS account_id
        FROM stakes s JOIN rate r ON r.product_id = s.product_id
        WHERE s.status = 'ACTIVE' AND s.accrued_through = $6::date - 1
          AND (s.matures_on IS NULL OR s.matures_on > $6::date)
          /*one stake*/
        ORDER BY s.id
        FOR UPDATE OF s
    ), paid AS (
        INSERT INTO staking_rewards (stake_id, user_id, currency, accrual_date, principal,
                                     apy, daily_rate, amount, compounded, account_id, entry_id)
        SELECT id, user_id, currency, $6::date, principal, apy, daily_rate, amount,
               compounding, account_id, $7
        FROM due WHERE amount > 0
        RETURNING amount
    ), advanced AS (
        UPDATE stakes s
        SET accrued_through = $6::date,
            principal = s.principal + CASE WHEN d.compounding THEN d.amount ELSE 0 END,
            accrued_rewards = s.accrued_rewards + d.amount,
            term_rewards = s.term_rewards + d.amount
        FROM due d WHERE s.id = d.id
        RETURNING s.id
    ), grown AS (
        UPDATE staking_products p SET staked_total = p.staked_total + g.amount
        FROM (SELECT product_id, sum(amount) AS amount FROM due
              WHERE compounding AND amount > 0 GROUP BY product_id) g
        WHERE p.id = g.product_id
        RETURNING p.id
    ), events AS (
        INSERT INTO outbox (topic, user_id, payload)
        SELECT '{topics.REWARD_PAID.named()}', user_id,
               jsonb_build_object(
                   'date', $6::date::text,
                   'rewards', jsonb_agg(jsonb_build_object(
                       'stakeId', id, 'productId', product_id, 'currency', currency,
                       'amount', amount::text, 'compounded', compounding) ORDER BY id))
        FROM due WHERE amount > 0
        GROUP BY user_id
        RETURNING id
    )
    SELECT (SELECT count(*) FROM advanced) AS stakes,
           (SELECT count(*) FROM paid) AS paid,
           (SELECT count(*) FROM grown) AS products,
           (SELECT count(*) FROM events) AS events
"""  # noqa: S608 (f-string: the catalogue's topic names only)

_SETTLE_SQL = f"""
    WITH ending AS MATERIALIZED (
        SELECT s.id, s.user_id, s.product_id, s.currency, s.principal, s.term_rewards,
               s.matures_on, s.staked_account_id, s.available_account_id, p.lock_days,
               s.auto_renew AND p.status = 'ACTIVE' AS renew
        FROM stakes s JOIN staking_products p ON p.id = s.product_id
        WHERE s.status = 'ACTIVE' AND s.matures_on = $1::date + 1
          AND s.accrued_through = $1::date
          /*one stake*/
        ORDER BY s.id
        FOR UPDATE OF s
    ), renewed AS (
        UPDATE stakes s
        SET term_started_on = e.matures_on, matures_on = e.matures_on + e.lock_days,
            term_rewards = 0, renewals = s.renewals + 1
        FROM ending e WHERE s.id = e.id AND e.renew
        RETURNING s.id
    ), matured AS (
        UPDATE stakes s SET status = 'MATURED', principal = 0, ended_at = $3
        FROM ending e WHERE s.id = e.id AND NOT e.renew
        RETURNING s.id
    ), shrunk AS (
        UPDATE staking_products p SET staked_total = p.staked_total - m.amount
        FROM (SELECT product_id, sum(principal) AS amount FROM ending WHERE NOT renew
              GROUP BY product_id) m
        WHERE p.id = m.product_id
        RETURNING p.id
    ), events AS (
        INSERT INTO outbox (topic, user_id, payload)
        SELECT CASE WHEN renew THEN '{topics.STAKE_RENEWED.named()}'
                    ELSE '{topics.STAKE_MATURED.named()}' END,
               user_id,
               jsonb_build_object(
                   'stakeId', id, 'productId', product_id, 'currency', currency,
                   'principal', trim_scale(principal)::text,
                   'termRewards', trim_scale(term_rewards)::text,
                   'termEndedOn', matures_on::text,
                   'nextTermEndsOn', CASE WHEN renew THEN (matures_on + lock_days)::text END)
        FROM ending
        RETURNING id
    ), legs AS (
        -- part 1, the day's rewards: STAKING_REWARDS -> the stakes' accounts
        SELECT 1 AS part, account_id, amount FROM staking_rewards WHERE entry_id = $2
        UNION ALL
        SELECT 1, a.id, -r.amount
        FROM (SELECT currency, sum(amount) AS amount FROM staking_rewards WHERE entry_id = $2
              GROUP BY currency) r
        JOIN ledger_accounts a
          ON a.user_id IS NULL AND a.currency = r.currency AND a.kind = 'STAKING_REWARDS'
        -- part 2, principal back at maturity: STAKED -> AVAILABLE
        UNION ALL
        SELECT 2, staked_account_id, -principal FROM ending WHERE NOT renew
        UNION ALL
        SELECT 2, available_account_id, principal FROM ending WHERE NOT renew
    ), per_entry AS (
        SELECT part, account_id AS id, sum(amount) AS amount FROM legs
        GROUP BY part, account_id HAVING sum(amount) <> 0
    ), locked AS MATERIALIZED (
        SELECT a.id FROM ledger_accounts a WHERE a.id IN (SELECT id FROM per_entry)
        ORDER BY a.id
        FOR UPDATE OF a
    ), changed AS (
        UPDATE ledger_accounts a SET balance = a.balance + v.amount
        FROM (SELECT id, sum(amount) AS amount FROM per_entry GROUP BY id) v
        JOIN locked l ON l.id = v.id
        WHERE a.id = v.id
        RETURNING a.id, a.currency, a.balance
    ), entries AS (
        INSERT INTO journal_entries (id, kind, reference, memo, request_id)
        OVERRIDING SYSTEM VALUE
        SELECT e.id, e.kind, e.reference, e.memo, $6
        FROM (VALUES (1, $2::bigint, 'STAKING_REWARD', $4, $5),
                     (2, $7::bigint, 'UNSTAKE', $8, $9)) AS e(part, id, kind, reference, memo)
        WHERE EXISTS (SELECT 1 FROM per_entry p WHERE p.part = e.part)
        RETURNING id
    ), posted AS (
        -- an account in both entries: the rewards' balance_after excludes the maturity
        INSERT INTO postings (entry_id, account_id, currency, amount, balance_after)
        SELECT CASE part WHEN 1 THEN $2::bigint ELSE $7::bigint END, id, currency, amount,
               balance_after
        FROM (SELECT p.part, p.id, c.currency, p.amount,
                     c.balance - coalesce(sum(p.amount) OVER (
                         PARTITION BY p.id ORDER BY p.part DESC
                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS balance_after
              FROM per_entry p JOIN changed c ON c.id = p.id) b
        ORDER BY part, id
        RETURNING entry_id, currency, amount
    )
    SELECT (SELECT count(*) FROM renewed) AS renewed,
           (SELECT count(*) FROM matured) AS matured,
           (SELECT count(*) FROM entries) AS entries,
           (SELECT count(*) FROM posted) AS postings,
           (SELECT count(*) FROM (SELECT 1 FROM posted GROUP BY entry_id, currency
                                  HAVING sum(amount) <> 0) u) AS unbalanced,
           (SELECT count(*) FROM shrunk) AS products,
           (SELECT count(*) FROM events) AS events
"""  # noqa: S608 (f-string: the catalogue's topic names only)


def _for_one_stake(sql: str, parameter: int) -> str:
    assert sql.count(STAKE_FILTER) == 1
    return sql.replace(STAKE_FILTER, f"AND s.id = ${parameter}")


_ACCRUE_ONE_SQL = _for_one_stake(_ACCRUE_SQL, 8)
_SETTLE_ONE_SQL = _for_one_stake(_SETTLE_SQL, 10)


@lru_cache(maxsize=1024)
def _daily_rate(apy: Decimal) -> Decimal:
    return rules.daily_rate(apy)


@dataclass(slots=True)
class DayResult:
    day: date
    stakes: int = 0  # accrued for the day
    paid: int = 0  # reward rows (rewards above zero)
    renewed: int = 0
    matured: int = 0
    postings: int = 0


@dataclass(slots=True)
class AccrualRun:
    days: list[DayResult] = field(default_factory=list)

    @property
    def paid(self) -> int:
        return sum(d.paid for d in self.days)


async def accrue_day(
    session: AsyncSession,
    *,
    day: date,
    now: datetime,
    stake_id: int | None = None,
    product_id: int | None = None,
) -> DayResult:
    """Pay day ``day`` and process the maturities on ``day + 1``, for every due stake
    (or only ``stake_id`` of ``product_id``, whose caller already locked the product and
    the stake), inside the caller's transaction."""
    connection = await driver(session)
    if stake_id is None:  # sorts and hashes over every stake: keep them in memory
        await connection.execute("SET LOCAL work_mem = '64MB'")
    products = await connection.fetch(_PRODUCTS_SQL, day, product_id)
    await connection.execute(_ENSURE_REWARD_ACCOUNTS_SQL, sorted({p["asset"] for p in products}))
    priced = [p for p in products if p["apy"] is not None]
    rate_arrays: list[list[Any]] = [
        [p["id"] for p in priced],
        [_daily_rate(p["apy"]) for p in priced],
        [p["apy"] for p in priced],
        [p["scale"] for p in priced],
        [p["compounding"] for p in priced],
    ]
    ids = await connection.fetchrow(_NEXT_ENTRY_IDS_SQL)
    one = () if stake_id is None else (stake_id,)
    accrued = await connection.fetchrow(
        _ACCRUE_SQL if stake_id is None else _ACCRUE_ONE_SQL,
        *rate_arrays,
        day,
        ids["rewards"],
        *one,
    )
    suffix = "" if stake_id is None else f":stake:{stake_id}"
    maturity_day = day + timedelta(days=1)
    settled = await connection.fetchrow(
        _SETTLE_SQL if stake_id is None else _SETTLE_ONE_SQL,
        day,
        ids["rewards"],
        now,
        f"staking-rewards:{day.isoformat()}{suffix}",
        f"Staking rewards for {day.isoformat()}",
        request_id_var.get(),
        ids["maturities"],
        f"staking-maturity:{maturity_day.isoformat()}{suffix}",
        f"Locked stakes maturing on {maturity_day.isoformat()}: principal back",
        *one,
    )
    if settled["unbalanced"]:
        raise InvariantViolation(f"staking entry for {day} does not balance")
    return DayResult(
        day=day,
        stakes=accrued["stakes"],
        paid=accrued["paid"],
        renewed=settled["renewed"],
        matured=settled["matured"],
        postings=settled["postings"],
    )


async def settle_stake(
    session: AsyncSession, *, stake_id: int, product_id: int, accrued_through: date, now: datetime
) -> None:
    """Pay one stake's finished days (and its maturity, if due) before it changes, so each
    day is paid on the principal held all that day. The caller holds the locks."""
    day = accrued_through + timedelta(days=1)
    yesterday = rules.utc_day(now) - timedelta(days=1)
    while day <= yesterday:
        result = await accrue_day(
            session, day=day, now=now, stake_id=stake_id, product_id=product_id
        )
        if result.stakes == 0 or result.matured:
            return
        day += timedelta(days=1)


async def accrue_due_days(rt: Runtime) -> AccrualRun:
    """The job: every finished UTC day not yet paid, oldest first, one transaction each."""
    yesterday = rules.utc_day(rt.now()) - timedelta(days=1)
    async with rt.sessions() as session:
        connection = await driver(session)
        last_paid = await connection.fetchval(
            "SELECT min(accrued_through) FROM stakes WHERE status = 'ACTIVE'"
        )
    run = AccrualRun()
    if last_paid is None:
        return run
    day = last_paid + timedelta(days=1)
    while day <= yesterday:
        result = await in_transaction(rt.sessions, partial(_accrue_day_job, day=day, now=rt.now()))
        run.days.append(result)
        log.info(
            "staking day accrued",
            extra={
                "day": day.isoformat(),
                "stakes": result.stakes,
                "paid": result.paid,
                "renewed": result.renewed,
                "matured": result.matured,
            },
        )
        day += timedelta(days=1)
    return run


async def _accrue_day_job(session: AsyncSession, *, day: date, now: datetime) -> DayResult:
    return await accrue_day(session, day=day, now=now)
