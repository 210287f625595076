"""Drive load from a separate process: wrk (closed loop) or bench.loadgen (closed or open loop)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.processes import HOST, Children

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk.lua"
_SOCKET_ERRORS = r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass(frozen=True, slots=True)
class Target:
    port: int
    path: str
    body: str
    authorization: str | None


@dataclass(frozen=True, slots=True)
class LoadResult:
    method: str
    connections: int
    seconds: float
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    rate: float | None = None  # the requested rate of an open-loop run


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(children: Children, target: Target, *, connections: int, seconds: float) -> LoadResult:
    """One wrk thread: the machine is small and the server is one Python process."""
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency",
        "-s", str(WRK_SCRIPT), f"http://{HOST}:{target.port}{target.path}",
    ]  # fmt: skip
    env = {
        **os.environ,
        "BENCH_BODY": target.body,
        "BENCH_AUTHORIZATION": target.authorization or "",
    }
    output = children.run(command, env=env, timeout=seconds + 30)
    return parse_wrk(output, connections=connections)


def parse_wrk(output: str, *, connections: int) -> LoadResult:
    def number(pattern: str) -> re.Match[str]:
        found = re.search(pattern, output, re.MULTILINE)
        if found is None:
            raise ValueError(f"unexpected wrk output (no {pattern!r}):\n{output}")
        return found

    def latency_ms(label: str) -> float:
        found = number(rf"^\s+{label}\s+([\d.]+)(us|ms|s|m)\s*$")
        return float(found[1]) * _UNIT_MS[found[2]]

    total = number(r"(\d+) requests in ([\d.]+)(us|ms|s|m)")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sockets = re.search(_SOCKET_ERRORS, output)
    errors = int(non_2xx[1]) if non_2xx else 0
    errors += sum(map(int, sockets.groups())) if sockets else 0
    return LoadResult(
        method="wrk",
        connections=connections,
        seconds=float(total[2]) * _UNIT_MS[total[3]] / 1000,
        requests=int(total[1]),
        errors=errors,
        rps=float(number(r"Requests/sec:\s+([\d.]+)")[1]),
        p50_ms=latency_ms("50%"),
        p99_ms=latency_ms("99%"),
    )


def run_loadgen(
    children: Children,
    target: Target,
    *,
    connections: int,
    seconds: float,
    rate: float | None = None,
) -> LoadResult:
    command = [
        sys.executable, "-m", "bench.loadgen", "--port", str(target.port), "--path", target.path,
        "--body", target.body, "--connections", str(connections), "--duration", f"{seconds:g}",
    ]  # fmt: skip
    if target.authorization:
        command += ["--authorization", target.authorization]
    if rate is not None:
        command += ["--rate", f"{rate:.1f}"]
    stats = json.loads(children.run(command, env=os.environ, timeout=seconds + 30))
    return LoadResult(
        method="python-open-loop" if rate is not None else "python-closed-loop",
        connections=connections,
        rate=rate,
        **stats,
    )
