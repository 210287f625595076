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

from app.exchanges import orders
from app.exchanges.domain.orders import ExchangeOrderStatus, OrderTypeSupport
from app.exchanges.domain.triggers import trigger_state
from db.models import ExchangeOrder
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
from graphql_schema.ids import node_keys
from graphql_schema.trading.enums import OrderSide

EXCHANGE_ORDER = "ExchangeOrder"


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
    def from_row(cls, row: ExchangeOrder) -> ExchangeOrderNode:
        state = trigger_state(emulated=row.emulated, status=ExchangeOrderStatus(row.status),
                              triggered_at=row.triggered_at)  # fmt: skip
        account = str(relay.GlobalID("ExchangeAccount", str(row.connection_id)))
        return cls(
            id=row.id, account_id=strawberry.ID(account), client_order_id=row.client_order_id,
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

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[ExchangeOrderNode | None]:
        keys = node_keys(node_ids)
        user_id = info.context.user_id
        if user_id is None:
            return [None for _ in keys]
        async with info.context.rt.reads() as session:
            rows = await orders.orders_by_ids(session, user_id=user_id, ids=keys)
        return [cls.from_row(rows[k]) if k in rows else None for k in keys]


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
