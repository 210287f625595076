"""Deposit types: the Deposit node, deposit addresses, payloads."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

import strawberry
from strawberry import relay
from strawberry.types import Info

from app.wallets.crypto_deposits import DepositAddressInfo
from app.wallets.domain import deposits as deposit_rules
from db.models import Deposit as DepositRow
from graphql_schema.enums import derived_enum
from graphql_schema.ids import node_keys
from graphql_schema.wallets.types import amount_in

DepositMethod = derived_enum(deposit_rules.DepositMethod, name="DepositMethod")
DepositStatus = derived_enum(
    deposit_rules.DepositStatus,
    name="DepositStatus",
    values={
        "AMOUNT_MISMATCH": "The provider reported another amount or currency: held for review,"
        " nothing credited until support settles it.",
    },
)


@strawberry.type(name="Deposit")
class DepositNode(relay.Node):
    """Money coming in: a card payment or an on-chain transfer. Private to its owner."""

    id: relay.NodeID[int]
    currency: str
    amount: Decimal
    method: DepositMethod
    status: DepositStatus
    credited_amount: Decimal = strawberry.field(
        description="What this deposit adds to your wallet now (after refunds, disputes)."
    )
    refunded_amount: Decimal
    disputed_amount: Decimal
    failure_reason: str | None = strawberry.field(description="Why the payment failed.")
    tx_hash: str | None = strawberry.field(description="Crypto: the transaction credited.")
    address: str | None = strawberry.field(description="Crypto: your address it went to.")
    created_at: datetime
    updated_at: datetime
    user_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: DepositRow) -> DepositNode:
        return cls(
            id=row.id,
            currency=row.currency,
            amount=amount_in(row.currency, row.amount),
            method=DepositMethod(row.method),
            status=DepositStatus(row.status),
            credited_amount=amount_in(row.currency, row.credited_amount),
            refunded_amount=amount_in(row.currency, row.refunded_amount),
            disputed_amount=amount_in(row.currency, row.disputed_amount),
            failure_reason=row.failure_reason,
            tx_hash=row.tx_hash,
            address=row.address,
            created_at=row.created_at,
            updated_at=row.updated_at,
            user_id=row.user_id,
        )

    @classmethod
    def visible(cls, info: Info, row: DepositRow | None) -> DepositNode | None:
        ctx = info.context
        if row is None or not (ctx.is_admin or ctx.user_id == row.user_id):
            return None
        return cls.from_row(row)

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[DepositNode | None]:
        rows = await info.context.loaders.deposit_by_id.load_many(node_keys(node_ids))
        return [cls.visible(info, row) for row in rows]


@strawberry.type
class DepositConnection(relay.Connection[DepositNode]):
    """Your deposits, newest first, paged by keyset cursor."""


@strawberry.type
class CreateDepositPayload:
    deposit: DepositNode
    client_secret: str = strawberry.field(
        description="Confirm the card payment with Stripe.js using this; it is credited"
        " when Stripe reports success."
    )


@strawberry.type
class CreditCryptoDepositPayload:
    deposit: DepositNode
    credited: bool = strawberry.field(
        description="False when this transaction was credited before (nothing changed)."
    )


@strawberry.type
class DepositAddress:
    """Where to send a crypto currency so that it is credited to you. Stable."""

    currency: str
    address: str
    network: str

    @classmethod
    def from_info(cls, info: DepositAddressInfo) -> DepositAddress:
        return cls(currency=info.currency, address=info.address, network=info.network)
