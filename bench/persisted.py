"""``python -m bench.persisted``: a hash-only persisted query (Apollo APQ) against the
same query sent in full, side by side: requests/s, latency and bytes on the wire.

Two documents, printed the way Apollo Client sends them (indented, with ``__typename``):
``MarketOverview`` (anonymous: the clock and the currencies) and ``AccountDashboard``
(signed in: profile, wallets, the last 10 transactions, the currencies).

1. PostgreSQL and Redis: DATABASE_URL / REDIS_URL, or embedded servers under .data/bench.
2. One uvicorn process with the production settings of ``python -m bench`` (1 worker,
   uvloop, httptools; rate limits raised out of the way, each request still draws).
3. Each hash is registered once (hash + query); both variants must answer the same data.
4. Per round, document and variant: a warm-up, then peak throughput, closed loop (wrk
   when on PATH, else bench.loadgen). The variants alternate, so drift on a busy
   machine hits both alike; the table shows the mean over the rounds.
5. Bytes: one request and one response of each, counted on a raw socket.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from statistics import mean

from graphql import parse, print_ast

from app.core.settings import Settings
from bench.__main__ import DATA_DIR, bench_access_token, bench_settings, database_and_redis
from bench.load import LoadResult, Target, run_loadgen, run_wrk, wrk_available
from bench.loadgen import build_request
from bench.processes import (
    HOST,
    ROOT,
    Children,
    free_port,
    run_main,
    uvicorn_command,
    wait_until_serving,
)
from bench.report import RESULTS_DIR
from db.migrate import upgrade

PATH = "/graphql"
CURRENCY = (
    "fragment CurrencyFields on Currency { __typename code name kind scale minWithdrawal"
    " withdrawalFee enabled usdPrice }"
)
DOCUMENTS = {
    "MarketOverview": (
        "query MarketOverview { serverTime currencies { ...CurrencyFields } } " + CURRENCY,
        False,
    ),
    "AccountDashboard": (
        "query AccountDashboard { me { __typename id email displayName handle emailVerified"
        " twoFactorEnabled role kycLevel createdAt wallets { __typename currency available"
        " held staked total usdValue } } transactions(first: 10) { __typename edges {"
        " __typename cursor node { __typename id kind currency amount fee balanceAfter status"
        " reference memo createdAt counterparty { __typename displayName handle } } }"
        " pageInfo { __typename hasNextPage endCursor } } currencies { ...CurrencyFields } } "
        + CURRENCY,
        True,
    ),
}
VARIANTS = ("full query", "hash only")


def printed(query: str) -> str:
    """The text as Apollo Client sends it (graphql-js ``print``: indented, one per line)."""
    return print_ast(parse(query))


def body(name: str, variant: str, *, register: bool = False) -> str:
    text = printed(DOCUMENTS[name][0])
    fields: dict[str, object] = {"operationName": name, "variables": {}}
    if variant == "full query" or register:
        fields["query"] = text
    if variant == "hash only" or register:
        digest = hashlib.sha256(text.encode()).hexdigest()
        fields["extensions"] = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
    return json.dumps(fields, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Wire:
    request_bytes: int
    response_bytes: int


@dataclass(frozen=True, slots=True)
class Row:
    document: str
    variant: str
    wire: Wire
    runs: list[LoadResult]

    @property
    def rps(self) -> float:
        return mean(r.rps for r in self.runs)

    @property
    def p50_ms(self) -> float:
        return mean(r.p50_ms for r in self.runs)

    @property
    def p99_ms(self) -> float:
        return mean(r.p99_ms for r in self.runs)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)


def exchange(port: int, payload: str, authorization: str | None) -> tuple[int, bytes, bytes]:
    """One request on a raw socket: (status, the request's bytes, the response's bytes)."""
    request = build_request(
        path=PATH, port=port, body=payload.encode(), authorization=authorization
    )
    with socket.create_connection((HOST, port), timeout=5) as conn:
        conn.sendall(request)
        response = b""
        while b"\r\n\r\n" not in response:
            response += conn.recv(65536)
        head, _, rest = response.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(rest) < length:
            rest += conn.recv(65536)
    return int(head[9:12]), request, head + b"\r\n\r\n" + rest


def answer(port: int, payload: str, authorization: str | None) -> dict[str, object]:
    status, _, response = exchange(port, payload, authorization)
    data = json.loads(response.partition(b"\r\n\r\n")[2])
    if status != 200 or "errors" in data:
        raise RuntimeError(f"{payload[:60]}... answered {status}: {data}")
    return data


def prepare(port: int, authorization: str) -> dict[tuple[str, str], Wire]:
    """Register each hash, check both variants answer the same, count their bytes."""
    wires = {}
    for name, (_, signed_in) in DOCUMENTS.items():
        auth = authorization if signed_in else None
        answer(port, body(name, "", register=True), auth)
        answers = [answer(port, body(name, v), auth)["data"] for v in VARIANTS]
        for data in answers:
            data.pop("serverTime", None)  # type: ignore[attr-defined]
        if answers[0] != answers[1]:
            raise RuntimeError(f"the variants of {name} disagree: {answers}")
        for variant in VARIANTS:
            _, request, response = exchange(port, body(name, variant), auth)
            wires[name, variant] = Wire(len(request), len(response))
    return wires


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.persisted", description=__doc__)
    parser.add_argument("--duration", type=int, default=8, help="seconds per run (8)")
    parser.add_argument("--connections", type=int, default=32, help="connections (32)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds per run (2)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per variant (3)")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    use_wrk = args.loadgen == "wrk" or (args.loadgen == "auto" and wrk_available())
    closed_loop = run_wrk if use_wrk else run_loadgen
    started_at = datetime.now(UTC)
    runs: dict[tuple[str, str], list[LoadResult]] = {
        (name, variant): [] for name in DOCUMENTS for variant in VARIANTS
    }
    with (
        database_and_redis() as (database_url, redis_url),
        Children() as children,
        contextlib.ExitStack() as logs,
    ):
        overrides = bench_settings(database_url, redis_url)
        upgrade(database_url)
        settings = Settings(**{key.lower(): value for key, value in overrides.items()})
        authorization = f"Bearer {asyncio.run(bench_access_token(settings))}"
        (RESULTS_DIR / "logs").mkdir(parents=True, exist_ok=True)
        log = logs.enter_context((RESULTS_DIR / "logs" / "persisted.log").open("wb"))
        port = free_port()
        proc = children.start(
            uvicorn_command("app.asgi:create_app_from_env", port=port),
            env={**os.environ, **overrides},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until_serving(proc, port)
        wires = prepare(port, authorization)
        for _ in range(args.rounds):
            for (name, variant), results in runs.items():
                auth = authorization if DOCUMENTS[name][1] else None
                target = Target(port, PATH, body(name, variant), auth)
                if args.warmup > 0:
                    closed_loop(children, target, connections=args.connections, seconds=args.warmup)
                result = closed_loop(
                    children, target, connections=args.connections, seconds=args.duration
                )
                results.append(result)
                print(f"  {name} {variant}: {result.rps:.0f} req/s", file=sys.stderr)
    rows = [Row(name, variant, wires[name, variant], r) for (name, variant), r in runs.items()]
    report(rows, args=args, use_wrk=use_wrk, started_at=started_at)
    return 0


def table(rows: list[Row]) -> str:
    lines = [
        f"{'document':<17} {'variant':<10} {'req/s':>7} {'vs full':>7} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'request B':>9} {'response B':>10} {'errors':>6}"
    ]
    full = {r.document: r for r in rows if r.variant == "full query"}
    for row in rows:
        base = full[row.document]
        lines.append(
            f"{row.document:<17} {row.variant:<10} {row.rps:>7.0f} {row.rps / base.rps:>6.2f}x "
            f"{row.p50_ms:>7.1f} {row.p99_ms:>7.1f} {row.wire.request_bytes:>9} "
            f"{row.wire.response_bytes:>10} {row.errors:>6}"
        )
    for name, base in full.items():
        hashed = next(r for r in rows if r.document == name and r.variant == "hash only")
        saved = base.wire.request_bytes - hashed.wire.request_bytes
        text = printed(DOCUMENTS[name][0])
        lines.append(
            f"{name}: the hash saves {saved} B of {base.wire.request_bytes} per request "
            f"({saved / base.wire.request_bytes:.0%}); the query text is {len(text)} B"
        )
    return "\n".join(lines)


def report(
    rows: list[Row], *, args: argparse.Namespace, use_wrk: bool, started_at: datetime
) -> None:
    loadgen = "wrk -t1" if use_wrk else "bench.loadgen"
    method = (
        f"{loadgen}, closed loop, {args.connections} connections, {args.rounds} x "
        f"{args.duration}s per variant (alternating) after {args.warmup}s warm-up each; "
        f"{os.cpu_count()} CPUs shared by the load generator, the server, PostgreSQL and Redis"
    )
    print(table(rows))
    print(f"\nMethod: {method}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"persisted-{started_at:%Y%m%d-%H%M%S}.json"
    document = {
        "started_at": started_at.isoformat(),
        "method": method,
        "options": vars(args),
        "documents": {name: printed(text) for name, (text, _) in DOCUMENTS.items()},
        "rows": [_row_json(r) for r in rows],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"JSON: {path.relative_to(ROOT)}")


def _row_json(row: Row) -> dict[str, object]:
    return {
        "document": row.document,
        "variant": row.variant,
        "rps": row.rps,
        "p50_ms": row.p50_ms,
        "p99_ms": row.p99_ms,
        "wire": asdict(row.wire),
        "runs": [asdict(r) for r in row.runs],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    return run_main(run, args)


if __name__ == "__main__":
    sys.exit(main())
