"""``python -m bench trading-place``: ``placeOrder`` end to end through GraphQL over HTTP,
against the app under uvicorn with its matching engines running, beside the same
server's ``{ serverTime }`` in the same run.

1. ``co_bench_trading`` (bench.trading_support), ``--traders`` verified users, each
   funded with 100 BTC and 10,000,000 USDT through the ledger, a token each.
2. One uvicorn process (``python -m bench``'s settings; rate limits out of the way, the
   market maker off, the engines in the process). A SELL and a crossing BUY check that
   the engine matches (the BUY must answer FILLED).
3. Per target, ``{ serverTime }`` then ``placeOrder``: a warm-up, the peak (closed loop:
   wrk with bench/wrk_orders.lua for the orders, or bench.order_load without wrk), then
   an open-loop run at half that peak with bench.order_load / bench.loadgen (latency from
   the due time). Orders: every request another trader, BUY and SELL alternately, LIMIT
   0.001 BTC within $10 of 90,000, so about half cross and fill and the others rest.
   The database is analysed (ANALYZE) after the traders are made and after the orders'
   warm-up, as autovacuum would as the tables grow: without it (autovacuum off) the
   generic plans of the hot statements stay those of empty tables.
4. Checks: every answer an OrderPayload, how many answered NEW (the engine had not
   applied them within TRADING_WAIT_SECONDS), the orders and trades written, the engine's
   lag, the ledger invariants; the server's CPU seconds per request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from app.ledger import journal as ledger
from bench.load import LoadResult, Target, parse_wrk, run_loadgen, run_wrk, wrk_available
from bench.order_load import order_body
from bench.processes import HOST, ROOT, Children, post_json, run_main
from bench.report import RESULTS_DIR
from bench.trading_support import (
    ActivitySampler,
    CpuSnapshot,
    analyse,
    cpu_seconds,
    create_traders,
    machine,
    print_rows,
    runtime,
    server_settings,
    settings_from,
    start_server,
    trading_database,
    verdict,
    write_results,
)
from db.raw import driver

WRK_ORDERS = Path(__file__).resolve().parent / "wrk_orders.lua"
FUNDING = {"BTC": Decimal(100), "USDT": Decimal(10_000_000)}
TARGET_ORDERS_PER_SECOND = 500
TARGET_P99_MS = 50.0
SERVER_TIME = json.dumps({"query": "{ serverTime }"}, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    peak: LoadResult
    half: LoadResult
    peak_cpu_seconds: float  # the server's, during the peak run
    outcomes: dict[str, int]  # answers of the peak and the half run, by outcome
    refused: int = 0  # answers other than an OrderPayload (both runs)
    queued: int = 0  # OrderPayloads with status NEW: not applied within the wait
    activity: tuple[tuple[str, str, float], ...] = ()  # the server's DB connections (peak)
    peak_machine: CpuSnapshot | None = None  # the machine's CPU during the peak run

    @property
    def cpu_ms_per_request(self) -> float:
        return self.per_request_ms(self.peak_cpu_seconds)

    @property
    def postgres_ms_per_request(self) -> float:
        return self.per_request_ms(self.peak_machine.postgres if self.peak_machine else 0.0)

    @property
    def machine_ms_per_request(self) -> float:
        """The machine's CPU (every process, steal left out) per request in the peak."""
        m = self.peak_machine
        return self.per_request_ms(m.busy - m.steal if m else 0.0)

    def per_request_ms(self, seconds: float) -> float:
        return 1000 * seconds / self.peak.requests if self.peak.requests else 0.0

    @property
    def cpu_share(self) -> float:
        """The server's CPU seconds per second during the peak (1.0: one core, busy)."""
        return self.peak_cpu_seconds / self.peak.seconds if self.peak.seconds else 0.0


# --- load ----------------------------------------------------------------------------------


def wrk_orders(
    children: Children, port: int, tokens_file: Path, *, connections: int, seconds: float, seed: int
) -> tuple[LoadResult, dict[str, int]]:
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency",
        "-s", str(WRK_ORDERS), f"http://{HOST}:{port}/graphql",
    ]  # fmt: skip
    env = {**os.environ, "BENCH_TOKENS_FILE": str(tokens_file), "BENCH_SEED": str(seed)}
    output = children.run(command, env=env, timeout=seconds + 30)
    result = parse_wrk(output, connections=connections)
    counts = {
        label: int(found[1]) if (found := re.search(rf"^{tag} (\d+)$", output, re.M)) else -1
        for label, tag in (("not OrderPayload", "BENCH_NOT_PLACED"), ("NEW", "BENCH_QUEUED"))
    }
    return result, counts


def order_load(
    children: Children,
    port: int,
    tokens_file: Path,
    *,
    connections: int,
    seconds: float,
    seed: int,
    rate: float | None = None,
) -> tuple[LoadResult, dict[str, int]]:
    command = [
        sys.executable, "-m", "bench.order_load", "--port", str(port),
        "--tokens-file", str(tokens_file), "--connections", str(connections),
        "--duration", f"{seconds:g}", "--seed", str(seed),
    ]  # fmt: skip
    if rate is not None:
        command += ["--rate", f"{rate:.1f}"]
    stats = json.loads(children.run(command, env=os.environ, timeout=seconds + 60))
    outcomes = stats.pop("outcomes")
    method = "python-open-loop" if rate is not None else "python-closed-loop"
    return LoadResult(method=method, connections=connections, rate=rate, **stats), outcomes


# --- checks --------------------------------------------------------------------------------


def check_engine_matches(port: int, seller: str, buyer: str) -> None:
    answers = []
    for token, side in ((seller, "SELL"), (buyer, "BUY")):
        status, answer = post_json(
            port, "/graphql", order_body(side, "90000.00").decode(), authorization=f"Bearer {token}"
        )
        answers.append(answer)
        if status != 200 or "errors" in answer:
            raise RuntimeError(f"placeOrder answered {status}: {answer}")
    placed = [a["data"]["placeOrder"] for a in answers]
    statuses = [p.get("order", {}).get("status") for p in placed]
    if statuses != ["OPEN", "FILLED"]:
        raise RuntimeError(f"the engine did not match a crossing pair: {placed}")


async def database_facts(settings: Any) -> dict[str, Any]:
    rt = runtime(settings)
    try:
        async with rt.sessions() as session:
            pg = await driver(session)
            statuses = {
                r["status"]: r["n"]
                for r in await pg.fetch("SELECT status, count(*) AS n FROM orders GROUP BY status")
            }
            market = await pg.fetchrow(
                "SELECT next_seq, applied_seq, last_price FROM markets WHERE symbol = 'BTC/USDT'"
            )
            trades = await pg.fetchval("SELECT count(DISTINCT trade_id) FROM fills")
            problems = await ledger.check_invariants(session)
    finally:
        await rt.aclose()
    return {
        "orders_by_status": statuses,
        "orders": sum(statuses.values()),
        "trades": trades,
        "commands_not_applied": market["next_seq"] - market["applied_seq"],
        "last_price": str(market["last_price"]),
        "ledger_problems": problems[:10],
    }


async def max_order_id(settings: Any) -> int:
    rt = runtime(settings)
    try:
        async with rt.sessions() as session:
            return int(
                await (await driver(session)).fetchval("SELECT coalesce(max(id), 0) FROM orders")
            )
    finally:
        await rt.aclose()


# --- run -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench trading-place", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (10)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up seconds per target (3)")
    parser.add_argument("--connections", type=int, default=32, help="connections (32)")
    parser.add_argument("--traders", type=int, default=500, help="funded traders (500)")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--keep", action="store_true", help="keep co_bench_trading_<pid>")
    parser.add_argument(
        "--engine-process",
        action="store_true",
        help="the engines in their own process (python -m app engine, the server with"
        " TRADING_ENGINE_ENABLED=false) instead of in the server; CPU is then both's",
    )
    parser.add_argument(
        "--worker-process",
        action="store_true",
        help="the background jobs (outbox relay, event consumers) in their own process"
        " (python -m app worker, the server with BACKGROUND_JOBS_ENABLED=false); CPU counted",
    )
    return parser.parse_args(argv)


def measure_server_time(
    children: Children, pids: list[int], port: int, args: argparse.Namespace, use_wrk: bool
) -> Row:
    target = Target(port, "/graphql", SERVER_TIME, None)
    closed = run_wrk if use_wrk else run_loadgen
    closed(children, target, connections=args.connections, seconds=args.warmup)
    before, machine_before = cpu_of(pids), CpuSnapshot.take()
    peak = closed(children, target, connections=args.connections, seconds=args.duration)
    cpu, on_machine = cpu_of(pids) - before, CpuSnapshot.take() - machine_before
    half = run_loadgen(
        children, target, connections=args.connections, seconds=args.duration, rate=peak.rps / 2
    )
    return Row("serverTime", peak, half, cpu, {}, peak_machine=on_machine)


def cpu_of(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def measure_orders(
    children: Children,
    pids: list[int],
    port: int,
    tokens_file: Path,
    database_url: str,
    args: argparse.Namespace,
    use_wrk: bool,
) -> Row:
    def closed(seconds: float, seed: int) -> tuple[LoadResult, dict[str, int]]:
        if use_wrk:
            return wrk_orders(
                children,
                port,
                tokens_file,
                connections=args.connections,
                seconds=seconds,
                seed=seed,
            )
        return order_load(
            children, port, tokens_file, connections=args.connections, seconds=seconds, seed=seed
        )

    closed(args.warmup, 11)
    analyse(database_url)  # the tables as the warm-up left them
    with ActivitySampler(database_url) as activity:
        before, machine_before = cpu_of(pids), CpuSnapshot.take()
        peak, peak_outcomes = closed(args.duration, 12)
        cpu, on_machine = cpu_of(pids) - before, CpuSnapshot.take() - machine_before
    half, half_outcomes = order_load(
        children,
        port,
        tokens_file,
        connections=args.connections,
        seconds=args.duration,
        seed=13,
        rate=peak.rps / 2,
    )
    outcomes = {f"peak {k}": v for k, v in peak_outcomes.items()}
    outcomes |= {f"half {k}": v for k, v in half_outcomes.items()}
    if use_wrk:
        refused, queued = peak_outcomes["not OrderPayload"], peak_outcomes["NEW"]
    else:
        refused = sum(v for k, v in peak_outcomes.items() if not k.startswith("OrderPayload:"))
        queued = peak_outcomes.get("OrderPayload:NEW", 0)
    refused += sum(v for k, v in half_outcomes.items() if not k.startswith("OrderPayload:"))
    queued += half_outcomes.get("OrderPayload:NEW", 0)
    waits = tuple(activity.mean_connections())
    return Row("placeOrder", peak, half, cpu, outcomes, refused, queued, waits, on_machine)


def run(args: argparse.Namespace) -> int:
    use_wrk = args.loadgen == "wrk" or (args.loadgen == "auto" and wrk_available())
    started_at = datetime.now(UTC)
    with (
        trading_database(keep=args.keep) as (database_url, redis_url),
        Children() as children,
        contextlib.ExitStack() as stack,
    ):
        overrides = server_settings(database_url, redis_url)
        settings = settings_from(overrides)

        async def set_up() -> list[str]:
            rt = runtime(settings)
            try:
                traders = await create_traders(rt, count=args.traders, tag="place", funding=FUNDING)
            finally:
                await rt.aclose()
            return [t.token for t in traders]

        tokens = asyncio.run(set_up())
        autovacuum = analyse(database_url)
        tokens_file = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "tokens.txt"
        tokens_file.write_text("\n".join(tokens) + "\n")
        pids = []
        for wanted, command, setting in (
            (args.engine_process, "engine", "TRADING_ENGINE_ENABLED"),
            (args.worker_process, "worker", "BACKGROUND_JOBS_ENABLED"),
        ):
            if not wanted:
                continue
            overrides[setting] = "false"
            log = stack.enter_context((RESULTS_DIR / "logs" / f"trading-{command}.log").open("wb"))
            process = children.start(
                [sys.executable, "-m", "app", command],
                env={**os.environ, **overrides},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            pids.append(process.pid)
        proc, port = start_server(children, overrides, stack, name="trading-place")
        pids.append(proc.pid)
        check_engine_matches(port, tokens[0], tokens[1])
        print(f"  {args.traders} traders funded; the engine matches", file=sys.stderr)
        rows = [measure_server_time(children, pids, port, args, use_wrk)]
        print(f"  serverTime: {rows[0].peak.rps:.0f} req/s peak", file=sys.stderr)
        first_order = asyncio.run(max_order_id(settings))
        rows.append(measure_orders(children, pids, port, tokens_file, database_url, args, use_wrk))
        print(f"  placeOrder: {rows[1].peak.rps:.0f} orders/s peak", file=sys.stderr)
        facts = asyncio.run(database_facts(settings))
        facts["orders_in_runs"] = facts["orders"] - first_order
        facts["autovacuum"] = autovacuum
    problems = report(rows, facts, args=args, use_wrk=use_wrk, started_at=started_at)
    return 1 if problems else 0


def report(
    rows: list[Row],
    facts: dict[str, Any],
    *,
    args: argparse.Namespace,
    use_wrk: bool,
    started_at: datetime,
) -> list[str]:
    base, orders = rows
    print(f"\nplaceOrder through GraphQL over HTTP, {topology(args)}, {args.traders} traders")
    header = ["request", "peak/s", "p50 ms", "p99 ms", "vs serverTime", "server CPU ms/req",
              "CPU busy", "PostgreSQL CPU ms/req",
              "| half: asked/s", "got/s", "p50 ms", "p99 ms"]  # fmt: skip
    print_rows(
        header,
        [
            [
                r.name,
                f"{r.peak.rps:.0f}",
                f"{r.peak.p50_ms:.1f}",
                f"{r.peak.p99_ms:.1f}",
                f"{r.peak.rps / base.peak.rps:.2f}x" if r is orders else "-",
                f"{r.cpu_ms_per_request:.2f}",
                f"{r.cpu_share:.0%}",
                f"{r.postgres_ms_per_request:.2f}",
                f"| {r.half.rate or 0:.0f}",
                f"{r.half.rps:.0f}",
                f"{r.half.p50_ms:.1f}",
                f"{r.half.p99_ms:.1f}",
            ]
            for r in rows
        ],
    )
    goals = [
        (f"placeOrder peak >= {TARGET_ORDERS_PER_SECOND}/s", f"{orders.peak.rps:.0f}/s",
         orders.peak.rps >= TARGET_ORDERS_PER_SECOND),
        (f"placeOrder p99 <= {TARGET_P99_MS:g} ms at half load", f"{orders.half.p99_ms:.1f} ms",
         orders.half.p99_ms <= TARGET_P99_MS),
    ]  # fmt: skip
    print(f"\nThe machine during each peak ({os.cpu_count()} CPUs; steal: CPU time the hypervisor"
          " gave to other guests while this one wanted it):")  # fmt: skip
    for r in rows:
        if r.peak_machine is not None and r.peak.seconds:
            m, seconds = r.peak_machine, r.peak.seconds
            print(
                f"  {r.name:<11} busy {m.busy / seconds:.2f} CPUs, of which steal"
                f" {m.steal / seconds:.2f}; the server {r.cpu_share:.2f},"
                f" PostgreSQL {m.postgres / seconds:.2f}, Redis {m.redis / seconds:.2f};"
                f" {r.machine_ms_per_request:.2f} ms of the machine's CPU"
                " per request, steal left out (load generator included)"
            )
    print("\nTargets (reported, not asserted):")
    for goal, measured, met in goals:
        print(f"  {verdict(met):<7}  {goal:<40} measured {measured}")
    print(f"\nAnswers: {orders.outcomes}")
    print(
        f"Database: {facts['orders_in_runs']} orders in the runs, {facts['trades']} trades in all,"
        f" by status {facts['orders_by_status']}, {facts['commands_not_applied']} commands not"
        f" applied at the end"
    )
    print("The server's PostgreSQL connections during the placeOrder peak (mean count):")
    for state, query, mean in orders.activity:
        print(f"  {mean:5.1f}  {state:<32} {query}")
    problems = []
    if facts["ledger_problems"]:
        problems.append(f"ledger invariants broken: {facts['ledger_problems']}")
    if orders.refused:
        problems.append(f"{orders.refused} placeOrder answers were not an OrderPayload")
    notes = []
    if orders.queued:
        notes.append(f"{orders.queued} orders answered NEW (the engine was late)")
    if orders.half.rate and orders.half.rps < 0.95 * orders.half.rate:
        notes.append("the half-load run fell behind its asked rate")
    for line in problems + notes:
        print(f"WARNING: {line}")
    loadgen = "wrk -t1 (bench/wrk_orders.lua)" if use_wrk else "bench.order_load"
    method = {
        "peak": f"{loadgen}, closed loop, {args.connections} connections, {args.duration}s after "
        f"{args.warmup}s warm-up; serverTime: {'wrk -t1' if use_wrk else 'bench.loadgen'}",
        "half": f"bench.order_load / bench.loadgen, open loop at half the peak, "
        f"{args.connections} connections, {args.duration}s, latency from the due time",
        "machine": f"{os.cpu_count()} CPUs shared by the load generator, {topology(args)},"
        " PostgreSQL and Redis",
        "statistics": "the database analysed after the traders are made and after the orders'"
        " warm-up; autovacuum "
        + ("on" if facts["autovacuum"] else "OFF on this server: no other ANALYZE in the runs"),
    }
    print("\nMethod:")
    for key, text in method.items():
        print(f"  {key}: {text}")
    path = write_results(
        "trading-place",
        {
            "started_at": started_at.isoformat(),
            "options": vars(args),
            "method": method,
            "machine": machine(),
            "rows": [
                {
                    **asdict(r),
                    "cpu_ms_per_request": r.cpu_ms_per_request,
                    "postgres_ms_per_request": r.postgres_ms_per_request,
                    "machine_ms_per_request": r.machine_ms_per_request,
                }
                for r in rows
            ],
            "ratio_peak_vs_server_time": orders.peak.rps / base.peak.rps,
            "targets": [{"goal": g, "measured": m, "met": met} for g, m, met in goals],
            "database": facts,
            "problems": problems,
            "notes": notes,
        },
    )
    print(f"JSON: {path.relative_to(ROOT)}")
    return problems


def topology(args: argparse.Namespace) -> str:
    own = [n for n, wanted in (("engines", args.engine_process), ("background jobs",
           args.worker_process)) if wanted]  # fmt: skip
    if not own:
        return "one server process (API, engines and background jobs)"
    return "the API in one process, " + " and ".join(f"the {n}" for n in own) + " in their own"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_main(run, args)


if __name__ == "__main__":
    sys.exit(main())
