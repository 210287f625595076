"""``python -m bench leaderboard``: the leaderboard query through GraphQL with its Redis
cache against the same query uncached, side by side in one run, and the statistics
job's run time, for 10,000 leaders.

1. ``co_bench_leaderboard`` (dropped and created again, migrated; dropped at the end
   unless ``--keep``), seeded in bulk with SQL: ``--leaders`` users who lead (90 %
   ACTIVE PUBLIC, the rest STOPPED or INVITE_ONLY), a daily equity snapshot each for
   ``--days`` days (a random walk), round-trip fills (2 to 12 per leader, some below the
   ranking minimum), and live follows from 1,000 followers.
2. The job (``recompute_leaderboard``) in this process, ``--job-runs`` times.
3. Two uvicorn processes with the same production settings, except
   LEADERBOARD_CACHE_TTL_SECONDS: 600 (cached) and 0 (every request runs the query).
   Both must give the same answer.
4. Per target: ``sequential`` (one connection, closed loop: one request's latency on an
   idle server) and ``peak`` (closed loop, ``--connections``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from app.__main__ import services
from app.core.settings import Settings
from app.embedded import with_database
from app.social.leaderboard import recompute_leaderboard
from bench.load import LoadResult, Target, run_loadgen, run_wrk, wrk_available
from bench.processes import ROOT, Children, post_json, run_main
from bench.trading_support import (
    _drop,
    _recreate,
    asyncpg_dsn,
    machine,
    print_rows,
    runtime,
    server_settings,
    settings_from,
    start_server,
    write_results,
)
from db.migrate import upgrade

DATA_DIR = ROOT / ".data" / "bench-leaderboard"
DATABASE = "co_bench_leaderboard"
QUERY = (
    "{ leaderboard(period: D30, sortBy: SHARPE, first: 20) { edges { cursor node { rank roi"
    " pnl winRate maxDrawdown sharpe sortino followers assetsUnderCopy trades"
    " leader { id displayName } } } pageInfo { hasNextPage endCursor } } }"
)
BODY = json.dumps({"query": QUERY}, separators=(",", ":"))
FOLLOWERS = 1000

_SEED = [
    "SELECT setseed(0.42)",
    # leaders and followers: users without logins
    """INSERT INTO users (email, display_name, password_hash)
       SELECT 'leader' || i || '@bench.example', 'Leader ' || i, 'x'
       FROM generate_series(1, {leaders}) AS i""",
    """INSERT INTO users (email, display_name, password_hash)
       SELECT 'follower' || i || '@bench.example', 'Follower ' || i, 'x'
       FROM generate_series(1, {followers}) AS i""",
    """INSERT INTO leaders (user_id, display_name, profit_share_percent, minimum_allocation,
                            visibility, status)
       SELECT id, display_name, 10, 0,
              CASE WHEN id % 20 = 0 THEN 'INVITE_ONLY' ELSE 'PUBLIC' END,
              CASE WHEN id % 20 = 1 THEN 'STOPPED' ELSE 'ACTIVE' END
       FROM users WHERE email LIKE 'leader%'""",
    # one close a day: a random walk of daily returns between -3 % and +3.3 %
    """INSERT INTO equity_snapshots (user_id, taken_at, equity_usd)
       SELECT user_id, taken_at,
              round(1000 * exp(sum(ln(0.97 + random() * 0.063))
                    OVER (PARTITION BY user_id ORDER BY taken_at))::numeric, 2)
       FROM leaders, generate_series(1, {days}) AS d,
            LATERAL (SELECT now() - (d - 1) * interval '1 day' AS taken_at) t""",
    # one order and one journal entry carry every fill (the job reads fills only)
    """INSERT INTO journal_entries (kind, memo) VALUES ('TRADE', 'bench seed')""",
    """INSERT INTO orders (user_id, market_id, client_order_id, request_hash, side, type,
                           time_in_force, status, quantity, book_price)
       SELECT l.user_id, m.id, 'bench-seed', '-', 'BUY', 'LIMIT', 'GTC', 'FILLED', 1000, 100
       FROM leaders l, markets m WHERE m.symbol = 'BTC/USDT'""",
    # 1 to 6 round trips per leader within the last 20 days: BUY @ 100, SELL @ 90..110
    """INSERT INTO fills (market_id, trade_id, seq, order_id, user_id, side, liquidity, price,
                          quantity, quote_amount, fee, fee_currency, entry_id, created_at)
       SELECT o.market_id, row_number() OVER (), 1, o.id, o.user_id, s.side, 'MAKER', p.price,
              1, p.price, round(p.price * 0.001, 6), 'USDT',
              (SELECT max(id) FROM journal_entries), t.at + s.offs
       FROM orders o
       CROSS JOIN LATERAL generate_series(1, 1 + o.user_id % 6) AS k
       CROSS JOIN LATERAL (SELECT now() - (k * 3 + o.user_id % 2) * interval '1 day' AS at,
                                  round((90 + random() * 20)::numeric, 2) AS exit_price) t
       CROSS JOIN LATERAL (VALUES ('BUY', interval '0'), ('SELL', interval '1 hour'))
            AS s(side, offs)
       CROSS JOIN LATERAL (SELECT CASE s.side WHEN 'BUY' THEN 100 ELSE t.exit_price END AS price) p
       WHERE o.client_order_id = 'bench-seed'""",
    # 0 to 4 live follows per leader
    """INSERT INTO follows (follower_id, leader_id, mode, allocation, fixed_amount, status)
       SELECT f.id, l.user_id, 'FIXED_AMOUNT', 100 * (1 + k), 10,
              CASE WHEN k = 3 THEN 'PAUSED' ELSE 'ACTIVE' END
       FROM leaders l CROSS JOIN LATERAL generate_series(0, l.user_id % 5 - 1) AS k
       JOIN users f ON f.email = 'follower' || (1 + (l.user_id * 7 + k) % {followers})
                                 || '@bench.example'""",
    "ANALYZE",
]


@dataclass(frozen=True, slots=True)
class Row:
    target: str  # "cached" or "uncached"
    sequential: LoadResult
    peak: LoadResult


@contextlib.contextmanager
def leaderboard_database(*, keep: bool) -> Iterator[tuple[str, str]]:
    with services(Settings(), data_dir=DATA_DIR) as (admin_url, redis_url):
        asyncio.run(_recreate(admin_url, DATABASE))
        database_url = with_database(admin_url, DATABASE)
        upgrade(database_url)
        try:
            yield database_url, redis_url
        finally:
            if not keep:
                asyncio.run(_drop(admin_url, DATABASE))


async def seed(database_url: str, *, leaders: int, days: int) -> dict[str, int]:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        for sql in _SEED:
            sizes = {"{followers}": FOLLOWERS, "{leaders}": leaders, "{days}": days}
            for name, value in sizes.items():
                sql = sql.replace(name, str(int(value)))
            await connection.execute(sql)
        counts = {}
        for table in ("leaders", "equity_snapshots", "fills", "follows"):
            counts[table] = await connection.fetchval(f"SELECT count(*) FROM {table}")
        return counts
    finally:
        await connection.close()


async def time_job(settings: Settings, runs: int) -> tuple[list[float], dict[str, int]]:
    rt = runtime(settings)
    try:
        seconds = []
        for _ in range(runs):
            started = time.perf_counter()
            written = await recompute_leaderboard(rt)
            seconds.append(time.perf_counter() - started)
        async with rt.sessions() as session:
            raw = await (await session.connection()).get_raw_connection()
            ranked = await raw.driver_connection.fetch(
                "SELECT period, count(*) FILTER (WHERE ranked) AS ranked FROM leader_stats"
                " GROUP BY period ORDER BY period"
            )
        return seconds, {"rows written": written, **{r["period"]: r["ranked"] for r in ranked}}
    finally:
        await rt.aclose()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench leaderboard", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--leaders", type=int, default=10_000, help="(10000)")
    parser.add_argument("--days", type=int, default=60, help="of equity history (60)")
    parser.add_argument("--job-runs", type=int, default=3, help="(3)")
    parser.add_argument("--duration", type=int, default=6, help="seconds per run (6)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds per target (2)")
    parser.add_argument("--connections", type=int, default=16, help="for the peak (16)")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--keep", action="store_true", help="keep co_bench_leaderboard")
    return parser.parse_args(argv)


def same_answers(targets: dict[str, Target]) -> dict[str, Any]:
    answers = {}
    for name, t in targets.items():
        for _ in range(2):  # the second cached answer comes from Redis
            status, answers[name] = post_json(t.port, t.path, t.body)
            if status != 200 or "errors" in answers[name]:
                raise RuntimeError(f"{name} answered {status}: {answers[name]}")
    if answers["cached"] != answers["uncached"]:
        raise RuntimeError("cached and uncached answers differ")
    if len(answers["cached"]["data"]["leaderboard"]["edges"]) != 20:
        raise RuntimeError(f"the set-up ranked too few leaders: {answers['cached']}")
    return dict(answers["cached"])


def measure(
    children: Children, targets: dict[str, Target], args: argparse.Namespace, use_wrk: bool
) -> list[Row]:
    closed = run_wrk if use_wrk else run_loadgen
    for target in targets.values():
        closed(children, target, connections=args.connections, seconds=args.warmup)
    sequential = {
        name: run_loadgen(children, t, connections=1, seconds=args.duration)
        for name, t in targets.items()
    }
    peak = {
        name: closed(children, t, connections=args.connections, seconds=args.duration)
        for name, t in targets.items()
    }
    return [Row(name, sequential[name], peak[name]) for name in targets]


def run(args: argparse.Namespace) -> int:
    use_wrk = args.loadgen == "wrk" or (args.loadgen == "auto" and wrk_available())
    started_at = datetime.now(UTC)
    with (
        leaderboard_database(keep=args.keep) as (database_url, redis_url),
        Children() as children,
        contextlib.ExitStack() as stack,
    ):
        overrides = {
            **server_settings(database_url, redis_url),
            "TRADING_ENGINE_ENABLED": "false",
            "LEADERBOARD_INTERVAL_SECONDS": "0",
        }
        started = time.perf_counter()
        counts = asyncio.run(seed(database_url, leaders=args.leaders, days=args.days))
        seeded = time.perf_counter() - started
        print(f"seeded in {seeded:.1f}s: {counts}", file=sys.stderr)
        job_seconds, job = asyncio.run(time_job(settings_from(overrides), args.job_runs))
        print(f"job: {[f'{s:.2f}s' for s in job_seconds]} {job}", file=sys.stderr)
        ports = {}
        for name, ttl in (("cached", "600"), ("uncached", "0")):
            env = {**overrides, "LEADERBOARD_CACHE_TTL_SECONDS": ttl}
            _, ports[name] = start_server(children, env, stack, name=f"leaderboard-{name}")
        targets = {name: Target(port, "/graphql", BODY, None) for name, port in ports.items()}
        answer = same_answers(targets)
        rows = measure(children, targets, args, use_wrk)
    return report(rows, job_seconds, job, counts, answer, args=args, started_at=started_at)


def report(
    rows: list[Row],
    job_seconds: list[float],
    job: dict[str, int],
    counts: dict[str, int],
    answer: dict[str, Any],
    *,
    args: argparse.Namespace,
    started_at: datetime,
) -> int:
    cached, uncached = rows
    ratios = {
        "sequential p50": uncached.sequential.p50_ms / cached.sequential.p50_ms,
        "sequential p99": uncached.sequential.p99_ms / cached.sequential.p99_ms,
        "peak req/s": cached.peak.rps / uncached.peak.rps,
        "peak p99": uncached.peak.p99_ms / cached.peak.p99_ms,
    }
    print(f"\nleaderboard(period: D30, sortBy: SHARPE, first: 20), {counts['leaders']} leaders")
    header = ["target", "seq p50 ms", "seq p99 ms", "seq req/s", "peak req/s", "peak p50 ms",
              "peak p99 ms", "errors"]  # fmt: skip
    print_rows(
        header,
        [
            [
                r.target,
                f"{r.sequential.p50_ms:.2f}",
                f"{r.sequential.p99_ms:.2f}",
                f"{r.sequential.rps:.0f}",
                f"{r.peak.rps:.0f}",
                f"{r.peak.p50_ms:.2f}",
                f"{r.peak.p99_ms:.2f}",
                str(r.sequential.errors + r.peak.errors),
            ]
            for r in rows
        ],
    )
    print("\nuncached / cached: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    print(
        f"job for {counts['leaders']} leaders ({counts['equity_snapshots']} snapshots, "
        f"{counts['fills']} fills, {counts['follows']} follows): "
        f"median {statistics.median(job_seconds):.2f}s of {len(job_seconds)} runs "
        f"({', '.join(f'{s:.2f}' for s in job_seconds)}); ranked per period {job}"
    )
    path = write_results(
        "leaderboard",
        {
            "started_at": started_at.isoformat(),
            "options": vars(args),
            "machine": machine(),
            "seeded": counts,
            "job_seconds": job_seconds,
            "job": job,
            "rows": [asdict(r) for r in rows],
            "ratios": ratios,
            "first_entry": answer["data"]["leaderboard"]["edges"][0],
        },
    )
    print(f"\nJSON: {path.relative_to(ROOT)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_main(run, args)


if __name__ == "__main__":
    sys.exit(main())
