"""``python -m bench.staking``: the daily staking accrual over 100,000 stakes, beside one
plain SQL statement touching the same rows.

1. PostgreSQL: DATABASE_URL (a fresh database ``bench_staking_<pid>`` is created on that
   server and dropped at the end, unless ``--keep``), or an embedded server under
   .data/bench-staking. Migrations, then ``--users`` users with ``--stakes`` stakes
   spread over the seeded catalogue (flexible and locked, simple and compounding; the
   locked ones at random points of their term, half with auto-renew, so some mature and
   some renew on every day), all money in place through one balanced journal entry.
2. ``accrual``: the job (``accrue_due_days``) for one finished day over every stake.
3. ``again``: the job a second time the same day (nothing is due: it must pay nothing).
4. ``plain UPDATE`` / ``plain SELECT``: one statement over the same ACTIVE stakes
   (``accrued_rewards + trunc(principal * rate, 8)``; the UPDATE is rolled back).
5. ``catch-up``: the job after ``--catch-up-days`` missed days (one transaction a day).
6. The ledger and staking invariant checks over everything (must be empty).
7. A table on stdout and the figures as JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import asyncpg

from app.__main__ import services
from app.core.settings import Settings
from app.embedded import ensure_database, with_database
from app.ledger import journal as ledger
from app.runtime import Runtime, build_runtime
from app.staking import staking
from app.staking.accrual import AccrualRun, accrue_due_days
from bench.processes import ROOT
from bench.report import RESULTS_DIR
from db.migrate import upgrade

T = TypeVar("T")
DATA_DIR = ROOT / ".data" / "bench-staking"
TARGET_SECONDS = 10.0
FIRST_DAY = date(2026, 3, 2)  # the first day the measured accrual pays
SEED = 6


@dataclass(frozen=True, slots=True)
class Figure:
    name: str
    seconds: float
    rows: int
    note: str = ""


def dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


# --- set-up --------------------------------------------------------------------------------

_PLAN_SQL = """
    CREATE TEMP TABLE bench_plan ON COMMIT DROP AS
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::numeric[], $5::int[],
                         $6::boolean[])
        AS p(user_id, product_id, currency, principal, days_into_term, auto_renew)
"""
_ACCOUNTS_SQL = """
    INSERT INTO ledger_accounts (user_id, currency, kind)
    SELECT DISTINCT p.user_id, p.currency, k.kind
    FROM bench_plan p, (VALUES ('AVAILABLE'), ('STAKED')) AS k(kind)
    UNION ALL
    SELECT DISTINCT NULL::bigint, p.currency, 'EXTERNAL' FROM bench_plan p
    ON CONFLICT DO NOTHING
"""
# Money in: EXTERNAL -total, each user's STAKED +their principals (one entry).
_FUND_SQL = """
    WITH entry AS (
        INSERT INTO journal_entries (kind, memo) VALUES ('CORRECTION', 'bench staking set-up')
        RETURNING id
    ), legs AS (
        SELECT a.id, sum(p.principal) AS amount
        FROM bench_plan p
        JOIN ledger_accounts a ON a.user_id = p.user_id AND a.currency = p.currency
                              AND a.kind = 'STAKED'
        GROUP BY a.id
        UNION ALL
        SELECT a.id, -sum(p.principal)
        FROM bench_plan p
        JOIN ledger_accounts a ON a.user_id IS NULL AND a.currency = p.currency
                              AND a.kind = 'EXTERNAL'
        GROUP BY a.id
    ), changed AS (
        UPDATE ledger_accounts a SET balance = a.balance + l.amount FROM legs l
        WHERE a.id = l.id
        RETURNING a.id, a.currency, l.amount, a.balance
    )
    INSERT INTO postings (entry_id, account_id, currency, amount, balance_after)
    SELECT entry.id, c.id, c.currency, c.amount, c.balance FROM entry, changed c
"""
_STAKES_SQL = """
    INSERT INTO stakes (user_id, product_id, currency, principal, status, auto_renew,
                        staked_account_id, available_account_id, staked_at, term_started_on,
                        accrued_through, matures_on)
    SELECT p.user_id, p.product_id, p.currency, p.principal, 'ACTIVE',
           p.auto_renew AND sp.lock_days IS NOT NULL, st.id, av.id,
           ($1::date - p.days_into_term - 1)::timestamptz + interval '12 hours',
           $1::date - p.days_into_term, $1::date - 1,
           $1::date - p.days_into_term + sp.lock_days
    FROM bench_plan p
    JOIN staking_products sp ON sp.id = p.product_id
    JOIN ledger_accounts st ON st.user_id = p.user_id AND st.currency = p.currency
                           AND st.kind = 'STAKED'
    JOIN ledger_accounts av ON av.user_id = p.user_id AND av.currency = p.currency
                           AND av.kind = 'AVAILABLE'
"""
_TOTALS_SQL = """
    UPDATE staking_products sp SET staked_total = sp.staked_total + t.total
    FROM (SELECT product_id, sum(principal) AS total FROM bench_plan GROUP BY product_id) t
    WHERE sp.id = t.product_id
"""


async def set_up(database_url: str, *, users: int, stakes: int) -> None:
    connection = await asyncpg.connect(dsn(database_url))
    try:
        async with connection.transaction():
            user_ids = [
                r["id"]
                for r in await connection.fetch(
                    "INSERT INTO users (email, display_name, password_hash, email_verified_at)"
                    " SELECT 'b' || g || '@bench-staking.example', 'Bench ' || g, 'x', now()"
                    " FROM generate_series(1, $1) g RETURNING id",
                    users,
                )
            ]
            products = await connection.fetch(
                "SELECT p.id, p.asset, p.lock_days, p.min_amount, c.scale FROM staking_products p"
                " JOIN currencies c ON c.code = p.asset ORDER BY p.id"
            )
            rng = random.Random(SEED)
            columns: list[list[Any]] = [[], [], [], [], [], []]
            seen: set[tuple[int, int]] = set()
            for n in range(stakes):
                uid = user_ids[n % users]
                product = rng.choice(products)
                while (uid, product["id"]) in seen and len(seen) < users * len(products):
                    product = rng.choice(products)
                seen.add((uid, product["id"]))
                principal = (product["min_amount"] * rng.randint(1, 200)).quantize(
                    Decimal(1).scaleb(-product["scale"])
                )
                days = product["lock_days"]
                for column, value in zip(
                    columns,
                    (
                        uid,
                        product["id"],
                        product["asset"],
                        principal,
                        rng.randrange(days) if days else rng.randrange(30),
                        rng.random() < 0.5,
                    ),
                    strict=True,
                ):
                    column.append(value)
            await connection.execute(_PLAN_SQL, *columns)
            await connection.execute(_ACCOUNTS_SQL)
            await connection.execute(_FUND_SQL)
            await connection.execute(_STAKES_SQL, FIRST_DAY)
            await connection.execute(_TOTALS_SQL)
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()


# --- measurements --------------------------------------------------------------------------


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def midnight_plus(day: date, minutes: int = 5) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(minutes=minutes)


async def timed(work: Callable[[], Awaitable[T]]) -> tuple[float, T]:
    started = time.perf_counter()
    result = await work()
    return time.perf_counter() - started, result


async def plain_statements(rt: Runtime) -> list[Figure]:
    """The floor: one UPDATE (rolled back) and one SELECT over the same ACTIVE stakes."""
    rate = Decimal("0.000210874398376959924795200002")
    figures = []
    async with rt.engine.connect() as connection:
        raw = (await connection.get_raw_connection()).driver_connection
        transaction = raw.transaction()
        await transaction.start()
        seconds, status = await timed(
            lambda: raw.execute(
                "UPDATE stakes SET accrued_rewards = accrued_rewards + trunc(principal * $1, 8)"
                " WHERE status = 'ACTIVE'",
                rate,
            )
        )
        await transaction.rollback()
        figures.append(Figure("plain UPDATE (same rows)", seconds, int(status.split()[-1])))
        seconds, total = await timed(
            lambda: raw.fetchval(
                "SELECT count(*) FROM (SELECT trunc(principal * $1, 8) FROM stakes"
                " WHERE status = 'ACTIVE') s",
                rate,
            )
        )
        figures.append(Figure("plain SELECT (same rows)", seconds, total))
    return figures


def describe(run: AccrualRun) -> tuple[int, str]:
    stakes = sum(d.stakes for d in run.days)
    note = (
        f"{len(run.days)} day(s); {run.paid} rewards, "
        f"{sum(d.renewed for d in run.days)} renewed, {sum(d.matured for d in run.days)} matured, "
        f"{sum(d.postings for d in run.days)} postings"
    )
    return stakes, note


async def measure(settings: Settings, *, catch_up_days: int) -> tuple[list[Figure], list[str]]:
    rt = build_runtime(
        settings, database_url=settings.database_url or "", redis_url=settings.redis_url or ""
    )
    clock = FixedClock(midnight_plus(FIRST_DAY + timedelta(days=1)))
    rt.clock = clock
    figures = []
    try:
        seconds, run = await timed(lambda: accrue_due_days(rt))
        rows, note = describe(run)
        figures.append(Figure("accrual job, one day", seconds, rows, note))
        seconds, again = await timed(lambda: accrue_due_days(rt))
        figures.append(Figure("accrual job again (nothing due)", seconds, again.paid, "paid"))
        figures += await plain_statements(rt)
        clock.now = midnight_plus(FIRST_DAY + timedelta(days=1 + catch_up_days))
        seconds, run = await timed(lambda: accrue_due_days(rt))
        rows, note = describe(run)
        figures.append(Figure(f"accrual job, {catch_up_days} missed days", seconds, rows, note))
        async with rt.sessions() as session:
            started = time.perf_counter()
            problems = await ledger.check_invariants(session)
            problems += await staking.check_invariants(session)
            figures.append(
                Figure("invariant checks", time.perf_counter() - started, len(problems), "broken")
            )
    finally:
        await rt.aclose()
    return figures, problems


# --- run -----------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(keep: bool) -> Iterator[tuple[str, str]]:
    configured = Settings()
    with services(configured, data_dir=DATA_DIR) as (admin_url, redis_url):
        name = f"bench_staking_{os.getpid()}"
        asyncio.run(ensure_database(admin_url, name))
        try:
            yield with_database(admin_url, name), redis_url
        finally:
            if not keep:
                asyncio.run(_drop(admin_url, name))


async def _drop(admin_url: str, name: str) -> None:
    connection = await asyncpg.connect(dsn(admin_url))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def report(figures: list[Figure], problems: list[str], args: argparse.Namespace) -> int:
    by_name = {f.name: f for f in figures}
    job = by_name["accrual job, one day"]
    plain = by_name["plain UPDATE (same rows)"]
    print(f"\nstaking accrual, {args.stakes:,} stakes of {args.users:,} users")
    print(f"{'measurement':<34} {'seconds':>9} {'rows':>9}  note")
    for f in figures:
        print(f"{f.name:<34} {f.seconds:>9.3f} {f.rows:>9,}  {f.note}")
    verdict = "met" if job.seconds <= TARGET_SECONDS else "MISSED"
    print(
        f"\njob / plain UPDATE: {job.seconds / plain.seconds:.1f}x;"
        f" target <= {TARGET_SECONDS:g} s for one day: {verdict}"
    )
    for problem in problems[:20]:
        print("INVARIANT BROKEN:", problem)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"staking-{stamp}.json"
    path.write_text(
        json.dumps(
            {
                "stakes": args.stakes,
                "users": args.users,
                "catch_up_days": args.catch_up_days,
                "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
                "figures": [asdict(f) for f in figures],
                "invariant_problems": problems,
            },
            indent=2,
        )
    )
    print(f"figures: {path.relative_to(ROOT)}")
    return 1 if problems or again_paid(figures) else 0


def again_paid(figures: list[Figure]) -> bool:
    return any(f.name.startswith("accrual job again") and f.rows for f in figures)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.staking", description=__doc__)
    parser.add_argument("--stakes", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--catch-up-days", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with fresh_database(args.keep) as (database_url, redis_url):
        upgrade(database_url)
        started = time.perf_counter()
        asyncio.run(set_up(database_url, users=args.users, stakes=args.stakes))
        print(f"set-up: {args.stakes:,} stakes in {time.perf_counter() - started:.1f} s")
        settings = Settings(database_url=database_url, redis_url=redis_url, log_level="WARNING")
        figures, problems = asyncio.run(measure(settings, catch_up_days=args.catch_up_days))
    return report(figures, problems, args)


if __name__ == "__main__":
    raise SystemExit(main())
