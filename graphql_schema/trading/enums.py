"""The trading enums: those of the domain's rules (``app.trading.domain.orders``) as
GraphQL enums of the same values, and the few only the schema has."""

from __future__ import annotations

from enum import Enum

import strawberry

from app.trading.domain import orders as rules
from graphql_schema.enums import derived_enum

MarketStatus = derived_enum(rules.MarketStatus, name="MarketStatus")
OrderSide = derived_enum(rules.Side, name="OrderSide")
OrderType = derived_enum(rules.OrderType, name="OrderType")
TimeInForce = derived_enum(rules.TimeInForce, name="TimeInForce")
TrailingOffsetType = derived_enum(rules.TrailingOffsetType, name="TrailingOffsetType")
OrderStatus = derived_enum(rules.OrderStatus, name="OrderStatus")


@strawberry.enum
class OrderListKind(Enum):
    OCO = "OCO"
    BRACKET = "BRACKET"


@strawberry.enum
class Liquidity(Enum):
    MAKER = "MAKER"
    TAKER = "TAKER"


@strawberry.enum
class BookUpdateKind(Enum):
    SNAPSHOT = "SNAPSHOT"
    DELTA = "DELTA"
