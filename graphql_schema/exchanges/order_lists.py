"""OCO and bracket lists on connected exchange accounts (the platform holds them; the
shape of the platform's own ``placeOrderList``): the input, the payload, and the
placement and cancel results (unions of the payload and typed errors)."""

from __future__ import annotations

from decimal import Decimal
from enum import Enum
from typing import Annotated, TypeAlias

import strawberry
from strawberry import relay

from app.exchanges.order_lists import LegInput, PlacedList
from graphql_schema.errors import (
    ClientOrderIdReused,
    ExchangeOrderNotCancellable,
    ExchangeOrderTypeNotAvailable,
    NotAuthenticated,
    NotFound,
    RiskHalted,
    RiskLimitReached,
    RiskReducing,
    UnsupportedExchange,
    ValidationFailed,
)
from graphql_schema.exchanges.orders import (
    EXCHANGE_FAILURES,
    ExchangeOrderNode,
    ExchangeOrderTypeEnum,
)
from graphql_schema.trading.enums import OrderListKind, OrderSide

EXCHANGE_ORDER_LIST = "ExchangeOrderList"


@strawberry.enum(name="ExchangeOrderListStatus", description=(
    "ACTIVE: watched by the platform. DONE: a leg filled or fired and the other was"
    " canceled (or a bracket's exits could not be placed: see note). CANCELED: by you, or"
    " a leg was canceled unfilled (the other with it)."))  # fmt: skip
class ExchangeOrderListStatusEnum(Enum):
    ACTIVE = "ACTIVE"
    DONE = "DONE"
    CANCELED = "CANCELED"


@strawberry.input(description="One order of an exchange order list.")
class ExchangeOrderInput:
    side: OrderSide  # type: ignore[valid-type]
    type: ExchangeOrderTypeEnum
    quantity: Decimal
    price: Decimal | None = None
    stop_price: Decimal | None = None

    def to_leg(self) -> LegInput:
        return LegInput(side=self.side.value, type=self.type.value, quantity=self.quantity,
                        price=self.price, stop_price=self.stop_price)  # fmt: skip


@strawberry.input(description=(
    "OCO: `orders` holds a LIMIT (the take-profit) and a stop (STOP_LOSS or"
    " STOP_LOSS_LIMIT) of the same side and quantity; the first to fill or fire cancels"
    " the other. BRACKET: `entry` (LIMIT or MARKET); once it has ended with a fill (filled,"
    " or canceled after a partial fill), a take-profit LIMIT at `takeProfitPrice` and a"
    " stop at `stopLossPrice` (STOP_LOSS_LIMIT with `stopLossLimitPrice`, else STOP_LOSS)"
    " for the filled quantity, as an OCO. Lists are held by the platform at every exchange"
    " (no exchange has a unified OCO): a stop leg the exchange has not natively is"
    " emulated, and none of it is enforced while the platform is down."))  # fmt: skip
class PlaceExchangeOrderListInput:
    account_id: strawberry.ID
    symbol: str
    kind: OrderListKind
    orders: list[ExchangeOrderInput] | None = None
    entry: ExchangeOrderInput | None = None
    take_profit_price: Decimal | None = None
    stop_loss_price: Decimal | None = None
    stop_loss_limit_price: Decimal | None = None


@strawberry.type
class ExchangeOrderListPayload:
    list_id: strawberry.ID = strawberry.field(description="The list's global ID.")
    kind: OrderListKind
    status: ExchangeOrderListStatusEnum
    note: str | None = strawberry.field(
        description="Why a bracket's exits were not placed (the refusal's code)."
    )
    orders: list[ExchangeOrderNode] = strawberry.field(
        description="Its legs so far (a bracket's exits appear once its entry has filled)."
    )

    @classmethod
    def of(cls, placed: PlacedList) -> ExchangeOrderListPayload:
        row = placed.list
        return cls(
            list_id=strawberry.ID(str(relay.GlobalID(EXCHANGE_ORDER_LIST, str(row.id)))),
            kind=OrderListKind(row.kind), status=ExchangeOrderListStatusEnum(row.status),
            note=row.note, orders=[ExchangeOrderNode.from_row(o) for o in placed.orders],
        )  # fmt: skip


PlaceExchangeOrderListResult: TypeAlias = Annotated[
    ExchangeOrderListPayload
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
    strawberry.union("PlaceExchangeOrderListResult"),
]
CancelExchangeOrderListResult: TypeAlias = Annotated[
    ExchangeOrderListPayload
    | ValidationFailed
    | NotAuthenticated
    | NotFound
    | ExchangeOrderNotCancellable
    | EXCHANGE_FAILURES,
    strawberry.union("CancelExchangeOrderListResult"),
]
