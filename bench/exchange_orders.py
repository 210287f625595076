"""``python -m bench exchange-orders``: orders on a connected exchange account, against
the Binance stand-in (tests/support/exchanges) on 127.0.0.1, with the real ccxt.

1. A fresh migrated database (bench.trading_support.trading_database), a user, the
   stand-in, an account connected through ``connect_account`` (the key checked, sealed).
2. Placement: ``--orders`` limit orders through ``app.exchanges.orders.place_order`` (the
   service the mutation calls: market and risk checks, the PENDING_SUBMIT row, the key
   opened, the request, the answer recorded), after a warm-up. The connector is wrapped
   to time each ``create_order`` (ccxt's request to the stand-in and its answer): the
   platform's own latency is the placement's time minus that call's. Beside it, the
   stand-in's own time per request (measured inside its endpoint).
3. Reconciliation: 10,000 orders (``--reconcile``) at the stand-in and in
   ``exchange_orders``, each filled at the stand-in (half in full, half in part), then
   ``reconcile_account``: one run records every fill and state; a second run reads it
   all again and changes nothing. Counts checked.

Figures, not assertions (the machine is shared); JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

from sqlalchemy import func, insert, select

from app.exchanges import following, orders
from app.exchanges.accounts import connect_account
from app.exchanges.ccxt_edge import CcxtConnector
from app.runtime import Runtime
from bench.trading_support import (
    machine,
    print_rows,
    runtime,
    settings_from,
    trading_database,
    write_results,
)
from db.models import ExchangeFill, ExchangeOrder, User
from tests.support.exchanges import Account, StandIn, fill, place, stand_in
from tests.support.exchanges.keys import new_account


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench exchange-orders", description=__doc__)
    parser.add_argument("--orders", type=int, default=500, help="placements timed (500)")
    parser.add_argument("--warmup", type=int, default=50, help="placements not timed (50)")
    parser.add_argument("--reconcile", type=int, default=10_000, help="orders reconciled")
    return parser.parse_args(argv)


class TimedConnector:
    """The real connector; each session's ``create_order`` timed (the exchange call)."""

    def __init__(self, inner: CcxtConnector) -> None:
        self.inner = inner
        self.calls: list[float] = []

    def session(self, *args: Any) -> Any:
        return self.inner.session(*args)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def forget(self, connection_id: int) -> None:
        self.inner.forget(connection_id)

    def order_types(self, exchange: Any) -> Any:
        return self.inner.order_types(exchange)

    @asynccontextmanager
    async def sealed_session(self, *args: Any) -> AsyncIterator[Any]:
        async with self.inner.sealed_session(*args) as session:
            original = session.create_order

            async def timed(submission: Any) -> Any:
                start = time.perf_counter()
                try:
                    return await original(submission)
                finally:
                    self.calls.append(time.perf_counter() - start)

            session.create_order = timed
            yield session


class ServerTimed:
    """The stand-in's own time per request, measured inside its endpoint."""

    def __init__(self, server: StandIn) -> None:
        self.seconds: list[float] = []
        original = server._wrap

        def wrap(handler: Any) -> Any:
            endpoint = original(handler)

            async def timed(request: Any) -> Any:
                start = time.perf_counter()
                try:
                    return await endpoint(request)
                finally:
                    if request.url.path == "/api/v3/order" and request.method == "POST":
                        self.seconds.append(time.perf_counter() - start)

            return timed

        server._wrap = wrap  # type: ignore[method-assign]


def quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    cut = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50": cut[49] * 1000, "p99": cut[98] * 1000, "mean": statistics.fmean(ordered) * 1000}


def _rich(exchange: str) -> Account:
    account = new_account(exchange)
    account.balances = {"BTC": (Decimal(10**6), Decimal(0)), "USDT": (Decimal(10**9), Decimal(0))}
    return account


async def bench_placement(
    rt: Runtime, server: StandIn, timed: TimedConnector, served: ServerTimed, args: Any
) -> dict[str, Any]:
    user_id = await _user_named(rt, "exchange@bench.example")
    account = server.add(_rich("binance"))
    connected = await connect_account(
        rt, user_id=user_id, exchange="binance", label="bench",
        api_key=account.api_key, secret=account.secret,
    )  # fmt: skip
    request = orders.PlaceOrder(account_id=connected.connection.id, symbol="BTC/USDT",
                                side="BUY", type="LIMIT", quantity=Decimal("0.01"),
                                price=Decimal(40000))  # fmt: skip
    totals: list[float] = []
    for i in range(args.warmup + args.orders):
        start = time.perf_counter()
        await orders.place_order(rt, user_id=user_id, request=request)
        if i == args.warmup - 1:
            timed.calls.clear()
            served.seconds.clear()
        elif i >= args.warmup:
            totals.append(time.perf_counter() - start)
    added = [total - call for total, call in zip(totals, timed.calls, strict=True)]
    return {
        "orders": args.orders,
        "placement_ms": quantiles(totals),
        "exchange_call_ms": quantiles(timed.calls),
        "stand_in_server_ms": quantiles(served.seconds),
        "platform_added_ms": quantiles(added),
    }


async def bench_reconcile(rt: Runtime, server: StandIn, count: int) -> dict[str, Any]:
    user_id = await _user_named(rt, "reconcile@bench.example")
    account = server.add(_rich("binance"))
    connected = await connect_account(
        rt, user_id=user_id, exchange="binance", label="reconcile",
        api_key=account.api_key, secret=account.secret,
    )  # fmt: skip
    connection_id = connected.connection.id
    rows = []
    for i in range(count):
        client = f"cb{i:016d}"
        order = place(server, account, client_order_id=client, symbol="BTC/USDT", side="buy",
                      type="limit", quantity=Decimal("0.01"), price=Decimal(40000))  # fmt: skip
        fill(server, order, Decimal("0.01") if i % 2 else Decimal("0.004"))
        rows.append({"connection_id": connection_id, "user_id": user_id,
                     "client_order_id": client, "exchange_order_id": order.id,
                     "symbol": "BTC/USDT", "side": "BUY", "type": "LIMIT",
                     "quantity": Decimal("0.01"), "price": Decimal(40000),
                     "status": "OPEN"})  # fmt: skip
    async with rt.sessions() as session, session.begin():
        await session.execute(insert(ExchangeOrder), rows)
    asked = len(server.requests)
    start = time.perf_counter()
    first = await following.reconcile_account(rt, connection_id=connection_id)
    first_seconds = time.perf_counter() - start
    pages = sum(1 for r in server.requests[asked:] if r.path in _HISTORY_PATHS)
    start = time.perf_counter()
    second = await following.reconcile_account(rt, connection_id=connection_id)
    second_seconds = time.perf_counter() - start
    async with rt.sessions() as session:
        fills = await session.scalar(
            select(func.count()).where(ExchangeFill.connection_id == connection_id)
        )
    assert first.fills_added == count == fills, (first, fills)
    assert first.orders_changed == count and second == following.Reconciled(0, 0), (first, second)
    return {
        "orders": count,
        "first_run_seconds": first_seconds,
        "second_run_seconds": second_seconds,
        "fills_recorded": fills,
        "orders_changed": first.orders_changed,
        "history_pages_per_run": pages,
    }


_HISTORY_PATHS = ("/api/v3/allOrders", "/api/v3/myTrades")


async def _user_named(rt: Runtime, email: str) -> int:
    async with rt.sessions() as session, session.begin():
        return int(
            await session.scalar(
                insert(User).returning(User.id),
                [{"email": email, "display_name": "Bench", "password_hash": "x"}],
            )
            or 0
        )


async def run(database_url: str, redis_url: str, args: argparse.Namespace) -> dict[str, Any]:
    rt = runtime(settings_from({"DATABASE_URL": database_url, "REDIS_URL": redis_url}))
    server = stand_in("binance")
    served = ServerTimed(server)
    server = stand_in_started(server)
    timed = TimedConnector(CcxtConnector(ring=rt.exchange_keys, api_bases={"binance": server.url},
                                         rate_limit=False))  # fmt: skip
    rt.exchanges = timed  # type: ignore[assignment]
    try:
        placement = await bench_placement(rt, server, timed, served, args)
        server.reset()
        reconcile = await bench_reconcile(rt, server, args.reconcile)
    finally:
        server.stop()
        await rt.aclose()
    return {"placement": placement, "reconcile": reconcile, "machine": machine()}


def stand_in_started(server: StandIn) -> StandIn:
    """Its app rebuilt with the timed endpoints (routes are bound when it is made)."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    server.server.config.app = Starlette(
        routes=[Route(p, server._wrap(h), methods=[m]) for m, p, h in server.routes()]
    )
    return server.start()


def report(document: dict[str, Any]) -> None:
    p = document["placement"]
    rows = [
        [name, f"{p[key]['p50']:.2f}", f"{p[key]['p99']:.2f}", f"{p[key]['mean']:.2f}"]
        for name, key in (
            ("placement, end to end", "placement_ms"),
            ("  exchange call (ccxt + HTTP + stand-in)", "exchange_call_ms"),
            ("  stand-in's own time", "stand_in_server_ms"),
            ("  platform's own (end to end - exchange call)", "platform_added_ms"),
        )
    ]
    print(f"placeExchangeOrder path, {p['orders']} orders (ms)")
    print_rows(["", "p50", "p99", "mean"], rows)
    r = document["reconcile"]
    print(f"\nreconciliation of {r['orders']} orders ({r['fills_recorded']} fills recorded):"
          f" first run {r['first_run_seconds']:.2f} s, second run (nothing new)"
          f" {r['second_run_seconds']:.2f} s; {r['history_pages_per_run']} history pages a"
          " run")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with trading_database() as (database_url, redis_url):
        document = asyncio.run(run(database_url, redis_url, args))
    report(document)
    print(f"\n{write_results('exchange-orders', document)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
