"""Disconnecting a connected exchange account without orphaning its orders.

A trading user who disconnects an account expects the orders they placed through the
platform not to be left working at the exchange, unseen: once the key is erased the
platform can neither follow nor cancel them. So ``disconnect`` (``cancel_open_orders``,
the default) first cancels each of the account's live orders at the exchange, with the
key (an order whose placement is not settled is looked up first, by reconciliation),
best effort and outside any transaction; then, under the account's row lock, refuses
with ``ExchangeOrdersStillOpen`` (nothing changed, the key kept: retry later) if one is
still live, else disconnects (``accounts.disconnect_account``: armed stops disarmed,
lists ended, the owner notified, the secret erased). With ``cancel_open_orders`` false
the live orders are left open at the exchange, knowingly, and the notification says
how many."""

from __future__ import annotations

import logging

from sqlalchemy import select

from app.core.errors import NotFound, UserError
from app.exchanges import accounts, orders
from app.exchanges.domain.orders import ExchangeOrderStatus
from app.exchanges.following import reconcile_account
from app.runtime import Runtime
from db.models import ExchangeConnection, ExchangeOrder

log = logging.getLogger(__name__)

S = ExchangeOrderStatus


async def disconnect(
    rt: Runtime, *, user_id: int, connection_id: int, cancel_open_orders: bool = True
) -> ExchangeConnection:
    if not cancel_open_orders:
        return await accounts.disconnect_account(rt, user_id=user_id, connection_id=connection_id)
    live = await _live(rt, user_id=user_id, connection_id=connection_id)
    canceled = 0
    if any(row.status == S.PENDING_SUBMIT.value for row in live):
        try:  # which of them reached the exchange: those can be canceled
            await reconcile_account(rt, connection_id=connection_id)
        except UserError as error:
            log.info("exchange account not reconciled before its disconnect",
                     extra={"connection": connection_id, "code": error.code})  # fmt: skip
        live = await _live(rt, user_id=user_id, connection_id=connection_id)
    for row in live:
        canceled += await _cancel(rt, user_id=user_id, row=row)
    return await accounts.disconnect_account(
        rt, user_id=user_id, connection_id=connection_id, refuse_live=True, canceled=canceled
    )


async def _live(rt: Runtime, *, user_id: int, connection_id: int) -> list[ExchangeOrder]:
    async with rt.reads() as session:
        owned = await session.scalar(
            select(ExchangeConnection.id).where(
                ExchangeConnection.id == connection_id,
                ExchangeConnection.user_id == user_id,
                ExchangeConnection.status != accounts.DISCONNECTED,
            )
        )
        if owned is None:
            raise NotFound("No such exchange account of yours", field="id")
        return await accounts.live_orders(session, connection_id)


async def _cancel(rt: Runtime, *, user_id: int, row: ExchangeOrder) -> int:
    """1 when the order is canceled at the exchange now, else 0 (it filled meanwhile,
    the key was refused, the exchange is away: the disconnect then sees it live, or
    not)."""
    try:
        done = await orders.cancel_order(rt, user_id=user_id, order_id=row.id)
    except UserError as error:
        log.info("exchange order not canceled before its account's disconnect",
                 extra={"order": row.id, "code": error.code})  # fmt: skip
        return 0
    return int(done.status == S.CANCELED.value)
