"""``python -m bench stop-streams``: how long an emulated stop on a connected account
takes to fire, from the exchange's crossing trade to the stop's child order arriving at
the exchange, when the market's trades are streamed (``ccxt.pro`` watch_trades through
``app.exchanges.trade_streams.TradeStreams``) and when they are polled (the
``exchange-triggers`` job's ``fire_armed`` every ``--poll-seconds``: the peer). One run,
both modes, the ratio of their medians.

1. A fresh migrated database, the OKX stand-in (HTTP and WebSocket, in this process;
   OKX has no native stop: the platform emulates it), an account connected through
   ``connect_account``.
2. Each round arms a sell STOP_LOSS at 45000 (``orders.place_order``, the mutation's
   service), waits a random fraction of the poll period (the trade falls anywhere in
   the poller's cycle), pushes a public trade at 44999.50 on the stand-in's tape (and
   its trade stream) and times until the stand-in holds the child order.

Figures, not assertions (the machine is shared); JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from decimal import Decimal
from typing import Any

from app.exchanges import orders, triggers
from app.exchanges.accounts import connect_account
from app.exchanges.ccxt_edge import CcxtConnector
from app.exchanges.domain.catalogue import ExchangeId
from app.exchanges.trade_streams import TradeStreams
from app.runtime import Runtime
from bench.exchange_orders import _rich, _user_named
from bench.trading_support import (
    machine,
    print_rows,
    runtime,
    settings_from,
    trading_database,
    write_results,
)
from tests.support.exchanges import StandIn, stand_in, trade_at

BTC = "BTC/USDT"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench stop-streams", description=__doc__)
    parser.add_argument("--rounds", type=int, default=20, help="stops fired per mode (20)")
    parser.add_argument("--poll-seconds", type=float, default=1.0,
                        help="the poller's period (1: the setting's default)")  # fmt: skip
    return parser.parse_args(argv)


async def _fire_one(rt: Runtime, server: StandIn, user_id: int, account_id: int,
                    phase: float) -> float:  # fmt: skip
    request = orders.PlaceOrder(account_id=account_id, symbol=BTC, side="SELL",
                                type="STOP_LOSS", quantity=Decimal("0.001"),
                                stop_price=Decimal(45000))  # fmt: skip
    await orders.place_order(rt, user_id=user_id, request=request)
    sent = len(server.orders)
    await asyncio.sleep(phase)
    start = time.perf_counter()
    trade_at(server, BTC, Decimal("44999.50"))
    while len(server.orders) == sent:  # noqa: ASYNC110 (the stand-in's state, polled)
        await asyncio.sleep(0.0005)
    return time.perf_counter() - start


async def _rounds(rt: Runtime, server: StandIn, user_id: int, account_id: int,
                  args: argparse.Namespace) -> list[float]:  # fmt: skip
    return [
        await _fire_one(rt, server, user_id, account_id, random.uniform(0, args.poll_seconds))
        for _ in range(args.rounds)
    ]


async def _streamed(rt: Runtime, server: StandIn, user_id: int, account_id: int,
                    args: argparse.Namespace) -> list[float]:  # fmt: skip
    streams = TradeStreams(lambda _: _market())
    try:
        await streams.supervise(rt)
        while (ExchangeId.OKX, BTC) not in streams.healthy:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        return await _rounds(rt, server, user_id, account_id, args)
    finally:
        await streams.aclose()


async def _market() -> list[tuple[ExchangeId, str]]:
    return [(ExchangeId.OKX, BTC)]


async def _polled(rt: Runtime, server: StandIn, user_id: int, account_id: int,
                  args: argparse.Namespace) -> list[float]:  # fmt: skip
    async def job() -> None:
        while True:
            await triggers.fire_armed(rt)
            await asyncio.sleep(args.poll_seconds)

    poller = asyncio.create_task(job())
    try:
        return await _rounds(rt, server, user_id, account_id, args)
    finally:
        poller.cancel()


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50": statistics.median(ordered) * 1000, "max": ordered[-1] * 1000,
            "mean": statistics.fmean(ordered) * 1000}  # fmt: skip


async def run(database_url: str, redis_url: str, args: argparse.Namespace) -> dict[str, Any]:
    rt = runtime(settings_from({"DATABASE_URL": database_url, "REDIS_URL": redis_url}))
    server = stand_in("okx").start()
    rt.exchanges = CcxtConnector(ring=rt.exchange_keys, api_bases={"okx": server.url},
                                 rate_limit=False)  # fmt: skip
    try:
        user_id = await _user_named(rt, "stops@bench.example")
        account = server.add(_rich("okx"))
        connected = await connect_account(
            rt, user_id=user_id, exchange="okx", label="bench", api_key=account.api_key,
            secret=account.secret, passphrase=account.passphrase,
        )  # fmt: skip
        account_id = connected.connection.id
        stream = await _streamed(rt, server, user_id, account_id, args)
        poll = await _polled(rt, server, user_id, account_id, args)
    finally:
        server.stop()
        await rt.exchanges.aclose()
        await rt.aclose()
    streamed, polled = _ms(stream), _ms(poll)
    return {"rounds": args.rounds, "poll_seconds": args.poll_seconds, "stream_ms": streamed,
            "poll_ms": polled, "p50_ratio_poll_over_stream": polled["p50"] / streamed["p50"],
            "machine": machine()}  # fmt: skip


def report(document: dict[str, Any]) -> None:
    rows = [[name, f"{d['p50']:.1f}", f"{d['mean']:.1f}", f"{d['max']:.1f}"]
            for name, d in (("streamed", document["stream_ms"]),
                            (f"polled every {document['poll_seconds']} s",
                             document["poll_ms"]))]  # fmt: skip
    print(f"crossing trade -> stop's child at the exchange, {document['rounds']} stops (ms)")
    print_rows(["", "p50", "mean", "max"], rows)
    print(f"\npolled / streamed (p50): {document['p50_ratio_poll_over_stream']:.1f}x")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with trading_database() as (database_url, redis_url):
        document = asyncio.run(run(database_url, redis_url, args))
    report(document)
    print(f"\n{write_results('stop-streams', document)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
