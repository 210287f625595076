"""``python -m bench trading-portfolio``: the portfolio query through GraphQL against a
hand-written Starlette + asyncpg endpoint (bench/portfolio_plain.py) returning the same
JSON for the same user, side by side in one run.

1. ``co_bench_trading`` (bench.trading_support): the bench user, funded with USDT, BTC,
   ETH and SOL, and two counterparties. Two uvicorn processes with the same settings
   (``python -m bench``'s): the app (engines on) and the baseline.
2. Trades through ``placeOrder`` so the user has positions with a cost basis and an
   unrealised PnL: it buys BTC, ETH and SOL, then the counterparties trade BTC and ETH at
   other prices (the engine moves the reference prices to the last trade).
3. Both answers must be the same JSON.
4. Per target, alternating: ``sequential`` (one connection, closed loop: the latency of one
   request on an idle server), ``peak`` (closed loop, ``--connections``: wrk when on PATH,
   else bench.loadgen) and ``same load`` (open loop at half the GraphQL peak for both, so
   both latencies are taken at the same request rate).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bench.load import LoadResult, Target, run_loadgen, run_wrk, wrk_available
from bench.processes import ROOT, Children, post_json, run_main
from bench.trading_support import (
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

QUERY = (
    "{ me { portfolio { equity positions { currency quantity averageCost unrealizedPnl value }"
    " } } }"
)
BODY = json.dumps({"query": QUERY}, separators=(",", ":"))
PLAIN_FACTORY = "bench.portfolio_plain:create_app"
TARGET_RATIO = 2.5
PLACE = (
    "mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { __typename"
    " ... on OrderPayload { order { status } } ... on Error { code message } } }"
)
# (symbol, seller, buyer, quantity, price): the user (index 0) buys, then the others trade
# at other prices so that the reference prices move away from the user's cost.
TRADES = [
    ("BTC/USDT", 1, 0, "0.05", "89000"),
    ("BTC/USDT", 1, 0, "0.03", "89500"),
    ("ETH/USDT", 1, 0, "2", "2950"),
    ("SOL/USDT", 1, 0, "40", "148"),
    ("BTC/USDT", 0, 2, "0.02", "89800"),
    ("BTC/USDT", 1, 2, "0.01", "91250.5"),
    ("ETH/USDT", 1, 2, "0.5", "3040.25"),
]
FUNDING = {
    "USDT": Decimal(100_000),
    "BTC": Decimal(1),
    "ETH": Decimal(20),
    "SOL": Decimal(500),
}


@dataclass(frozen=True, slots=True)
class Row:
    target: str  # "graphql" or "plain"
    sequential: LoadResult
    peak: LoadResult
    same_load: LoadResult


def place(port: int, token: str, symbol: str, side: str, quantity: str, price: str) -> str:
    order = {"symbol": symbol, "side": side, "type": "LIMIT", "quantity": quantity, "price": price}
    body = json.dumps({"query": PLACE, "variables": {"input": order}})
    status, answer = post_json(port, "/graphql", body, authorization=f"Bearer {token}")
    if status != 200 or "errors" in answer:
        raise RuntimeError(f"placeOrder answered {status}: {answer}")
    result = answer["data"]["placeOrder"]
    if result["__typename"] != "OrderPayload":
        raise RuntimeError(f"placeOrder refused: {result}")
    return str(result["order"]["status"])


def make_positions(port: int, tokens: list[str]) -> None:
    for symbol, seller, buyer, quantity, price in TRADES:
        place(port, tokens[seller], symbol, "SELL", quantity, price)
        status = place(port, tokens[buyer], symbol, "BUY", quantity, price)
        if status != "FILLED":
            raise RuntimeError(f"a set-up trade did not fill: {symbol} {quantity} @ {price}")


def same_answers(targets: dict[str, Target]) -> dict[str, Any]:
    answers = {}
    for name, t in targets.items():
        status, answers[name] = post_json(t.port, t.path, t.body, authorization=t.authorization)
        if status != 200 or "errors" in answers[name]:
            raise RuntimeError(f"{name} answered {status}: {answers[name]}")
    if answers["graphql"] != answers["plain"]:
        raise RuntimeError(f"the two servers disagree: {answers}")
    positions = answers["graphql"]["data"]["me"]["portfolio"]["positions"]
    if len(positions) < 4 or not any(p["averageCost"] for p in positions):
        raise RuntimeError(f"the set-up made no positions: {answers['graphql']}")
    return dict(answers["graphql"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench trading-portfolio", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--duration", type=int, default=6, help="seconds per run (6)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds per target (2)")
    parser.add_argument("--connections", type=int, default=32, help="for the peak (32)")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--keep", action="store_true", help="keep co_bench_trading_<pid>")
    return parser.parse_args(argv)


def measure(
    children: Children, targets: dict[str, Target], args: argparse.Namespace, use_wrk: bool
) -> list[Row]:
    closed = run_wrk if use_wrk else run_loadgen
    seconds, connections = args.duration, args.connections
    for target in targets.values():
        closed(children, target, connections=connections, seconds=args.warmup)
    sequential = {
        name: run_loadgen(children, t, connections=1, seconds=seconds)
        for name, t in targets.items()
    }
    peak = {
        name: closed(children, t, connections=connections, seconds=seconds)
        for name, t in targets.items()
    }
    rate = peak["graphql"].rps / 2
    same_load = {
        name: run_loadgen(children, t, connections=connections, seconds=seconds, rate=rate)
        for name, t in targets.items()
    }
    return [Row(name, sequential[name], peak[name], same_load[name]) for name in targets]


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
                traders = await create_traders(rt, count=3, tag="portfolio", funding=FUNDING)
            finally:
                await rt.aclose()
            return [t.token for t in traders]

        tokens = asyncio.run(set_up())
        _, app_port = start_server(children, overrides, stack, name="trading-portfolio")
        _, plain_port = start_server(
            children, overrides, stack, name="trading-portfolio-plain", factory=PLAIN_FACTORY
        )
        make_positions(app_port, tokens)
        authorization = f"Bearer {tokens[0]}"
        targets = {
            "graphql": Target(app_port, "/graphql", BODY, authorization),
            "plain": Target(plain_port, "/portfolio", BODY, authorization),
        }
        answer = same_answers(targets)
        rows = measure(children, targets, args, use_wrk)
    return report(rows, answer, args=args, use_wrk=use_wrk, started_at=started_at)


def report(
    rows: list[Row],
    answer: dict[str, Any],
    *,
    args: argparse.Namespace,
    use_wrk: bool,
    started_at: datetime,
) -> int:
    graphql, plain = rows
    ratios = {
        "sequential p50": graphql.sequential.p50_ms / plain.sequential.p50_ms,
        "sequential p99": graphql.sequential.p99_ms / plain.sequential.p99_ms,
        "same load p50": graphql.same_load.p50_ms / plain.same_load.p50_ms,
        "same load p99": graphql.same_load.p99_ms / plain.same_load.p99_ms,
        "peak req/s": graphql.peak.rps / plain.peak.rps,
    }
    positions = len(answer["data"]["me"]["portfolio"]["positions"])
    print(f"\nportfolio ({positions} positions): GraphQL against hand-written Starlette + asyncpg")
    header = ["target", "1 conn p50 ms", "p99 ms", "| peak req/s", "p50 ms", "p99 ms",
              "| same load req/s", "p50 ms", "p99 ms"]  # fmt: skip
    print_rows(
        header,
        [
            [
                r.target,
                f"{r.sequential.p50_ms:.2f}",
                f"{r.sequential.p99_ms:.2f}",
                f"| {r.peak.rps:.0f}",
                f"{r.peak.p50_ms:.1f}",
                f"{r.peak.p99_ms:.1f}",
                f"| {r.same_load.rps:.0f}",
                f"{r.same_load.p50_ms:.2f}",
                f"{r.same_load.p99_ms:.2f}",
            ]
            for r in rows
        ],
    )
    print("\nGraphQL / plain: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    goals = [
        (f"latency (1 conn p50) <= {TARGET_RATIO:g}x plain", ratios["sequential p50"]),
        (f"latency (same load p50) <= {TARGET_RATIO:g}x plain", ratios["same load p50"]),
    ]
    print("\nTargets (reported, not asserted):")
    for goal, ratio in goals:
        print(f"  {verdict(ratio <= TARGET_RATIO):<7}  {goal:<42} measured {ratio:.2f}x")
    problems = [
        f"{r.target}: {n} failed requests"
        for r in rows
        if (n := r.sequential.errors + r.peak.errors + r.same_load.errors)
    ]
    problems += [
        f"{r.target}: the same-load run reached {r.same_load.rps:.0f} of "
        f"{r.same_load.rate:.0f} req/s asked"
        for r in rows
        if r.same_load.rate and r.same_load.rps < 0.95 * r.same_load.rate
    ]
    for problem in problems:
        print(f"WARNING: {problem}")
    peak = "wrk -t1" if use_wrk else "bench.loadgen"
    method = (
        f"sequential: bench.loadgen, 1 connection, {args.duration}s; peak: {peak}, "
        f"{args.connections} connections, {args.duration}s; same load: bench.loadgen open loop "
        f"at half the GraphQL peak for both, {args.connections} connections, {args.duration}s; "
        f"after {args.warmup}s warm-up each; {os.cpu_count()} CPUs shared by the load "
        "generator, both servers, PostgreSQL and Redis"
    )
    print(f"\nMethod: {method}")
    path = write_results(
        "trading-portfolio",
        {
            "started_at": started_at.isoformat(),
            "options": vars(args),
            "method": method,
            "machine": machine(),
            "query": QUERY,
            "answer": answer,
            "rows": [asdict(r) for r in rows],
            "ratios": ratios,
            "targets": [{"goal": g, "ratio": r, "met": r <= TARGET_RATIO} for g, r in goals],
            "problems": problems,
        },
    )
    print(f"JSON: {path.relative_to(ROOT)}")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_main(run, args)


if __name__ == "__main__":
    sys.exit(main())
