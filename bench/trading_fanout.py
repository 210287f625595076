"""``python -m bench trading-fanout``: order book fan-out over WebSockets. ``--subscribers``
graphql-transport-ws sockets (bench.ws_subscribers, split over ``--clients`` processes)
on one ``orderBook(symbol: "BTC/USDT", depth: 10)`` subscription each, while this process
publishes book deltas at ``--rate`` per second straight to the Redis channel the engine's
outbox relay uses (the outbox message format), so only the fan-out is measured: the
server's pub/sub hub, the subscription resolver, GraphQL execution and the WebSocket.
Every socket sends the same document and variables, so the server executes and encodes
each delta once (graphql_schema/gateway/shared_subscriptions.py); per socket there is the
operation id spliced in and the send. The server declines permessage-deflate as in
production (``WS_PER_MESSAGE_DEFLATE=false``); ``--server-deflate`` has it accept (a zlib
stream per socket), ``--profile PATH`` runs it under cProfile.

1. ``co_bench_trading`` (bench.trading_support); one uvicorn process (``python -m
   bench``'s settings, engines on and idle, the market maker off).
2. The subscribers connect and read their SNAPSHOT (at the market's ``book_seq``).
3. ``--warmup`` seconds of deltas, then ``--duration`` seconds measured: delta n has
   ``sequence`` book_seq + n and ``previousSequence`` book_seq + n - 1 (so the server
   passes it on), two bid and two ask levels. The publish time of each measured sequence
   (``time.monotonic`` just before PUBLISH; one clock for every process of the machine)
   goes to a file the subscribers read at the end: latency = their receipt time minus it.
4. The server's CPU seconds (utime + stime from /proc/<pid>/stat, also reported apart)
   over the measured deltas and a second of drain, divided by the deliveries the
   subscribers counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from redis.asyncio import Redis

from app.events.outbox import channel
from bench.loadgen import percentile_ms
from bench.processes import ROOT, Children, run_main
from bench.trading_support import (
    APP_FACTORY,
    SYMBOL,
    asyncpg_dsn,
    cpu_seconds,
    machine,
    server_settings,
    start_server,
    trading_database,
    verdict,
    write_results,
)

TARGET_P99_MS = 100.0
PROFILE_ENV = "CO_BENCH_PROFILE"
PROFILED_FACTORY = "bench.trading_fanout:profiled_app"
READY_TIMEOUT_SECONDS = 120.0
DRAIN_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Published:
    first_sequence: int
    warmup: int  # deltas before the measured ones
    measured: dict[int, float]  # sequence -> publish time (time.monotonic)
    seconds: float  # of the measured publishing
    window: tuple[float, float]  # of the CPU readings: the measured publishing and the drain
    server_split: tuple[float, float]  # the server's user and system CPU seconds in the window

    @property
    def rate(self) -> float:
        return len(self.measured) / self.seconds if self.seconds else 0.0


@dataclass(frozen=True, slots=True)
class Result:
    subscribers: int
    published: int
    rate: float
    deliveries: int
    expected: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    in_window: int  # deltas of any sequence received while the CPU was measured
    server_cpu_seconds: float
    server_user_seconds: float
    server_system_seconds: float  # the kernel's side of the sends (TCP over loopback)
    client_cpu_seconds: float
    seconds: float  # measured publishing and the drain
    problems: dict[str, int]
    snapshots_after_first: int
    open_at_stop: int

    @property
    def missing(self) -> int:
        return self.expected - self.deliveries

    @property
    def cpu_us_per_delivery(self) -> float:
        """Server CPU over the window / deliveries received in it (any sequence: when the
        server is behind it is still sending the warm-up's)."""
        if not self.in_window:
            return float("nan")
        return 1e6 * self.server_cpu_seconds / self.in_window


def delta_message(sequence: int, n: int) -> str:
    """An outbox event as the relay publishes it: a book delta of 2 bid and 2 ask levels."""
    bids = [[f"{89990 - (n + i) % 7}.00", f"0.{(n * 7 + i) % 90 + 10:03d}", 1 + i] for i in (0, 1)]
    asks = [[f"{90010 + (n + i) % 7}.00", f"0.{(n * 3 + i) % 90 + 10:03d}", 1 + i] for i in (0, 1)]
    payload = {
        "symbol": SYMBOL,
        "sequence": sequence,
        "previousSequence": sequence - 1,
        "bids": bids,
        "asks": asks,
    }
    return json.dumps({"id": sequence, "topic": f"book:{SYMBOL}", "payload": payload})


async def publish(
    redis_url: str,
    name: str,
    *,
    start: int,
    rate: float,
    warmup: float,
    seconds: float,
    pids: list[int],
) -> tuple[Published, list[float]]:
    """Publish on a fixed schedule; (what was published, the CPU seconds of each of
    ``pids`` over the measured part and the drain)."""
    redis = Redis.from_url(redis_url)
    measured: dict[int, float] = {}
    warm = round(warmup * rate)
    total = warm + round(seconds * rate)
    try:
        await redis.ping()
        began = time.monotonic()
        cpu_before = [0.0] * len(pids)
        split_before = (0.0, 0.0)
        measured_from = began
        for n in range(total):
            if n == warm:
                cpu_before, measured_from = [cpu_seconds(p) for p in pids], time.monotonic()
                split_before = cpu_split(pids[0])
            due = began + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sequence = start + 1 + n
            message = delta_message(sequence, n)
            sent = time.monotonic()
            await redis.publish(name, message)
            if n >= warm:
                measured[sequence] = sent
        elapsed = time.monotonic() - measured_from
        await asyncio.sleep(DRAIN_SECONDS)
        cpu = [cpu_seconds(p) - b for p, b in zip(pids, cpu_before, strict=True)]
        split = tuple(a - b for a, b in zip(cpu_split(pids[0]), split_before, strict=True))
        window = (measured_from, time.monotonic())
    finally:
        await redis.aclose()
    return Published(start + 1, warm, measured, elapsed, window, split), cpu  # type: ignore[arg-type]


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of one process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


async def book_sequence(database_url: str) -> int:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return int(
            await connection.fetchval("SELECT book_seq FROM markets WHERE symbol = $1", SYMBOL)
        )
    finally:
        await connection.close()


def start_clients(
    children: Children, port: int, stop_file: Path, args: argparse.Namespace
) -> list[subprocess.Popen[bytes]]:
    counts = [args.subscribers // args.clients] * args.clients
    for i in range(args.subscribers % args.clients):
        counts[i] += 1
    procs = []
    for count in counts:
        command = [
            sys.executable, "-m", "bench.ws_subscribers", "--port", str(port),
            "--count", str(count), "--depth", str(args.depth), "--stop-file", str(stop_file),
        ]  # fmt: skip
        procs.append(children.start(command, env=os.environ))
    return procs


def wait_ready(clients: list[subprocess.Popen[bytes]]) -> None:
    """Until every client printed ``ready`` (all its sockets subscribed)."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    with selectors.DefaultSelector() as selector:
        for proc in clients:
            assert proc.stdout is not None
            selector.register(proc.stdout, selectors.EVENT_READ, proc)
        waiting = len(clients)
        while waiting:
            events = selector.select(timeout=max(0.0, deadline - time.monotonic()))
            if not events:
                raise RuntimeError("the subscribers did not connect in time")
            for key, _ in events:
                proc = key.data
                line = proc.stdout.readline()
                if not line.startswith(b"ready"):
                    _, stderr = proc.communicate(timeout=10)
                    raise RuntimeError(f"a subscriber process failed: {stderr.decode()[-2000:]}")
                selector.unregister(key.fileobj)
                waiting -= 1


def collect(
    clients: list[subprocess.Popen[bytes]], stop_file: Path, published: Published
) -> list[dict[str, Any]]:
    """Tell the clients to stop (the publish times, renamed into place) and read them."""
    partial = stop_file.with_suffix(".partial")
    times = {str(k): v for k, v in published.measured.items()}
    partial.write_text(json.dumps({"published": times, "window": published.window}))
    partial.rename(stop_file)
    reports = []
    for proc in clients:
        stdout, stderr = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"a subscriber process failed: {stderr.decode()[-2000:]}")
        reports.append(json.loads(stdout.decode().strip().splitlines()[-1]))
    return reports


def summarise(published: Published, cpu: list[float], reports: list[dict[str, Any]]) -> Result:
    """Percentiles over every expected delivery: one that never came counts as slower
    than all the others (so more than 1 % missing makes the p99 infinite)."""
    latencies = sorted(x / 1000 for r in reports for x in r["latencies_ms"])
    problems: dict[str, int] = {}
    for r in reports:
        for name, count in r["problems"].items():
            problems[name] = problems.get(name, 0) + count
    sockets = sum(r["sockets"] for r in reports)
    expected = sockets * len(published.measured)
    every = latencies + [float("inf")] * (expected - len(latencies))
    return Result(
        subscribers=sockets,
        published=len(published.measured),
        rate=published.rate,
        deliveries=len(latencies),
        expected=expected,
        p50_ms=percentile_ms(every, 0.50),
        p99_ms=percentile_ms(every, 0.99),
        max_ms=every[-1] * 1000 if every else float("nan"),
        in_window=sum(r["received_in_window"] for r in reports),
        server_cpu_seconds=cpu[0],
        server_user_seconds=published.server_split[0],
        server_system_seconds=published.server_split[1],
        client_cpu_seconds=sum(cpu[1:]),
        seconds=published.seconds + DRAIN_SECONDS,
        problems=problems,
        snapshots_after_first=sum(r["snapshots_after_first"] for r in reports),
        open_at_stop=sum(r["open_at_stop"] for r in reports),
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench trading-fanout", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--subscribers", type=int, default=1000, help="WebSockets (1000)")
    parser.add_argument("--clients", type=int, default=2, help="subscriber processes (2)")
    parser.add_argument("--rate", type=float, default=20, help="book deltas per second (20)")
    parser.add_argument("--duration", type=float, default=15, help="measured seconds (15)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of deltas first (2)")
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep co_bench_trading")
    parser.add_argument(
        "--server-deflate",
        action="store_true",
        help="the server accepts permessage-deflate (WS_PER_MESSAGE_DEFLATE=true; off by"
        " default, as in production: the compression is per socket, and most of the"
        " server's CPU per delivery once the execution is shared)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="PATH",
        help="run the server under cProfile and write its stats to PATH (slows it down)",
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    started_at = datetime.now(UTC)
    with (
        trading_database(keep=args.keep) as (database_url, redis_url),
        Children() as children,
        contextlib.ExitStack() as stack,
    ):
        overrides = server_settings(database_url, redis_url)
        # the production setting, which uvicorn's CLI reads from its own variable
        overrides["UVICORN_WS_PER_MESSAGE_DEFLATE"] = "true" if args.server_deflate else "false"
        factory = APP_FACTORY
        if args.profile is not None:
            overrides[PROFILE_ENV] = str(args.profile.resolve())
            factory = PROFILED_FACTORY
        proc, port = start_server(
            children, overrides, stack, name="trading-fanout", factory=factory
        )
        start = asyncio.run(book_sequence(database_url))
        stop_file = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "published.json"
        connecting = time.monotonic()
        clients = start_clients(children, port, stop_file, args)
        wait_ready(clients)
        connect_seconds = time.monotonic() - connecting
        print(f"  {args.subscribers} subscribers in {connect_seconds:.1f} s", file=sys.stderr)
        name = channel(overrides["REDIS_PREFIX"], f"book:{SYMBOL}", None)
        published, cpu = asyncio.run(
            publish(
                redis_url, name, start=start, rate=args.rate, warmup=args.warmup,
                seconds=args.duration, pids=[proc.pid, *(c.pid for c in clients)],
            )
        )  # fmt: skip
        result = summarise(published, cpu, collect(clients, stop_file, published))
    return report(result, args=args, started_at=started_at, connect_seconds=connect_seconds)


def report(
    r: Result, *, args: argparse.Namespace, started_at: datetime, connect_seconds: float
) -> int:
    print(
        f"\norderBook fan-out: {r.subscribers} WebSockets, {r.rate:.1f} deltas/s"
        f" for {args.duration:g} s"
    )
    print(
        f"  deliveries {r.deliveries:,} of {r.expected:,} expected "
        f"({r.deliveries / r.expected:.1%})"
        if r.expected
        else "  no deliveries expected"
    )
    print(
        f"  publish -> receipt: p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms,"
        f" max {r.max_ms:.1f} ms (inf: not received {DRAIN_SECONDS:g} s after the last publish)"
    )
    print(
        f"  server CPU: {r.server_cpu_seconds:.2f} s in {r.seconds:.1f} s"
        f" ({r.server_cpu_seconds / r.seconds:.0%} of a core), {r.in_window:,} deltas received"
        f" in that time = {r.cpu_us_per_delivery:.0f} us per delivery"
        f" (user {r.server_user_seconds:.2f} s, system {r.server_system_seconds:.2f} s);"
        f" subscriber processes: {r.client_cpu_seconds:.2f} s"
    )
    met = r.p99_ms <= TARGET_P99_MS
    print("\nTargets (reported, not asserted):")
    print(f"  {verdict(met):<7}  p99 publish -> receipt <= {TARGET_P99_MS:g} ms   measured "
          f"{r.p99_ms:.1f} ms, {r.missing} missing")  # fmt: skip
    problems = []
    if r.problems:
        problems.append(f"subscriber problems: {r.problems}")
    if r.snapshots_after_first:
        problems.append(f"{r.snapshots_after_first} snapshots after the first (gaps)")
    if r.open_at_stop < r.subscribers:
        problems.append(f"{r.subscribers - r.open_at_stop} sockets had closed before the end")
    if r.rate < 0.95 * args.rate:
        problems.append(f"published {r.rate:.1f} deltas/s of {args.rate:g} asked")
    for problem in problems:
        print(f"WARNING: {problem}")
    deflate = "permessage-deflate" if args.server_deflate else "deflate offered, declined"
    method = (
        f"{args.clients} subscriber processes (websockets client, {deflate}), "
        f"deltas PUBLISHed to Redis by the bench on a fixed schedule after {args.warmup:g} s "
        f"of warm-up; {os.cpu_count()} CPUs shared by the subscribers, the server, Redis and "
        "PostgreSQL"
    )
    print(f"\nMethod: {method}")
    path = write_results(
        "trading-fanout",
        {
            "started_at": started_at.isoformat(),
            "options": vars(args),
            "method": method,
            "machine": machine(),
            "connect_seconds": connect_seconds,
            "result": {**asdict(r), "cpu_us_per_delivery": r.cpu_us_per_delivery},
            "target_met": met,
            "problems": problems,
        },
    )
    print(f"JSON: {path.relative_to(ROOT)}")
    return 0


def profiled_app() -> Any:
    """The server's app factory under ``--profile``: cProfile from start-up to shut-down
    (the event loop is one thread), the stats written to $CO_BENCH_PROFILE once the
    lifespan ended (uvicorn re-raises SIGTERM afterwards: no atexit)."""
    import cProfile

    from app.asgi import create_app_from_env

    profile = cProfile.Profile()
    profile.enable()
    app = create_app_from_env()

    async def profiled(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def send_and_dump(message: Any) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                profile.disable()
                profile.dump_stats(os.environ[PROFILE_ENV])
            await send(message)

        await app(scope, receive, send_and_dump)

    return profiled


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_main(run, args)


if __name__ == "__main__":
    sys.exit(main())
