"""Emulated stops on connected exchange accounts: the platform holds them ARMED and
sends their child order when the exchange's trades cross the stop (the rule:
``app.exchanges.domain.triggers``). An emulated stop does not protect while the platform
is down; the API says which orders are emulated (``emulated``, ``triggerState``).

``fire_armed`` (the ``exchange-triggers`` background job) reads each market with armed
orders once (the exchange's public trades, outside any transaction) and judges its
armed orders; where the exchange's trades are streamed (app/exchanges/trade_streams.py)
each streamed batch is judged as it arrives (``judge_market``), and the job skips the
market while its stream is healthy. One that fires is claimed under its row lock,
ARMED -> PENDING_SUBMIT with ``triggered_at``, after the user's risk gate (a HALTED
user's stop does not fire; the refusal's code is its ``trigger_note``), and only then is
its child sent, once, through the placement path (``orders.submit``) with the order's
own client order id. So two runners, or a restart after the claim, send nothing twice:
the second finds the row no longer ARMED, and a claimed row whose answer was lost is
PENDING_SUBMIT like any other, looked up by its client order id by reconciliation,
never re-sent. Stale trades fire nothing: the order's ``trigger_note`` says
STALE_PRICES. Only an ACTIVE account's stops are judged or fired; suspending or
disconnecting an account disarms its stops in that transaction
(``app.exchanges.protections``). The child is the order counted when the stop was
armed: the risk gate's count limits do not hold it (``check_risk``'s ``new_order``)."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import UserError
from app.exchanges import order_events, orders
from app.exchanges.accounts import ACTIVE
from app.exchanges.domain.catalogue import ExchangeId
from app.exchanges.domain.errors import ExchangeOrderNotCancellable
from app.exchanges.domain.markets import ExchangeMarket
from app.exchanges.domain.order_lists import EXITS, ListStatus
from app.exchanges.domain.orders import ExchangeOrderStatus, ExchangeOrderType, OrderSubmission
from app.exchanges.domain.triggers import Armed, child_of, judge
from app.exchanges.following import reconcile_account
from app.exchanges.orders import (
    check_risk,
    exchange_session,
    get_order,
    lock_order,
    market_named,
    proposed_order,
    submit,
)
from app.marketdata.domain.trades import Trade
from app.runtime import Runtime
from app.trading.domain.orders import Side
from db.models import ExchangeConnection, ExchangeOrder, ExchangeOrderList

log = logging.getLogger(__name__)

S = ExchangeOrderStatus
TRADES_READ = 100  # the latest public trades read per market and run


async def cancel_order(rt: Runtime, *, user_id: int, order_id: int) -> ExchangeOrder:
    """Cancel an order: an armed stop is disarmed (CANCELED, under its lock), any other
    is canceled at the exchange (``orders.cancel_order``)."""
    row = await get_order(rt, user_id=user_id, order_id=order_id)
    if row.status != S.ARMED.value:
        return await orders.cancel_order(rt, user_id=user_id, order_id=order_id)
    async with rt.sessions() as session, session.begin():
        row = await lock_order(session, order_id)
        if row.status != S.ARMED.value:  # fired meanwhile: its child is being sent
            raise ExchangeOrderNotCancellable(field="id")
        row.status, row.updated_at = S.CANCELED.value, rt.now()
        row.cancel_requested_at = rt.now()  # a cancel asked: CANCEL_RATE counts it
        await order_events.row_changed(session, row)
    return row


async def armed_markets(rt: Runtime) -> list[tuple[ExchangeId, str]]:
    """The (exchange, symbol) of every armed order on an active account."""
    async with rt.reads() as session:
        markets = (
            await session.execute(
                select(ExchangeConnection.exchange, ExchangeOrder.symbol)
                .join(ExchangeConnection, ExchangeConnection.id == ExchangeOrder.connection_id)
                .where(ExchangeOrder.status == S.ARMED.value, ExchangeConnection.status == ACTIVE)
                .distinct()
                .order_by(ExchangeConnection.exchange, ExchangeOrder.symbol)
            )
        ).all()
    return [(ExchangeId(exchange), symbol) for exchange, symbol in markets]


async def fire_armed(rt: Runtime, *, skip: Collection[tuple[ExchangeId, str]] = ()) -> int:
    """Judge every armed order on an active account against its market's latest trades
    (a background job); fire those crossed. Returns how many fired. Markets in ``skip``
    (their trades streamed: ``trade_streams``) are left out. One market's or one order's
    failure does not stop the others."""
    fired = 0
    for exchange, symbol in await armed_markets(rt):
        if (exchange, symbol) in skip:
            continue
        try:
            fired += await check_market(rt, exchange=exchange, symbol=symbol)
        except UserError as error:  # the exchange unavailable, its rate limit: next time
            log.warning("exchange trigger check failed",
                        extra={"exchange": exchange.value, "code": error.code})  # fmt: skip
    return fired


async def check_market(rt: Runtime, *, exchange: ExchangeId, symbol: str) -> int:
    """Read ``symbol``'s latest trades at ``exchange`` once and judge its armed orders."""
    async with rt.exchanges.public_session(exchange) as session:
        trades = await session.trades(symbol, TRADES_READ)
    return await judge_market(rt, exchange=exchange, symbol=symbol, trades=trades)


async def judge_market(
    rt: Runtime, *, exchange: ExchangeId, symbol: str, trades: Sequence[Trade]
) -> int:
    """Judge ``symbol``'s armed orders at ``exchange`` on ``trades`` (read over REST, or
    streamed); how many fired."""
    async with rt.reads() as db:
        armed = list(
            await db.scalars(
                select(ExchangeOrder)
                .join(ExchangeConnection, ExchangeConnection.id == ExchangeOrder.connection_id)
                .where(ExchangeConnection.exchange == exchange.value,
                       ExchangeConnection.status == ACTIVE,
                       ExchangeOrder.symbol == symbol, ExchangeOrder.status == S.ARMED.value)
                .order_by(ExchangeOrder.id)
            )
        )  # fmt: skip
    fired = 0
    for row in armed:
        try:
            fired += await _judge(rt, row, trades)
        except UserError as error:  # refused at the exchange (recorded REJECTED), or lost
            log.warning("emulated stop's child not placed",
                        extra={"order": row.id, "code": error.code})  # fmt: skip
    return fired


async def _judge(rt: Runtime, row: ExchangeOrder, trades: Sequence[Trade]) -> int:
    assert row.stop_price is not None  # an armed order is a stop
    max_age = timedelta(seconds=rt.settings.exchange_trigger_max_price_age_seconds)
    armed = Armed(Side(row.side), row.stop_price, row.created_at)
    verdict = judge(armed, trades, now=rt.now(), max_age=max_age)
    if verdict.price is None:
        if verdict.note != row.trigger_note:
            await _note(rt, row.id, verdict.note)
        return 0
    return int(await fire(rt, order_id=row.id, price=verdict.price))


async def _note(rt: Runtime, order_id: int, note: str | None) -> None:
    """Why a still-armed stop did not fire (or None again), with its order event."""
    async with rt.sessions() as session, session.begin():
        row = await lock_order(session, order_id)
        if row.status == S.ARMED.value and row.trigger_note != note:
            row.trigger_note, row.updated_at = note, rt.now()
            await order_events.row_changed(session, row)


async def _list_may_fire(session: AsyncSession, row: ExchangeOrder) -> bool:
    """Whether the armed leg's list is ACTIVE and no other exit of it filled or fired."""
    status = await session.scalar(
        select(ExchangeOrderList.status).where(ExchangeOrderList.id == row.list_id)
    )
    won = await session.scalar(
        select(func.count()).where(
            ExchangeOrder.list_id == row.list_id, ExchangeOrder.id != row.id,
            ExchangeOrder.list_role.in_([r.value for r in EXITS]),
            or_(ExchangeOrder.filled > 0, ExchangeOrder.triggered_at.is_not(None)),
        )
    )  # fmt: skip
    return status == ListStatus.ACTIVE.value and not won


def _submission(row: ExchangeOrder) -> OrderSubmission:
    return OrderSubmission(
        client_order_id=row.client_order_id, symbol=row.symbol, side=Side(row.side),
        type=ExchangeOrderType(row.type), quantity=row.quantity, price=row.price,
        stop_price=row.stop_price,
    )  # fmt: skip


async def fire(rt: Runtime, *, order_id: int, price: Decimal) -> bool:
    """Claim the armed order (once, under its lock, after the risk gate) and send its
    child; whether this call claimed it."""
    async with rt.reads() as db:
        row = await db.get(ExchangeOrder, order_id)
        assert row is not None  # orders are never deleted
        connection = await db.get(ExchangeConnection, row.connection_id)
    assert connection is not None
    if connection.status != ACTIVE:  # suspended or disconnected: its stops never fire
        return False
    submission = _submission(row)
    if row.list_id is not None:  # the other leg's fills, as fresh as can be, first
        await reconcile_account(rt, connection_id=row.connection_id)
    async with exchange_session(rt, connection) as session:
        market = market_named(await session.markets(), row.symbol)
        if not await _claim(rt, row, submission, market, price):
            return False
        await submit(rt, session, order_id, child_of(submission))
    log.info("emulated stop fired", extra={"order": order_id})
    return True


async def _claim(
    rt: Runtime,
    row: ExchangeOrder,
    submission: OrderSubmission,
    market: ExchangeMarket,
    price: Decimal,
) -> bool:
    """ARMED -> PENDING_SUBMIT under the row's lock, unless the user's risk state refuses
    the child now (recorded as the order's ``trigger_note``; it stays ARMED)."""
    async with rt.sessions() as session, session.begin():
        refused: str | None = None
        try:
            order = proposed_order(market, submission)  # counted when it was armed:
            await check_risk(rt, session, row.user_id, order, new_order=False)
        except UserError as error:
            refused = error.code
        locked = await lock_order(session, row.id)
        if locked.status != S.ARMED.value:
            return False
        if locked.list_id is not None and not await _list_may_fire(session, locked):
            locked.status, locked.updated_at = S.CANCELED.value, rt.now()  # one cancels the other
            await order_events.row_changed(session, locked)
            return False
        if refused is not None:
            locked.trigger_note = refused
            await order_events.row_changed(session, locked)
            log.info("emulated stop held by the risk gate",
                     extra={"order": row.id, "code": refused})  # fmt: skip
            return False
        locked.status, locked.triggered_at, locked.trigger_price = (
            S.PENDING_SUBMIT.value, rt.now(), price,
        )  # fmt: skip
        locked.trigger_note, locked.updated_at = None, rt.now()
        await order_events.row_changed(session, locked)
    return True
