"""Engines stopped and started again (and commands piling up while none runs) lose
nothing and change nothing: the book a restarted engine ends with is the book a pure
``replay`` of the stored command log gives, fill for fill."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from app.core.errors import UserError
from app.trading import commands
from app.trading.domain.matching import (
    Amend,
    Cancel,
    CancelAll,
    Command,
    Fill,
    Place,
    replay,
)
from app.trading.domain.orders import MarketSpec, OrderType, Side, TimeInForce
from app.trading.engine.runner import EngineSet
from app.trading.markets import MarketRow, market_by_symbol
from tests.support.trading import (
    BTC,
    FAST_ENGINE,
    D,
    assert_fills_match,
    assert_orders_match,
    book_of,
    fees_collected,
    funded_user,
    limit,
    market,
    no_engine_errors,
    place,
    reload,
    request,
    rows,
    running_engines,
    scalar,
    trade_at,
    wallet,
)

BUY, SELL = Side.BUY, Side.SELL
FUNDS = {"BTC": "10000", "USDT": "10000000"}  # never short: every amendment can be held


@pytest.fixture
def fast(rt, monkeypatch):
    """Quick engines; none of their batches may fail (a retry would hide a bug)."""
    monkeypatch.setattr(rt, "settings", rt.settings.model_copy(update=FAST_ENGINE))
    with no_engine_errors():
        yield


async def _spec(rt) -> MarketRow:
    async with rt.sessions() as session:
        return await market_by_symbol(session, BTC)


async def _restart(rt, engines: EngineSet) -> EngineSet:
    await engines.stop()
    fresh = EngineSet(rt)
    await fresh.start()
    await fresh.wait_owned()
    return fresh


@dataclass
class Flow:
    """A random stream of orders, cancels and amendments from a few users."""

    rt: object
    spec: MarketSpec
    users: list[int]
    rng: random.Random
    # clientOrderId -> the order as asked for (seq and order id to be filled in); kept
    # for the orders the engine refused too (post-only), since their PLACE is logged
    asked: dict[str, Place] = field(default_factory=dict)
    mine: dict[int, list[int]] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)

    # Any tick and any lot, so that fees often have a fraction to round up (and an
    # engine that restored an order's fee accumulator wrongly charges a different fee).
    def _price(self) -> Decimal:
        return D(self.rng.randrange(9950, 10051)) / 100  # 99.50 .. 100.50

    def _quantity(self) -> Decimal:
        return D(self.rng.randrange(600, 5001)) / 10000  # 0.06 .. 0.5: above the minimum

    async def step(self, uid: int) -> None:
        roll = self.rng.random()
        live = [
            r["id"]
            for r in await rows(
                self.rt,
                "SELECT id FROM orders WHERE user_id = $1"
                " AND status IN ('OPEN', 'PARTIALLY_FILLED') ORDER BY id",
                uid,
            )
        ]
        # now and then an order that may have ended meanwhile
        choices = live if live and self.rng.random() < 0.9 else self.mine.get(uid, [])
        try:
            if roll < 0.5 or not choices:
                await self._place(uid)
            elif roll < 0.7:
                order_id = self.rng.choice(choices)
                await commands.cancel_order(self.rt, user_id=uid, order_id=order_id)
            elif roll < 0.95:
                order_id = self.rng.choice(choices)
                price = self._price() if self.rng.random() < 0.6 else None
                quantity = self._quantity() if price is None or self.rng.random() < 0.5 else None
                await commands.amend_order(
                    self.rt, user_id=uid, order_id=order_id, price=price, quantity=quantity
                )
            else:
                await commands.cancel_all_orders(self.rt, user_id=uid, symbol=BTC)
        except UserError as error:
            self.refused[error.code] = self.refused.get(error.code, 0) + 1

    async def _place(self, uid: int) -> None:
        side = self.rng.choice((BUY, SELL))
        quantity = self._quantity()
        kind = self.rng.random()
        if kind < 0.1:
            worst = D("100.5") if side is BUY else D("99.5")
            order = market(side, str(quantity), worst_price=worst)
        else:
            tif = TimeInForce.IOC if kind < 0.2 else TimeInForce.GTC
            post_only = tif is TimeInForce.GTC and self.rng.random() < 0.1
            order = limit(
                side, str(quantity), str(self._price()), time_in_force=tif, post_only=post_only
            )
        client_id = f"{uid}-{len(self.asked)}"
        self.asked[client_id] = Place(
            0,
            0,
            uid,
            side,
            order.type,
            self.spec.to_ticks(order.price or order.worst_price),
            self.spec.to_lots(quantity),
            order.time_in_force or TimeInForce.IOC,
            order.post_only,
            None,
        )
        row = await place(self.rt, uid, order, client_order_id=client_id)
        self.mine.setdefault(uid, []).append(row.id)

    async def burst(self, rounds: int) -> None:
        """``rounds`` times: every user does one thing, all at once."""
        for _ in range(rounds):
            await asyncio.gather(*(self.step(uid) for uid in self.users))


async def _command_log(rt, flow: Flow, market_id: int) -> list[Command]:
    client_ids = {
        r["id"]: r["client_order_id"]
        for r in await rows(rt, "SELECT id, client_order_id FROM orders")
    }
    log: list[Command] = []
    for r in await rows(
        rt,
        "SELECT seq, kind, order_id, user_id, args, outcome FROM order_commands"
        " WHERE market_id = $1 ORDER BY seq",
        market_id,
    ):
        args = json.loads(r["args"]) if isinstance(r["args"], str) else r["args"]
        assert r["outcome"] != "INSUFFICIENT_FUNDS"  # else the engine skipped a book command
        if r["kind"] == "PLACE":
            asked = flow.asked[client_ids[r["order_id"]]]
            log.append(asked._replace(seq=r["seq"], order_id=r["order_id"]))
        elif r["kind"] == "CANCEL":
            log.append(Cancel(r["seq"], r["order_id"]))
        elif r["kind"] == "CANCEL_ALL":
            log.append(CancelAll(r["seq"], r["user_id"]))
        elif r["kind"] == "AMEND":
            log.append(Amend(r["seq"], r["order_id"], args["price"], args["quantity"]))
        else:
            raise AssertionError(f"unexpected command {r['kind']}")
    return log


async def test_restarts_and_a_backlog_give_the_book_a_replay_of_the_log_gives(
    rt, fast, monkeypatch
):
    users = [await funded_user(rt, f"u{i}", **FUNDS) for i in range(4)]
    flow = Flow(rt, (await _spec(rt)).spec, users, random.Random(20240604))
    engines = EngineSet(rt)
    await engines.start()
    try:
        await engines.wait_owned()
        await flow.burst(15)
        engines = await _restart(rt, engines)
        await flow.burst(10)
        # no engine: commands pile up (the callers stop waiting), then a new one catches up
        await engines.stop()
        quick = rt.settings.model_copy(update={"trading_wait_seconds": 0.05})
        monkeypatch.setattr(rt, "settings", quick)
        await flow.burst(5)
        pending = await scalar(
            rt, "SELECT next_seq - applied_seq FROM markets WHERE symbol = $1", BTC
        )
        assert pending >= 10
        monkeypatch.setattr(rt, "settings", quick.model_copy(update={"trading_wait_seconds": 5}))
        engines = EngineSet(rt)
        await engines.start()
        await engines.wait_owned()
        await asyncio.sleep(0)  # stop it again, maybe in the middle of the backlog
        engines = await _restart(rt, engines)
        await flow.burst(15)
        engines = await _restart(rt, engines)
        await flow.burst(5)
        live = await book_of(rt, engines)
    finally:
        await engines.stop()

    state = await _spec(rt)
    assert state.applied_seq == await scalar(
        rt, "SELECT next_seq FROM markets WHERE id = $1", state.id
    )
    book, events = replay(state.spec, await _command_log(rt, flow, state.id))
    expected = book.snapshot()
    assert live == expected
    assert (state.applied_seq, state.last_trade_id) == (expected.last_seq, expected.last_trade_id)
    trades = [e for e in events if isinstance(e, Fill)]
    assert len(trades) > 20, "the stream should trade"
    await assert_fills_match(rt, state, trades)
    await assert_orders_match(rt, state, book)
    for currency, funded in (("BTC", D(FUNDS["BTC"])), ("USDT", D(FUNDS["USDT"]))):
        held = [await wallet(rt, uid, currency) for uid in users]
        total = sum(a + h for a, h in held) + await fees_collected(rt, currency)
        assert total == funded * len(users)


# --- what a restart must keep exactly -----------------------------------------------------------


async def test_a_triggered_order_keeps_its_place_in_the_queue_across_a_restart(rt, fast):
    tape = [await funded_user(rt, f"tape{i}", **FUNDS) for i in range(2)]
    stopper = await funded_user(rt, "stopper", USDT="1000")
    taker = await funded_user(rt, "taker", USDT="1000")
    seller = await funded_user(rt, "seller", BTC="10")
    async with running_engines(rt) as engines:
        await trade_at(rt, *tape, "100")
        stop = await place(
            rt, stopper, request(BUY, OrderType.STOP_LIMIT, "0.5", stop_price="101", price="102")
        )
        await place(rt, seller, limit(SELL, "0.1", "100.5"))
        await place(rt, seller, limit(SELL, "0.1", "101"))
        # the taker rests its rest at 102 within its own command; the stop it triggered
        # (at 101) is placed after it, at the same price and under the same seq
        rested = await place(rt, taker, limit(BUY, "0.5", "102"))
        assert (await reload(rt, stop.id)).status == "OPEN"
        before = await book_of(rt, engines)
        assert [o.order_id for o in before.bids] == [rested.id, stop.id]
        restarted = await _restart(rt, engines)
        try:
            assert await book_of(rt, restarted) == before
            sold = await place(rt, seller, limit(SELL, "0.3", "102"))
            assert [f["order_id"] for f in await _maker_fills(rt, sold.id)] == [rested.id]
        finally:
            await restarted.stop()


async def _maker_fills(rt, taker_order_id: int):
    return await rows(
        rt,
        "SELECT m.order_id FROM fills t JOIN fills m ON m.trade_id = t.trade_id"
        " AND m.market_id = t.market_id AND m.liquidity = 'MAKER'"
        " WHERE t.order_id = $1 ORDER BY t.trade_id",
        taker_order_id,
    )


async def test_a_partly_filled_order_canceled_after_a_restart_posts_its_hold(rt, fast):
    seller = await funded_user(rt, "seller", BTC="1")
    buyer = await funded_user(rt, "buyer", USDT="1000")
    async with running_engines(rt) as engines:
        ask = await place(rt, seller, limit(SELL, "0.5", "100"))
        await place(rt, buyer, limit(BUY, "0.2", "100"))
        restarted = await _restart(rt, engines)
        try:
            await commands.cancel_order(rt, user_id=seller, order_id=ask.id)
        finally:
            await restarted.stop()
    assert await scalar(rt, "SELECT status FROM holds WHERE id = $1", ask.hold_id) == "POSTED"
    assert await wallet(rt, seller, "BTC") == (D("0.8"), D(0))
