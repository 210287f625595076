"""Group commit of ``placeOrder``: concurrent calls share one transaction
(``placement.place_orders`` through ``app.core.coalesce.Coalescer``) and each still gets the
answer or the typed error it would get alone, with nothing left behind for the refused."""

from __future__ import annotations

import asyncio

import pytest

from app.core.coalesce import Coalescer
from app.core.errors import InsufficientFunds, NotAuthenticated
from app.trading import commands, placement, pretrade
from app.trading import sql as trading_sql
from app.trading.domain import errors
from app.trading.domain.orders import Side
from tests.support.trading import (
    FAST_ENGINE,
    D,
    funded_user,
    limit,
    place,
    running_engines,
    scalar,
    wallet,
)

BUY, SELL = Side.BUY, Side.SELL
HOLD_PER_ORDER = D("9.9699")  # 0.1 BTC at 99.5 plus the taker fee, in USDT


@pytest.fixture
async def engines(rt, monkeypatch):
    monkeypatch.setattr(rt, "settings", rt.settings.model_copy(update=FAST_ENGINE))
    async with running_engines(rt) as engines:
        yield engines


async def answers(*calls) -> list:
    return await asyncio.gather(*calls, return_exceptions=True)


async def hold_transactions(rt) -> int:
    """How many transactions wrote the order holds (journal entries are never updated,
    so their xmin is the transaction that inserted them)."""
    return await scalar(
        rt, "SELECT count(DISTINCT xmin::text) FROM journal_entries WHERE kind = 'HOLD'"
    )


async def test_concurrent_orders_share_a_transaction_each_with_its_own_answer(rt, engines):
    users = [await funded_user(rt, f"trader{i}", USDT="1000") for i in range(4)]
    calls = [place(rt, uid, limit(BUY, "0.1", str(90 + n))) for n in range(3) for uid in users]
    placed = await answers(*calls)
    assert [o.status for o in placed] == ["OPEN"] * 12
    assert len({o.id for o in placed}) == 12
    assert [(o.user_id, o.price) for o in placed] == [
        (uid, D(90 + n)) for n in range(3) for uid in users
    ]
    assert await hold_transactions(rt) < 12
    for uid in users:
        held = sum((D("0.1") * D(90 + n) * D("1.002") for n in range(3)), D(0))
        assert await wallet(rt, uid, "USDT") == (D(1000) - held, held)


async def test_funds_are_taken_in_order_within_a_batch(rt, engines):
    uid = await funded_user(rt, "trader", USDT="30")
    got = await answers(*(place(rt, uid, limit(BUY, "0.1", "99.5")) for _ in range(5)))
    assert [type(a).__name__ for a in got] == ["Order"] * 3 + ["InsufficientFunds"] * 2
    assert all(isinstance(a, InsufficientFunds) and a.field == "quantity" for a in got[3:])
    assert await wallet(rt, uid, "USDT") == (D(30) - 3 * HOLD_PER_ORDER, 3 * HOLD_PER_ORDER)
    assert await scalar(rt, "SELECT count(*) FROM orders") == 3
    assert await scalar(rt, "SELECT count(*) FROM holds") == 3


async def test_open_orders_limit_counts_the_orders_of_the_same_batch(rt, engines, monkeypatch):
    monkeypatch.setattr(
        rt, "settings", rt.settings.model_copy(update={"trading_max_open_orders": 3})
    )
    uid = await funded_user(rt, "trader", USDT="1000")
    got = await answers(*(place(rt, uid, limit(BUY, "0.1", str(90 + n))) for n in range(5)))
    assert [type(a).__name__ for a in got] == ["Order"] * 3 + ["TooManyOpenOrders"] * 2
    assert await wallet(rt, uid, "USDT") == (
        D(1000) - sum((D("0.1") * D(90 + n) * D("1.002") for n in range(3)), D(0)),
        sum((D("0.1") * D(90 + n) * D("1.002") for n in range(3)), D(0)),
    )


async def test_the_same_client_order_id_in_one_batch_is_a_retry_of_the_first(rt, engines):
    uid = await funded_user(rt, "trader", USDT="1000")
    same = [place(rt, uid, limit(BUY, "0.1", "99.5"), client_order_id="c-1") for _ in range(4)]
    other = place(rt, uid, limit(BUY, "0.2", "99.5"), client_order_id="c-1")
    *retries, reused = await answers(*same, other)
    assert len({o.id for o in retries}) == 1
    assert isinstance(reused, errors.ClientOrderIdReused)
    assert reused.field == "clientOrderId"
    assert await scalar(rt, "SELECT count(*) FROM orders") == 1
    assert await wallet(rt, uid, "USDT") == (D(1000) - HOLD_PER_ORDER, HOLD_PER_ORDER)


async def test_bad_items_of_a_batch_get_their_typed_errors_and_leave_nothing(rt, engines):
    good = await funded_user(rt, "good", USDT="1000")
    stopped = await funded_user(rt, "stopped", USDT="1000")
    await commands.set_trading_enabled(rt, user_id=stopped, enabled=False)
    got = await answers(
        place(rt, good, limit(BUY, "0.1", "99.5")),
        place(rt, good, limit(BUY, "0.1", "99.505")),  # off the tick
        place(rt, good, limit(BUY, "0.1", "99.5"), symbol="NOPE/USDT"),
        place(rt, stopped, limit(BUY, "0.1", "99.5")),
        place(rt, None, limit(BUY, "0.1", "99.5")),  # type: ignore[arg-type]
        place(rt, good, limit(SELL, "0.1", "101")),  # no BTC
        place(rt, good, limit(BUY, "0.2", "99.5")),
    )
    assert [type(a).__name__ for a in got] == [
        "Order",
        "PriceOffTick",
        "UnknownMarket",
        "TradingDisabled",
        "NotAuthenticated",
        "InsufficientFunds",
        "Order",
    ]
    assert isinstance(got[4], NotAuthenticated)
    assert await scalar(rt, "SELECT count(*) FROM orders") == 2
    assert await scalar(rt, "SELECT count(*) FROM holds") == 2
    assert await wallet(rt, good, "USDT") == (D(1000) - 3 * HOLD_PER_ORDER, 3 * HOLD_PER_ORDER)
    assert await wallet(rt, stopped, "USDT") == (D(1000), D(0))


async def test_a_batch_over_two_markets_sequences_each_for_its_engine(rt, engines):
    uid = await funded_user(rt, "trader", USDT="100000")
    got = await answers(
        place(rt, uid, limit(BUY, "0.1", "99.5")),
        place(rt, uid, limit(BUY, "0.1", "2990"), symbol="ETH/USDT"),
        place(rt, uid, limit(BUY, "0.1", "99"), symbol="btc/usdt"),
    )
    assert [(o.status, o.market_id) for o in got] == [
        ("OPEN", got[0].market_id),
        ("OPEN", got[1].market_id),
        ("OPEN", got[0].market_id),
    ]
    assert got[0].market_id != got[1].market_id
    assert await scalar(rt, "SELECT count(*) FROM order_commands") == 3


async def test_crossing_orders_of_one_batch_trade_in_arrival_order(rt, engines):
    seller = await funded_user(rt, "seller", BTC="1")
    buyer = await funded_user(rt, "buyer", USDT="1000")
    offer, take = await answers(
        place(rt, seller, limit(SELL, "0.1", "99.5")),
        place(rt, buyer, limit(BUY, "0.1", "99.5")),
    )
    assert (offer.status, take.status) == ("FILLED", "FILLED")
    assert await scalar(rt, "SELECT count(*) FROM fills WHERE order_id = $1", take.id) == 1
    assert await wallet(rt, buyer, "BTC") == (D("0.1"), D(0))


# --- the coalescer alone -----------------------------------------------------------------


async def test_coalescer_batches_what_arrives_while_one_runs_and_answers_in_order():
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def run(items: list[int]) -> list[int | BaseException]:
        batches.append(items)
        if len(batches) == 1:
            await release.wait()
        return [ValueError(i) if i % 3 == 0 else i * 10 for i in items]

    coalescer: Coalescer[int, int] = Coalescer(run, max_batch=3)
    first = asyncio.ensure_future(coalescer.submit(1))
    await asyncio.sleep(0)  # the worker starts with 1 alone
    rest = [asyncio.ensure_future(coalescer.submit(i)) for i in range(2, 7)]
    await asyncio.sleep(0)
    release.set()
    got = await asyncio.gather(first, *rest, return_exceptions=True)
    assert batches == [[1], [2, 3, 4], [5, 6]]
    assert [g if isinstance(g, int) else str(g) for g in got] == [10, 20, "3", 40, 50, "6"]


async def test_coalescer_leaves_out_a_cancelled_caller_and_fails_every_item_of_a_failed_run():
    batches: list[list[str]] = []
    release = asyncio.Event()

    async def run(items: list[str]) -> list[str]:
        batches.append(items)
        if items == ["a"]:
            await release.wait()
            return ["A"]
        raise RuntimeError("the batch failed")

    coalescer: Coalescer[str, str] = Coalescer(run, max_batch=10)
    a = asyncio.ensure_future(coalescer.submit("a"))
    await asyncio.sleep(0)
    b, c, d = (asyncio.ensure_future(coalescer.submit(x)) for x in "bcd")
    await asyncio.sleep(0)
    c.cancel()
    release.set()
    assert await a == "A"
    for failed in (b, d):
        with pytest.raises(RuntimeError, match="the batch failed"):
            await failed
    assert c.cancelled()
    assert batches == [["a"], ["b", "d"]]


async def test_a_batch_costs_the_same_statements_for_one_order_or_twenty(rt, statements):
    users = [await funded_user(rt, f"trader{i}", USDT="1000") for i in range(20)]

    def item(uid: int, n: int, batch: str) -> placement._Placement:
        request = limit(BUY, "0.1", str(90 + n % 5))
        digest = pretrade.request_digest("BTC/USDT", request)
        return placement._Placement(uid, "BTC/USDT", request, f"{batch}-{n}", digest, None)

    async def cost(items: list) -> int:
        statements.clear()
        placed = await placement.place_orders(rt, items)
        assert all(isinstance(p, placement._Placed) and p.seq for p in placed), placed
        return len(statements)

    await cost([item(uid, n, "first") for n, uid in enumerate(users)])  # HELD accounts made
    one = await cost([item(users[0], 0, "one")])
    twenty = await cost([item(uid, n, "twenty") for n, uid in enumerate(users)])
    assert one == twenty == 6  # BEGIN, traders, markets, accounts, the write, COMMIT


async def test_a_batch_plans_generically_inside_its_transaction_only(rt):
    """The placement's statements after its first run on generic plans (set by that
    first statement, for its transaction); the connection keeps the default after it."""
    uid = await funded_user(rt, "trader", USDT="1000")
    engine = rt.engine.execution_options(isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        raw = (await connection.get_raw_connection()).driver_connection
        async with raw.transaction():
            (row,) = await raw.fetch(
                trading_sql.TRADERS_SQL,
                [uid],
                ["x"],
                trading_sql.LIVE_STATUS_VALUES,
                ["BTC/USDT"],
                True,
            )
            assert row["existing_id"] is None
            assert await raw.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
        assert await raw.fetchval("SHOW plan_cache_mode") == "auto"
