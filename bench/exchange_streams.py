"""``python -m bench exchange-streams``: the worker's memory and CPU per connected
account with a live order stream (``ccxt.pro`` watch_orders / watch_my_trades, through
``app.exchanges.streams.OrderStreams``), beside the same process following the same
accounts by polling (``following.poll_live`` every ``--poll-seconds``: the peer).

1. A fresh migrated database, the ``--exchange`` stand-in (Binance by default; HTTP and
   WebSocket, in this process), ``max(--accounts)`` accounts connected through
   ``connect_account``, each with one open order at the stand-in and in ``exchange_orders``.
2. For each N in ``--accounts`` and each mode, a fresh worker process (its own
   interpreter: its RSS is the figure) follows the first N accounts (the others
   SUSPENDED): ``stream`` opens a stream per account (subscribed, reconciled once);
   ``poll`` reads every account once. Then, for ``--window`` seconds, streams idle on
   their sockets, the poller polls; RSS after the window and CPU seconds over it.
3. Per-account memory: the slope of RSS over N (least squares) per mode. ccxt's import
   cost (``ccxt.async_support``, then ``ccxt.pro``) is measured in each worker before
   anything else and reported separately; both modes import both, so it cancels out of
   the comparison.

Figures, not assertions (the machine is shared); JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import insert, update

from bench.trading_support import machine, print_rows, settings_from, trading_database

FAST = {"EXCHANGE_STREAM_RECONCILE_SECONDS": "3600", "DB_POOL_SIZE": "20"}
STREAMED = ("binance", "okx", "bybit", "kraken", "coinbase")  # the exchanges with a stream


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench exchange-streams", description=__doc__)
    parser.add_argument("--accounts", default="10,100,500", help="N per run (10,100,500)")
    parser.add_argument("--exchange", default="binance", choices=STREAMED,
                        help="whose stand-in the accounts are at (binance)")  # fmt: skip
    parser.add_argument("--window", type=float, default=15, help="seconds measured (15)")
    parser.add_argument("--poll-seconds", type=float, default=5, help="the peer's interval")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: a worker's JSON args
    return parser.parse_args(argv)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- the worker process --------------------------------------------------------------


async def worker(job: dict[str, Any]) -> dict[str, Any]:
    from app.exchanges import ccxt_edge

    before, start = rss_mb(), time.perf_counter()
    ccxt_edge.preload(streams=False)
    rest = {"mb": rss_mb() - before, "seconds": time.perf_counter() - start}
    before, start = rss_mb(), time.perf_counter()
    ccxt_edge.preload(streams=True)
    pro = {"mb": rss_mb() - before, "seconds": time.perf_counter() - start}

    from app.exchanges import following
    from app.exchanges.ccxt_edge import CcxtConnector
    from app.exchanges.streams import OrderStreams
    from bench.trading_support import runtime

    rt = runtime(settings_from({"DATABASE_URL": job["db"], "REDIS_URL": job["redis"], **FAST}))
    rt.exchanges = CcxtConnector(ring=rt.exchange_keys,
                                 api_bases={job["exchange"]: job["base"]},
                                 rate_limit=False)  # fmt: skip
    n, streams = job["accounts"], OrderStreams()
    baseline = rss_mb()
    try:
        start = time.perf_counter()
        if job["mode"] == "stream":
            await streams.supervise(rt)
            while len(streams.healthy) < n and time.perf_counter() - start < 300:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            assert len(streams.healthy) == n, (len(streams.healthy), n)
        else:
            assert await following.poll_live(rt, limit=n) == n
        ready = time.perf_counter() - start
        cpu = time.process_time()
        end = time.perf_counter() + job["window"]
        while (left := end - time.perf_counter()) > 0:
            if job["mode"] == "poll":
                polled = time.perf_counter()
                await following.poll_live(rt, limit=n)
                left = min(left, job["poll_seconds"] - (time.perf_counter() - polled))
            await asyncio.sleep(max(left, 0) if job["mode"] == "stream" else max(left, 0.01))
        cpu_seconds = time.process_time() - cpu
        return {"mode": job["mode"], "accounts": n, "rss_mb": rss_mb(),
                "rss_before_accounts_mb": baseline, "cpu_percent": 100 * cpu_seconds
                / job["window"], "ready_seconds": ready, "import_rest": rest,
                "import_pro": pro}  # fmt: skip
    finally:
        await streams.aclose()
        await rt.exchanges.aclose()
        await rt.aclose()


# --- the parent: accounts, workers, figures ------------------------------------------


async def connect_accounts(database_url: str, redis_url: str, server: Any, count: int) -> list[int]:
    from app.exchanges.accounts import connect_account
    from app.exchanges.ccxt_edge import CcxtConnector
    from bench.trading_support import runtime
    from db.models import ExchangeOrder, User
    from tests.support.exchanges import place
    from tests.support.exchanges.keys import new_account

    rt = runtime(settings_from({"DATABASE_URL": database_url, "REDIS_URL": redis_url}))
    exchange = server.exchange
    rt.exchanges = CcxtConnector(ring=rt.exchange_keys, api_bases={exchange: server.url},
                                 rate_limit=False)  # fmt: skip
    ids, rows = [], []
    try:
        users = [{"email": f"s{i}@bench.example", "display_name": "B", "password_hash": "x"}
                 for i in range(count)]  # fmt: skip
        async with rt.sessions() as session, session.begin():
            user_ids = list(await session.scalars(insert(User).returning(User.id), users))
        for i, user_id in enumerate(user_ids):  # one account each (at most 20 a user)
            account = server.add(new_account(exchange))
            connected = await connect_account(
                rt, user_id=user_id, exchange=exchange, label=f"a{i}",
                api_key=account.api_key, secret=account.secret, passphrase=account.passphrase,
            )  # fmt: skip
            ids.append(connected.connection.id)
            order = place(server, account, client_order_id=f"cs{i:016d}", symbol="BTC/USDT",
                          side="buy", type="limit", quantity=Decimal("0.001"),
                          price=Decimal(40000))  # fmt: skip
            rows.append({"connection_id": ids[-1], "user_id": user_id,
                         "client_order_id": order.client_order_id, "exchange_order_id": order.id,
                         "symbol": "BTC/USDT", "side": "BUY", "type": "LIMIT",
                         "quantity": Decimal("0.001"), "price": Decimal(40000),
                         "status": "OPEN"})  # fmt: skip
        async with rt.sessions() as session, session.begin():
            await session.execute(insert(ExchangeOrder), rows)
    finally:
        await rt.exchanges.aclose()
        await rt.aclose()
    return ids


async def keep_active(database_url: str, redis_url: str, ids: list[int]) -> None:
    """Only ``ids`` ACTIVE (streams follow ACTIVE accounts only)."""
    from bench.trading_support import runtime
    from db.models import ExchangeConnection

    rt = runtime(settings_from({"DATABASE_URL": database_url, "REDIS_URL": redis_url}))
    try:
        async with rt.sessions() as session, session.begin():
            await session.execute(update(ExchangeConnection).values(status="SUSPENDED"))
            await session.execute(update(ExchangeConnection).where(
                ExchangeConnection.id.in_(ids)).values(status="ACTIVE"))  # fmt: skip
    finally:
        await rt.aclose()


def run_worker(job: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.exchange_streams", "--worker", json.dumps(job)],
        capture_output=True, text=True, check=False, env=os.environ.copy(),
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def slope(points: list[tuple[int, float]]) -> float:
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    num = sum((x - mean_x) * (y - mean_y) for x, y in points)
    den = sum((x - mean_x) ** 2 for x, _ in points)
    return num / den if den else 0.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.support.exchanges import stand_in

    sizes = sorted(int(n) for n in args.accounts.split(","))
    results = []
    with trading_database() as (database_url, redis_url):
        server = stand_in(args.exchange).start()
        try:
            ids = asyncio.run(connect_accounts(database_url, redis_url, server, sizes[-1]))
            for n in sizes:
                asyncio.run(keep_active(database_url, redis_url, ids[:n]))
                for mode in ("poll", "stream"):
                    job = {"db": database_url, "redis": redis_url, "base": server.url,
                           "exchange": args.exchange, "accounts": n, "mode": mode,
                           "window": args.window, "poll_seconds": args.poll_seconds}  # fmt: skip
                    results.append(run_worker(job))
                    print(f"  {mode} x {n}: {results[-1]['rss_mb']:.1f} MB", file=sys.stderr)
        finally:
            server.stop()
    per_account = {
        mode: slope([(r["accounts"], r["rss_mb"]) for r in results if r["mode"] == mode]) * 1024
        for mode in ("poll", "stream")
    }
    return {"exchange": args.exchange, "runs": results, "per_account_kb": per_account,
            "window_seconds": args.window,
            "poll_seconds": args.poll_seconds, "machine": machine()}  # fmt: skip


def report(document: dict[str, Any]) -> None:
    rows = [
        [r["mode"], str(r["accounts"]), f"{r['rss_mb']:.1f}",
         f"{r['rss_mb'] - r['rss_before_accounts_mb']:.1f}", f"{r['cpu_percent']:.1f}",
         f"{r['ready_seconds']:.1f}"]
        for r in document["runs"]
    ]  # fmt: skip
    print(f"{document.get('exchange', 'binance')}: worker process,"
          f" {document['window_seconds']:.0f} s window"
          f" (the peer polls every {document['poll_seconds']:.0f} s)")  # fmt: skip
    print_rows(["mode", "accounts", "RSS MB", "of which accounts MB", "CPU %", "ready s"], rows)
    slopes = document["per_account_kb"]
    print(f"\nper account (slope of RSS over N): stream {slopes['stream']:.0f} KB,"
          f" poll {slopes['poll']:.0f} KB")  # fmt: skip
    rest, pro = document["runs"][0]["import_rest"], document["runs"][0]["import_pro"]
    print(
        f"ccxt import (once per process): ccxt.async_support {rest['mb']:.0f} MB in"
        f" {rest['seconds']:.2f} s; then ccxt.pro {pro['mb']:.0f} MB in {pro['seconds']:.2f} s"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(asyncio.run(worker(json.loads(args.worker)))))
        return 0
    from bench.trading_support import write_results

    document = run(args)
    report(document)
    print(f"\n{write_results('exchange-streams', document)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
