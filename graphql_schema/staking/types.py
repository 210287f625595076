"""Staking types: products, stakes, rewards, quotes and the mutation payloads.

Rates (``apy``, ``apr``) are percentages a year: "8.5" is 8.5 %."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal

import strawberry
from strawberry import relay
from strawberry.types import Info

from app.staking import rules, staking
from app.staking.products import Product, QuoteResult
from db.models import Stake as StakeRow
from db.models import StakingReward as StakingRewardRow
from graphql_schema.enums import derived_enum
from graphql_schema.ids import node_keys
from graphql_schema.paging import page_info
from graphql_schema.wallets.types import amount_in, optional_amount_in

StakingProductKind = derived_enum(rules.ProductKind, name="StakingProductKind")
StakingProductStatus = derived_enum(rules.ProductStatus, name="StakingProductStatus")
StakeStatus = derived_enum(rules.StakeStatus, name="StakeStatus")


@strawberry.type(name="StakingProduct")
class StakingProductNode(relay.Node):
    """Something to stake into. Rewards are paid daily (UTC days) from the day after
    a stake is made."""

    id: relay.NodeID[int]
    asset: str
    kind: StakingProductKind
    lock_days: int | None = strawberry.field(description="The term of a LOCKED product.")
    apy: Decimal = strawberry.field(
        description="Annual percentage yield in percent, in force today (daily compounding)."
    )
    apr: Decimal = strawberry.field(
        description="The simple annual rate in percent paying the same per day: 365 x daily."
    )
    daily_rate: Decimal = strawberry.field(
        description="(1 + apy/100)^(1/365) - 1: a day's reward per unit of principal."
    )
    next_apy: Decimal | None = strawberry.field(description="An announced rate change.")
    next_apy_from: date | None = strawberry.field(description="The first day it applies.")
    compounding: bool = strawberry.field(
        description="Rewards add to the principal (true) or go to the available balance."
    )
    min_amount: Decimal = strawberry.field(description="The smallest stake.")
    max_per_user: Decimal = strawberry.field(description="At most this much per user.")
    capacity: Decimal
    staked_total: Decimal
    remaining_capacity: Decimal
    status: StakingProductStatus
    created_at: datetime

    @classmethod
    def from_product(cls, product: Product) -> StakingProductNode:
        return cls(
            id=product.id,
            asset=product.asset,
            kind=StakingProductKind(product.kind.value),
            lock_days=product.lock_days,
            apy=product.apy,
            apr=product.apr,
            daily_rate=rules.daily_rate(product.apy),
            next_apy=product.next_apy,
            next_apy_from=product.next_apy_from,
            compounding=product.compounding,
            min_amount=product.min_amount,
            max_per_user=product.max_per_user,
            capacity=product.capacity,
            staked_total=product.staked_total,
            remaining_capacity=product.remaining_capacity,
            status=StakingProductStatus(product.status.value),
            created_at=product.created_at,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[StakingProductNode | None]:
        products = await info.context.loaders.staking_product_by_id.load_many(node_keys(node_ids))
        return [cls.from_product(p) if p is not None else None for p in products]


@strawberry.type(name="Stake")
class StakeNode(relay.Node):
    """One stake. Visible to its owner and admins."""

    id: relay.NodeID[int]
    currency: str
    principal: Decimal = strawberry.field(
        description="Staked now (compounded rewards included); 0 once ended."
    )
    accrued_rewards: Decimal = strawberry.field(description="Every reward paid for it.")
    current_term_rewards: Decimal = strawberry.field(
        description="Rewards of the current term (what an early redemption forfeits)."
    )
    forfeited_rewards: Decimal = strawberry.field(description="Given back by early redemption.")
    status: StakeStatus
    auto_renew: bool
    started_at: datetime
    term_started_on: date = strawberry.field(description="The first day of the current term.")
    accrued_through: date = strawberry.field(description="The last day paid.")
    matures_at: datetime | None = strawberry.field(description="End of the current term.")
    renewals: int
    ended_at: datetime | None
    product_id: strawberry.Private[int]
    user_id: strawberry.Private[int]

    @strawberry.field
    async def product(self, info: Info) -> StakingProductNode:
        product = await info.context.loaders.staking_product_by_id.load(self.product_id)
        return StakingProductNode.from_product(product)

    @classmethod
    def from_row(cls, row: StakeRow) -> StakeNode:
        return cls(
            id=row.id,
            currency=row.currency,
            principal=amount_in(row.currency, row.principal),
            accrued_rewards=amount_in(row.currency, row.accrued_rewards),
            current_term_rewards=amount_in(row.currency, row.term_rewards),
            forfeited_rewards=amount_in(row.currency, row.forfeited_rewards),
            status=StakeStatus(row.status),
            auto_renew=row.auto_renew,
            started_at=row.staked_at,
            term_started_on=row.term_started_on,
            accrued_through=row.accrued_through,
            matures_at=rules.midnight(row.matures_on) if row.matures_on else None,
            renewals=row.renewals,
            ended_at=row.ended_at,
            product_id=row.product_id,
            user_id=row.user_id,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[StakeNode | None]:
        ctx = info.context
        rows = await ctx.loaders.stake_by_id.load_many(node_keys(node_ids))
        return [
            cls.from_row(r) if r is not None and ctx.can_see_user(r.user_id) else None for r in rows
        ]


@strawberry.type
class StakingReward:
    """One day's reward of one stake."""

    id: strawberry.ID
    currency: str
    amount: Decimal
    accrual_date: date = strawberry.field(description="The UTC day it was earned.")
    principal: Decimal = strawberry.field(description="What it was computed on.")
    apy: Decimal
    daily_rate: Decimal
    compounded: bool = strawberry.field(
        description="Added to the principal (true) or paid to the available balance."
    )
    created_at: datetime = strawberry.field(description="When it was paid.")
    stake_id: strawberry.Private[int]

    @strawberry.field
    async def stake(self, info: Info) -> StakeNode:
        row = await info.context.loaders.stake_by_id.load(self.stake_id)
        return StakeNode.from_row(row)

    @classmethod
    def from_row(cls, row: StakingRewardRow) -> StakingReward:
        return cls(
            id=strawberry.ID(str(row.id)),
            currency=row.currency,
            amount=amount_in(row.currency, row.amount),
            accrual_date=row.accrual_date,
            principal=amount_in(row.currency, row.principal),
            apy=row.apy,
            daily_rate=row.daily_rate,
            compounded=row.compounded,
            created_at=row.created_at,
            stake_id=row.stake_id,
        )


@strawberry.type
class StakingRewardEdge:
    cursor: str
    node: StakingReward


@strawberry.type
class StakingRewardConnection:
    edges: list[StakingRewardEdge]
    page_info: relay.PageInfo


async def stakes_of(info: Info, user_id: int) -> list[StakeNode]:
    rows = await info.context.loaders.active_stakes_by_user_id.load(user_id)
    return [StakeNode.from_row(r) for r in rows]


async def rewards_of(
    info: Info, user_id: int, first: int, after: str | None
) -> StakingRewardConnection:
    async with info.context.rt.sessions() as session:
        page = await staking.list_rewards(session, user_id=user_id, first=first, after=after)
    edges = [StakingRewardEdge(cursor=c, node=StakingReward.from_row(r)) for c, r in page.items]
    return StakingRewardConnection(
        edges=edges,
        page_info=page_info(page),
    )


@strawberry.type
class StakingQuote:
    """What an amount would earn if the rate stays as it is: every figure is the sum of
    the daily rewards exactly as they would be paid (rounded down each day)."""

    product: StakingProductNode
    amount: Decimal
    apy: Decimal = strawberry.field(description="The rate a stake made now starts with.")
    apr: Decimal
    daily_rate: Decimal
    value_date: date = strawberry.field(description="The first day that earns.")
    matures_at: datetime | None
    per_day: Decimal
    per_term: Decimal | None = strawberry.field(description="LOCKED products: the whole term.")
    per_year: Decimal = strawberry.field(description="365 days.")

    @classmethod
    def from_result(cls, result: QuoteResult) -> StakingQuote:
        return cls(
            product=StakingProductNode.from_product(result.product),
            amount=amount_in(result.product.asset, result.amount),
            apy=result.apy,
            apr=result.apr,
            daily_rate=result.daily_rate,
            value_date=result.value_date,
            matures_at=rules.midnight(result.matures_on) if result.matures_on else None,
            per_day=amount_in(result.product.asset, result.quote.per_day),
            per_term=optional_amount_in(result.product.asset, result.quote.per_term),
            per_year=amount_in(result.product.asset, result.quote.per_year),
        )


@strawberry.type
class StakePayload:
    stake: StakeNode


@strawberry.type
class UnstakePayload:
    stake: StakeNode
    returned: Decimal = strawberry.field(description="Credited to your available balance.")
    forfeited: Decimal = strawberry.field(description="Rewards given back (early redemption).")


@strawberry.type
class StakingProductPayload:
    product: StakingProductNode
