"""``python -m bench``: GraphQL against plain Starlette, same uvicorn settings, one table.

1. PostgreSQL and Redis: DATABASE_URL / REDIS_URL, or embedded servers under .data/bench.
2. Migrations, a bench user, an access token (production settings, fresh random secrets).
3. Two uvicorn processes on 127.0.0.1: the real app and the plain baseline (bench/plain.py).
4. Per scenario and target: a warm-up, peak throughput (wrk, or bench.loadgen without wrk,
   closed loop), then an open-loop run at half that peak for the p99/p50 check.
5. The table on stdout; the numbers as JSON in bench/results/.

``python -m bench <name> [options]`` runs one of the other benchmarks instead (SUBCOMMANDS:
``trading`` runs the three trading ones in turn); ``python -m bench <name> --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import importlib
import os
import platform
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from app.__main__ import services
from app.accounts.accounts import register
from app.accounts.sessions import login
from app.core.settings import Settings
from app.runtime import build_runtime
from bench.load import LoadResult, Target, run_loadgen, run_wrk, wrk_available
from bench.processes import (
    ROOT,
    Children,
    free_port,
    post_json,
    run_main,
    uvicorn_command,
    wait_until_serving,
)
from bench.report import RESULTS_DIR, Measurement, print_report, write_json
from bench.scenarios import GRAPHQL_PATH, SCENARIOS, Scenario
from db.migrate import upgrade

DATA_DIR = ROOT / ".data" / "bench"
BENCH_EMAIL = "bench@bench.example"
BENCH_PASSWORD = "bench-Quartz-Lantern-7319"
SERVERS = {"graphql": "app.asgi:create_app_from_env", "plain": "bench.plain:create_app"}
SUBCOMMANDS = {
    "trading-place": "bench.trading_place",  # placeOrder peak and p99 at half load
    "risk-place": "bench.risk_place",  # placeOrder with every risk check on vs off
    "trading-fanout": "bench.trading_fanout",  # orderBook to 1,000 WebSockets
    "trading-portfolio": "bench.trading_portfolio",  # portfolio vs hand-written asyncpg
    "leaderboard": "bench.leaderboard",  # cached vs uncached, and the job, 10,000 leaders
    "copy": "bench.copy_latency",  # leader fill -> all copies accepted, 100 / 1,000 followers
    "bots": "bench.bots",  # 10,000 bots: idle CPU, 1,000 woken by a price move; webhook p99
    "accounts": "bench.account_enumeration",  # reset / register: known vs unknown address
    "backtest": "bench.backtest_peer",  # a year of minute candles vs backtesting.py; sweep
    "exchange-orders": "bench.exchange_orders",  # platform latency added; reconcile 10,000
    "exchange-streams": "bench.exchange_streams",  # RSS/CPU per account: order streams vs polls
    "stop-streams": "bench.stop_streams",  # crossing trade -> stop's child: streamed vs polled
}


@contextlib.contextmanager
def database_and_redis() -> Iterator[tuple[str, str]]:
    """``app.__main__.services``, with embedded servers under .data/bench."""
    with services(Settings(), data_dir=DATA_DIR) as urls:
        yield urls


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (10)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (32)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds per target (2)")
    parser.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="peak-load generator: wrk when on PATH (auto), or bench.loadgen",
    )
    return parser.parse_args(argv)


def bench_settings(
    database_url: str, redis_url: str, *, data_dir: Path = DATA_DIR
) -> dict[str, str]:
    """Production settings (fresh random secrets) for both servers and the bench token.
    The Stripe secrets are well-formed but fake: no benchmark calls Stripe."""
    return {
        "ENV": "production",
        "JWT_SECRET": secrets.token_urlsafe(32),
        "SECRET_KEY": secrets.token_urlsafe(32),
        "STRIPE_API_KEY": f"sk_test_bench{secrets.token_hex(16)}",
        "STRIPE_WEBHOOK_SECRET": f"whsec_bench{secrets.token_hex(16)}",
        "EXCHANGE_MASTER_KEYS": "bench:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SEED_DEMO_DATA": "false",
        "SMTP_URL": "smtp://127.0.0.1:9",  # required in production; no benchmark sends mail
        "LOG_LEVEL": "WARNING",
        "ACCESS_TOKEN_TTL_SECONDS": "3600",
        "DATA_DIR": str(data_dir),
        # one client sends everything: budgets out of the way (each request still draws)
        "RATE_LIMIT_ANONYMOUS": "1000000000",
        "RATE_LIMIT_AUTHENTICATED": "1000000000",
    }


async def bench_access_token(settings: Settings) -> str:
    rt = build_runtime(
        settings, database_url=settings.database_url or "", redis_url=settings.redis_url or ""
    )
    try:
        # no error when the account exists (no enumeration): the same answer either way
        await register(rt=rt, email=BENCH_EMAIL, password=BENCH_PASSWORD, display_name="Bench")
        signed_in = await login(rt=rt, email=BENCH_EMAIL, password=BENCH_PASSWORD, totp_code=None)
    finally:
        await rt.aclose()
    return signed_in.access_token


def same_answer(graphql: Any, plain: Any) -> bool:
    """Equal JSON, except that two clocks read a moment apart may differ slightly."""
    if graphql == plain:
        return True
    times = [answer.get("data", {}).get("serverTime") for answer in (graphql, plain)]
    if None in times:
        return False
    drift = datetime.fromisoformat(times[0]) - datetime.fromisoformat(times[1])
    return abs(drift) < timedelta(seconds=5)


def targets_for(scenario: Scenario, ports: dict[str, int], token: str) -> dict[str, Target]:
    authorization = f"Bearer {token}" if scenario.authenticated else None
    paths = {"plain": scenario.plain_path, "graphql": GRAPHQL_PATH}
    return {name: Target(ports[name], paths[name], scenario.body, authorization) for name in paths}


def check_same_answers(targets: dict[str, Target]) -> None:
    answers = {}
    for name, t in targets.items():
        status, answers[name] = post_json(t.port, t.path, t.body, authorization=t.authorization)
        if status != 200 or "errors" in answers[name]:
            raise RuntimeError(f"{name} {t.path} answered {status}: {answers[name]}")
    if not same_answer(answers["graphql"], answers["plain"]):
        raise RuntimeError(f"the two servers disagree: {answers}")


def measure(
    children: Children, target: Target, args: argparse.Namespace, *, use_wrk: bool
) -> tuple[LoadResult, LoadResult]:
    closed_loop = partial(
        run_wrk if use_wrk else run_loadgen, children, target, connections=args.connections
    )
    if args.warmup > 0:
        closed_loop(seconds=args.warmup)
    peak = closed_loop(seconds=args.duration)
    half = run_loadgen(
        children, target, connections=args.connections, seconds=args.duration, rate=peak.rps / 2
    )
    return peak, half


def start_servers(
    children: Children, env: dict[str, str], logs: contextlib.ExitStack
) -> dict[str, int]:
    ports = {name: free_port() for name in SERVERS}
    (RESULTS_DIR / "logs").mkdir(parents=True, exist_ok=True)
    procs = {}
    for name, factory in SERVERS.items():
        log = logs.enter_context((RESULTS_DIR / "logs" / f"{name}.log").open("wb"))
        command = uvicorn_command(factory, port=ports[name])
        procs[name] = children.start(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    for name, proc in procs.items():
        wait_until_serving(proc, ports[name])
    return ports


def run(args: argparse.Namespace) -> int:
    use_wrk = args.loadgen == "wrk" or (args.loadgen == "auto" and wrk_available())
    started_at = datetime.now(UTC)
    rows: list[Measurement] = []
    with (
        database_and_redis() as (database_url, redis_url),
        Children() as children,
        contextlib.ExitStack() as logs,
    ):
        overrides = bench_settings(database_url, redis_url)
        upgrade(database_url)
        settings = Settings(**{name.lower(): value for name, value in overrides.items()})
        token = asyncio.run(bench_access_token(settings))
        ports = start_servers(children, {**os.environ, **overrides}, logs)
        for scenario in SCENARIOS:
            targets = targets_for(scenario, ports, token)
            check_same_answers(targets)
            for name, target in targets.items():
                peak, half = measure(children, target, args, use_wrk=use_wrk)
                rows.append(Measurement(scenario.name, name, peak, half))
                print(f"  {scenario.name} {name}: {peak.rps:.0f} req/s peak", file=sys.stderr)
        report(rows, started_at=started_at, use_wrk=use_wrk, args=args)  # before the teardown
    return 0


def method_description(use_wrk: bool, args: argparse.Namespace) -> dict[str, str]:
    peak = "wrk -t1" if use_wrk else "bench.loadgen"
    return {
        "peak": f"{peak}, closed loop, {args.connections} connections, {args.duration:g}s "
        f"after {args.warmup:g}s warm-up",
        "half": f"bench.loadgen, open loop at 50% of that target's peak req/s, "
        f"{args.connections} connections, {args.duration:g}s; latency counted from the "
        "scheduled send time when the client is behind (no coordinated omission)",
        "machine": f"{os.cpu_count()} CPUs shared by the load generator, the server, "
        "PostgreSQL and Redis, all on 127.0.0.1",
    }


def report(
    rows: list[Measurement], *, started_at: datetime, use_wrk: bool, args: argparse.Namespace
) -> None:
    method = method_description(use_wrk, args)
    print_report(rows, method=method)
    meta = {
        "started_at": started_at.isoformat(),
        "method": method,
        "options": vars(args),
        "uvicorn": uvicorn_command("<factory>", port=0)[3:],
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
    }
    path = write_json(f"bench-{started_at:%Y%m%d-%H%M%S}", rows=rows, meta=meta)
    print(f"\nJSON: {path.relative_to(ROOT)}")


def run_subcommand(name: str, argv: list[str]) -> int:
    """One benchmark of SUBCOMMANDS (imported only then), or ``trading``: the three
    trading ones in turn with their defaults (``argv`` is for one benchmark only)."""
    if name == "trading":
        if argv:
            raise SystemExit("python -m bench trading takes no options (run one by its name)")
        return max(run_subcommand(one, []) for one in SUBCOMMANDS if one.startswith("trading-"))
    module = importlib.import_module(SUBCOMMANDS[name])
    return int(module.main(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and (argv[0] in SUBCOMMANDS or argv[0] == "trading"):
        return run_subcommand(argv[0], argv[1:])
    args = parse_args(argv)
    return run_main(run, args)


if __name__ == "__main__":
    sys.exit(main())
