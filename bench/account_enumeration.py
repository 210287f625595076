"""``python -m bench accounts``: does an answer's time tell whether an address has an
account? (Issue 17, item 8.)

requestPasswordReset and register, each for an address with an account and one without,
interleaved, through the real app (in process, over httpx's ASGI transport) on PostgreSQL
and Redis (DATABASE_URL / REDIS_URL, or embedded ones under .data/bench) with a local
SMTP server receiving the mails. Prints the median and p90 per case and the ratio of the
medians (known / unknown); 1.0 means no difference.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import httpx

from app.asgi import create_app
from app.core.settings import Settings
from app.runtime import build_runtime
from bench.__main__ import database_and_redis
from db.migrate import upgrade
from tests.support import start_smtp_server

PASSWORD = "bench-Quartz-Lantern-7319"
RESET = "mutation($e: String!) { requestPasswordReset(email: $e) { __typename } }"
REGISTER = (
    "mutation($e: String!, $p: String!) {"
    ' register(email: $e, password: $p, displayName: "Bench") { __typename } }'
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench accounts", description=__doc__)
    parser.add_argument("--requests", type=int, default=200, help="per case (200)")
    return parser.parse_args(argv)


async def _timed(http: httpx.AsyncClient, query: str, variables: dict[str, str]) -> float:
    started = time.perf_counter()
    response = await http.post("/graphql", json={"query": query, "variables": variables})
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed * 1000


async def _run(database_url: str, redis_url: str, smtp_url: str, n: int) -> dict[str, list]:
    settings = Settings(
        env="test",
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix="bench-accounts:",
        smtp_url=smtp_url,
        seed_demo_data=False,
        mail_per_address_limit=1_000_000,  # measure the work, not the budget's refusal
        rate_limit_anonymous=1_000_000_000,
    )
    rt = build_runtime(settings, database_url=database_url, redis_url=redis_url)
    times: dict[str, list[float]] = {}
    try:
        transport = httpx.ASGITransport(app=create_app(runtime=rt))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            run = uuid.uuid4().hex[:8]  # addresses new to this run's database
            known = f"known-{run}@bench.example"
            await http.post(
                "/graphql", json={"query": REGISTER, "variables": {"e": known, "p": PASSWORD}}
            )
            for i in range(n):
                cases = {
                    "reset known": (RESET, {"e": known}),
                    "reset unknown": (RESET, {"e": f"nobody-{run}-{i}@bench.example"}),
                    "register taken": (REGISTER, {"e": known, "p": PASSWORD}),
                    "register new": (
                        REGISTER,
                        {"e": f"new-{run}-{i}@bench.example", "p": PASSWORD},
                    ),
                }
                for name, (query, variables) in cases.items():
                    times.setdefault(name, []).append(await _timed(http, query, variables))
    finally:
        keys = [key async for key in rt.redis.scan_iter(match="bench-accounts:*")]
        if keys:
            await rt.redis.delete(*keys)
        await rt.aclose()
    return times


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mailbox, controller = start_smtp_server()
    try:
        with database_and_redis() as (database_url, redis_url):
            upgrade(database_url)
            times = asyncio.run(_run(database_url, redis_url, mailbox.url, args.requests))
    finally:
        controller.stop()
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        p90 = statistics.quantiles(values, n=10)[-1]
        print(f"{name:<16} median {medians[name]:7.2f} ms   p90 {p90:7.2f} ms   n={len(values)}")
    print(f"reset:    known / unknown = {medians['reset known'] / medians['reset unknown']:.2f}")
    print(f"register: taken / new     = {medians['register taken'] / medians['register new']:.2f}")
    return 0
