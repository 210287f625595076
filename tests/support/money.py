"""Helpers for money tests: users with verified email, funding through the ledger."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select, update

from app.ledger import journal as ledger
from app.ledger.rules import AccountKind, move
from app.runtime import Runtime
from app.wallets.wallets import wallets_by_user_ids
from db.models import User
from db.session import in_transaction
from tests.support.documents import signed_in

TRANSFER = (
    "mutation($to: String!, $cur: String!, $amount: Decimal!, $key: String!, $memo: String) {"
    " transfer(recipient: $to, currency: $cur, amount: $amount, idempotencyKey: $key, memo: $memo)"
    " { __typename ... on TransferPayload { balanceAfter transfer { id amount currency memo"
    " sender { displayName } recipient { displayName handle } } }"
    " ... on Error { code message } ... on ValidationFailed { field } } }"
)
WALLETS = "{ me { wallets { currency available held staked total usdValue } } }"


async def verified_user(gql, rt: Runtime, email: str, handle: str | None = None) -> dict:
    """Register, verify (directly in the database) and log in; returns the AuthPayload."""
    auth = await signed_in(gql, email)
    async with rt.sessions() as session, session.begin():
        await session.execute(
            update(User)
            .where(User.email == email)
            .values(email_verified_at=rt.now(), handle=handle)
        )
    return auth


async def user_id(rt: Runtime, email: str) -> int:
    async with rt.sessions() as session:
        return await session.scalar(select(User.id).where(User.email == email))


async def fund(rt: Runtime, uid: int, currency: str, amount: str) -> None:
    """Money enters from the EXTERNAL system account, through the ledger like any other."""

    async def work(session):
        await ledger.post(
            session,
            kind="CORRECTION",
            legs=move(
                Decimal(amount),
                ledger.system_account(currency, AccountKind.EXTERNAL),
                ledger.user_account(uid, currency),
            ),
            memo="test funding",
        )

    await in_transaction(rt.sessions, work)


async def balances(rt: Runtime, uid: int) -> dict[str, tuple[Decimal, Decimal]]:
    async with rt.sessions() as session:
        (wallets,) = await wallets_by_user_ids(session, [uid])
    return {w.currency: (w.available, w.held) for w in wallets}
