"""Money types: currencies, wallets, transfers, the transaction history."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from enum import Enum

import strawberry
from strawberry import relay
from strawberry.types import Info

from app.core.reference_data import CURRENCY_SCALES
from app.wallets.history import HistoryItem
from app.wallets.wallets import Wallet as WalletRow
from db.models import Currency as CurrencyRow
from db.models import Transfer as TransferRow
from db.models import User as UserRow
from graphql_schema.ids import node_keys
from graphql_schema.scalars import at_places


def amount_in(currency: str, value: Decimal) -> Decimal:
    """``value``, an amount of ``currency``, shown at the currency's scale ("1000.000000"
    USDT, "0.50000000" BTC); more decimals than that are kept (never rounded). An unknown
    code: as it is."""
    scale = CURRENCY_SCALES.get(currency)
    return value if scale is None else at_places(value, scale)


def optional_amount_in(currency: str, value: Decimal | None) -> Decimal | None:
    return None if value is None else amount_in(currency, value)


def usd(value: Decimal | None) -> Decimal | None:
    """A US-dollar figure, at the cent ("1000.00")."""
    return optional_amount_in("USD", value)


@strawberry.enum
class CurrencyKind(Enum):
    FIAT = "FIAT"
    CRYPTO = "CRYPTO"


@strawberry.type
class Currency:
    code: str
    name: str
    kind: CurrencyKind
    scale: int = strawberry.field(description="Decimal places of the smallest unit.")
    min_withdrawal: Decimal
    withdrawal_fee: Decimal
    enabled: bool
    usd_price: Decimal | None = strawberry.field(description="Reference price of one unit.")

    @classmethod
    def from_row(cls, row: CurrencyRow, usd_price: Decimal | None) -> Currency:
        return cls(
            code=row.code,
            name=row.name,
            kind=CurrencyKind(row.kind),
            scale=row.scale,
            min_withdrawal=row.min_withdrawal,
            withdrawal_fee=row.withdrawal_fee,
            enabled=row.enabled,
            usd_price=usd_price,
        )


@strawberry.type
class Wallet:
    currency: str
    available: Decimal
    held: Decimal = strawberry.field(description="Reserved for open orders and withdrawals.")
    staked: Decimal
    total: Decimal
    usd_value: Decimal | None = strawberry.field(description="Total at the reference price.")

    @classmethod
    def from_row(cls, row: WalletRow) -> Wallet:
        currency = row.currency
        return cls(
            currency=currency,
            available=amount_in(currency, row.available),
            held=amount_in(currency, row.held),
            staked=amount_in(currency, row.staked),
            total=amount_in(currency, row.total),
            usd_value=usd(row.usd_value),
        )


@strawberry.type
class PublicProfile:
    """What another user may see of an account."""

    display_name: str
    handle: str | None

    @classmethod
    def from_row(cls, row: UserRow) -> PublicProfile:
        return cls(display_name=row.display_name, handle=row.handle)


@strawberry.type(name="Transfer")
class TransferNode(relay.Node):
    id: relay.NodeID[int]
    currency: str
    amount: Decimal
    memo: str | None
    created_at: datetime
    sender_id: strawberry.Private[int]
    recipient_id: strawberry.Private[int]

    @strawberry.field
    async def sender(self, info: Info) -> PublicProfile:
        return PublicProfile.from_row(await info.context.loaders.user_by_id.load(self.sender_id))

    @strawberry.field
    async def recipient(self, info: Info) -> PublicProfile:
        row = await info.context.loaders.user_by_id.load(self.recipient_id)
        return PublicProfile.from_row(row)

    @classmethod
    def from_row(cls, row: TransferRow) -> TransferNode:
        return cls(
            id=row.id,
            currency=row.currency,
            amount=amount_in(row.currency, row.amount),
            memo=row.memo,
            created_at=row.created_at,
            sender_id=row.sender_id,
            recipient_id=row.recipient_id,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[TransferNode | None]:
        ctx = info.context
        rows = await ctx.loaders.transfer_by_id.load_many(node_keys(node_ids))
        return [
            cls.from_row(r)
            if r is not None and (ctx.is_admin or ctx.user_id in (r.sender_id, r.recipient_id))
            else None
            for r in rows
        ]


@strawberry.type
class TransferPayload:
    transfer: TransferNode
    balance_after: Decimal = strawberry.field(description="Your available balance after it.")


@strawberry.enum
class TransactionKind(Enum):
    DEPOSIT = "DEPOSIT"
    WITHDRAWAL = "WITHDRAWAL"
    TRANSFER_IN = "TRANSFER_IN"
    TRANSFER_OUT = "TRANSFER_OUT"
    HOLD = "HOLD"
    RELEASE = "RELEASE"
    REFUND = "REFUND"
    CORRECTION = "CORRECTION"
    STAKE = "STAKE"
    UNSTAKE = "UNSTAKE"
    STAKING_REWARD = "STAKING_REWARD"
    OTHER = "OTHER"


@strawberry.type
class Transaction:
    """One change of your available balance."""

    id: strawberry.ID
    kind: TransactionKind
    currency: str
    amount: Decimal = strawberry.field(description="Signed: negative when money left.")
    fee: Decimal | None
    balance_after: Decimal
    counterparty: PublicProfile | None
    status: str
    reference: str | None
    memo: str | None
    created_at: datetime

    @classmethod
    def from_item(cls, item: HistoryItem) -> Transaction:
        return cls(
            id=strawberry.ID(str(item.posting_id)),
            kind=TransactionKind(item.kind),
            currency=item.currency,
            amount=amount_in(item.currency, item.amount),
            fee=optional_amount_in(item.currency, item.fee),
            balance_after=amount_in(item.currency, item.balance_after),
            counterparty=PublicProfile(
                display_name=item.counterparty_name, handle=item.counterparty_handle
            )
            if item.counterparty_name is not None
            else None,
            status=item.status,
            reference=item.reference,
            memo=item.memo,
            created_at=item.created_at,
        )


@strawberry.type
class TransactionEdge:
    cursor: str
    node: Transaction


@strawberry.type
class TransactionConnection:
    edges: list[TransactionEdge]
    page_info: relay.PageInfo
