"""``python -m bench bots``: many bots on one market, and the signal webhook.

Part 1, one process (``co_bench_trading``, bench.trading_support): the matching engines
and the bots job (``app.bots.worker.run_once`` every BOT_POLL_SECONDS, as the server runs
it) as tasks.

1. ``--bots`` grid bots (default 10,000) on BTC/USDT, each with one level: a buy resting
   at its own lower line (89,990 less 0.5 per bot) and a sell one 1,000 higher to come,
   100 USDT each, created through ``bots.create_bot`` (their owners funded in bulk).
2. Idle: CPU seconds of this process and of PostgreSQL over ``--idle`` seconds with the
   bots running and no trade, beside the same window measured before any bot existed;
   then a trade inside every band (between two traders who are no bot): the bots it
   woke and the job's time for it.
3. The price move: one sell sweeps the ``--triggered`` highest bot buys (default 1,000).
   Each of those bots is woken by its fill and places its sell. Latency per bot = its
   sell order's ``updated_at`` (the engine's clock when it accepted it) less the
   sweep's first fill's ``created_at``: p50, p99, max; all of them must be accepted.
4. The same, with bands off (every bot woken by every trade, ``watch_all``: the polling
   design) in the same run: the peer the ratios are against.

Part 2, the webhook (``--alerts-per-second``, 50): the app under uvicorn (its own engines
and bots job), ``--signal-bots`` signal bots (100), a BUY alert of 10 USDT each time,
round robin, open loop for ``--seconds`` (20). Per alert: the HTTP answer's latency, and
the time from sending it to its order accepted (the order's ``updated_at``). Target: p99
of the second <= 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

from app.bots import bots, worker
from app.bots.domain.grid_settings import GridSettings
from app.bots.domain.machines import BotSpec
from app.bots.domain.runtime import BotKind
from app.bots.domain.signal_bot import SignalSettings, alert_scope
from app.core.logs import configure_logging
from app.runtime import Runtime
from app.trading import placement
from app.trading.domain.orders import OrderRequest, OrderType, Side, TimeInForce
from app.trading.engine.runner import EngineSet
from bench.processes import Children
from bench.trading_support import (
    CpuSnapshot,
    create_traders,
    machine,
    print_rows,
    runtime,
    server_settings,
    settings_from,
    start_server,
    trading_database,
    verdict,
    write_results,
)
from db.raw import driver

SYMBOL = "BTC/USDT"
PRICE = Decimal(90000)
TOP = Decimal(89990)  # the highest bot buy
STEP = Decimal("0.5")  # between two bots' buys
SPREAD = Decimal(1000)  # a level's sell above its buy
INVESTMENT = Decimal(100)
TARGET_WEBHOOK_P99_MS = 250.0


def _limit(
    side: Side, quantity: Decimal, price: Decimal, tif: TimeInForce | None = None
) -> OrderRequest:
    return OrderRequest(
        side=side, type=OrderType.LIMIT, quantity=quantity, price=price, time_in_force=tif
    )


async def _fetch(rt: Runtime, sql: str, *args: Any) -> list[Any]:
    async with rt.sessions() as session:
        rows: list[Any] = await (await driver(session)).fetch(sql, *args)
        await session.commit()
        return rows


async def _fetchval(rt: Runtime, sql: str, *args: Any) -> Any:
    async with rt.sessions() as session:
        value = await (await driver(session)).fetchval(sql, *args)
        await session.commit()
        return value


def _summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "count": len(ordered),
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * p99,
        "max_ms": 1000 * ordered[-1],
    }


# --- part 1: many bots on one market ------------------------------------------------------


async def _job(rt: Runtime, stop: asyncio.Event) -> None:
    """The bots job as the server runs it: ``run_once``, then BOT_POLL_SECONDS."""
    while not stop.is_set():
        await worker.run_once(rt)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rt.settings.bot_poll_seconds)


async def _create_bots(rt: Runtime, count: int) -> list[int]:
    per_owner = 100
    owners = await create_traders(
        rt,
        count=(count + per_owner - 1) // per_owner,
        tag="owner",
        funding={"USDT": INVESTMENT * per_owner + 100},
    )
    async with rt.sessions() as session:
        markets = await bots.markets_for(session, [SYMBOL])
    gate = asyncio.Semaphore(32)
    ids: list[int] = [0] * count
    started = time.perf_counter()

    async def one(i: int) -> None:
        lower = TOP - STEP * i
        settings = GridSettings(lower=lower, upper=lower + SPREAD, levels=2, investment=INVESTMENT)
        spec = BotSpec(BotKind.GRID, f"grid {i}", settings, markets)
        async with gate:
            created = await bots.create_bot(rt, user_id=owners[i // per_owner].user_id, spec=spec)
        ids[i] = created.bot.id
        if (i + 1) % 1000 == 0:
            rate = (i + 1) / (time.perf_counter() - started)
            print(f"  {i + 1}/{count} bots created ({rate:.0f}/s)", file=sys.stderr, flush=True)

    await asyncio.gather(*(one(i) for i in range(count)))
    return ids


async def _idle(rt: Runtime, seconds: float) -> dict[str, float]:
    pid = os.getpid()
    before_cpu, before = time.process_time(), CpuSnapshot.take()
    await asyncio.sleep(seconds)
    used, after = time.process_time() - before_cpu, CpuSnapshot.take() - before
    del pid
    return {"seconds": seconds, "process_cpu": used, "postgres_cpu": after.postgres}


async def _noise_trade(rt: Runtime, a: int, b: int, n: int) -> dict[str, float]:
    """A trade at the last price between two traders who are no bot: the bots it woke."""
    steps = await _fetchval(rt, "SELECT sum(steps) FROM bots")
    started = time.perf_counter()
    await placement.place_order(
        rt,
        user_id=a,
        symbol=SYMBOL,
        request=_limit(Side.SELL, Decimal("0.001"), PRICE),
        client_order_id=f"ns{n}",
    )
    await placement.place_order(
        rt,
        user_id=b,
        symbol=SYMBOL,
        request=_limit(Side.BUY, Decimal("0.001"), PRICE, TimeInForce.IOC),
        client_order_id=f"nb{n}",
    )
    woken = 0
    for _ in range(100):  # until the job has had its turn (~20 polls)
        await asyncio.sleep(rt.settings.bot_poll_seconds)
        woken = int(await _fetchval(rt, "SELECT sum(steps) FROM bots") - steps)
        if (
            woken
            and await _fetchval(
                rt,
                "SELECT count(*) FROM outbox o WHERE o.topic LIKE 'trades:%' AND NOT EXISTS ("
                " SELECT 1 FROM event_consumers c WHERE c.name = 'bots'"
                " AND (o.txid, o.id) <= (c.last_txid, c.last_id))",
            )
            == 0
        ):
            break
    return {"bots_woken": woken, "seconds": time.perf_counter() - started}


async def _sweep(
    rt: Runtime, sweeper: int, bot_ids: list[int], triggered: int, n: int
) -> dict[str, Any]:
    """One sell through the ``triggered`` highest bot buys; each bot's sell, accepted."""
    quantity = await _fetchval(
        rt,
        "SELECT sum(o.quantity - o.filled_quantity) FROM orders o"
        " JOIN bots b ON b.account_id = o.user_id"
        " WHERE o.side = 'BUY' AND o.status IN ('OPEN', 'PARTIALLY_FILLED') AND o.price >= $1",
        TOP - STEP * (triggered - 1),
    )
    before = await _fetchval(rt, "SELECT coalesce(max(id), 0) FROM orders")
    order = await placement.place_order(
        rt,
        user_id=sweeper,
        symbol=SYMBOL,
        client_order_id=f"sweep{n}",
        request=_limit(Side.SELL, quantity, TOP - STEP * (triggered - 1), TimeInForce.IOC),
    )
    first_fill = await _fetchval(
        rt, "SELECT min(created_at) FROM fills WHERE order_id = $1", order.id
    )
    deadline = time.perf_counter() + 120
    sells: list[Any] = []
    while time.perf_counter() < deadline:
        sells = await _fetch(
            rt,
            "SELECT o.updated_at FROM orders o JOIN bots b ON b.account_id = o.user_id"
            " WHERE o.id > $1 AND o.side = 'SELL'"
            " AND o.status IN ('OPEN', 'FILLED', 'PARTIALLY_FILLED')",
            before,
        )
        if len(sells) >= triggered:
            break
        await asyncio.sleep(0.01)
    latencies = [(r["updated_at"] - first_fill).total_seconds() for r in sells]
    return {"accepted": len(sells), "expected": triggered, **_summary(latencies or [0.0])}


async def _reset(rt: Runtime, sweeper: int, n: int) -> None:
    """Buy back what the sweep sold: every bot's sell fills and it rests its buy again."""
    quantity = await _fetchval(
        rt,
        "SELECT sum(o.quantity - o.filled_quantity) FROM orders o"
        " JOIN bots b ON b.account_id = o.user_id"
        " WHERE o.side = 'SELL' AND o.status IN ('OPEN', 'PARTIALLY_FILLED')",
    )
    if quantity:
        await placement.place_order(
            rt,
            user_id=sweeper,
            symbol=SYMBOL,
            client_order_id=f"back{n}",
            request=_limit(Side.BUY, quantity, TOP + SPREAD, TimeInForce.IOC),
        )
    for _ in range(600):
        await asyncio.sleep(0.05)
        resting = await _fetchval(
            rt,
            "SELECT count(*) FROM orders o JOIN bots b ON b.account_id = o.user_id"
            " WHERE o.status IN ('OPEN', 'PARTIALLY_FILLED') AND o.side = 'BUY'",
        )
        if resting == await _fetchval(rt, "SELECT count(*) FROM bots"):
            return


async def _many_bots(
    rt: Runtime, count: int, triggered: int, idle_seconds: float
) -> dict[str, Any]:
    maker, other, sweeper = await create_traders(
        rt, count=3, tag="desk", funding={"USDT": Decimal(10**7), "BTC": Decimal(1000)}
    )
    # the last price: 90,000
    await placement.place_order(
        rt, user_id=maker.user_id, symbol=SYMBOL, request=_limit(Side.SELL, Decimal("0.01"), PRICE)
    )
    await placement.place_order(
        rt, user_id=other.user_id, symbol=SYMBOL, request=_limit(Side.BUY, Decimal("0.01"), PRICE)
    )
    stop = asyncio.Event()
    job = asyncio.create_task(_job(rt, stop))
    try:
        quiet_empty = await _idle(rt, idle_seconds)
        started = time.perf_counter()
        bot_ids = await _create_bots(rt, count)
        created_seconds = time.perf_counter() - started
        await asyncio.sleep(1)
        quiet_full = await _idle(rt, idle_seconds)
        document: dict[str, Any] = {
            "bots": count,
            "triggered": triggered,
            "created_seconds": created_seconds,
            "idle_no_bots": quiet_empty,
            "idle_with_bots": quiet_full,
        }
        for mode in ("bands", "every"):
            if mode == "every":
                await _fetchval(rt, "UPDATE bots SET watch_all = true RETURNING 0")
                await _fetchval(rt, "SELECT 1")
            document[mode] = {
                "noise": await _noise_trade(rt, maker.user_id, other.user_id, len(document)),
                "sweep": await _sweep(rt, sweeper.user_id, bot_ids, triggered, len(document)),
            }
            await _reset(rt, sweeper.user_id, len(document))
            print(f"  {mode}: done", file=sys.stderr, flush=True)
        return document
    finally:
        stop.set()
        await job


# --- part 2: the webhook ------------------------------------------------------------------


async def _webhook(
    rt: Runtime, port: int, count: int, rate: float, seconds: float
) -> dict[str, Any]:
    (maker,) = await create_traders(
        rt, count=1, tag="wmaker", funding={"BTC": Decimal(1000), "USDT": Decimal(10**6)}
    )
    (taker,) = await create_traders(rt, count=1, tag="wtaker", funding={"USDT": Decimal(10**6)})
    owners = await create_traders(rt, count=count, tag="whook", funding={"USDT": Decimal(1000)})
    await placement.place_order(
        rt, user_id=maker.user_id, symbol=SYMBOL, request=_limit(Side.SELL, Decimal("0.01"), PRICE)
    )
    await placement.place_order(
        rt, user_id=taker.user_id, symbol=SYMBOL, request=_limit(Side.BUY, Decimal("0.01"), PRICE)
    )
    for n in range(4):  # asks for every alert's buy
        await placement.place_order(
            rt,
            user_id=maker.user_id,
            symbol=SYMBOL,
            client_order_id=f"ask{n}",
            request=_limit(Side.SELL, Decimal(10), PRICE + 10),
        )
    async with rt.sessions() as session:
        markets = await bots.markets_for(session, [SYMBOL])
    hooks = []
    for i, owner in enumerate(owners):
        settings = SignalSettings(amount=Decimal(10), budget=Decimal(900))
        created = await bots.create_bot(
            rt, user_id=owner.user_id, spec=BotSpec(BotKind.SIGNAL, f"tv {i}", settings, markets)
        )
        hooks.append(
            (
                created.bot.id,
                created.bot.account_id,
                created.bot.webhook_token,
                created.webhook_secret,
            )
        )
    total = int(rate * seconds)
    sent: list[tuple[int, int, str, float]] = []
    answers: list[float] = []
    codes: dict[int, int] = {}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

        async def post(n: int) -> None:
            bot_id, account, token, secret = hooks[n % len(hooks)]
            alert_id = f"b{n}"
            body = json.dumps(
                {
                    "secret": secret,
                    "id": alert_id,
                    "action": "buy",
                    "ticker": "BTCUSDT",
                    "time": datetime.now(UTC).isoformat(),
                }
            )
            at = time.time()
            answer = await http.post(
                f"/hooks/bots/{token}", content=body, headers={"content-type": "application/json"}
            )
            answers.append(time.time() - at)
            codes[answer.status_code] = codes.get(answer.status_code, 0) + 1
            sent.append((bot_id, account, alert_scope(alert_id), at))

        tasks = []
        start = time.perf_counter()
        for n in range(total):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(n)))
        await asyncio.gather(*tasks)
    deadline = time.perf_counter() + 60
    latencies: list[float] = []
    while time.perf_counter() < deadline:
        rows = await _fetch(
            rt,
            "SELECT b.id, o.client_order_id, extract(epoch FROM o.updated_at) AS at"
            " FROM bots b JOIN orders o ON o.user_id = b.account_id WHERE b.kind = 'SIGNAL'",
        )
        accepted = {(r["id"], r["client_order_id"].split(":")[2]): float(r["at"]) for r in rows}
        latencies = [
            accepted[(b, scope)] - at for b, _, scope, at in sent if (b, scope) in accepted
        ]
        if len(latencies) >= len(sent):
            break
        await asyncio.sleep(0.2)
    return {
        "alerts": total,
        "rate": rate,
        "codes": codes,
        "answer": _summary(answers),
        "to_order": _summary(latencies or [0.0]),
        "orders": len(latencies),
    }


# --- running --------------------------------------------------------------------------------


async def _part1(env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    rt = runtime(settings_from(env))
    engines = EngineSet(rt)
    await engines.start()
    await engines.wait_owned()
    try:
        return await _many_bots(rt, args.bots, args.triggered, args.idle)
    finally:
        await engines.stop()
        await rt.aclose()


async def _part2(env: dict[str, str], port: int, args: argparse.Namespace) -> dict[str, Any]:
    rt = runtime(settings_from({**env, "TRADING_ENGINE_ENABLED": "false"}))
    try:
        return await _webhook(rt, port, args.signal_bots, args.alerts_per_second, args.seconds)
    finally:
        await rt.aclose()


def main(argv: list[str] | None = None) -> int:
    description = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench bots", description=description)
    parser.add_argument("--bots", type=int, default=10_000)
    parser.add_argument("--triggered", type=int, default=1_000)
    parser.add_argument("--idle", type=float, default=10.0, help="idle window, seconds (10)")
    parser.add_argument("--signal-bots", type=int, default=100)
    parser.add_argument("--alerts-per-second", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--skip-webhook", action="store_true")
    args = parser.parse_args(argv)
    configure_logging(level="WARNING", json_output=False)
    document: dict[str, Any] = {"machine": machine(), "args": vars(args)}
    with trading_database() as (database_url, redis_url):
        env = {
            **server_settings(database_url, redis_url),
            "BOT_POLL_SECONDS": "0.05",
            "TRADING_ENGINE_POLL_SECONDS": "0.05",
        }
        document["many"] = asyncio.run(_part1(env, args))
    if not args.skip_webhook:
        with (
            trading_database() as (database_url, redis_url),
            Children() as children,
            contextlib.ExitStack() as logs,
        ):
            env = {
                **server_settings(database_url, redis_url),
                "BOT_POLL_SECONDS": "0.05",
                "TRADING_ENGINE_POLL_SECONDS": "0.05",
            }
            _, port = start_server(children, env, logs, name="bots-webhook")
            document["webhook"] = asyncio.run(_part2(env, port, args))
    _print(document)
    print(f"results: {write_results('bots', document)}")
    return 0


def _print(document: dict[str, Any]) -> None:
    many = document["many"]
    print(
        f"bots: {many['bots']} grid bots on {SYMBOL} (created in {many['created_seconds']:.0f} s)"
    )
    e, f = many["idle_no_bots"], many["idle_with_bots"]
    print(
        f"idle {e['seconds']:.0f} s, CPU seconds (this process / PostgreSQL): no bots"
        f" {e['process_cpu']:.2f} / {e['postgres_cpu']:.2f}, with bots {f['process_cpu']:.2f}"
        f" / {f['postgres_cpu']:.2f}"
    )
    rows = []
    for mode in ("bands", "every"):
        r = many[mode]
        s = r["sweep"]
        rows.append(
            [
                mode,
                str(r["noise"]["bots_woken"]),
                f"{s['accepted']}/{s['expected']}",
                f"{s['p50_ms']:.0f}",
                f"{s['p99_ms']:.0f}",
                f"{s['max_ms']:.0f}",
            ]
        )
    print_rows(
        ["wake by", "woken by a trade", "sells accepted", "p50 ms", "p99 ms", "max ms"], rows
    )
    ratio = many["every"]["sweep"]["p99_ms"] / max(many["bands"]["sweep"]["p99_ms"], 1e-9)
    print(f"p99 every-bot polling / bands: {ratio:.2f}x")
    hook = document.get("webhook")
    if hook:
        a, o = hook["answer"], hook["to_order"]
        print(
            f"webhook: {hook['alerts']} alerts at {hook['rate']:.0f}/s, answers {hook['codes']}:"
            f" answer p50 {a['p50_ms']:.0f} ms p99 {a['p99_ms']:.0f} ms; to order accepted"
            f" p50 {o['p50_ms']:.0f} ms p99 {o['p99_ms']:.0f} ms ({hook['orders']} orders)"
        )
        print(
            f"target to-order p99 <= {TARGET_WEBHOOK_P99_MS:.0f} ms:"
            f" {verdict(o['p99_ms'] <= TARGET_WEBHOOK_P99_MS)}"
        )


if __name__ == "__main__":
    sys.exit(main())
