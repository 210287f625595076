"""Staking queries and mutations."""

from __future__ import annotations

from decimal import Decimal

import strawberry
from strawberry.types import Info

from app.staking import products as product_service
from app.staking import rules, staking
from app.staking.rules import ProductKind, ProductStatus
from db.models import Stake as StakeRow
from graphql_schema.gateway.context import Context
from graphql_schema.ids import node_pk
from graphql_schema.results import (
    SetStakeAutoRenewResult,
    StakeResult,
    StakingProductResult,
    UnstakeResult,
)
from graphql_schema.staking.types import (
    StakeNode,
    StakePayload,
    StakingProductKind,
    StakingProductNode,
    StakingProductPayload,
    StakingProductStatus,
    StakingQuote,
    UnstakePayload,
)
from graphql_schema.wallets.types import amount_in
from resolvers.common import attempt

Ctx = Info[Context, None]
PRODUCT = "StakingProduct"
STAKE = "Stake"


def _stake_payload(row: StakeRow) -> StakePayload:
    return StakePayload(stake=StakeNode.from_row(row))


def _product_payload(product: product_service.Product) -> StakingProductPayload:
    return StakingProductPayload(product=StakingProductNode.from_product(product))


async def staking_products(
    info: Ctx, asset: str | None = None, include_closed: bool = False
) -> list[StakingProductNode]:
    """The staking catalogue (a short list), by asset and term."""
    ctx = info.context
    async with ctx.rt.sessions() as session:
        products = await product_service.list_products(
            session,
            today=rules.utc_day(ctx.rt.now()),
            asset=asset,
            include_closed=include_closed,
        )
    for product in products:
        ctx.loaders.staking_product_by_id.prime(product.id, product)
    return [StakingProductNode.from_product(p) for p in products]


async def staking_quote(info: Ctx, product_id: strawberry.ID, amount: Decimal) -> StakingQuote:
    """What ``amount`` would earn per day, per term and per year if the rate stays."""
    result = await product_service.staking_quote(
        rt=info.context.rt,
        product_id=node_pk(product_id, PRODUCT, field="productId"),
        amount=amount,
    )
    return StakingQuote.from_result(result)


async def stake(
    info: Ctx,
    product_id: strawberry.ID,
    amount: Decimal,
    idempotency_key: str,
    auto_renew: bool = False,
) -> StakeResult:
    """Stake from your available balance. Rewards start the next UTC day; ``autoRenew``
    (locked products) starts a new term at maturity instead of paying out."""

    async def call() -> StakeRow:
        return await staking.stake(
            rt=info.context.rt,
            user_id=info.context.user_id,
            product_id=node_pk(product_id, PRODUCT, field="productId"),
            amount=amount,
            auto_renew=auto_renew,
            idempotency_key=idempotency_key,
        )

    return await attempt(call(), _stake_payload)


async def unstake(
    info: Ctx,
    stake_id: strawberry.ID,
    amount: Decimal,
    idempotency_key: str,
    accept_penalty: bool = False,
) -> UnstakeResult:
    """Return (part of) a stake to your available balance. A locked stake before
    maturity needs ``acceptPenalty: true``: it forfeits this term's rewards."""

    async def call() -> staking.Unstaked:
        return await staking.unstake(
            rt=info.context.rt,
            user_id=info.context.user_id,
            stake_id=node_pk(stake_id, STAKE, field="stakeId"),
            amount=amount,
            accept_penalty=accept_penalty,
            idempotency_key=idempotency_key,
        )

    return await attempt(
        call(),
        lambda done: UnstakePayload(
            stake=StakeNode.from_row(done.stake),
            returned=amount_in(done.stake.currency, done.returned),
            forfeited=amount_in(done.stake.currency, done.forfeited),
        ),
    )


async def set_stake_auto_renew(
    info: Ctx, stake_id: strawberry.ID, auto_renew: bool
) -> SetStakeAutoRenewResult:
    """Renew a locked stake at maturity, or pay it out."""

    async def call() -> StakeRow:
        return await staking.set_auto_renew(
            rt=info.context.rt,
            user_id=info.context.user_id,
            stake_id=node_pk(stake_id, STAKE, field="stakeId"),
            auto_renew=auto_renew,
        )

    return await attempt(call(), _stake_payload)


async def create_staking_product(
    info: Ctx,
    asset: str,
    kind: StakingProductKind,
    apy: Decimal,
    min_amount: Decimal,
    max_per_user: Decimal,
    capacity: Decimal,
    compounding: bool = False,
    lock_days: int | None = None,
) -> StakingProductResult:
    """Admin only. ``apy`` in percent (2 to 18); LOCKED products last 30, 60, 90 or 120
    days."""
    call = product_service.create_product(
        rt=info.context.rt,
        actor_id=info.context.user_id,
        asset=asset,
        kind=ProductKind(kind.value),
        lock_days=lock_days,
        apy=apy,
        compounding=compounding,
        min_amount=min_amount,
        max_per_user=max_per_user,
        capacity=capacity,
    )
    return await attempt(call, _product_payload)


async def update_staking_product(
    info: Ctx,
    product_id: strawberry.ID,
    apy: Decimal | None = None,
    min_amount: Decimal | None = None,
    max_per_user: Decimal | None = None,
    capacity: Decimal | None = None,
    status: StakingProductStatus | None = None,
) -> StakingProductResult:
    """Admin only. A new ``apy`` applies from the next accrual day (tomorrow, UTC);
    ``status: CLOSED`` stops new stakes and renewals."""

    async def call() -> product_service.Product:
        return await product_service.update_product(
            rt=info.context.rt,
            actor_id=info.context.user_id,
            product_id=node_pk(product_id, PRODUCT, field="productId"),
            apy=apy,
            min_amount=min_amount,
            max_per_user=max_per_user,
            capacity=capacity,
            status=ProductStatus(status.value) if status else None,
        )

    return await attempt(call(), _product_payload)
