"""Orders on connected exchange accounts: the order (a Relay node, its owner's only),
its keyset connection on the account, the order types an exchange has natively or
would need emulated, and the placement and cancel results (unions of the payload and
typed errors)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated, TypeAlias

import strawberry
from strawberry import relay
from strawberry.types import Info

from app.events.topics import ExchangeFilled, ExchangeOrderUpdated
from app.exchanges import orders
from app.exchanges.domain.orders import OrderTypeSupport
from db.models import ExchangeFill, ExchangeOrder
from graphql_schema.errors import (
    ExchangeInsufficientFunds,
    ExchangeKeyInvalid,
    ExchangeOrderNotCancellable,
    ExchangeOrderTypeNotAvailable,
    ExchangePermissionDenied,
    ExchangeRateLimited,
    ExchangeRejected,
    ExchangeUnavailable,
    NotAuthenticated,
    NotFound,
    RiskHalted,
    RiskLimitReached,
    RiskReducing,
    UnsupportedExchange,
    ValidationFailed,
)
from graphql_schema.ids import owned_rows
from graphql_schema.trading.enums import OrderSide

EXCHANGE_ORDER = "ExchangeOrder"


def account_gid(connection_id: int) -> strawberry.ID:
    """The global ID of a connected account (type ExchangeAccount)."""
    return strawberry.ID(str(relay.GlobalID("ExchangeAccount", str(connection_id))))


@strawberry.enum(name="ExchangeOrderStatus", description=(
    "PENDING_SUBMIT: recorded, the exchange's answer not in yet (a lost answer is looked up"
    " by the client order id, never re-sent). REJECTED: refused, or never reached the"
    " exchange (rejectCode says why)."))  # fmt: skip
class ExchangeOrderStatusEnum(Enum):
    PENDING_SUBMIT = "PENDING_SUBMIT"
    OPEN = "OPEN"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"


@strawberry.enum(name="ExchangeOrderType")
class ExchangeOrderTypeEnum(Enum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"
    STOP_LOSS = "STOP_LOSS"
    STOP_LOSS_LIMIT = "STOP_LOSS_LIMIT"


@strawberry.type(description="An order type at an exchange.")
class ExchangeOrderTypeSupport:
    type: ExchangeOrderTypeEnum
    emulated: bool = strawberry.field(description=(
        "True: the exchange has no native order of this type; the platform would hold it"
        " and send it when triggered, so it does not protect while the platform is down."
        " Emulated types are not available yet (placing one is refused)."))  # fmt: skip

    @classmethod
    def of(cls, support: OrderTypeSupport) -> ExchangeOrderTypeSupport:
        return cls(type=ExchangeOrderTypeEnum(support.type.value), emulated=support.emulated)


@strawberry.type(name="ExchangeOrder")
class ExchangeOrderNode(relay.Node):
    """An order on your connected exchange account."""

    id: relay.NodeID[int]
    account_id: strawberry.ID
    client_order_id: str = strawberry.field(description="Ours, sent with the order.")
    exchange_order_id: str | None
    symbol: str
    side: OrderSide  # type: ignore[valid-type]
    type: ExchangeOrderTypeEnum
    quantity: Decimal
    price: Decimal | None
    stop_price: Decimal | None
    filled: Decimal
    status: ExchangeOrderStatusEnum
    emulated: bool = strawberry.field(
        description="Held by the platform rather than the exchange (see ExchangeOrderTypeSupport)."
    )
    reject_code: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: ExchangeOrder | ExchangeOrderUpdated) -> ExchangeOrderNode:
        return cls(
            id=row.id, account_id=account_gid(row.connection_id),
            client_order_id=row.client_order_id,
            exchange_order_id=row.exchange_order_id, symbol=row.symbol, side=OrderSide(row.side),
            type=ExchangeOrderTypeEnum(row.type), quantity=row.quantity, price=row.price,
            stop_price=row.stop_price, filled=row.filled,
            status=ExchangeOrderStatusEnum(row.status), emulated=row.emulated,
            reject_code=row.reject_code, created_at=row.created_at, updated_at=row.updated_at,
        )  # fmt: skip

    @strawberry.field(description="Its trades at the exchange as recorded, oldest first.")
    async def fills(self, info: Info) -> list[ExchangeFillType]:
        rows = await info.context.loaders.exchange_fills_by_order_id.load(self.id)
        return [ExchangeFillType.from_row(row) for row in rows]

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[ExchangeOrderNode | None]:
        rows = await owned_rows(info, node_ids, orders.orders_by_ids)
        return [None if row is None else cls.from_row(row) for row in rows]


@strawberry.type(name="ExchangeFill")
class ExchangeFillType:
    """A trade of your order at its exchange, recorded once (unique on the exchange's
    trade id)."""

    order_id: strawberry.ID = strawberry.field(description="The order's global ID.")
    trade_id: str = strawberry.field(description="The exchange's.")
    symbol: str
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_currency: str | None
    filled_at: datetime

    @classmethod
    def from_row(cls, row: ExchangeFill | ExchangeFilled) -> ExchangeFillType:
        return cls(
            order_id=strawberry.ID(str(relay.GlobalID(EXCHANGE_ORDER, str(row.order_id)))),
            trade_id=row.trade_id, symbol=row.symbol, price=row.price, quantity=row.quantity,
            fee=row.fee, fee_currency=row.fee_currency, filled_at=row.filled_at,
        )  # fmt: skip


@strawberry.type
class ExchangeOrderConnection(relay.Connection[ExchangeOrderNode]):
    """An exchange account's orders placed through the platform, newest first."""


@strawberry.type
class ExchangeOrderPayload:
    exchange_order: ExchangeOrderNode


_EXCHANGE_FAILURES = (
    ExchangeRejected
    | ExchangeInsufficientFunds
    | ExchangeRateLimited
    | ExchangeUnavailable
    | ExchangeKeyInvalid
    | ExchangePermissionDenied
)
PlaceExchangeOrderResult: TypeAlias = Annotated[
    ExchangeOrderPayload
    | ValidationFailed
    | NotAuthenticated
    | NotFound
    | UnsupportedExchange
    | ExchangeOrderTypeNotAvailable
    | RiskHalted
    | RiskReducing
    | RiskLimitReached
    | _EXCHANGE_FAILURES,
    strawberry.union("PlaceExchangeOrderResult"),
]
CancelExchangeOrderResult: TypeAlias = Annotated[
    ExchangeOrderPayload
    | ValidationFailed
    | NotAuthenticated
    | NotFound
    | ExchangeOrderNotCancellable
    | _EXCHANGE_FAILURES,
    strawberry.union("CancelExchangeOrderResult"),
]
