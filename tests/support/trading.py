"""Helpers for trading tests: running engines, traders with money, orders, reads."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import select

from app.runtime import Runtime
from app.trading import command_queue, placement
from app.trading.domain.matching import BookSnapshot, Fill, OrderBook
from app.trading.domain.orders import OrderRequest, OrderType, Side, TimeInForce
from app.trading.engine.runner import EngineSet
from app.trading.markets import MarketRow
from db.models import Fill as FillRow
from db.models import Order, User
from db.raw import driver
from tests.support.money import balances, fund, user_id, verified_user

T = TypeVar("T")
BTC = "BTC/USDT"
FAST_ENGINE = {"trading_engine_poll_seconds": 0.05, "trading_engine_takeover_seconds": 0.1}


class _EngineErrors(logging.Handler):
    """Collects what the engines log at ERROR (a batch that failed and was retried)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def no_engine_errors() -> Iterator[None]:
    """Fails when an engine batch failed meanwhile (logged at ERROR, then retried after
    a rebuild): it would hide a bug behind the retry."""
    errors = _EngineErrors()
    logger = logging.getLogger("app.trading.engine")
    logger.addHandler(errors)
    try:
        yield
    finally:
        logger.removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records]


@asynccontextmanager
async def running_engines(rt: Runtime) -> AsyncIterator[EngineSet]:
    """Every market's engine as tasks of the test's event loop, owning its market; no
    engine batch may fail meanwhile."""
    with no_engine_errors():
        engines = EngineSet(rt)
        await engines.start()
        try:
            await engines.wait_owned()
            yield engines
        finally:
            await engines.stop()


async def trader(gql, rt: Runtime, email: str, **balances: str) -> tuple[int, str]:
    """A verified user with ``balances`` (currency=amount); (user id, access token)."""
    auth = await verified_user(gql, rt, email)
    uid = await user_id(rt, email)
    for currency, amount in balances.items():
        await fund(rt, uid, currency, amount)
    return uid, auth["accessToken"]


async def funded_user(rt: Runtime, name: str, **amounts: str) -> int:
    """A user row (no login: the services take user ids) with ``amounts`` (currency=amount)
    funded through the ledger."""
    async with rt.sessions() as session, session.begin():
        user = User(email=f"{name}@example.com", display_name=name, password_hash="-")
        session.add(user)
        await session.flush()
        uid = user.id
    for currency, amount in amounts.items():
        await fund(rt, uid, currency, amount)
    return uid


def D(value: str | int) -> Decimal:
    return Decimal(value)


def limit(side: Side, quantity: str, price: str, **fields: Any) -> OrderRequest:
    return OrderRequest(
        side=side, type=OrderType.LIMIT, quantity=D(quantity), price=D(price), **fields
    )


def market(side: Side, quantity: str, **fields: Any) -> OrderRequest:
    return OrderRequest(side=side, type=OrderType.MARKET, quantity=D(quantity), **fields)


def request(side: Side, type_: OrderType, quantity: str, **fields: Any) -> OrderRequest:
    """Any order type; Decimal fields may be given as strings."""
    decimals = ("price", "stop_price", "worst_price", "trailing_offset", "activation_price")
    for name in decimals:
        if isinstance(fields.get(name), str):
            fields[name] = D(fields[name])
    return OrderRequest(side=side, type=type_, quantity=D(quantity), **fields)


async def place(
    rt: Runtime, uid: int, order: OrderRequest, symbol: str = BTC, **kwargs: Any
) -> Order:
    return await placement.place_order(rt, user_id=uid, symbol=symbol, request=order, **kwargs)


async def trade_at(rt: Runtime, maker: int, taker: int, price: str, quantity: str = "0.1") -> None:
    """One trade at ``price``: ``maker`` offers, ``taker`` buys all of it (the book must
    have no bid at or above ``price`` and no ask below it)."""
    offer = await place(rt, maker, limit(Side.SELL, quantity, price))
    take = await place(rt, taker, limit(Side.BUY, quantity, price, time_in_force=TimeInForce.IOC))
    assert (offer.status, take.status) == ("OPEN", "FILLED"), (offer.status, take.status)


async def reload(rt: Runtime, order_id: int) -> Order:
    (row,) = await command_queue.get_orders(rt, [order_id])
    return row


async def fills_of(rt: Runtime, order_id: int) -> list[FillRow]:
    async with rt.sessions() as session:
        rows = await session.scalars(
            select(FillRow).where(FillRow.order_id == order_id).order_by(FillRow.id)
        )
        return list(rows)


async def wallet(rt: Runtime, uid: int, currency: str) -> tuple[Decimal, Decimal]:
    """(available, held)."""
    return (await balances(rt, uid))[currency]


async def fees_collected(rt: Runtime, currency: str) -> Decimal:
    async with rt.sessions() as session:
        value = await (await driver(session)).fetchval(
            "SELECT balance FROM ledger_accounts WHERE user_id IS NULL AND kind = 'FEES'"
            " AND currency = $1",
            currency,
        )
    return value if value is not None else Decimal(0)


async def scalar(rt: Runtime, sql: str, *args: Any) -> Any:
    async with rt.sessions() as session:
        return await (await driver(session)).fetchval(sql, *args)


async def rows(rt: Runtime, sql: str, *args: Any) -> list[Any]:
    async with rt.sessions() as session:
        return list(await (await driver(session)).fetch(sql, *args))


async def market_id(rt: Runtime, symbol: str = BTC) -> int:
    return int(await scalar(rt, "SELECT id FROM markets WHERE symbol = $1", symbol))


async def book_of(rt: Runtime, engines: EngineSet, symbol: str = BTC) -> BookSnapshot:
    book = engines.engines[await market_id(rt, symbol)].book
    assert book is not None
    return book.snapshot()


async def eventually(
    check: Callable[[], Awaitable[T]], *, within: float = 5, interval: float = 0.05
) -> T:
    """``check()`` once it returns something truthy (or its last value after ``within``
    seconds)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await check()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(interval)


async def assert_fills_match(rt: Runtime, state: MarketRow, trades: list[Fill]) -> None:
    """The market's stored fills are ``trades`` (a replay's), each once per side, trade
    ids consecutive from 1."""
    spec = state.spec
    stored = await rows(
        rt,
        "SELECT trade_id, seq, order_id, liquidity, price, quantity, quote_amount, fee"
        " FROM fills WHERE market_id = $1 ORDER BY trade_id, liquidity",
        state.id,
    )
    ids = [r["trade_id"] for r in stored]
    assert ids == sorted([t.trade_id for t in trades] * 2)  # each trade once per side
    assert ids == [i for i in range(1, len(trades) + 1) for _ in (0, 1)]  # no gap
    expected = []
    for t in trades:
        for liquidity, order_id, fee in (
            ("MAKER", t.maker_order_id, t.maker_fee),
            ("TAKER", t.taker_order_id, t.taker_fee),
        ):
            expected.append(
                (
                    t.trade_id,
                    t.seq,
                    order_id,
                    liquidity,
                    spec.price(t.price),
                    spec.quantity(t.quantity),
                    spec.quote_amount(t.notional),
                    spec.quote_amount(fee),
                )
            )
    assert [tuple(r) for r in stored] == expected


async def assert_orders_match(rt: Runtime, state: MarketRow, book: OrderBook) -> None:
    """Every order of the market agrees with its fills and its hold, and the resting ones
    are ``book``'s (a replay's)."""
    orders = await rows(
        rt,
        "SELECT o.id, o.status, o.filled_quantity, o.executed_value, o.fees,"
        " coalesce(sum(f.quantity), 0) AS fill_quantity,"
        " coalesce(sum(f.quote_amount), 0) AS fill_value, coalesce(sum(f.fee), 0) AS fill_fees,"
        " h.status AS hold_status"
        " FROM orders o LEFT JOIN fills f ON f.order_id = o.id JOIN holds h ON h.id = o.hold_id"
        " WHERE o.market_id = $1 GROUP BY o.id, h.status ORDER BY o.id",
        state.id,
    )
    resting = set()
    for o in orders:
        assert o["filled_quantity"] == o["fill_quantity"], dict(o)
        assert o["executed_value"] == o["fill_value"], dict(o)
        assert o["fees"] == o["fill_fees"], dict(o)
        if o["status"] in ("OPEN", "PARTIALLY_FILLED"):
            resting.add(o["id"])
            assert o["hold_status"] == "PENDING"
        else:
            assert o["status"] in ("FILLED", "CANCELED", "EXPIRED", "REJECTED"), dict(o)
            assert o["hold_status"] != "PENDING", dict(o)  # nothing left held
            assert o["hold_status"] == ("POSTED" if o["fill_quantity"] else "VOIDED"), dict(o)
    snapshot = book.snapshot()
    assert resting == {o.order_id for o in (*snapshot.bids, *snapshot.asks)}
