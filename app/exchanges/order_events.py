"""The events of orders on connected accounts (``topics.EXCHANGE_ORDERS`` and
``EXCHANGE_FILLS``, to the account's owner), written to the outbox in the transaction
that changed the rows: ``changed`` for order rows (ORM objects or the records of
``ORDER_COLUMNS``), ``filled`` for the fills just inserted (records of
``FILL_COLUMNS``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.events import outbox, topics
from app.events.topics.exchanges import of_row
from db.models import ExchangeFill, ExchangeOrder
from db.raw import bind

# what a changed order's statement returns: the event's fields and the owner
ORDER_COLUMNS = bind(
    "app.exchanges.order_events.ORDER_COLUMNS", ExchangeOrder,
    [f.name for f in fields(topics.ExchangeOrderUpdated)] + ["user_id"],
)  # fmt: skip
FILL_COLUMNS = bind(
    "app.exchanges.order_events.FILL_COLUMNS", ExchangeFill,
    [f.name for f in fields(topics.ExchangeFilled)],
)  # fmt: skip


async def changed(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Each of ``rows`` (records of ``ORDER_COLUMNS``: orders as a change left them) to
    its owner."""
    if rows:
        await outbox.write(session, *(
            topics.exchange_order_updated(row["user_id"], of_row(topics.ExchangeOrderUpdated, row))
            for row in rows
        ))  # fmt: skip


async def row_changed(session: AsyncSession, row: ExchangeOrder) -> None:
    """An ORM row just changed in ``session`` (flushed first, so the event carries what
    the table holds: ``updated_at`` and the server's defaults)."""
    await session.flush()
    await changed(session, [{name: getattr(row, name) for name in ORDER_COLUMNS}])


async def filled(session: AsyncSession, user_id: int, rows: Sequence[Any]) -> None:
    """Each of ``rows`` (fills of ``user_id``'s account, just recorded) to ``user_id``."""
    if rows:
        await outbox.write(session, *(
            topics.exchange_filled(user_id, of_row(topics.ExchangeFilled, row)) for row in rows
        ))  # fmt: skip
