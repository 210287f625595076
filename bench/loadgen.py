"""A small HTTP/1.1 keep-alive load generator, run as its own process:

    python -m bench.loadgen --port 8001 --path /graphql --body '{...}' \
        --connections 32 --duration 10 [--rate 1500] [--authorization 'Bearer ...']

Without ``--rate`` it is closed loop (each connection sends as soon as the previous answer
arrived), like wrk. With ``--rate`` it is open loop: request i is due at start + i / rate;
when every connection is busy past a due time, the wait counts in the latency (no
coordinated omission); when a connection is idle and early, it sleeps and the clock starts
at the actual send. Prints one JSON object: the measured counts and latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field

HOST = "127.0.0.1"


@dataclass
class Run:
    request: bytes
    connections: int
    duration: float
    rate: float | None
    started: float = 0.0
    issued: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    finished: float = 0.0

    def next_send_time(self) -> float | None:
        """When the next request is due, or None once the run is over."""
        now = time.perf_counter()
        if self.rate is None:
            due = now
        else:
            due = self.started + self.issued / self.rate
        if due >= self.started + self.duration:
            return None
        self.issued += 1
        return due


def build_request(*, path: str, port: int, body: bytes, authorization: str | None) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {HOST}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    """The status code; the body is read and dropped (uvicorn always sends Content-Length)."""
    status, _ = await read_response_body(reader)
    return status


async def read_response_body(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The status code and the body (uvicorn always sends Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    marker = head.lower().find(b"\r\ncontent-length:")
    if marker < 0:
        raise ValueError("response without Content-Length")
    end = head.find(b"\r\n", marker + 2)
    return status, await reader.readexactly(int(head[marker + 17 : end]))


async def connection_loop(run: Run, port: int) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        while (due := run.next_send_time()) is not None:
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
                due = time.perf_counter()
            try:
                writer.write(run.request)
                status = await read_response(reader)
            except (OSError, ValueError, asyncio.IncompleteReadError):
                run.errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(HOST, port)
                continue
            run.latencies.append(time.perf_counter() - due)
            if status != 200:
                run.errors += 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def measure(run: Run, port: int) -> None:
    run.started = time.perf_counter()
    await asyncio.gather(*(connection_loop(run, port) for _ in range(run.connections)))
    run.finished = time.perf_counter()


def percentile_ms(sorted_seconds: list[float], fraction: float) -> float:
    if not sorted_seconds:
        return float("nan")
    index = min(len(sorted_seconds) - 1, int(fraction * len(sorted_seconds)))
    return sorted_seconds[index] * 1000


def summary(run: Run) -> dict[str, float | int]:
    elapsed = run.finished - run.started
    latencies = sorted(run.latencies)
    return {
        "requests": len(latencies),
        "errors": run.errors,
        "seconds": round(elapsed, 3),
        "rps": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": percentile_ms(latencies, 0.50),
        "p99_ms": percentile_ms(latencies, 0.99),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--body", required=True)
    parser.add_argument("--authorization")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rate", type=float, help="requests/s (open loop); omit for closed loop")
    args = parser.parse_args(argv)
    request = build_request(
        path=args.path, port=args.port, body=args.body.encode(), authorization=args.authorization
    )
    run = Run(request=request, connections=args.connections, duration=args.duration, rate=args.rate)
    try:
        from uvloop import run as run_loop
    except ImportError:  # uvicorn[standard] brings uvloop; plain asyncio works too
        from asyncio import run as run_loop
    run_loop(measure(run, args.port))
    print(json.dumps(summary(run)))


if __name__ == "__main__":
    main()
