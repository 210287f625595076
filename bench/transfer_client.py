"""The GraphQL client of the transfers benchmark, run as its own process:

    python -m bench.transfer_client --port 8001 --plan plan.json --concurrency 32

The plan is ``{"warmup": [...], "measured": [...]}``, each item ``{"token", "recipient",
"currency", "amount", "key"}``. Every item is one ``transfer`` mutation with its sender's
token, over ``--concurrency`` keep-alive HTTP/1.1 connections, closed loop. Prints the
warm-up and the measured run as one JSON object. Any answer other than a ``TransferPayload`` or
``INSUFFICIENT_FUNDS`` is unexpected: a few are shown on stderr and the exit status is 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.closed_loop import WarmedRun, run_after_warmup
from bench.loadgen import HOST, build_request, read_response_body

TRANSFER = (
    "mutation($to: String!, $cur: String!, $amount: Decimal!, $key: String!) {"
    " transfer(recipient: $to, currency: $cur, amount: $amount, idempotencyKey: $key)"
    " { __typename ... on TransferPayload { balanceAfter transfer { id } }"
    " ... on Error { code message } } }"
)
GRAPHQL_PATH = "/graphql"
SAMPLES_KEPT = 5


@dataclass
class Unexpected:
    count: int = 0
    samples: list[str] = field(default_factory=list)

    def add(self, status: int, body: bytes) -> str:
        self.count += 1
        if len(self.samples) < SAMPLES_KEPT:
            self.samples.append(f"HTTP {status}: {body[:500].decode(errors='replace')}")
        return "unexpected"


def request_for(item: dict[str, str], *, port: int) -> bytes:
    variables = {
        "to": item["recipient"],
        "cur": item["currency"],
        "amount": item["amount"],
        "key": item["key"],
    }
    body = json.dumps({"query": TRANSFER, "variables": variables}, separators=(",", ":"))
    return build_request(
        path=GRAPHQL_PATH, port=port, body=body.encode(), authorization=f"Bearer {item['token']}"
    )


def outcome(status: int, body: bytes, unexpected: Unexpected) -> str:
    try:
        answer: Any = json.loads(body)
        result = answer["data"]["transfer"]
    except (ValueError, KeyError, TypeError):
        return unexpected.add(status, body)
    if status == 200 and result.get("__typename") == "TransferPayload":
        return "ok"
    if status == 200 and result.get("code") == "INSUFFICIENT_FUNDS":
        return "insufficient"
    return unexpected.add(status, body)


class Connection:
    """One keep-alive connection; ``send`` is one request and its answer."""

    def __init__(self, port: int, unexpected: Unexpected) -> None:
        self.port = port
        self.unexpected = unexpected
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)

    async def send(self, request: bytes) -> str:
        assert self.reader is not None and self.writer is not None
        self.writer.write(request)
        status, body = await read_response_body(self.reader)
        return outcome(status, body, self.unexpected)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()


async def drive(
    plan: dict[str, list[dict[str, str]]], *, port: int, concurrency: int
) -> tuple[WarmedRun, Unexpected]:
    unexpected = Unexpected()
    connections = [Connection(port, unexpected) for _ in range(concurrency)]
    warmup = [request_for(item, port=port) for item in plan["warmup"]]
    measured = [request_for(item, port=port) for item in plan["measured"]]
    try:
        for connection in connections:
            await connection.open()
        runs = await run_after_warmup(warmup, measured, [c.send for c in connections])
        return runs, unexpected
    finally:
        for connection in connections:
            await connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transfer_client")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    plan = json.loads(args.plan.read_text())
    try:
        from uvloop import run as run_loop
    except ImportError:  # uvicorn[standard] brings uvloop; plain asyncio works too
        from asyncio import run as run_loop
    runs, unexpected = run_loop(drive(plan, port=args.port, concurrency=args.concurrency))
    print(json.dumps(asdict(runs)))
    if unexpected.count:
        print(f"{unexpected.count} unexpected answers, e.g.:", file=sys.stderr)
        print("\n".join(unexpected.samples), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
