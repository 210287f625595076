"""Order book subscribers, run as their own process by bench.trading_fanout:

    python -m bench.ws_subscribers --port 8001 --count 500 --stop-file /tmp/x/published.json

Opens ``--count`` WebSockets (graphql-transport-ws, the ``websockets`` client with its
defaults, so permessage-deflate as a browser would), one ``orderBook`` subscription each,
and reads the SNAPSHOT. Then prints ``ready <count>`` and records, for every DELTA on
every socket, its ``sequence`` and the receipt time (``time.monotonic``: CLOCK_MONOTONIC,
one clock for every process of the machine). It stops once ``--stop-file`` exists: that
file has the publish time of each measured sequence and the window of the server's CPU
reading (JSON ``{"published": {"<sequence>": t}, "window": [t0, t1]}``, written by the
publisher and renamed into place); then it prints one JSON object: the publish ->
receipt latency of each delivery of a measured sequence, the counts (of every delta
received in the window too, whatever its sequence), and what went wrong
(sockets closed, GraphQL errors, snapshots after the first).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

QUERY = (
    "subscription Book($symbol: String!, $depth: Int!) { orderBook(symbol: $symbol, "
    "depth: $depth) { kind symbol sequence previousSequence bids { price quantity orders } "
    "asks { price quantity orders } } }"
)
PROTOCOL = Subprotocol("graphql-transport-ws")


@dataclass
class Receipts:
    sequences: array = field(default_factory=lambda: array("q"))
    times: array = field(default_factory=lambda: array("d"))
    problems: Counter[str] = field(default_factory=Counter)
    snapshots: int = 0  # after the first one of each socket: a gap made it start again
    stopping: bool = False  # the bench closes the sockets: their ends are no problem


async def subscribe(url: str, symbol: str, depth: int) -> ClientConnection:
    ws = await connect(
        url, subprotocols=[PROTOCOL], max_queue=None, open_timeout=60, close_timeout=1
    )
    await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
    ack = json.loads(await ws.recv())
    if ack.get("type") != "connection_ack":
        raise RuntimeError(f"no connection_ack: {ack}")
    variables = {"symbol": symbol, "depth": depth}
    await ws.send(
        json.dumps(
            {"id": "1", "type": "subscribe", "payload": {"query": QUERY, "variables": variables}}
        )
    )
    first = json.loads(await ws.recv())
    book = (first.get("payload") or {}).get("data", {}) or {}
    if first.get("type") != "next" or (book.get("orderBook") or {}).get("kind") != "SNAPSHOT":
        raise RuntimeError(f"no SNAPSHOT first: {first}")
    return ws


async def read(ws: ClientConnection, receipts: Receipts) -> None:
    sequences, times, clock = receipts.sequences, receipts.times, time.monotonic
    try:
        async for raw in ws:
            now = clock()
            message = json.loads(raw)
            if message.get("type") != "next":
                receipts.problems[f"message {message.get('type')}"] += 1
                continue
            payload = message["payload"]
            if payload.get("errors"):
                receipts.problems["GraphQL errors: " + payload["errors"][0]["message"]] += 1
                continue
            update = payload["data"]["orderBook"]
            if update["kind"] == "DELTA":
                sequences.append(update["sequence"])
                times.append(now)
            else:
                receipts.snapshots += 1
    except ConnectionClosed as closed:
        if not receipts.stopping:
            receipts.problems[f"closed {closed.rcvd.code if closed.rcvd else '-'}"] += 1


async def open_all(args: argparse.Namespace) -> list[ClientConnection]:
    url = f"ws://127.0.0.1:{args.port}/graphql"
    gate = asyncio.Semaphore(args.concurrency)

    async def one() -> ClientConnection:
        async with gate:
            return await subscribe(url, args.symbol, args.depth)

    return list(await asyncio.gather(*(one() for _ in range(args.count))))


def latencies_ms(
    receipts: Receipts, published: dict[int, float]
) -> tuple[list[float], Counter[int]]:
    """Per delivery of a measured sequence; how many sockets received each."""
    found: list[float] = []
    per_sequence: Counter[int] = Counter()
    for sequence, at in zip(receipts.sequences, receipts.times, strict=True):
        sent = published.get(sequence)
        if sent is not None:
            found.append(round((at - sent) * 1000, 3))
            per_sequence[sequence] += 1
    return found, per_sequence


async def run(args: argparse.Namespace) -> dict[str, object]:
    receipts = Receipts()
    sockets = await open_all(args)
    readers = [asyncio.create_task(read(ws, receipts)) for ws in sockets]
    print(f"ready {len(sockets)}", flush=True)
    while not args.stop_file.exists():  # noqa: ASYNC110 (another process makes it)
        await asyncio.sleep(0.2)
    open_at_stop = sum(1 for task in readers if not task.done())
    receipts.stopping = True
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    await asyncio.gather(*readers, return_exceptions=True)
    stop = json.loads(args.stop_file.read_text())
    published = {int(k): v for k, v in stop["published"].items()}
    found, per_sequence = latencies_ms(receipts, published)
    first, last = stop["window"]
    return {
        "sockets": len(sockets),
        "open_at_stop": open_at_stop,
        "deltas_received": len(receipts.sequences),
        "measured_received": len(found),
        "received_in_window": sum(1 for t in receipts.times if first <= t <= last),
        "latencies_ms": found,
        "missing": sum(len(sockets) - per_sequence[s] for s in published),
        "snapshots_after_first": receipts.snapshots,
        "problems": dict(receipts.problems),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ws_subscribers")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--symbol", default="BTC/USDT")
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--stop-file", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=50, help="handshakes at once (50)")
    args = parser.parse_args(argv)
    try:
        from uvloop import run as run_loop
    except ImportError:
        from asyncio import run as run_loop
    print(json.dumps(run_loop(run(args))), flush=True)


if __name__ == "__main__":
    main()
