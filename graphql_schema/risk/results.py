"""Risk mutation and query results: the success payload or one of its typed errors."""

from __future__ import annotations

from typing import Annotated, TypeAlias

import strawberry

from graphql_schema.errors import (
    BelowMinimumNotional,
    Forbidden,
    InvalidAmend,
    InvalidOrder,
    InvalidRiskLimit,
    InvalidTwoFactorCode,
    MarketHalted,
    NotAuthenticated,
    NotFound,
    OrderNotAmendable,
    OrderNotFound,
    PriceOffTick,
    PriceOutsideBand,
    QuantityOffLotSize,
    RiskLimitNotFound,
    RiskStateConflict,
    StopPriceWrongSide,
    TwoFactorNotEnabled,
    TwoFactorRequired,
    UnknownMarket,
    ValidationFailed,
)
from graphql_schema.risk.types import (
    RiskCheck,
    RiskLimitPayload,
    RiskLimitRemovedPayload,
    RiskStatePayload,
)

_SCOPE_ERRORS = NotAuthenticated | Forbidden | NotFound | UnknownMarket | ValidationFailed

SetRiskLimitResult: TypeAlias = Annotated[
    RiskLimitPayload | InvalidRiskLimit | _SCOPE_ERRORS, strawberry.union("SetRiskLimitResult")
]
RemoveRiskLimitResult: TypeAlias = Annotated[
    RiskLimitRemovedPayload | NotAuthenticated | Forbidden | RiskLimitNotFound | ValidationFailed,
    strawberry.union("RemoveRiskLimitResult"),
]
ResetRiskResult: TypeAlias = Annotated[
    RiskStatePayload
    | RiskStateConflict
    | InvalidRiskLimit
    | TwoFactorNotEnabled
    | TwoFactorRequired
    | InvalidTwoFactorCode
    | _SCOPE_ERRORS,
    strawberry.union("ResetRiskResult"),
]
SetRiskStateResult: TypeAlias = Annotated[
    RiskStatePayload | RiskStateConflict | InvalidRiskLimit | _SCOPE_ERRORS,
    strawberry.union("SetRiskStateResult"),
]
RiskCheckResult: TypeAlias = Annotated[
    RiskCheck
    | NotAuthenticated
    | ValidationFailed
    | UnknownMarket
    | InvalidOrder
    | PriceOffTick
    | QuantityOffLotSize
    | BelowMinimumNotional
    | PriceOutsideBand
    | StopPriceWrongSide,
    strawberry.union("RiskCheckResult"),
]
RiskCheckAmendResult: TypeAlias = Annotated[
    RiskCheck
    | NotAuthenticated
    | ValidationFailed
    | OrderNotFound
    | OrderNotAmendable
    | InvalidAmend
    | MarketHalted
    | PriceOffTick
    | QuantityOffLotSize
    | BelowMinimumNotional
    | PriceOutsideBand,
    strawberry.union("RiskCheckAmendResult"),
]
