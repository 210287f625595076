"""Copy trading types: each copy (leader fill -> follower order -> follower fills) and
the profit share settlements both sides see."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from enum import Enum

import strawberry
from strawberry import relay
from strawberry.types import Info

from db.models import Copy as CopyRow
from db.models import Fill as FillRow
from db.models import ProfitShareSettlement as SettlementRow
from graphql_schema.ids import node_keys
from graphql_schema.social.types import Follow
from graphql_schema.trading.enums import OrderSide
from graphql_schema.trading.markets import MarketNode
from graphql_schema.trading.types import OrderNode
from graphql_schema.wallets.types import amount_in


def _plain(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.normalize()


@strawberry.enum
class CopyStatus(Enum):
    PENDING = "PENDING"
    PLACED = "PLACED"
    SKIPPED = "SKIPPED"


@strawberry.enum
class ProfitShareRole(Enum):
    LEADER = "LEADER"
    FOLLOWER = "FOLLOWER"


@strawberry.type
class LeaderFill:
    """The leader's fill a copy mirrors."""

    side: OrderSide
    price: Decimal
    quantity: Decimal
    created_at: datetime

    @classmethod
    def from_row(cls, row: FillRow) -> LeaderFill:
        return cls(
            side=OrderSide(row.side),
            price=row.price.normalize(),
            quantity=row.quantity.normalize(),
            created_at=row.created_at,
        )


def _global(type_name: str, pk: int | None) -> strawberry.ID | None:
    return None if pk is None else strawberry.ID(str(relay.GlobalID(type_name, str(pk))))


@strawberry.type(name="Copy")
class CopyNode(relay.Node):
    """One leader fill as copied for one follow: the follower's order (with its fills),
    or SKIPPED with the reason (SYMBOL_NOT_ALLOWED, QUOTE_MISMATCH, BELOW_MINIMUM,
    ALLOCATION_EXHAUSTED, MAX_POSITION_REACHED, NOTHING_TO_CLOSE, INSUFFICIENT_FUNDS or
    another trading error code; on an exchange account also EXCHANGE_MARKET_NOT_FOUND,
    EXCHANGE_ACCOUNT_DISCONNECTED, EXCHANGE_ACCOUNT_SUSPENDED, EXCHANGE_UNAVAILABLE or
    the exchange's refusal code). Visible to the follower."""

    id: relay.NodeID[int]
    status: CopyStatus
    reason: str | None
    side: OrderSide
    quantity: Decimal | None = strawberry.field(description="Of the follower's order.")
    price: Decimal | None = strawberry.field(
        description="The order's limit: the leader's price moved by the slippage tolerance."
    )
    client_order_id: str | None
    created_at: datetime
    exchange_account_id: strawberry.ID | None = strawberry.field(
        description="The ExchangeAccount the copy was planned for; null on the platform."
    )
    exchange_order_id: strawberry.ID | None = strawberry.field(
        description="The ExchangeOrder sent for it (read it with node); null until sent."
    )
    follow_id: strawberry.Private[int]
    leader_fill_id: strawberry.Private[int]
    order_id: strawberry.Private[int | None]
    market_id: strawberry.Private[int]

    @strawberry.field
    async def leader_fill(self, info: Info) -> LeaderFill:
        return LeaderFill.from_row(await info.context.loaders.fill_by_id.load(self.leader_fill_id))

    @strawberry.field(description="The follower's order; null when skipped.")
    async def order(self, info: Info) -> OrderNode | None:
        if self.order_id is None:
            return None
        row = await info.context.loaders.order_by_id.load(self.order_id)
        market = await info.context.loaders.market_by_id.load(self.market_id)
        return OrderNode.from_row(row, market.spec)

    @strawberry.field
    async def market(self, info: Info) -> MarketNode:
        return MarketNode.from_row(await info.context.loaders.market_by_id.load(self.market_id))

    @classmethod
    def from_row(cls, row: CopyRow) -> CopyNode:
        return cls(
            id=row.id,
            status=CopyStatus(row.status),
            reason=row.reason,
            side=OrderSide(row.side),
            quantity=_plain(row.quantity),
            price=_plain(row.price),
            client_order_id=row.client_order_id,
            created_at=row.created_at,
            exchange_account_id=_global("ExchangeAccount", row.exchange_account_id),
            exchange_order_id=_global("ExchangeOrder", row.exchange_order_id),
            follow_id=row.follow_id,
            leader_fill_id=row.leader_fill_id,
            order_id=row.order_id,
            market_id=row.market_id,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[CopyNode | None]:
        loaders = info.context.loaders
        rows = await loaders.copy_by_id.load_many(node_keys(node_ids))
        follows = await loaders.follow_by_id.load_many([r.follow_id if r else 0 for r in rows])
        return [
            cls.from_row(r) if r and f and info.context.can_see_user(f.follower_id) else None
            for r, f in zip(rows, follows, strict=True)
        ]


@strawberry.type
class CopyConnection(relay.Connection[CopyNode]):
    """A follow's copies, newest first, paged by keyset cursor."""


@strawberry.type(name="ProfitShareSettlement")
class ProfitShareSettlementNode(relay.Node):
    """The leader's share of a follower's realized profit above the follow's high-water
    mark, moved once per follow and day. Visible to both sides."""

    id: relay.NodeID[int]
    period: date
    amount: Decimal = strawberry.field(
        description="Moved from follower to leader (less than the share when the "
        "follower's balance was short: the rest is charged at the next settlement)."
    )
    currency: str
    realized_pnl: Decimal = strawberry.field(description="The follow's, cumulative.")
    high_water_mark_before: Decimal
    high_water_mark_after: Decimal
    created_at: datetime
    follow_id: strawberry.Private[int]
    leader_id: strawberry.Private[int]
    follower_id: strawberry.Private[int]

    @strawberry.field(description="Your side of it.")
    def role(self, info: Info) -> ProfitShareRole:
        is_leader = info.context.user_id == self.leader_id
        return ProfitShareRole.LEADER if is_leader else ProfitShareRole.FOLLOWER

    @strawberry.field
    async def follow(self, info: Info) -> Follow:
        return Follow.from_row(await info.context.loaders.follow_by_id.load(self.follow_id))

    @classmethod
    def from_row(cls, row: SettlementRow) -> ProfitShareSettlementNode:
        return cls(
            id=row.id,
            period=row.period,
            amount=amount_in(row.currency, row.amount),
            currency=row.currency,
            realized_pnl=amount_in(row.currency, row.realized_pnl),
            high_water_mark_before=amount_in(row.currency, row.high_water_mark_before),
            high_water_mark_after=amount_in(row.currency, row.high_water_mark_after),
            created_at=row.created_at,
            follow_id=row.follow_id,
            leader_id=row.leader_id,
            follower_id=row.follower_id,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[ProfitShareSettlementNode | None]:
        rows = await info.context.loaders.settlement_by_id.load_many(node_keys(node_ids))
        ctx = info.context
        return [
            cls.from_row(r)
            if r and (ctx.can_see_user(r.follower_id) or ctx.user_id == r.leader_id)
            else None
            for r in rows
        ]


@strawberry.type
class ProfitShareSettlementConnection(relay.Connection[ProfitShareSettlementNode]):
    """Profit share settlements, newest first, paged by keyset cursor."""
