"""Order types: orders and fills (nodes, connections, the subscription events), the
inputs of the trading mutations and their payloads. Market data types are in
``markets``, the portfolio in ``portfolio``, the enums in ``enums``.

Prices and quantities are ``Decimal`` strings; prices are in the market's quote currency,
quantities in its base currency."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

import strawberry
from strawberry import relay
from strawberry.types import Info

from app.core.errors import ValidationFailed
from app.events.topics import Fill, OrderUpdated
from app.trading.domain import orders as rules
from app.trading.domain.lists import Bracket
from app.trading.domain.orders import MarketSpec
from db.models import Fill as FillRow
from db.models import Order as OrderRow
from graphql_schema.ids import node_keys
from graphql_schema.trading.enums import (
    Liquidity,
    OrderListKind,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
    TrailingOffsetType,
)
from graphql_schema.trading.markets import MarketNode, market_specs, places

_AVERAGE = Decimal("1e-12")


def _plain(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.normalize()


async def _visible_rows(info: Info, loader: Any, node_ids: Iterable[str]) -> list[Any]:
    """Rows for global ids through ``loader``; another user's rows are None."""
    ctx = info.context
    rows = await loader.load_many(node_keys(node_ids))
    return [r if r is not None and ctx.can_see_user(r.user_id) else None for r in rows]


@strawberry.type(name="Order")
class OrderNode(relay.Node):
    """One order. Visible to its owner (and admins)."""

    id: relay.NodeID[int]
    client_order_id: str
    side: OrderSide
    type: OrderType
    status: OrderStatus
    time_in_force: TimeInForce
    post_only: bool
    quantity: Decimal
    price: Decimal | None = strawberry.field(description="The limit price.")
    worst_price: Decimal | None = strawberry.field(
        description="Market types: the worst price it may trade at (slippage protection)."
    )
    stop_price: Decimal | None
    trailing_offset: Decimal | None
    trailing_offset_type: TrailingOffsetType | None
    activation_price: Decimal | None
    filled_quantity: Decimal
    remaining_quantity: Decimal
    average_price: Decimal | None = strawberry.field(description="Of its fills.")
    executed_value: Decimal = strawberry.field(description="Quote value of its fills.")
    fees: Decimal = strawberry.field(description="Paid so far, in the quote currency.")
    reason: str | None = strawberry.field(
        description="Why it was rejected, canceled or expired (e.g. FOK_NOT_FILLABLE, "
        "SELF_TRADE_PREVENTED, GTD_EXPIRED, OCO)."
    )
    list_role: str | None = strawberry.field(description="LEG, ENTRY, TAKE_PROFIT, STOP_LOSS.")
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    market_id: strawberry.Private[int]
    user_id: strawberry.Private[int]

    @strawberry.field
    async def market(self, info: Info) -> MarketNode:
        return MarketNode.from_row(await info.context.loaders.market_by_id.load(self.market_id))

    @strawberry.field(description="Its fills, oldest first.")
    async def fills(self, info: Info) -> list[FillNode]:
        rows = await info.context.loaders.fills_by_order_id.load(self.id)
        spec = (await info.context.loaders.market_by_id.load(self.market_id)).spec
        return [FillNode.from_row(r, spec) for r in rows]

    @classmethod
    def from_row(cls, row: OrderRow, spec: MarketSpec | None = None) -> OrderNode:
        is_limit = rules.TYPE_RULES[rules.OrderType(row.type)].book_type is rules.OrderType.LIMIT
        filled = row.filled_quantity
        shown = places(spec)
        amount = row.trailing_offset_type != rules.TrailingOffsetType.PERCENT.value
        return cls(
            id=row.id,
            client_order_id=row.client_order_id,
            side=OrderSide(row.side),
            type=OrderType(row.type),
            status=OrderStatus(row.status),
            time_in_force=TimeInForce(row.time_in_force),
            post_only=row.post_only,
            quantity=shown.quantity_of(row.quantity),
            price=shown.price_of(row.book_price) if is_limit else None,
            worst_price=None if is_limit else shown.price_of(row.book_price),
            stop_price=shown.price_of(row.stop_price),
            trailing_offset=shown.price_of(row.trailing_offset)
            if amount
            else _plain(row.trailing_offset),
            trailing_offset_type=(
                TrailingOffsetType(row.trailing_offset_type) if row.trailing_offset_type else None
            ),
            activation_price=shown.price_of(row.activation_price),
            filled_quantity=shown.quantity_of(filled),
            remaining_quantity=shown.quantity_of(row.quantity - filled),
            average_price=shown.price_of((row.executed_value / filled).quantize(_AVERAGE))
            if filled
            else None,
            executed_value=shown.quote_of(row.executed_value),
            fees=shown.quote_of(row.fees),
            reason=row.reason,
            list_role=row.list_role,
            expires_at=row.expires_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
            market_id=row.market_id,
            user_id=row.user_id,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[OrderNode | None]:
        rows = await _visible_rows(info, info.context.loaders.order_by_id, node_ids)
        specs = await market_specs(info, rows)
        return [cls.from_row(r, specs.get(r.market_id)) if r is not None else None for r in rows]


async def order_nodes(info: Info, rows: Iterable[OrderRow]) -> list[OrderNode]:
    """``OrderNode``s of ``rows``, shown at their markets' ticks and lots."""
    rows = list(rows)
    specs = await market_specs(info, rows)
    return [OrderNode.from_row(r, specs.get(r.market_id)) for r in rows]


@strawberry.type(name="Fill")
class FillNode(relay.Node):
    """Your side of one trade."""

    id: relay.NodeID[int]
    trade_id: int
    side: OrderSide
    liquidity: Liquidity
    price: Decimal
    quantity: Decimal
    quote_amount: Decimal
    fee: Decimal
    fee_currency: str
    created_at: datetime
    order_id: strawberry.Private[int]
    market_id: strawberry.Private[int]
    user_id: strawberry.Private[int]

    @strawberry.field
    async def order(self, info: Info) -> OrderNode:
        row = await info.context.loaders.order_by_id.load(self.order_id)
        spec = (await info.context.loaders.market_by_id.load(self.market_id)).spec
        return OrderNode.from_row(row, spec)

    @strawberry.field
    async def market(self, info: Info) -> MarketNode:
        return MarketNode.from_row(await info.context.loaders.market_by_id.load(self.market_id))

    @classmethod
    def from_row(cls, row: FillRow, spec: MarketSpec | None = None) -> FillNode:
        shown = places(spec)
        return cls(
            id=row.id,
            trade_id=row.trade_id,
            side=OrderSide(row.side),
            liquidity=Liquidity(row.liquidity),
            price=shown.show(row.price, shown.price),
            quantity=shown.quantity_of(row.quantity),
            quote_amount=shown.quote_of(row.quote_amount),
            fee=shown.quote_of(row.fee),
            fee_currency=row.fee_currency,
            created_at=row.created_at,
            order_id=row.order_id,
            market_id=row.market_id,
            user_id=row.user_id,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[FillNode | None]:
        rows = await _visible_rows(info, info.context.loaders.fill_by_id, node_ids)
        specs = await market_specs(info, rows)
        return [cls.from_row(r, specs.get(r.market_id)) if r is not None else None for r in rows]


@strawberry.type
class OrderConnection(relay.Connection[OrderNode]):
    """Orders, newest first, paged by keyset cursor."""


@strawberry.type
class FillConnection(relay.Connection[FillNode]):
    """Fills, newest first, paged by keyset cursor."""


@strawberry.input
class OrderInput:
    """One order. ``price``: the limit of LIMIT types. Market types trade within
    ``worstPrice`` or ``maxSlippageBps`` of the last price (default 500 = 5 %)."""

    side: OrderSide
    type: OrderType
    quantity: Decimal
    price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce | None = None
    expires_at: datetime | None = None
    post_only: bool = False
    worst_price: Decimal | None = None
    max_slippage_bps: int | None = None
    trailing_offset: Decimal | None = None
    trailing_offset_type: TrailingOffsetType = TrailingOffsetType.AMOUNT
    activation_price: Decimal | None = None

    def to_request(self) -> rules.OrderRequest:
        return rules.OrderRequest(
            side=rules.Side(self.side.value),
            type=rules.OrderType(self.type.value),
            quantity=self.quantity,
            price=self.price,
            stop_price=self.stop_price,
            time_in_force=rules.TimeInForce(self.time_in_force.value)
            if self.time_in_force
            else None,
            expires_at=self.expires_at,
            post_only=self.post_only,
            worst_price=self.worst_price,
            max_slippage_bps=self.max_slippage_bps,
            trailing_offset=self.trailing_offset,
            trailing_offset_type=rules.TrailingOffsetType(self.trailing_offset_type.value),
            activation_price=self.activation_price,
        )


@strawberry.input
class PlaceOrderInput(OrderInput):
    symbol: str
    client_order_id: str | None = strawberry.field(
        default=None,
        description="Your id for the order, unique per account: a retry with the same id "
        "returns the same order; the same id with other parameters is refused.",
    )


@strawberry.input
class OrderListInput:
    """OCO: ``orders`` holds two orders of the same side and quantity (e.g. a LIMIT and a
    STOP_LIMIT); the first to fill or trigger cancels the other; one hold covers both.
    BRACKET: ``entry`` (LIMIT or MARKET); once it has filled, a take-profit LIMIT at
    ``takeProfitPrice`` and a stop-loss at ``stopLossPrice`` (STOP_LIMIT with
    ``stopLossLimitPrice``, else STOP_MARKET) for the filled quantity, as an OCO. The
    live (``PlaceOrderListInput``) and the paper (``PlacePaperOrderListInput``) lists."""

    kind: OrderListKind
    client_list_id: str | None = None
    orders: list[OrderInput] | None = None
    entry: OrderInput | None = None
    take_profit_price: Decimal | None = None
    stop_loss_price: Decimal | None = None
    stop_loss_limit_price: Decimal | None = None

    def to_list(self) -> tuple[list[rules.OrderRequest] | None, Bracket | None]:
        """(oco, bracket), one of them given; ``ValidationFailed`` when a part is missing."""
        if self.kind is OrderListKind.OCO:
            if not self.orders:
                raise ValidationFailed("An OCO needs its two orders", field="orders")
            return [o.to_request() for o in self.orders], None
        if self.entry is None or self.take_profit_price is None or self.stop_loss_price is None:
            raise ValidationFailed(
                "A bracket needs entry, takeProfitPrice and stopLossPrice", field="entry"
            )
        bracket = Bracket(
            entry=self.entry.to_request(),
            take_profit_price=self.take_profit_price,
            stop_loss_price=self.stop_loss_price,
            stop_loss_limit_price=self.stop_loss_limit_price,
        )
        return None, bracket


@strawberry.input
class PlaceOrderListInput(OrderListInput):
    symbol: str


@strawberry.type
class OrderPayload:
    order: OrderNode


@strawberry.type
class OrderListPayload:
    list_id: strawberry.ID = strawberry.field(
        description="The list's global ID (type OrderList), like every other id."
    )
    kind: OrderListKind
    client_list_id: str
    orders: list[OrderNode]


@strawberry.type
class CancelAllOrdersPayload:
    orders: list[OrderNode] = strawberry.field(description="The orders it canceled.")


@strawberry.type
class TradingEnabledPayload:
    trading_enabled: bool
    canceled_orders: list[OrderNode]


@strawberry.type
class OrderUpdate:
    """A change of one of your orders (myOrders)."""

    order_id: strawberry.ID = strawberry.field(description="The Order's global id.")
    symbol: str
    status: OrderStatus
    quantity: Decimal
    filled_quantity: Decimal
    reason: str | None
    sequence: int
    at: datetime

    @classmethod
    def from_event(cls, p: OrderUpdated, spec: MarketSpec | None = None) -> OrderUpdate:
        shown = places(spec)
        return cls(
            order_id=strawberry.ID(relay.to_base64("Order", p.order_id)),
            symbol=p.symbol,
            status=OrderStatus(p.status),
            quantity=shown.quantity_of(p.quantity),
            filled_quantity=shown.quantity_of(p.filled_quantity),
            reason=p.reason,
            sequence=p.sequence,
            at=p.at,
        )


@strawberry.type
class FillUpdate:
    """One of your fills (myFills)."""

    trade_id: int
    order_id: strawberry.ID
    symbol: str
    side: OrderSide
    liquidity: Liquidity
    price: Decimal
    quantity: Decimal
    quote_amount: Decimal
    fee: Decimal
    fee_currency: str
    sequence: int
    at: datetime

    @classmethod
    def from_event(cls, p: Fill, spec: MarketSpec | None = None) -> FillUpdate:
        shown = places(spec)
        return cls(
            trade_id=p.trade_id,
            order_id=strawberry.ID(relay.to_base64("Order", p.order_id)),
            symbol=p.symbol,
            side=OrderSide(p.side),
            liquidity=Liquidity(p.liquidity),
            price=shown.show(p.price, shown.price),
            quantity=shown.quantity_of(p.quantity),
            quote_amount=shown.quote_of(p.quote_amount),
            fee=shown.quote_of(p.fee),
            fee_currency=p.fee_currency,
            sequence=p.sequence,
            at=p.at,
        )
