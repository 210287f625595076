"""The ``exchangeOrderUpdates`` subscription's types: an order on one of your connected
accounts as it changed, or one of its fills as recorded (the values the change wrote),
each with the account's global ID."""

from __future__ import annotations

from typing import Annotated, TypeAlias

import strawberry

from app.events.topics import ExchangeFilled, ExchangeOrderUpdated
from graphql_schema.errors import NotFound
from graphql_schema.exchanges.orders import ExchangeFillType, ExchangeOrderNode, account_gid


@strawberry.type
class ExchangeOrderUpdate:
    """An order placed, answered, moved by the exchange's report, canceled or rejected."""

    account_id: strawberry.ID
    order: ExchangeOrderNode
    account_pk: strawberry.Private[int]

    @classmethod
    def from_event(cls, p: ExchangeOrderUpdated) -> ExchangeOrderUpdate:
        return cls(account_id=account_gid(p.connection_id), account_pk=p.connection_id,
                   order=ExchangeOrderNode.from_row(p))  # fmt: skip


@strawberry.type
class ExchangeFillUpdate:
    """A trade of one of the account's orders, recorded (once)."""

    account_id: strawberry.ID
    fill: ExchangeFillType
    account_pk: strawberry.Private[int]

    @classmethod
    def from_event(cls, p: ExchangeFilled) -> ExchangeFillUpdate:
        return cls(account_id=account_gid(p.connection_id), account_pk=p.connection_id,
                   fill=ExchangeFillType.from_row(p))  # fmt: skip


ExchangeOrderUpdateResult: TypeAlias = Annotated[
    ExchangeOrderUpdate | ExchangeFillUpdate | NotFound,
    strawberry.union("ExchangeOrderUpdateResult"),
]
