"""The platform's protections on an account that stops being usable: a connected account
SUSPENDED (its key check failed, or found withdrawals allowed) or DISCONNECTED can never
fire an emulated stop nor run an order list, so, in the transaction of that status
change (``stop_protections``):

- each ARMED stop is disarmed: CANCELED, ``trigger_note`` ACCOUNT_SUSPENDED or
  ACCOUNT_DISCONNECTED, ``triggered_at`` left empty (its ``triggerState`` is DISARMED);
- each ACTIVE order list (OCO, bracket) ends CANCELED with the same ``note``: nothing is
  placed for it any more (a suspended account's remaining legs are canceled at the
  exchange by the ``exchange-order-lists`` job, as for any canceled list, when the key
  still allows it);
- each changed order writes its order event, and the owner is told once which
  protections stopped (a HIGH notification, emailed by default), with what a disconnect
  canceled at the exchange or left open there.

Nothing here calls the exchange: the caller holds the account's row lock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.exchanges import order_events
from app.exchanges.domain.order_lists import ListStatus
from app.exchanges.domain.orders import ExchangeOrderStatus
from app.exchanges.domain.triggers import ACCOUNT_SUSPENDED
from app.notifications.notifications import NewNotification, create_notifications
from app.notifications.rules import Draft, NotificationType, Priority, global_id
from db.models import ExchangeConnection, ExchangeOrder, ExchangeOrderList

S = ExchangeOrderStatus
SOURCE_PREFIX = "exchange-protections"
TITLE = "Exchange protections stopped"


@dataclass(frozen=True, slots=True)
class Stopped:
    """What a status change stopped, and what a disconnect did at the exchange."""

    stops: Sequence[ExchangeOrder]  # disarmed
    lists: Sequence[ExchangeOrderList]  # ended
    canceled: int = 0  # live orders canceled at the exchange first (a disconnect)
    left_open: int = 0  # live orders left open at the exchange (a disconnect, as asked)

    @property
    def anything(self) -> bool:
        return bool(self.stops or self.lists or self.canceled or self.left_open)


async def stop_protections(
    session: AsyncSession,
    connection: ExchangeConnection,
    *,
    reason: str,
    now: datetime,
    code: str | None = None,
    canceled: int = 0,
    left_open: int = 0,
) -> Stopped:
    """Disarm ``connection``'s ARMED stops and end its ACTIVE lists (``reason``: the
    note), with their events and the owner's notification (``code``: why the account was
    suspended), in ``session``'s transaction."""
    stops = list(
        await session.scalars(
            select(ExchangeOrder)
            .where(ExchangeOrder.connection_id == connection.id,
                   ExchangeOrder.status == S.ARMED.value)
            .order_by(ExchangeOrder.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )  # fmt: skip
    for row in stops:
        row.status, row.trigger_note, row.updated_at = S.CANCELED.value, reason, now
    if stops:
        await session.flush()
        columns = order_events.ORDER_COLUMNS
        await order_events.changed(
            session, [{name: getattr(row, name) for name in columns} for row in stops]
        )
    lists = list(
        await session.scalars(
            update(ExchangeOrderList)
            .where(ExchangeOrderList.connection_id == connection.id,
                   ExchangeOrderList.status == ListStatus.ACTIVE.value)
            .values(status=ListStatus.CANCELED.value, note=reason, updated_at=now)
            .returning(ExchangeOrderList)
        )
    )  # fmt: skip
    stopped = Stopped(stops, lists, canceled, left_open)
    if stopped.anything:
        await create_notifications(session, [notice(connection, stopped, reason, now, code)])
    return stopped


def notice(
    connection: ExchangeConnection, stopped: Stopped, reason: str, now: datetime,
    code: str | None = None,
) -> NewNotification:  # fmt: skip
    """The owner's notification of what stopped (once per status change: its source
    names the account, the reason and the moment)."""
    what = "was suspended" if reason == ACCOUNT_SUSPENDED else "was disconnected"
    if code is not None:
        what += f" ({code})"
    parts = []
    if stopped.stops:
        listed = ", ".join(_stop(row) for row in stopped.stops)
        parts.append(f"{_count(len(stopped.stops), 'stop order')} disarmed ({listed})")
    if stopped.lists:
        listed = ", ".join(f"{row.kind} {row.symbol}" for row in stopped.lists)
        parts.append(f"{_count(len(stopped.lists), 'order list')} ended ({listed})")
    if stopped.canceled:
        parts.append(f"{_count(stopped.canceled, 'open order')} canceled at the exchange")
    if stopped.left_open:
        parts.append(f"{_count(stopped.left_open, 'order')} left open at the exchange, no"
                     " longer followed by the platform")  # fmt: skip
    body = (f"Your {connection.exchange} account \u201c{connection.label}\u201d {what}: "
            + "; ".join(parts) + ".")  # fmt: skip
    draft = Draft(NotificationType.TRADE, Priority.HIGH, TITLE, body,
                  global_id("ExchangeAccount", connection.id))  # fmt: skip
    source = f"{SOURCE_PREFIX}:{connection.id}:{reason}:{now.isoformat()}"
    return NewNotification(connection.user_id, source, draft)


def _stop(row: ExchangeOrder) -> str:
    stop = format(row.stop_price.normalize(), "f") if row.stop_price is not None else "?"
    quantity = format(row.quantity.normalize(), "f")
    return f"{row.side} {quantity} {row.symbol} at {stop}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
