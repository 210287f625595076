"""Paper trading's GraphQL types: paper accounts (Relay nodes, only their owner's),
their balances, orders (list legs with their list's id and role) and fills (keyset
connections), inputs (a list's is the live ``placeOrderList``'s) and results."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, TypeAlias

import strawberry
from strawberry import relay
from strawberry.relay.utils import to_base64
from strawberry.types import Info

from app.events.topics import PaperFilled, PaperOrderUpdated
from app.paper import accounts
from app.trading.markets import MarketRow
from db.models import PaperAccount, PaperFill, PaperOrder, PaperOrderList
from db.queries import page_key
from graphql_schema.errors import (
    BelowMinimumNotional,
    ClientOrderIdReused,
    ExchangeRateLimited,
    ExchangeUnavailable,
    FokNotFillable,
    InsufficientFunds,
    InvalidOrder,
    NotAuthenticated,
    NotFound,
    OrderNotAmendable,
    OrderNotCancellable,
    OrderNotFound,
    PostOnlyWouldTake,
    PriceOffTick,
    PriceOutsideBand,
    QuantityOffLotSize,
    StopPriceWrongSide,
    UnknownMarket,
    ValidationFailed,
)
from graphql_schema.ids import node_keys
from graphql_schema.paging import to_connection
from graphql_schema.trading.enums import OrderListKind
from graphql_schema.trading.types import OrderInput, OrderListInput

PAPER_ACCOUNT = "PaperAccount"
PAPER_ORDER_LIST = "PaperOrderList"  # no node type: the id only names the list


def paper_account_gid(pk: int) -> strawberry.ID:
    return strawberry.ID(to_base64(PAPER_ACCOUNT, pk))


def paper_list_id(pk: int) -> strawberry.ID:
    return strawberry.ID(to_base64(PAPER_ORDER_LIST, pk))


@strawberry.type
class PaperBalance:
    currency: str
    available: Decimal
    held: Decimal
    total: Decimal


@strawberry.type(name="PaperOrder")
class PaperOrderNode(relay.Node):
    id: relay.NodeID[int]
    client_order_id: str
    side: str
    type: str
    quantity: Decimal | None
    filled_quantity: Decimal
    price: Decimal | None
    stop_price: Decimal | None
    status: str
    reason: str | None
    list_id: strawberry.ID | None = strawberry.field(
        description="The global ID (type PaperOrderList) of the list it is a leg of."
    )
    list_role: str | None = strawberry.field(description="LEG, ENTRY, TAKE_PROFIT, STOP_LOSS.")
    created_at: datetime

    @classmethod
    def from_row(cls, row: PaperOrder | PaperOrderUpdated) -> PaperOrderNode:
        """From its row, or from an update of it (the row's columns, as written)."""
        return cls(
            id=row.id, client_order_id=row.client_order_id, side=row.side, type=row.type,
            quantity=row.quantity, filled_quantity=row.filled_quantity, price=row.price,
            stop_price=row.stop_price, status=row.status, reason=row.reason,
            list_id=None if row.list_id is None else paper_list_id(row.list_id),
            list_role=row.list_role, created_at=row.created_at,
        )  # fmt: skip

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[PaperOrderNode | None]:
        return [None for _ in node_ids]  # reached through its paper account only


@strawberry.type(name="PaperFill")
class PaperFillNode(relay.Node):
    id: relay.NodeID[int]
    order_id: int = strawberry.field(description="The venue's order number.")
    client_order_id: str
    side: str
    liquidity: str
    price: Decimal
    quantity: Decimal
    quote_amount: Decimal
    fee: Decimal
    filled_at: datetime

    @classmethod
    def from_row(cls, row: PaperFill | PaperFilled) -> PaperFillNode:
        """From its row, or from its event (the row's columns, as written)."""
        return cls(
            id=row.id, order_id=row.order_id, client_order_id=row.client_order_id,
            side=row.side, liquidity=row.liquidity, price=row.price, quantity=row.quantity,
            quote_amount=row.quote_amount, fee=row.fee, filled_at=row.filled_at,
        )  # fmt: skip

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[PaperFillNode | None]:
        return [None for _ in node_ids]  # reached through its paper account only


@strawberry.type
class PaperOrderConnection(relay.Connection[PaperOrderNode]):
    """A paper account's orders (its current run), newest first."""


@strawberry.type
class PaperFillConnection(relay.Connection[PaperFillNode]):
    """A paper account's fills (its current run), newest first."""


@strawberry.type(name="PaperAccount")
class PaperAccountNode(relay.Node):
    """Play money on the simulated venue against the live market's prices: never mixed
    with real balances. Visible to its owner only."""

    id: relay.NodeID[int]
    name: str
    symbol: str
    status: str
    resets: int = strawberry.field(description="How many times it was reset.")
    started_at: datetime
    created_at: datetime
    exchange: str | None = strawberry.field(
        description="The exchange whose live trades it fills against; null: the platform's."
    )
    _row: strawberry.Private[PaperAccount]

    @classmethod
    def from_row(cls, row: PaperAccount, symbol: str) -> PaperAccountNode:
        return cls(
            id=row.id, name=row.name, symbol=symbol, status=row.status, resets=row.generation,
            started_at=row.started_at, created_at=row.created_at, exchange=row.exchange,
            _row=row,
        )  # fmt: skip

    @strawberry.field
    async def balances(self, info: Info) -> list[PaperBalance]:
        return [PaperBalance(currency=b.currency, available=b.available, held=b.held,
                             total=b.total) for b in await self._balances(info)]  # fmt: skip

    @strawberry.field(
        description="Cash plus position at the live last price (quote): the exchange's last"
        " trade for an account on an exchange."
    )
    async def equity(self, info: Info) -> Decimal:
        market = await self._market(info)
        price = market.last_price
        if self._row.exchange is not None:
            key = (self._row.exchange, market.symbol)
            price = await info.context.loaders.exchange_last_price_by_market.load(key)
        return accounts.equity_from(market.spec, price, await self._balances(info))

    @strawberry.field
    async def orders(
        self, info: Info, first: int = 20, after: str | None = None
    ) -> PaperOrderConnection:
        key = page_key(self._row.id, first=first, after=after, key=PaperOrder.id)
        page = await info.context.loaders.paper_orders_page_by_key.load(key)
        return to_connection(PaperOrderConnection, page, PaperOrderNode.from_row)  # type: ignore[return-value]

    @strawberry.field
    async def fills(
        self, info: Info, first: int = 20, after: str | None = None
    ) -> PaperFillConnection:
        key = page_key(self._row.id, first=first, after=after, key=PaperFill.id)
        page = await info.context.loaders.paper_fills_page_by_key.load(key)
        return to_connection(PaperFillConnection, page, PaperFillNode.from_row)  # type: ignore[return-value]

    async def _market(self, info: Info) -> MarketRow:
        market = await info.context.loaders.market_by_id.load(self._row.market_id)
        assert market is not None  # an account's market is never deleted
        return market  # type: ignore[no-any-return]

    async def _balances(self, info: Info) -> list[accounts.PaperBalance]:
        market = await self._market(info)
        book = await info.context.loaders.paper_balances_by_account_id.load(self._row.id)
        return accounts.balances_from(self._row.id, market.spec, book)

    @classmethod
    async def of(cls, info: Info, row: PaperAccount) -> PaperAccountNode:
        """The node of ``row`` (its market through the request's loaders)."""
        market = await info.context.loaders.market_by_id.load(row.market_id)
        return cls.from_row(row, market.symbol)

    @classmethod
    async def load(cls, info: Info, pk: int) -> PaperAccountNode | None:
        """Paper account ``pk`` through the request's loaders; None when it is not the
        caller's."""
        row = await info.context.loaders.paper_account_by_id.load(pk)
        if row is None or row.user_id != info.context.user_id:
            return None
        return await cls.of(info, row)

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[PaperAccountNode | None]:
        return list(await asyncio.gather(*(cls.load(info, pk) for pk in node_keys(node_ids))))


@strawberry.input
class PaperBalanceInput:
    currency: str
    amount: Decimal


@strawberry.input
class OpenPaperAccountInput:
    name: str
    symbol: str
    balances: list[PaperBalanceInput] = strawberry.field(
        description="Starting balances, in the market's currencies, 10000000 each at most."
    )
    exchange: str | None = strawberry.field(
        default=None,
        description="Trade against this exchange's live trades of the symbol (binance,"
        " kraken, okx, bybit, coinbase; public data, no key) instead of the platform's.",
    )


@strawberry.input
class PlacePaperOrderInput(OrderInput):
    paper_account_id: strawberry.ID
    client_order_id: str | None = None


@strawberry.input
class PlacePaperOrderListInput(OrderListInput):
    paper_account_id: strawberry.ID


@strawberry.type
class PaperAccountPayload:
    paper_account: PaperAccountNode


@strawberry.type
class PaperOrderPayload:
    order: PaperOrderNode


@strawberry.type
class PaperOrderListPayload:
    list_id: strawberry.ID = strawberry.field(description="Its global ID (type PaperOrderList).")
    kind: OrderListKind
    client_list_id: str
    orders: list[PaperOrderNode] = strawberry.field(description="Its legs, in leg order.")

    @classmethod
    def from_rows(cls, row: PaperOrderList, orders: Iterable[PaperOrder]) -> PaperOrderListPayload:
        return cls(
            list_id=paper_list_id(row.id), kind=OrderListKind(row.kind),
            client_list_id=row.client_list_id, orders=[PaperOrderNode.from_row(o) for o in orders],
        )  # fmt: skip


OpenPaperAccountResult: TypeAlias = Annotated[
    PaperAccountPayload
    | ValidationFailed
    | NotAuthenticated
    | UnknownMarket
    | InsufficientFunds
    | ExchangeUnavailable
    | ExchangeRateLimited,
    strawberry.union("OpenPaperAccountResult"),
]
PaperAccountResult: TypeAlias = Annotated[
    PaperAccountPayload
    | ValidationFailed
    | NotAuthenticated
    | NotFound
    | UnknownMarket
    | InsufficientFunds,
    strawberry.union("PaperAccountResult"),
]
_PLACEMENT_ERRORS = (
    ValidationFailed
    | NotAuthenticated
    | NotFound
    | InvalidOrder
    | PriceOffTick
    | QuantityOffLotSize
    | BelowMinimumNotional
    | PriceOutsideBand
    | StopPriceWrongSide
    | PostOnlyWouldTake
    | FokNotFillable
    | InsufficientFunds
    | ClientOrderIdReused
)
PlacePaperOrderResult: TypeAlias = Annotated[
    PaperOrderPayload | _PLACEMENT_ERRORS | UnknownMarket | OrderNotAmendable | OrderNotCancellable,
    strawberry.union("PlacePaperOrderResult"),
]
CancelPaperOrderResult: TypeAlias = Annotated[
    PaperOrderPayload
    | ValidationFailed
    | NotAuthenticated
    | NotFound
    | OrderNotFound
    | OrderNotCancellable
    | OrderNotAmendable
    | UnknownMarket
    | InsufficientFunds,
    strawberry.union("CancelPaperOrderResult"),
]
PlacePaperOrderListResult: TypeAlias = Annotated[
    PaperOrderListPayload | _PLACEMENT_ERRORS, strawberry.union("PlacePaperOrderListResult")
]
CancelPaperOrderListResult: TypeAlias = Annotated[
    PaperOrderListPayload
    | ValidationFailed
    | NotAuthenticated
    | NotFound
    | OrderNotFound
    | OrderNotCancellable,
    strawberry.union("CancelPaperOrderListResult"),
]
