"""``python -m bench.transfers``: transfers per second through a raw asyncpg transaction,
the service function and the GraphQL mutation, in one run, with the ratios.

1. PostgreSQL and Redis: DATABASE_URL / REDIS_URL, or embedded servers under
   .data/bench-transfers with a fresh database for the run (dropped at the end).
2. Migrations; ``--users`` verified users, funded through the ledger, a token each; one
   random plan of ``--transfers`` transfers (after a ``--warmup``) shared by the scenarios.
3. raw asyncpg: BEGIN, guarded debit, credit, COMMIT on a scratch table (the floor).
4. service: ``app.wallets.transfers.transfer`` called in this process.
5. graphql: the app under uvicorn, the ``transfer`` mutation sent by bench.transfer_client
   from its own process, each request with its sender's token and its own key.
   Every scenario: ``--concurrency`` workers, closed loop, the same DB pool size.
6. After each: the ledger invariants, the users' total per currency, the transfers rows.
7. The table on stdout; the numbers as JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import IO, Any, TypeVar

import asyncpg
import uvloop

from app.__main__ import services
from app.core.errors import InsufficientFunds
from app.core.settings import Settings
from app.embedded import ensure_database, with_database
from app.runtime import Runtime, build_runtime
from app.wallets import transfers
from bench.__main__ import bench_settings
from bench.closed_loop import RunStats, WarmedRun, run_after_warmup
from bench.processes import (
    ROOT,
    Children,
    free_port,
    run_main,
    stop,
    uvicorn_command,
    wait_until_serving,
)
from bench.report import RESULTS_DIR
from bench.transfer_plan import Order, Party, make_plan
from bench.transfer_raw import asyncpg_dsn, run_raw
from bench.transfer_report import GRAPHQL, RAW, SERVICE, ScenarioResult, print_report, write_json
from bench.transfer_setup import LedgerCheck, check_ledger, create_parties
from db.migrate import upgrade

T = TypeVar("T")
DATA_DIR = ROOT / ".data" / "bench-transfers"
FUNDING = Decimal(10_000)  # per user: amounts are 0.01 .. 50, so refusals stay rare
PLAN_SEED, WARMUP_SEED = 7, 8
PROBLEMS_KEPT = 5


@dataclass(frozen=True, slots=True)
class Bench:
    args: argparse.Namespace
    settings: Settings
    env: dict[str, str]  # the server's environment
    parties: list[Party]

    @property
    def user_ids(self) -> list[int]:
        return [p.user_id for p in self.parties]

    def plan(self, scenario: str) -> tuple[list[Order], list[Order]]:
        """(warm-up, measured); the same transfers for every scenario, keys of its own."""
        prefix = scenario.replace(" ", "-")
        make = partial(make_plan, self.parties, currency=self.args.currency)
        return (
            make(count=self.args.warmup, seed=WARMUP_SEED, key_prefix=f"{prefix}-warm"),
            make(count=self.args.transfers, seed=PLAN_SEED, key_prefix=prefix),
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.transfers", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--transfers", type=int, default=5000, help="measured, per scenario")
    parser.add_argument("--warmup", type=int, default=300, help="transfers before measuring")
    parser.add_argument("--concurrency", type=int, default=32, help="workers and DB pool size")
    parser.add_argument("--users", type=int, default=100, help="bench users (>= 2)")
    parser.add_argument("--currency", default="USDT")
    args = parser.parse_args(argv)
    if args.users < 2 or args.concurrency < 1 or args.transfers < 1 or args.warmup < 0:
        parser.error("need --users >= 2, --concurrency >= 1, --transfers >= 1, --warmup >= 0")
    return args


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    return uvloop.run(coroutine)


async def using_runtime(settings: Settings, work: Callable[[Runtime], Awaitable[T]]) -> T:
    rt = build_runtime(
        settings, database_url=settings.database_url or "", redis_url=settings.redis_url or ""
    )
    try:
        return await work(rt)
    finally:
        await rt.aclose()


@contextlib.contextmanager
def database_and_redis(tag: str) -> Iterator[tuple[str, str]]:
    """The configured servers, or embedded ones under .data/bench-transfers with a fresh
    database (migrated from scratch, so always the current schema), dropped at the end."""
    configured = Settings()
    with services(configured, data_dir=DATA_DIR) as (database_url, redis_url):
        if configured.database_url:
            yield database_url, redis_url
            return
        name = f"bench_transfers_{tag}"
        run_async(ensure_database(database_url, name))
        try:
            yield with_database(database_url, name), redis_url
        finally:
            run_async(_drop_database(database_url, name))


async def _drop_database(admin_url: str, name: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def postgres_facts(database_url: str) -> dict[str, str]:
    """What the figures depend on: the server version and its durability settings."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return {
            name: await connection.fetchval(f"SHOW {name}")
            for name in ("server_version", "fsync", "synchronous_commit", "max_connections")
        }
    finally:
        await connection.close()


def prepare(args: argparse.Namespace, database_url: str, redis_url: str, tag: str) -> Bench:
    overrides = {
        **bench_settings(database_url, redis_url, data_dir=DATA_DIR),
        "DB_POOL_SIZE": str(args.concurrency),
    }
    upgrade(database_url)
    settings = Settings(**{name.lower(): value for name, value in overrides.items()})
    create = partial(
        create_parties, count=args.users, tag=tag, currency=args.currency, funding=FUNDING
    )
    parties = run_async(using_runtime(settings, create))
    return Bench(args, settings, {**os.environ, **overrides}, parties)


def ledger_check(bench: Bench) -> LedgerCheck:
    return run_async(using_runtime(bench.settings, partial(check_ledger, user_ids=bench.user_ids)))


def checked(bench: Bench, scenario: str, measure: Callable[[], WarmedRun]) -> ScenarioResult:
    """Run one app scenario between two ledger checks."""
    before = ledger_check(bench)
    runs = measure()
    after = ledger_check(bench)
    succeeded = runs.warmup.outcomes.get("ok", 0) + runs.measured.outcomes.get("ok", 0)
    return ScenarioResult(
        scenario=scenario,
        runs=runs,
        invariant_violations=len(after.problems),
        totals_unchanged=before.user_totals == after.user_totals,
        recorded_as_done=after.transfers_sent - before.transfers_sent == succeeded,
        problems=after.problems[:PROBLEMS_KEPT],
    )


def measure_raw(bench: Bench) -> ScenarioResult:
    warmup, orders = bench.plan(RAW)
    runs, raw = run_async(
        run_raw(
            bench.settings.database_url or "",
            bench.parties,
            warmup=warmup,
            orders=orders,
            concurrency=bench.args.concurrency,
            opening_balance=FUNDING,
        )
    )
    ledger = ledger_check(bench)  # untouched by this scenario; checked all the same
    negative = (
        [f"{raw.negative_rows} negative rows in the scratch table"] if raw.negative_rows else []
    )
    problems = ledger.problems + negative
    return ScenarioResult(
        scenario=RAW,
        runs=runs,
        invariant_violations=len(problems),
        totals_unchanged=raw.total_before == raw.total_after,
        recorded_as_done=True,
        problems=problems[:PROBLEMS_KEPT],
    )


async def _service_transfer(rt: Runtime, order: Order) -> str:
    try:
        await transfers.transfer(
            rt=rt,
            sender_id=order.sender.user_id,
            recipient=order.recipient.email,
            currency=order.currency,
            amount=order.amount,
            memo=None,
            idempotency_key=order.key,
        )
    except InsufficientFunds:
        return "insufficient"
    return "ok"


async def _service_runs(
    rt: Runtime, *, warmup: Sequence[Order], orders: Sequence[Order], concurrency: int
) -> WarmedRun:
    return await run_after_warmup(warmup, orders, [partial(_service_transfer, rt)] * concurrency)


def measure_service(bench: Bench) -> ScenarioResult:
    warmup, orders = bench.plan(SERVICE)
    work = partial(_service_runs, warmup=warmup, orders=orders, concurrency=bench.args.concurrency)
    return checked(bench, SERVICE, lambda: run_async(using_runtime(bench.settings, work)))


def client_plan(
    warmup: Sequence[Order], orders: Sequence[Order]
) -> dict[str, list[dict[str, str]]]:
    def item(o: Order) -> dict[str, str]:
        return {
            "token": o.sender.token,
            "recipient": o.recipient.email,
            "currency": o.currency,
            "amount": str(o.amount),
            "key": o.key,
        }

    return {"warmup": [item(o) for o in warmup], "measured": [item(o) for o in orders]}


def run_client(
    children: Children, *, port: int, plan: dict[str, list[dict[str, str]]], concurrency: int
) -> WarmedRun:
    """bench.transfer_client in its own process; it exits 1 on any unexpected answer."""
    count = len(plan["warmup"]) + len(plan["measured"])
    with tempfile.TemporaryDirectory(prefix="bench-transfers-") as folder:
        path = Path(folder) / "plan.json"
        path.write_text(json.dumps(plan))
        command = [
            sys.executable, "-m", "bench.transfer_client", "--port", str(port),
            "--plan", str(path), "--concurrency", str(concurrency),
        ]  # fmt: skip
        output = json.loads(children.run(command, env=os.environ, timeout=120 + count / 20))
    return WarmedRun(RunStats(**output["warmup"]), RunStats(**output["measured"]))


def measure_graphql(bench: Bench, children: Children, log: IO[Any]) -> ScenarioResult:
    warmup, orders = bench.plan(GRAPHQL)
    port = free_port()
    command = uvicorn_command("app.asgi:create_app_from_env", port=port)
    server = children.start(command, env=bench.env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_serving(server, port)
        plan = client_plan(warmup, orders)
        drive = partial(
            run_client, children, port=port, plan=plan, concurrency=bench.args.concurrency
        )
        return checked(bench, GRAPHQL, drive)
    finally:
        stop(server)


def run(args: argparse.Namespace) -> int:
    started_at = datetime.now(UTC)
    tag = f"{started_at:%Y%m%d%H%M%S}{secrets.token_hex(2)}"
    (RESULTS_DIR / "logs").mkdir(parents=True, exist_ok=True)
    with (
        database_and_redis(tag) as (database_url, redis_url),
        Children() as children,
        (RESULTS_DIR / "logs" / "transfers-graphql.log").open("wb") as log,
    ):
        bench = prepare(args, database_url, redis_url, tag)
        postgres = run_async(postgres_facts(database_url))
        rows = []
        for name, measure in (
            (RAW, measure_raw),
            (SERVICE, measure_service),
            (GRAPHQL, partial(measure_graphql, children=children, log=log)),
        ):
            rows.append(measure(bench))
            print(f"  {name}: {rows[-1].stats.per_second:.0f} transfers/s", file=sys.stderr)
    report(rows, started_at=started_at, args=args, postgres=postgres)
    return 0 if all(r.sound for r in rows) else 1


def method_description(args: argparse.Namespace) -> dict[str, str]:
    return {
        "load": f"closed loop, {args.concurrency} concurrent workers (and DB connections) per "
        f"scenario, {args.transfers} measured transfers after {args.warmup} warm-up ones, "
        f"{args.users} users, {args.currency}, the same random pairs and amounts in each",
        "raw asyncpg": "asyncpg pool; BEGIN, UPDATE debit (guarded balance >= x) and UPDATE "
        "credit in id order, COMMIT; a scratch table",
        "service": "app.wallets.transfers.transfer in the bench process (uvloop)",
        "graphql": "POST /graphql `transfer` mutation, one uvicorn worker (uvloop, httptools, "
        "ENV=production), requests from bench.transfer_client in a separate process",
        "checks": "after each scenario: ledger.check_invariants, the users' total per currency, "
        "transfers rows == successes",
        "machine": f"{os.cpu_count()} CPUs shared by the client, the server, PostgreSQL, Redis;"
        " load average {:.1f} {:.1f} {:.1f} at the end".format(*os.getloadavg()),
    }


def report(
    rows: list[ScenarioResult],
    *,
    started_at: datetime,
    args: argparse.Namespace,
    postgres: dict[str, str],
) -> None:
    method = {
        **method_description(args),
        "postgres": ", ".join(f"{k}={v}" for k, v in postgres.items()),
    }
    print_report(rows, method=method)
    meta = {
        "started_at": started_at.isoformat(),
        "method": method,
        "options": vars(args),
        "postgres": postgres,
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "load_average_at_end": os.getloadavg(),
        },
    }
    path = write_json(f"transfers-{started_at:%Y%m%d-%H%M%S}", rows=rows, meta=meta)
    print(f"\nJSON: {path.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_main(run, args)


if __name__ == "__main__":
    sys.exit(main())
