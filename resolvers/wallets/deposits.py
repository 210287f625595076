"""Deposit queries and mutations."""

from __future__ import annotations

from decimal import Decimal

from strawberry import relay
from strawberry.types import Info

from app.wallets import card_deposits, crypto_deposits
from app.wallets.deposits import list_deposits
from graphql_schema.gateway.context import Context
from graphql_schema.ids import key_of
from graphql_schema.paging import to_connection
from graphql_schema.results import (
    CreateDepositResult,
    CreditCryptoDepositResult,
    DepositAddressResult,
)
from graphql_schema.wallets.deposits import (
    CreateDepositPayload,
    CreditCryptoDepositPayload,
    DepositAddress,
    DepositConnection,
    DepositNode,
)
from resolvers.common import attempt

Ctx = Info[Context, None]


async def create_deposit(
    info: Ctx, amount: Decimal, currency: str, idempotency_key: str
) -> CreateDepositResult:
    """Start a card deposit (fiat currencies): confirm it in the browser with the returned
    Stripe client secret; the money is credited when Stripe reports the payment."""
    call = card_deposits.create_card_deposit(
        rt=info.context.rt,
        user_id=info.context.user_id,
        amount=amount,
        currency=currency,
        idempotency_key=idempotency_key,
    )
    return await attempt(
        call,
        lambda started: CreateDepositPayload(
            deposit=DepositNode.from_row(started.deposit), client_secret=started.client_secret
        ),
    )


async def credit_crypto_deposit(
    info: Ctx, currency: str, address: str, tx_hash: str, amount: Decimal
) -> CreditCryptoDepositResult:
    """Admin only: credit an on-chain transfer to a user's deposit address, once per
    transaction hash."""
    call = crypto_deposits.credit_crypto_deposit(
        rt=info.context.rt,
        actor_id=info.context.user_id,
        currency=currency,
        address=address,
        tx_hash=tx_hash,
        amount=amount,
    )
    return await attempt(
        call,
        lambda done: CreditCryptoDepositPayload(
            deposit=DepositNode.from_row(done.deposit), credited=done.credited
        ),
    )


async def deposit_address(info: Ctx, currency: str) -> DepositAddressResult:
    """Your stable address for a crypto currency."""
    call = crypto_deposits.deposit_address(
        rt=info.context.rt, user_id=info.context.user_id, currency=currency
    )
    return await attempt(call, DepositAddress.from_info)


async def deposit(info: Ctx, id: relay.GlobalID) -> DepositNode | None:
    """One of your deposits; null when it does not exist or is not yours."""
    key = key_of(id.node_id) if id.type_name == "Deposit" else None
    if key is None:
        return None
    row = await info.context.loaders.deposit_by_id.load(key)
    return DepositNode.visible(info, row)


async def deposits(info: Ctx, first: int = 20, after: str | None = None) -> DepositConnection:
    """Your deposits, newest first."""
    ctx = info.context
    user = ctx.require_user()
    async with ctx.rt.sessions() as session:
        page = await list_deposits(session, user_id=user.id, first=first, after=after)
    for _, row in page.items:
        ctx.loaders.deposit_by_id.prime(row.id, row)
    return to_connection(DepositConnection, page, DepositNode.from_row)  # type: ignore[return-value]
