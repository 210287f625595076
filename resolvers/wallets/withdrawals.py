"""Withdrawal queries and mutations."""

from __future__ import annotations

from decimal import Decimal

import strawberry
from strawberry.types import Info

from app.wallets import withdrawal_admin, withdrawals
from app.wallets.domain.withdrawals import WithdrawalStatus as Status
from db.models import Withdrawal as WithdrawalRow
from graphql_schema.gateway.context import Context
from graphql_schema.ids import node_pk
from graphql_schema.paging import to_connection
from graphql_schema.results import (
    CancelWithdrawalResult,
    RefillHotWalletResult,
    RequestWithdrawalResult,
    ReviewWithdrawalResult,
)
from graphql_schema.wallets.types import amount_in
from graphql_schema.wallets.withdrawals import (
    CustodyPayload,
    WithdrawalConnection,
    WithdrawalNode,
    WithdrawalPayload,
    WithdrawalStatus,
)
from resolvers.common import attempt

Ctx = Info[Context, None]
NODE = "Withdrawal"


def _payload(row: WithdrawalRow) -> WithdrawalPayload:
    return WithdrawalPayload(withdrawal=WithdrawalNode.from_row(row))


async def my_withdrawals(
    info: Ctx, first: int = 20, after: str | None = None, status: WithdrawalStatus | None = None
) -> WithdrawalConnection:
    """Your withdrawals, newest first."""
    ctx = info.context
    user = ctx.require_user()
    async with ctx.rt.sessions() as session:
        page = await withdrawals.list_withdrawals(
            session,
            user_id=user.id,
            first=first,
            after=after,
            status=Status(status.value) if status else None,
        )
    return to_connection(WithdrawalConnection, page, WithdrawalNode.from_row)  # type: ignore[return-value]


async def pending_withdrawals(
    info: Ctx, first: int = 20, after: str | None = None
) -> WithdrawalConnection:
    """Admin only: withdrawals waiting for review, oldest first."""
    ctx = info.context
    ctx.require_admin()
    async with ctx.rt.sessions() as session:
        page = await withdrawal_admin.list_pending_review(session, first=first, after=after)
    return to_connection(WithdrawalConnection, page, WithdrawalNode.from_row)  # type: ignore[return-value]


async def request_withdrawal(
    info: Ctx,
    currency: str,
    amount: Decimal,
    destination_address: str,
    totp_code: str,
    idempotency_key: str,
) -> RequestWithdrawalResult:
    """Send crypto to an address. Needs a verified email, two-factor (a fresh code or a
    recovery code) and KYC level 1. Holds amount + fee at once; above the review
    threshold it waits for an admin (PENDING_REVIEW), otherwise it is paid out soon."""
    call = withdrawals.request_withdrawal(
        rt=info.context.rt,
        user_id=info.context.user_id,
        currency=currency,
        amount=amount,
        destination_address=destination_address,
        totp_code=totp_code,
        idempotency_key=idempotency_key,
    )
    return await attempt(call, _payload)


async def cancel_withdrawal(info: Ctx, id: strawberry.ID) -> CancelWithdrawalResult:
    """Take back your withdrawal while it is not sent; the held amount is released."""

    async def call() -> WithdrawalRow:
        return await withdrawals.cancel_withdrawal(
            rt=info.context.rt,
            user_id=info.context.user_id,
            withdrawal_id=node_pk(id, NODE, field="id"),
        )

    return await attempt(call(), _payload)


async def approve_withdrawal(info: Ctx, id: strawberry.ID) -> ReviewWithdrawalResult:
    """Admin only: release a withdrawal waiting for review."""

    async def call() -> WithdrawalRow:
        return await withdrawal_admin.approve_withdrawal(
            rt=info.context.rt,
            actor_id=info.context.user_id,
            withdrawal_id=node_pk(id, NODE, field="id"),
        )

    return await attempt(call(), _payload)


async def reject_withdrawal(info: Ctx, id: strawberry.ID, reason: str) -> ReviewWithdrawalResult:
    """Admin only: refuse a withdrawal waiting for review; the held amount is released."""

    async def call() -> WithdrawalRow:
        return await withdrawal_admin.reject_withdrawal(
            rt=info.context.rt,
            actor_id=info.context.user_id,
            withdrawal_id=node_pk(id, NODE, field="id"),
            reason=reason,
        )

    return await attempt(call(), _payload)


async def refill_hot_wallet(info: Ctx, currency: str, amount: Decimal) -> RefillHotWalletResult:
    """Admin only: move funds from cold storage to the hot wallet, for payouts the hot
    wallet cannot cover."""
    call = withdrawal_admin.refill_hot_wallet(
        rt=info.context.rt, actor_id=info.context.user_id, currency=currency, amount=amount
    )
    return await attempt(
        call,
        lambda c: CustodyPayload(
            currency=c.currency,
            hot_wallet=amount_in(c.currency, c.hot_wallet),
            cold_storage=amount_in(c.currency, c.cold_storage),
        ),
    )
