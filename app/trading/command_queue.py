"""The engine's command queue, seen from a request: store commands in sequence for the
market's engine (``enqueue``), wait until it has applied them (``after_engine``) and read
the orders as it left them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from app.core.coalesce import Coalescer
from app.core.errors import InvariantViolation
from app.events.engine_signals import WAKE_CHANNEL
from app.runtime import Runtime
from app.trading.domain import orders as rules
from app.trading.domain.errors import InvalidOrder
from app.trading.domain.matching import RejectReason, rejection_error
from app.trading.domain.orders import OrderEvent, OrderStatus, ValidOrder
from app.trading.sql import COMMANDS, ENQUEUE_SQL
from db.models import Order
from db.queries import rows_by_ids
from db.raw import driver


async def enqueue(
    session: AsyncSession,
    market_id: int,
    commands: Sequence[tuple[str, int | None, int, dict]],
    *,
    holds: Sequence[tuple[Order, int]] = (),
) -> int:
    """Store (kind, order id, user id, args) commands in sequence and wake the engine
    (NOTIFY, delivered at commit); the last seq. One statement, and the last of its
    transaction: the markets row lock that orders the commands is held only from here
    to COMMIT. ``holds``: (order, hold id) pairs to link in the same statement."""
    for order, hold_id in holds:
        set_committed_value(order, "hold_id", hold_id)
    connection = await driver(session)
    row = await connection.fetchrow(
        ENQUEUE_SQL,
        market_id,
        *COMMANDS.arrays(
            COMMANDS.row(kind=kind, order_id=order_id, user_id=user_id, args=json.dumps(args))
            for kind, order_id, user_id, args in commands
        ),
        WAKE_CHANNEL,
        [order.id for order, _ in holds],
        [hold_id for _, hold_id in holds],
    )
    return int(row["last"])


def first_command(valid: ValidOrder) -> tuple[OrderStatus, str]:
    if valid.trigger is None:
        return OrderStatus.NEW, "PLACE"
    return rules.apply(OrderStatus.NEW, OrderEvent.ARM), "ARM"


async def after_engine(
    rt: Runtime, market_id: int, seq: int, order_ids: Sequence[int]
) -> list[Order]:
    """Wait until the engine has applied ``seq``; the orders as it left them (read
    together with those of the other calls waiting at the same time: one query)."""
    await rt.applied.wait(market_id, seq, rt.settings.trading_wait_seconds)
    reads = rt.coalescer("read_orders", lambda: Coalescer(_read_orders(rt), max_batch=500))
    return list(await asyncio.gather(*(reads.submit(order_id) for order_id in order_ids)))


def _read_orders(rt: Runtime) -> Callable[[list[int]], Awaitable[list[Order | BaseException]]]:
    async def run(order_ids: list[int]) -> list[Order | BaseException]:
        async with rt.reads() as session:
            rows = await rows_by_ids(session, Order, order_ids)
        return [
            row if row is not None else InvariantViolation(f"order {order_id} missing")
            for order_id, row in zip(order_ids, rows, strict=True)
        ]

    return run


async def get_orders(rt: Runtime, order_ids: Sequence[int]) -> list[Order]:
    async with rt.reads() as session:
        rows = await rows_by_ids(session, Order, order_ids)
    if None in rows:
        raise InvariantViolation(f"orders missing: {order_ids}")
    return rows  # type: ignore[return-value]


def raise_if_refused(order: Order) -> None:
    if order.status == OrderStatus.REJECTED.value and order.reason:
        try:
            raise rejection_error(RejectReason(order.reason))
        except ValueError:
            raise InvalidOrder(f"The order was rejected: {order.reason}") from None
