"""Deposits, both kinds (reads and what card and crypto deposits share).

Card deposits: ``app.wallets.card_deposits``; crypto: ``app.wallets.crypto_deposits``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import InvariantViolation
from app.events import outbox, topics
from app.wallets.domain.deposits import DepositStatus
from db.models import Deposit, ReferencePrice
from db.queries import Page, keyset_page, rows_by_ids


async def deposits_by_ids(session: AsyncSession, ids: Sequence[int]) -> list[Deposit | None]:
    return await rows_by_ids(session, Deposit, ids)


async def list_deposits(
    session: AsyncSession, *, user_id: int, first: int, after: str | None
) -> Page[Deposit]:
    """The user's deposits, newest first."""
    return await keyset_page(
        session,
        select(Deposit).where(Deposit.user_id == user_id),
        key=Deposit.id,  # type: ignore[arg-type]
        first=first,
        after=after,
        descending=True,
    )


async def lock_deposit(session: AsyncSession, deposit_id: int) -> Deposit | None:
    """SELECT ... FOR UPDATE on one deposit row."""
    return await session.scalar(
        select(Deposit)
        .where(Deposit.id == deposit_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def usd_deposited_since(session: AsyncSession, *, user_id: int, since: datetime) -> Decimal:
    """USD value (at today's reference prices) of the user's deposits since ``since``
    that did not fail: pending ones count, so concurrent requests cannot overshoot."""
    total = await session.scalar(
        select(func.coalesce(func.sum(Deposit.amount * ReferencePrice.usd_price), 0))
        .join(ReferencePrice, ReferencePrice.currency == Deposit.currency)
        .where(
            Deposit.user_id == user_id,
            Deposit.created_at >= since,
            Deposit.status != DepositStatus.FAILED.value,
        )
    )
    return Decimal(total)


async def usd_price(session: AsyncSession, currency: str) -> Decimal:
    price = await session.scalar(
        select(ReferencePrice.usd_price).where(ReferencePrice.currency == currency)
    )
    if price is None:
        raise InvariantViolation(f"no reference price for {currency}")
    return price


async def emit_event(
    session: AsyncSession, deposit: Deposit, topic: topics.Topic[Any], **fields: Any
) -> None:
    """An outbox event of ``topic`` (``topics.DEPOSIT_CREDITED``, ...) about ``deposit``,
    for its owner: ``fields`` are its payload's after the deposit's id, method, currency."""
    payload = topic.payload(
        deposit_id=deposit.id, method=deposit.method, currency=deposit.currency, **fields
    )
    await outbox.write(session, topic.event(deposit.user_id, payload))
