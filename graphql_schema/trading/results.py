"""Trading mutation results: the success payload or one of the typed errors it can return."""

from __future__ import annotations

from typing import Annotated, TypeAlias

import strawberry

from graphql_schema.errors import (
    BelowMinimumNotional,
    ClientOrderIdReused,
    FokNotFillable,
    Forbidden,
    InsufficientFunds,
    InvalidAmend,
    InvalidOrder,
    MarketHalted,
    NotAuthenticated,
    OrderNotAmendable,
    OrderNotCancellable,
    OrderNotFound,
    OrderTooLarge,
    PostOnlyWouldTake,
    PriceOffTick,
    PriceOutsideBand,
    QuantityOffLotSize,
    RiskHalted,
    RiskLimitReached,
    RiskReducing,
    StopPriceWrongSide,
    TooManyOpenOrders,
    TradingDisabled,
    UnknownMarket,
    ValidationFailed,
)
from graphql_schema.trading.markets import MarketPayload
from graphql_schema.trading.types import (
    CancelAllOrdersPayload,
    OrderListPayload,
    OrderPayload,
    TradingEnabledPayload,
)

_PLACEMENT_ERRORS = (
    ValidationFailed
    | NotAuthenticated
    | UnknownMarket
    | MarketHalted
    | InvalidOrder
    | PriceOffTick
    | QuantityOffLotSize
    | BelowMinimumNotional
    | PriceOutsideBand
    | StopPriceWrongSide
    | PostOnlyWouldTake
    | FokNotFillable
    | InsufficientFunds
    | TradingDisabled
    | TooManyOpenOrders
    | OrderTooLarge
    | ClientOrderIdReused
    | RiskLimitReached
    | RiskHalted
    | RiskReducing
)
PlaceOrderResult: TypeAlias = Annotated[
    OrderPayload | _PLACEMENT_ERRORS, strawberry.union("PlaceOrderResult")
]
PlaceOrderListResult: TypeAlias = Annotated[
    OrderListPayload | _PLACEMENT_ERRORS, strawberry.union("PlaceOrderListResult")
]
CancelOrderResult: TypeAlias = Annotated[
    OrderPayload | ValidationFailed | NotAuthenticated | OrderNotFound | OrderNotCancellable,
    strawberry.union("CancelOrderResult"),
]
CancelAllOrdersResult: TypeAlias = Annotated[
    CancelAllOrdersPayload | NotAuthenticated | UnknownMarket,
    strawberry.union("CancelAllOrdersResult"),
]
AmendOrderResult: TypeAlias = Annotated[
    OrderPayload
    | ValidationFailed
    | NotAuthenticated
    | OrderNotFound
    | OrderNotAmendable
    | InvalidAmend
    | MarketHalted
    | PriceOffTick
    | QuantityOffLotSize
    | BelowMinimumNotional
    | PriceOutsideBand
    | PostOnlyWouldTake
    | InsufficientFunds
    | TradingDisabled
    | InvalidOrder
    | RiskLimitReached
    | RiskHalted
    | RiskReducing,
    strawberry.union("AmendOrderResult"),
]
SetTradingEnabledResult: TypeAlias = Annotated[
    TradingEnabledPayload | NotAuthenticated, strawberry.union("SetTradingEnabledResult")
]
SetMarketStatusResult: TypeAlias = Annotated[
    MarketPayload | NotAuthenticated | Forbidden | UnknownMarket,
    strawberry.union("SetMarketStatusResult"),
]
