"""What following an account's orders tells the rest of the platform: an
``exchange-orders`` event (``app.events.topics.exchanges``) in the transaction that
recorded its orders' changes or fills (the bots job wakes the account's bots on it)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.events import outbox, topics
from db.models import ExchangeConnection


async def orders_changed(
    session: AsyncSession, connection_id: int, symbol: str, changed: int, fills: int
) -> None:
    """Tell the account's owner, in the session's transaction, that ``changed`` of its
    orders on ``symbol`` moved and ``fills`` fills were recorded."""
    owner = await session.scalar(
        select(ExchangeConnection.user_id).where(ExchangeConnection.id == connection_id)
    )
    payload = topics.ExchangeOrdersChanged(connection_id, symbol, changed, fills)
    await outbox.write(session, topics.exchange_orders_changed(owner, payload))
