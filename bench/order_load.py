"""``placeOrder`` load from its own process: each request a different trader (their tokens
one per line in ``--tokens-file``, taken in turn), BUY and SELL alternately, LIMIT at a
random whole-dollar price within ``--spread`` of ``--mid`` (so about half of them cross
and fill, the rest rest on the book), 0.001 BTC each:

    python -m bench.order_load --port 8001 --tokens-file tokens.txt --duration 10 \
        --connections 32 [--rate 250]

The same rule as ``bench/wrk_orders.lua``. Closed loop without ``--rate``, open loop with
it (``bench.loadgen``'s schedule: latency counts from the due time when behind). Prints
one JSON object: ``bench.loadgen``'s counts and percentiles, plus the answers by outcome
(``OrderPayload:<status>`` or the error code).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import time
from collections import Counter
from pathlib import Path

from bench.loadgen import HOST, Run, build_request, read_response_body, summary

PATH = "/graphql"
PLACE = (
    "mutation Place($input: PlaceOrderInput!) { placeOrder(input: $input) { __typename"
    " ... on OrderPayload { order { id status filledQuantity averagePrice } }"
    " ... on Error { code message } } }"
)
QUANTITY = "0.001"
_TYPENAME = re.compile(rb'"__typename":"(\w+)"')
_STATUS = re.compile(rb'"status":"(\w+)"')
_CODE = re.compile(rb'"code":"(\w+)"')


def order_body(side: str, price: str) -> bytes:
    variables = {
        "input": {
            "symbol": "BTC/USDT",
            "side": side,
            "type": "LIMIT",
            "quantity": QUANTITY,
            "price": price,
        }
    }
    return json.dumps({"query": PLACE, "variables": variables}, separators=(",", ":")).encode()


class Orders:
    """The n-th request: trader n mod len(tokens); SELL for odd n, BUY for even n."""

    def __init__(self, tokens: list[str], *, mid: int, spread: int, seed: int) -> None:
        self.tokens = tokens
        self.mid = mid
        self.spread = spread
        self.random = random.Random(seed)
        self.n = 0

    def next(self, port: int) -> bytes:
        self.n += 1
        side = "SELL" if self.n % 2 else "BUY"
        price = self.mid + self.random.randint(-self.spread, self.spread)
        token = self.tokens[self.n % len(self.tokens)]
        return build_request(
            path=PATH,
            port=port,
            body=order_body(side, f"{price}.00"),
            authorization=f"Bearer {token}",
        )


def outcome(status: int, body: bytes) -> str:
    if status != 200:
        return f"HTTP {status}"
    typename = _TYPENAME.search(body)
    if typename is None:
        return "no __typename" if b'"errors"' not in body else "GraphQL errors"
    if typename[1] == b"OrderPayload":
        found = _STATUS.search(body)
        return "OrderPayload:" + (found[1].decode() if found else "?")
    code = _CODE.search(body)
    return code[1].decode() if code else typename[1].decode()


async def connection_loop(run: Run, orders: Orders, port: int, outcomes: Counter[str]) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        while (due := run.next_send_time()) is not None:
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
                due = time.perf_counter()
            try:
                writer.write(orders.next(port))
                status, body = await read_response_body(reader)
            except (OSError, ValueError, asyncio.IncompleteReadError):
                run.errors += 1
                outcomes["connection error"] += 1
                writer.close()
                reader, writer = await asyncio.open_connection(HOST, port)
                continue
            run.latencies.append(time.perf_counter() - due)
            name = outcome(status, body)
            outcomes[name] += 1
            if not name.startswith("OrderPayload:"):
                run.errors += 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def measure(run: Run, orders: Orders, port: int) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    run.started = time.perf_counter()
    await asyncio.gather(
        *(connection_loop(run, orders, port, outcomes) for _ in range(run.connections))
    )
    run.finished = time.perf_counter()
    return outcomes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.order_load")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens-file", type=Path, required=True)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rate", type=float, help="orders/s (open loop); omit for closed loop")
    parser.add_argument("--mid", type=int, default=90000)
    parser.add_argument("--spread", type=int, default=10, help="whole dollars either side")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    tokens = args.tokens_file.read_text().split()
    orders = Orders(tokens, mid=args.mid, spread=args.spread, seed=args.seed)
    run = Run(request=b"", connections=args.connections, duration=args.duration, rate=args.rate)
    try:
        from uvloop import run as run_loop
    except ImportError:
        from asyncio import run as run_loop
    outcomes = run_loop(measure(run, orders, args.port))
    print(json.dumps({**summary(run), "outcomes": dict(outcomes)}))


if __name__ == "__main__":
    main()
