"""Withdrawal types: the Withdrawal node, its connection, payloads, custody."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

import strawberry
from strawberry import relay
from strawberry.types import Info

from app.wallets.domain import withdrawals as withdrawal_rules
from db.models import Withdrawal as WithdrawalRow
from graphql_schema.accounts.types import User
from graphql_schema.enums import derived_enum
from graphql_schema.ids import node_keys
from graphql_schema.wallets.types import amount_in, usd

WithdrawalStatus = derived_enum(withdrawal_rules.WithdrawalStatus, name="WithdrawalStatus")


@strawberry.type(name="Withdrawal")
class WithdrawalNode(relay.Node):
    """A payout to an address on the currency's chain. Visible to its owner and admins."""

    id: relay.NodeID[int]
    currency: str
    amount: Decimal = strawberry.field(description="What arrives at the address.")
    fee: Decimal = strawberry.field(description="Withheld on top of the amount.")
    usd_value: Decimal = strawberry.field(description="The amount in USD when requested.")
    destination_address: str
    status: WithdrawalStatus
    tx_hash: str | None
    review_reason: str | None = strawberry.field(description="Why an admin rejected it.")
    failure_reason: str | None = strawberry.field(description="Why the network refused it.")
    created_at: datetime
    updated_at: datetime
    user_id: strawberry.Private[int]

    @strawberry.field(description="The owner (for admins reviewing it).")
    async def user(self, info: Info) -> User | None:
        row = await info.context.loaders.user_by_id.load(self.user_id)
        return User.from_row(row) if row is not None else None

    @classmethod
    def from_row(cls, row: WithdrawalRow) -> WithdrawalNode:
        return cls(
            id=row.id,
            currency=row.currency,
            amount=amount_in(row.currency, row.amount),
            fee=amount_in(row.currency, row.fee),
            usd_value=usd(row.usd_value),
            destination_address=row.destination_address,
            status=WithdrawalStatus(row.status),
            tx_hash=row.tx_hash,
            review_reason=row.review_reason,
            failure_reason=row.failure_reason,
            created_at=row.created_at,
            updated_at=row.updated_at,
            user_id=row.user_id,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[WithdrawalNode | None]:
        ctx = info.context
        rows = await ctx.loaders.withdrawal_by_id.load_many(node_keys(node_ids))
        return [
            cls.from_row(r) if r is not None and ctx.can_see_user(r.user_id) else None for r in rows
        ]


@strawberry.type
class WithdrawalConnection(relay.Connection[WithdrawalNode]):
    """Withdrawals, paged by keyset cursor."""


@strawberry.type
class WithdrawalPayload:
    withdrawal: WithdrawalNode


@strawberry.type
class CustodyPayload:
    """What the platform holds of one currency after the change."""

    currency: str
    hot_wallet: Decimal
    cold_storage: Decimal
