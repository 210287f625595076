"""Two real engine processes (``python -m app engine``): one owns every market, the other
waits; killed with SIGKILL in the middle of a stream of orders, the owner's markets go to
the standby within moments, and nothing is lost or applied twice."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.trading.domain.matching import Cancel, Command, Fill, Place, replay
from app.trading.domain.orders import OrderType, Side, TimeInForce
from app.trading.engine.runner import ENGINE_LOCK
from app.trading.markets import MarketRow, market_by_symbol
from tests.support import app_processes
from tests.support.trading import (
    BTC,
    D,
    assert_fills_match,
    eventually,
    funded_user,
    limit,
    place,
    rows,
    scalar,
)

BUY, SELL = Side.BUY, Side.SELL
ROOT = Path(__file__).resolve().parents[2]
ENGINE_ENV = {
    "TRADING_ENGINE_TAKEOVER_SECONDS": "0.2",
    "TRADING_ENGINE_POLL_SECONDS": "0.1",
    "LOG_JSON": "false",
    "LOG_LEVEL": "WARNING",
    "SEED_DEMO_DATA": "false",
    "ENV": "test",
}
OWNERS = """
    SELECT objid::bigint AS market_id, pid FROM pg_locks
    WHERE locktype = 'advisory' AND classid = $1 AND objsubid = 2 AND granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    ORDER BY objid
"""
STANDBYS = """
    SELECT pid FROM pg_stat_activity
    WHERE datname = current_database() AND query LIKE 'SELECT pg_try_advisory_lock%'
      AND pid <> ALL($1::int[])
"""


@pytest.fixture
def engine_process(rt, tmp_path) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    """Starts ``python -m app engine`` on the test's database; every process started is
    killed at teardown (before the tables are emptied)."""
    with app_processes(rt, tmp_path, "engine", ENGINE_ENV) as start:
        yield start


async def _owners(rt) -> dict[int, int]:
    """market id -> the backend pid holding its engine lock (one row per holder)."""
    held = await rows(rt, OWNERS, ENGINE_LOCK)
    assert len({r["market_id"] for r in held}) == len(held), "a market with two owners"
    return {r["market_id"]: r["pid"] for r in held}


async def _all_owned(rt, markets: int) -> dict[int, int]:
    async def check() -> dict[int, int] | None:
        owners = await _owners(rt)
        return owners if len(owners) == markets else None

    owners = await eventually(check, within=20, interval=0.1)
    assert owners, "the engine process did not take the markets"
    return owners


async def _market(rt) -> MarketRow:
    async with rt.sessions() as session:
        return await market_by_symbol(session, BTC)


async def test_standby_process_takes_over_from_a_killed_owner(rt, engine_process):
    markets = await scalar(rt, "SELECT count(*) FROM markets")
    seller = await funded_user(rt, "seller", BTC="100")
    buyer = await funded_user(rt, "buyer", USDT="100000")

    owner = engine_process("owner")
    first = await _all_owned(rt, markets)
    standby = engine_process("standby")
    lockers = await eventually(
        lambda: _standbys(rt, list(first.values()), markets), within=20, interval=0.1
    )
    assert lockers, "the standby process never tried the locks"
    assert await _owners(rt) == first  # the standby owns nothing while the owner lives

    ask = await place(rt, seller, limit(SELL, "0.5", "100"))
    bid = await place(rt, buyer, limit(BUY, "0.2", "100"))
    assert (ask.status, bid.status) == ("OPEN", "FILLED")

    # a stream of orders, and the owner killed in the middle of it
    async def one(i: int):
        who, side = (seller, SELL) if i % 2 else (buyer, BUY)
        price = str(D(100) + D(i % 5) / 10 - D("0.2"))
        return await place(rt, who, limit(side, "0.1", price), client_order_id=f"s{i}")

    stream = [asyncio.create_task(one(i)) for i in range(24)]
    await eventually(_done(stream, 6), interval=0.005)
    owner.send_signal(signal.SIGKILL)
    owner.wait(timeout=10)
    placed = await asyncio.gather(*stream)

    after = await place(rt, seller, limit(SELL, "0.1", "101"), client_order_id="after")
    # processed by the new owner within placeOrder's wait for the engine (NEW otherwise)
    assert after.status == "OPEN"
    second = await _all_owned(rt, markets)
    assert set(second.values()).isdisjoint(first.values())
    assert set(second.values()) <= set(lockers)
    assert standby.poll() is None

    market = await _market(rt)
    assert await eventually(lambda: _caught_up(rt, market.id))
    new = await scalar(rt, "SELECT count(*) FROM orders WHERE status = 'NEW'")
    assert new == 0
    assert {o.id for o in placed} <= {r["id"] for r in await rows(rt, "SELECT id FROM orders")}
    await _matches_replay(rt)


def _done(tasks: list[asyncio.Task], count: int):
    async def check() -> bool:
        return sum(task.done() for task in tasks) >= count

    return check


async def _standbys(rt, owners: list[int], markets: int) -> list[int] | None:
    pids = [r["pid"] for r in await rows(rt, STANDBYS, owners)]
    return pids if len(pids) >= markets else None


async def _caught_up(rt, market_id: int) -> bool:
    return bool(
        await scalar(rt, "SELECT applied_seq = next_seq FROM markets WHERE id = $1", market_id)
    )


async def _matches_replay(rt) -> None:
    """The command log, replayed on a fresh book, gives the stored fills and resting
    orders exactly (no order here is amended: the stored rows are as placed)."""
    market = await _market(rt)
    spec = market.spec
    orders = {r["id"]: r for r in await rows(rt, "SELECT * FROM orders")}
    log: list[Command] = []
    for c in await rows(
        rt,
        "SELECT seq, kind, order_id FROM order_commands WHERE market_id = $1 ORDER BY seq",
        market.id,
    ):
        o = orders[c["order_id"]]
        if c["kind"] == "PLACE":
            log.append(
                Place(
                    c["seq"],
                    o["id"],
                    o["user_id"],
                    Side(o["side"]),
                    OrderType(o["type"]),
                    spec.to_ticks(o["book_price"]),
                    spec.to_lots(o["quantity"]),
                    TimeInForce(o["time_in_force"]),
                    o["post_only"],
                    None,
                )
            )
        else:
            assert c["kind"] == "CANCEL"
            log.append(Cancel(c["seq"], o["id"]))
    book, events = replay(spec, log)
    await assert_fills_match(rt, market, [e for e in events if isinstance(e, Fill)])
    snapshot = book.snapshot()
    expected = {(r.order_id, r.remaining) for r in (*snapshot.bids, *snapshot.asks)}
    stored = {
        (o["id"], spec.to_lots(o["quantity"]) - round(o["filled_quantity"] / spec.lot_size))
        for o in orders.values()
        if o["status"] in ("OPEN", "PARTIALLY_FILLED")
    }
    assert stored == expected
    assert (market.applied_seq, market.last_trade_id) == (book.last_seq, book.last_trade_id)
