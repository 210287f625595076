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
from app.exchanges.domain.orders import ExchangeOrderStatus, OrderTypeSupport
from app.exchanges.domain.triggers import trigger_state
from db.models import ExchangeFill, ExchangeOrder
from graphql_schema.errors import (
    ClientOrderIdReused,
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
    " exchange (rejectCode says why). ARMED: an emulated stop held by the platform, not"
    " sent (see triggerState)."))  # fmt: skip
class ExchangeOrderStatusEnum(Enum):
    ARMED = "ARMED"
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


@strawberry.enum(name="ExchangeTriggerState", description=(
    "An emulated stop's: ARMED (held by the platform, watching the exchange's trades),"
    " TRIGGERED (its stop traded: its market or limit order was sent, with the order's"
    " client order id), DISARMED (canceled before it fired)."))  # fmt: skip
class ExchangeTriggerStateEnum(Enum):
    ARMED = "ARMED"
    TRIGGERED = "TRIGGERED"
    DISARMED = "DISARMED"


@strawberry.enum(name="ExchangeOrderListRole")
class ExchangeOrderListRoleEnum(Enum):
    ENTRY = "ENTRY"
    TAKE_PROFIT = "TAKE_PROFIT"
    STOP_LOSS = "STOP_LOSS"


def _role(value: str | None) -> ExchangeOrderListRoleEnum | None:
    return None if value is None else ExchangeOrderListRoleEnum(value)


@strawberry.type(description="An order type at an exchange.")
class ExchangeOrderTypeSupport:
    type: ExchangeOrderTypeEnum
    emulated: bool = strawberry.field(description=(
        "True: the exchange has no native order of this type; the platform would hold it"
        " (ARMED) and send it when the exchange's trades reach its stop price, so it does"
        " not protect while the platform is down."))  # fmt: skip

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
    list_id: strawberry.ID | None = strawberry.field(
        description="The OCO or bracket it is a leg of (an ExchangeOrderList global ID)."
    )
    list_role: ExchangeOrderListRoleEnum | None
    trigger_state: ExchangeTriggerStateEnum | None = strawberry.field(
        description="An emulated stop's trigger state (null for an order the exchange holds)."
    )
    triggered_at: datetime | None = strawberry.field(description="When an emulated stop fired.")
    trigger_price: Decimal | None = strawberry.field(
        description="The exchange's trade price that fired an emulated stop."
    )
    trigger_note: str | None = strawberry.field(description=(
        "Why the last check of an armed stop did not fire it although it may have been"
        " due: STALE_PRICES (no trade at the exchange recent enough to act on), or the risk"
        " error's code (RISK_HALTED ...: a halted user's stops do not fire)."))  # fmt: skip
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: ExchangeOrder | ExchangeOrderUpdated) -> ExchangeOrderNode:
        state = trigger_state(emulated=row.emulated, status=ExchangeOrderStatus(row.status),
                              triggered_at=row.triggered_at)  # fmt: skip
        return cls(
            id=row.id, account_id=account_gid(row.connection_id),
            client_order_id=row.client_order_id,
            exchange_order_id=row.exchange_order_id, symbol=row.symbol, side=OrderSide(row.side),
            type=ExchangeOrderTypeEnum(row.type), quantity=row.quantity, price=row.price,
            stop_price=row.stop_price, filled=row.filled,
            status=ExchangeOrderStatusEnum(row.status), emulated=row.emulated,
            reject_code=row.reject_code, created_at=row.created_at, updated_at=row.updated_at,
            trigger_state=None if state is None else ExchangeTriggerStateEnum(state.value),
            triggered_at=row.triggered_at, trigger_price=row.trigger_price,
            trigger_note=row.trigger_note, list_role=_role(row.list_role),
            list_id=None if row.list_id is None else strawberry.ID(
                str(relay.GlobalID("ExchangeOrderList", str(row.list_id)))),
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


EXCHANGE_FAILURES = (
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
    | ClientOrderIdReused
    | EXCHANGE_FAILURES,
    strawberry.union("PlaceExchangeOrderResult"),
]
CancelExchangeOrderResult: TypeAlias = Annotated[
    ExchangeOrderPayload
    | ValidationFailed
    | NotAuthenticated
    | NotFound
    | ExchangeOrderNotCancellable
    | EXCHANGE_FAILURES,
    strawberry.union("CancelExchangeOrderResult"),
]
