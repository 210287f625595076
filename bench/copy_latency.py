"""``python -m bench copy``: copy latency, from a leader's fill to every follower's copy
accepted by the engine, for 100 and 1,000 followers, beside a baseline in the same run.

1. ``co_bench_trading`` (bench.trading_support), one process: the matching engines and
   the copy worker (``app.social.copy_trading.run_worker``, woken by the engines'
   NOTIFY) as tasks, ``python -m bench``'s settings (pool of 40, COPY_CONCURRENCY).
2. Per follower count: a leader, that many followers (FIXED_AMOUNT 50 USDT, LIMIT IOC at
   the leader's price + 1 %), a maker with a deep BTC/USDT ask at 90,000.
3. Rounds: the leader buys 0.01 BTC (LIMIT IOC, through ``placement.place_order``); the
   round ends when every copy of that fill is PLACED. Latency = the last copy order's
   ``updated_at`` (the engine's clock when it applied it) - the leader fill's
   ``created_at`` (the engine's clock in the batch that made it): fill to all accepted.
4. Baseline, same rounds: the same number of ``place_order`` calls (the same followers,
   the same order, as many at once as COPY_CONCURRENCY) from a plain loop: the cost of
   the orders alone, without reading the event log, planning and recording the copies.
5. p50 / p99 / max per count and the throughput (copies per second over all rounds);
   target p99 <= 250 ms for 100 followers. JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert

from app.core.logs import configure_logging
from app.runtime import Runtime
from app.social import copy_trading
from app.trading import placement
from app.trading.domain.orders import OrderRequest, OrderType, Side, TimeInForce
from app.trading.engine.runner import EngineSet
from bench.trading_support import (
    create_traders,
    machine,
    print_rows,
    runtime,
    server_settings,
    settings_from,
    trading_database,
    verdict,
    write_results,
)
from db.models import Follow, Leader
from db.raw import driver

SYMBOL = "BTC/USDT"
PRICE = Decimal(90000)
TARGET_P99_MS = 250.0


def _buy(quantity: str, price: Decimal) -> OrderRequest:
    return OrderRequest(
        side=Side.BUY,
        type=OrderType.LIMIT,
        quantity=Decimal(quantity),
        price=price,
        time_in_force=TimeInForce.IOC,
    )


async def _fetchval(rt: Runtime, sql: str, *args: Any) -> Any:
    async with rt.sessions() as session:
        return await (await driver(session)).fetchval(sql, *args)


async def _setup(rt: Runtime, followers: int, tag: str) -> tuple[int, list[int]]:
    usdt, btc = {"USDT": Decimal(10**7)}, {"BTC": Decimal(1000)}
    (leader,) = await create_traders(rt, count=1, tag=f"lead{tag}", funding=usdt)
    (maker,) = await create_traders(rt, count=1, tag=f"mk{tag}", funding=btc)
    crowd = await create_traders(
        rt, count=followers, tag=f"f{tag}", funding={"USDT": Decimal(100_000)}
    )
    async with rt.sessions() as session, session.begin():
        session.add(
            Leader(
                user_id=leader.user_id,
                display_name="bench leader",
                profit_share_percent=Decimal(10),
                minimum_allocation=Decimal(0),
            )
        )
        await session.flush()
        await session.execute(
            insert(Follow),
            [
                {
                    "follower_id": f.user_id,
                    "leader_id": leader.user_id,
                    "mode": "FIXED_AMOUNT",
                    "allocation": Decimal(50_000),
                    "fixed_amount": Decimal(50),
                }
                for f in crowd
            ],
        )
    ask = OrderRequest(side=Side.SELL, type=OrderType.LIMIT, quantity=Decimal(10), price=PRICE)
    for _ in range(max(2, followers // 100 * 4)):  # 10 BTC each (the 1M USD order cap)
        await placement.place_order(rt, user_id=maker.user_id, symbol=SYMBOL, request=ask)
    return leader.user_id, [f.user_id for f in crowd]


async def _copy_round(rt: Runtime, leader: int, followers: int, n: int) -> float:
    order = await placement.place_order(
        rt, user_id=leader, symbol=SYMBOL, request=_buy("0.01", PRICE), client_order_id=f"l{n}"
    )
    fill_id = await _fetchval(rt, "SELECT id FROM fills WHERE order_id = $1", order.id)
    while True:
        done = await _fetchval(
            rt,
            "SELECT count(*) FROM copies WHERE leader_fill_id = $1 AND status = 'PLACED'",
            fill_id,
        )
        if done >= followers:
            break
        await asyncio.sleep(0.002)
    seconds = await _fetchval(
        rt,
        "SELECT extract(epoch FROM max(o.updated_at) - f.created_at) FROM copies c"
        " JOIN orders o ON o.id = c.order_id JOIN fills f ON f.id = c.leader_fill_id"
        " WHERE c.leader_fill_id = $1 GROUP BY f.created_at",
        fill_id,
    )
    return float(seconds)


async def _baseline_round(rt: Runtime, users: list[int], n: int) -> float:
    gate = asyncio.Semaphore(rt.settings.copy_concurrency)
    request = _buy("0.0005", PRICE * Decimal("1.01"))

    async def one(uid: int) -> None:
        async with gate:
            await placement.place_order(
                rt, user_id=uid, symbol=SYMBOL, request=request, client_order_id=f"b{n}"
            )

    started: datetime = rt.now()
    await asyncio.gather(*(one(uid) for uid in users))
    last = await _fetchval(
        rt,
        "SELECT max(updated_at) FROM orders WHERE client_order_id = $1 AND user_id = ANY($2)",
        f"b{n}",
        users,
    )
    return (last - started).total_seconds()


def _summary(latencies: list[float], copies: int) -> dict[str, float]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "rounds": len(ordered),
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * p99,
        "max_ms": 1000 * ordered[-1],
        "orders_per_second": copies * len(ordered) / sum(ordered),
    }


async def _measure(rt: Runtime, counts: list[int], rounds: int) -> list[dict[str, Any]]:
    results = []
    for count in counts:
        leader, users = await _setup(rt, count, f"{count}")
        copy_latencies, base_latencies = [], []
        started = time.perf_counter()
        for n in range(rounds):
            copy_latencies.append(await _copy_round(rt, leader, count, n))
            base_latencies.append(await _baseline_round(rt, users, n))
        results.append(
            {
                "followers": count,
                "copy": _summary(copy_latencies, count),
                "baseline": _summary(base_latencies, count),
                "wall_seconds": time.perf_counter() - started,
            }
        )
        print(f"  {count} followers: done", file=sys.stderr, flush=True)
    return results


async def _run(settings_env: dict[str, str], counts: list[int], rounds: int) -> dict[str, Any]:
    rt = runtime(settings_from(settings_env))
    engines = EngineSet(rt)
    await engines.start()
    await engines.wait_owned()
    worker = asyncio.create_task(copy_trading.run_worker(rt))
    try:
        return {"results": await _measure(rt, counts, rounds)}
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        await engines.stop()
        await rt.aclose()


def main(argv: list[str] | None = None) -> int:
    description = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench copy", description=description)
    parser.add_argument("--followers", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--rounds", type=int, default=20, help="leader fills per count (20)")
    parser.add_argument("--concurrency", type=int, default=256, help="COPY_CONCURRENCY (256)")
    args = parser.parse_args(argv)
    configure_logging(level="WARNING", json_output=False)
    with trading_database() as (database_url, redis_url):
        env = {
            **server_settings(database_url, redis_url),
            "COPY_CONCURRENCY": str(args.concurrency),
            "COPY_POLL_SECONDS": "0.05",
            "TRADING_ENGINE_POLL_SECONDS": "0.05",
        }
        document = asyncio.run(_run(env, args.followers, args.rounds))
    rows = []
    for r in document["results"]:
        c, b = r["copy"], r["baseline"]
        rows.append(
            [
                str(r["followers"]),
                f"{c['p50_ms']:.0f}",
                f"{c['p99_ms']:.0f}",
                f"{c['max_ms']:.0f}",
                f"{c['orders_per_second']:.0f}",
                f"{b['p50_ms']:.0f}",
                f"{b['p99_ms']:.0f}",
                f"{b['orders_per_second']:.0f}",
                f"{c['p99_ms'] / b['p99_ms']:.2f}",
            ]
        )
    print(f"copy latency: leader fill -> all copies accepted ({args.rounds} rounds per count,"
          f" COPY_CONCURRENCY={args.concurrency})")  # fmt: skip
    print_rows(
        ["followers", "p50 ms", "p99 ms", "max ms", "copies/s", "base p50", "base p99",
         "base orders/s", "p99 ratio"],
        rows,
    )  # fmt: skip
    hundred = next((r for r in document["results"] if r["followers"] == 100), None)
    if hundred is not None:
        met = hundred["copy"]["p99_ms"] <= TARGET_P99_MS
        print(f"target p99 <= {TARGET_P99_MS:.0f} ms for 100 followers: {verdict(met)}")
    document |= {"machine": machine(), "concurrency": args.concurrency, "rounds": args.rounds}
    print(f"results: {write_results('copy-latency', document)}")
    return 0
