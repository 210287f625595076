"""Money queries and mutations."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from strawberry.types import Info

from app.wallets import transfers
from app.wallets.history import list_history
from app.wallets.wallets import list_currencies
from graphql_schema.gateway.context import Context
from graphql_schema.paging import page_info
from graphql_schema.results import TransferResult
from graphql_schema.wallets.types import (
    Currency,
    Transaction,
    TransactionConnection,
    TransactionEdge,
    TransactionKind,
    TransferNode,
    TransferPayload,
    amount_in,
)
from resolvers.common import attempt

Ctx = Info[Context, None]


async def currencies(info: Ctx) -> list[Currency]:
    async with info.context.rt.sessions() as session:
        rows = await list_currencies(session)
    return [Currency.from_row(row, price) for row, price in rows]


async def transactions(
    info: Ctx,
    first: int = 20,
    after: str | None = None,
    currency: str | None = None,
    kind: list[TransactionKind] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> TransactionConnection:
    """Your history, newest first. ``since`` inclusive, ``until`` exclusive."""
    ctx = info.context
    user = ctx.require_user()
    async with ctx.rt.sessions() as session:
        page = await list_history(
            session,
            user_id=user.id,
            first=first,
            after=after,
            currency=currency,
            kinds=[k.value for k in kind] if kind else None,
            since=since,
            until=until,
        )
    edges = [TransactionEdge(cursor=c, node=Transaction.from_item(i)) for c, i in page.items]
    return TransactionConnection(
        edges=edges,
        page_info=page_info(page),
    )


async def transfer(
    info: Ctx,
    recipient: str,
    currency: str,
    amount: Decimal,
    idempotency_key: str,
    memo: str | None = None,
) -> TransferResult:
    """Send to another user by email or handle; instant and final."""
    call = transfers.transfer(
        rt=info.context.rt,
        sender_id=info.context.user_id,
        recipient=recipient,
        currency=currency,
        amount=amount,
        memo=memo,
        idempotency_key=idempotency_key,
    )
    return await attempt(
        call,
        lambda done: TransferPayload(
            transfer=TransferNode.from_row(done.transfer),
            balance_after=amount_in(done.transfer.currency, done.sender_balance_after),
        ),
    )
