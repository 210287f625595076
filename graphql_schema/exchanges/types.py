"""Connected exchange accounts' GraphQL types: the account (a Relay node, only its
owner's; never any part of its credentials), its key's permissions, its balances (read
from the exchange when asked, or the exchange's typed error), inputs and results."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated, TypeAlias

import strawberry
from strawberry import relay
from strawberry.types import Info

from app.core.errors import UserError
from app.exchanges import accounts, custody
from app.exchanges import orders as exchange_orders
from app.exchanges.domain.accounts import Balance
from app.exchanges.domain.catalogue import FACTS, ExchangeId
from db.models import ExchangeConnection, ExchangeOrder
from db.models import ExchangeSync as ExchangeSyncRow
from db.queries import page_key
from graphql_schema.errors import (
    ExchangeKeyAllowsWithdrawals,
    ExchangeKeyInvalid,
    ExchangeOrdersStillOpen,
    ExchangePermissionDenied,
    ExchangeRateLimited,
    ExchangeRejected,
    ExchangeUnavailable,
    NotAuthenticated,
    NotFound,
    PassphraseRequired,
    RateLimited,
    UnsupportedExchange,
    ValidationFailed,
    to_graphql_error,
)
from graphql_schema.exchanges.custody import (
    ExchangeSync,
    ExchangeSyncConnection,
    MirroredBalance,
    equity_of,
)
from graphql_schema.exchanges.orders import (
    ExchangeOrderConnection,
    ExchangeOrderNode,
    ExchangeOrderTypeSupport,
)
from graphql_schema.ids import owned_rows
from graphql_schema.paging import to_connection
from graphql_schema.wallets.types import usd

EXCHANGE_ACCOUNT = "ExchangeAccount"


@strawberry.enum(description="ACTIVE: usable. SUSPENDED: a re-check found the key refused"
                 " or allowing withdrawals (lastCheckCode says which).")  # fmt: skip
class ExchangeAccountStatus(Enum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    DISCONNECTED = "DISCONNECTED"


@strawberry.type(description="What the exchange says the API key may do; null where it"
                 " does not say.")  # fmt: skip
class ExchangeKeyPermissions:
    can_read: bool | None
    can_trade: bool | None
    can_withdraw: bool | None
    ip_restricted: bool | None = strawberry.field(
        description="Bound to IP addresses (an allowlist)."
    )


@strawberry.type
class ExchangeBalance:
    currency: str
    free: Decimal
    used: Decimal
    total: Decimal

    @classmethod
    def of(cls, balance: Balance) -> ExchangeBalance:
        return cls(currency=balance.currency, free=balance.free, used=balance.used,
                   total=balance.total)  # fmt: skip


@strawberry.type
class ExchangeBalances:
    balances: list[ExchangeBalance] = strawberry.field(description="Non-zero ones.")


ExchangeBalancesResult: TypeAlias = Annotated[
    ExchangeBalances
    | ExchangeUnavailable
    | ExchangeRateLimited
    | ExchangeKeyInvalid
    | ExchangePermissionDenied
    | ExchangeRejected,
    strawberry.union("ExchangeBalancesResult"),
]


@strawberry.type(name="ExchangeAccount")
class ExchangeAccountNode(relay.Node):
    """Your account at an exchange, connected with an API key. Its credentials are
    sealed at rest and never shown."""

    id: relay.NodeID[int]
    exchange: str = strawberry.field(description="binance, kraken, okx, bybit or coinbase.")
    exchange_name: str
    label: str
    status: ExchangeAccountStatus
    permissions: ExchangeKeyPermissions
    last_checked_at: datetime
    last_check_code: str | None = strawberry.field(
        description="The error code of the last check; null when it passed."
    )
    ip_allowlist_guidance: str = strawberry.field(
        description="How to bind the key to IP addresses at this exchange."
    )
    created_at: datetime
    synced_at: datetime | None = strawberry.field(
        description="When the exchange was last read into mirroredBalances."
    )
    _row: strawberry.Private[ExchangeConnection]

    @classmethod
    def from_row(cls, row: ExchangeConnection) -> ExchangeAccountNode:
        facts = FACTS[ExchangeId(row.exchange)]
        return cls(
            id=row.id, exchange=row.exchange, exchange_name=facts.name, label=row.label,
            status=ExchangeAccountStatus(row.status),
            permissions=ExchangeKeyPermissions(
                can_read=row.can_read, can_trade=row.can_trade,
                can_withdraw=row.can_withdraw, ip_restricted=row.ip_restricted,
            ),
            last_checked_at=row.last_checked_at, last_check_code=row.last_check_code,
            ip_allowlist_guidance=facts.ip_allowlist_guidance, created_at=row.created_at,
            synced_at=row.synced_at, _row=row,
        )  # fmt: skip

    @strawberry.field(description="What the exchange holds as the ledger mirrors it (kept"
                      " apart from the platform's custody), as of syncedAt.")  # fmt: skip
    async def mirrored_balances(self, info: Info) -> list[MirroredBalance]:
        rows = await info.context.loaders.exchange_mirror_by_connection_id.load(self._row.id)
        return [MirroredBalance.of(r, self._row.synced_at) for r in rows]

    @strawberry.field(description="The latest sync with the exchange, whatever came of it.")
    async def last_sync(self, info: Info) -> ExchangeSync | None:
        row = await info.context.loaders.exchange_last_sync_by_connection_id.load(self._row.id)
        return None if row is None else ExchangeSync.from_row(row)

    @strawberry.field(description="Every sync with the exchange, newest first.")
    async def syncs(
        self, info: Info, first: int = 20, after: str | None = None
    ) -> ExchangeSyncConnection:
        key = page_key(self._row.id, first=first, after=after, key=ExchangeSyncRow.id)
        page = await info.context.loaders.exchange_syncs_page_by_key.load(key)
        return to_connection(ExchangeSyncConnection, page, ExchangeSync.from_row)  # type: ignore[return-value]

    @strawberry.field(description="Read from the exchange now (null once disconnected).")
    async def balances(self, info: Info) -> ExchangeBalancesResult | None:
        if self._row.sealed_secret is None:
            return None
        try:
            found = await accounts.balances(info.context.rt, self._row)
        except UserError as error:
            return to_graphql_error(error)  # type: ignore[return-value]
        return ExchangeBalances(balances=[ExchangeBalance.of(b) for b in found])

    @strawberry.field(description="Orders placed on it through the platform, newest first.")
    async def orders(
        self, info: Info, first: int = 20, after: str | None = None
    ) -> ExchangeOrderConnection:
        key = page_key(self._row.id, first=first, after=after, key=ExchangeOrder.id)
        page = await info.context.loaders.exchange_orders_page_by_key.load(key)
        return to_connection(ExchangeOrderConnection, page, ExchangeOrderNode.from_row)  # type: ignore[return-value]

    @strawberry.field(description="Each order type: native at the exchange, or emulated.")
    def order_types(self, info: Info) -> list[ExchangeOrderTypeSupport]:
        found = exchange_orders.order_types(info.context.rt, self._row)
        return [ExchangeOrderTypeSupport.of(s) for s in found]

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[ExchangeAccountNode | None]:
        rows = await owned_rows(info, node_ids, accounts.accounts_by_ids)
        return [None if row is None else cls.from_row(row) for row in rows]


@strawberry.input
class ConnectExchangeAccountInput:
    exchange: str = strawberry.field(description="binance, kraken, okx, bybit or coinbase.")
    label: str = strawberry.field(description="Your name for it, 1 to 64 characters.")
    api_key: str
    secret: str
    passphrase: str | None = strawberry.field(default=None, description="OKX keys have one.")


@strawberry.type
class ConnectExchangeAccountPayload:
    exchange_account: ExchangeAccountNode
    balances: list[ExchangeBalance] = strawberry.field(
        description="What the key read when it was checked."
    )
    ip_allowlist_guidance: str


@strawberry.type
class ExchangeAccountPayload:
    exchange_account: ExchangeAccountNode


@strawberry.type
class SyncExchangeAccountPayload:
    exchange_account: ExchangeAccountNode
    sync: ExchangeSync


ConnectExchangeAccountResult: TypeAlias = Annotated[
    ConnectExchangeAccountPayload
    | ValidationFailed
    | NotAuthenticated
    | UnsupportedExchange
    | PassphraseRequired
    | ExchangeKeyInvalid
    | ExchangePermissionDenied
    | ExchangeKeyAllowsWithdrawals
    | ExchangeRateLimited
    | ExchangeRejected
    | ExchangeUnavailable,
    strawberry.union("ConnectExchangeAccountResult"),
]
SyncExchangeAccountResult: TypeAlias = Annotated[
    SyncExchangeAccountPayload
    | ValidationFailed
    | NotAuthenticated
    | NotFound
    | RateLimited
    | ExchangeKeyInvalid
    | ExchangePermissionDenied
    | ExchangeRateLimited
    | ExchangeRejected
    | ExchangeUnavailable,
    strawberry.union("SyncExchangeAccountResult"),
]
DisconnectExchangeAccountResult: TypeAlias = Annotated[
    ExchangeAccountPayload
    | ValidationFailed
    | NotAuthenticated
    | NotFound
    | ExchangeOrdersStillOpen,
    strawberry.union("DisconnectExchangeAccountResult"),
]


async def exchange_accounts_of(info: Info, user_id: int) -> list[ExchangeAccountNode]:
    """``user_id``'s connected accounts, to that user only (admins included: never
    anyone else's)."""
    if info.context.user_id != user_id:
        return []
    async with info.context.rt.reads() as session:
        rows = await accounts.list_accounts(session, user_id=user_id)
    return [ExchangeAccountNode.from_row(row) for row in rows]


@strawberry.type(description="One connected account's balances as the ledger mirrors them.")
class ExchangeHolding:
    exchange_account: ExchangeAccountNode
    balances: list[MirroredBalance]
    equity: Decimal = strawberry.field(description="USD, at the reference prices.")


@strawberry.type(description="What you hold at your connected exchanges, kept apart from"
                 " the platform's custody.")  # fmt: skip
class ExchangeHoldings:
    accounts: list[ExchangeHolding] = strawberry.field(description="Oldest connection first.")
    equity: Decimal = strawberry.field(description="All of it, USD.")
    combined_equity: Decimal = strawberry.field(description="The platform's equity plus this, USD.")


async def exchange_holdings_of(
    info: Info, user_id: int, platform_equity: Decimal
) -> ExchangeHoldings:
    """``user_id``'s exchange-held balances (nothing for anyone but that user)."""
    found: list[tuple[ExchangeConnection, list[custody.MirroredBalance]]] = []
    if info.context.user_id == user_id:
        async with info.context.rt.reads() as session:
            found = await custody.holdings_of_user(session, user_id=user_id)
    holdings = [
        ExchangeHolding(
            exchange_account=ExchangeAccountNode.from_row(row),
            balances=[MirroredBalance.of(b, row.synced_at) for b in balances],
            equity=_cents(equity_of(balances)),
        )
        for row, balances in found
    ]
    total = sum((h.equity for h in holdings), Decimal(0))
    return ExchangeHoldings(
        accounts=holdings, equity=_cents(total), combined_equity=_cents(total + platform_equity)
    )


def _cents(amount: Decimal) -> Decimal:
    return usd(amount.quantize(Decimal("0.01"))) or Decimal(0)
