"""Trading types: markets, order books, trades, candles, orders, fills, the portfolio,
the inputs of the trading mutations, their payloads and the subscription events.

Prices and quantities are ``Decimal`` strings; prices are in the market's quote currency,
quantities in its base currency, USD figures in US dollars."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from functools import lru_cache
from typing import Annotated, Any

import strawberry
from strawberry import relay
from strawberry.types import Info

from app.events.topics import Fill, OrderUpdated
from app.trading import reads
from app.trading.domain import orders as rules
from app.trading.domain.orders import MarketSpec
from app.trading.markets import MarketRow
from app.trading.reads import (
    BookDelta,
    BookSnapshot,
    Candle,
    PositionView,
    TradeRow,
)
from app.trading.reads import (
    BookLevel as LevelRow,
)
from db.models import Fill as FillRow
from db.models import Order as OrderRow
from graphql_schema.enums import derived_enum
from graphql_schema.ids import node_keys
from graphql_schema.scalars import at_places, places_of
from graphql_schema.wallets.types import amount_in, usd

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


_AVERAGE = Decimal("1e-12")


def _plain(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.normalize()


@dataclass(frozen=True, slots=True)
class Places:
    """The decimals a market's figures are shown with, as exchanges do: prices at its
    tick ("90000.00"), quantities at its lot, quote amounts (values, fees) at the quote
    currency's scale. Without a market: as they are (trailing zeros dropped)."""

    price: int | None = None
    quantity: int | None = None
    quote: int | None = None

    def show(self, value: Decimal, places: int | None) -> Decimal:
        return value.normalize() if places is None else at_places(value, places)

    def price_of(self, value: Decimal | None) -> Decimal | None:
        return None if value is None else self.show(value, self.price)

    def quantity_of(self, value: Decimal) -> Decimal:
        return self.show(value, self.quantity)

    def quote_of(self, value: Decimal) -> Decimal:
        return self.show(value, self.quote)


@lru_cache(maxsize=256)
def places(spec: MarketSpec | None) -> Places:
    if spec is None:
        return Places()
    return Places(places_of(spec.tick_size), places_of(spec.lot_size), spec.quote_scale)


async def _visible_rows(info: Info, loader: Any, node_ids: Iterable[str]) -> list[Any]:
    """Rows for global ids through ``loader``; another user's rows are None."""
    ctx = info.context
    rows = await loader.load_many(node_keys(node_ids))
    return [r if r is not None and ctx.can_see_user(r.user_id) else None for r in rows]


async def market_specs(info: Info, rows: Iterable[Any]) -> dict[int, MarketSpec]:
    """The specs of the markets of ``rows`` (each with a ``market_id``; None skipped), by
    id, through the request's loader."""
    ids = sorted({r.market_id for r in rows if r is not None})
    found = await info.context.loaders.market_by_id.load_many(ids)
    return {m.id: m.spec for m in found if m is not None}


@strawberry.type(name="Market")
class MarketNode(relay.Node):
    """A spot market of the platform's own venue."""

    id: relay.NodeID[int]
    symbol: str
    base: str
    quote: str
    tick_size: Decimal = strawberry.field(description="Prices are multiples of it.")
    lot_size: Decimal = strawberry.field(description="Quantities are multiples of it.")
    min_notional: Decimal = strawberry.field(description="The smallest order value (quote).")
    maker_fee: Decimal = strawberry.field(description="A rate: 0.001 is 0.1 %.")
    taker_fee: Decimal
    status: MarketStatus
    last_price: Decimal | None = strawberry.field(description="Null before the first trade.")

    @classmethod
    def from_row(cls, row: MarketRow) -> MarketNode:
        spec = row.spec
        return cls(
            id=row.id,
            symbol=spec.symbol,
            base=spec.base,
            quote=spec.quote,
            tick_size=spec.tick_size,
            lot_size=spec.lot_size,
            min_notional=spec.min_notional,
            maker_fee=spec.maker_fee,
            taker_fee=spec.taker_fee,
            status=MarketStatus(spec.status.value),
            last_price=places(spec).price_of(row.last_price),
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[MarketNode | None]:
        rows = await info.context.loaders.market_by_id.load_many(node_keys(node_ids))
        return [cls.from_row(r) if r is not None else None for r in rows]


@strawberry.type
class BookLevel:
    price: Decimal
    quantity: Decimal = strawberry.field(description="Resting at this price; 0: level gone.")
    orders: int

    @classmethod
    def list_of(cls, levels: list[LevelRow], spec: MarketSpec | None = None) -> list[BookLevel]:
        shown = places(spec)
        price, quantity = shown.price, shown.quantity
        if price is None or quantity is None:
            return [cls(price=v.price, quantity=v.quantity, orders=v.orders) for v in levels]
        return [
            cls(
                price=at_places(v.price, price),
                quantity=at_places(v.quantity, quantity),
                orders=v.orders,
            )
            for v in levels
        ]


@strawberry.type
class OrderBook:
    symbol: str
    sequence: int = strawberry.field(description="The last engine batch that changed it.")
    bids: list[BookLevel] = strawberry.field(description="Best (highest) first.")
    asks: list[BookLevel] = strawberry.field(description="Best (lowest) first.")

    @classmethod
    def from_snapshot(cls, book: BookSnapshot, spec: MarketSpec | None = None) -> OrderBook:
        return cls(
            symbol=book.symbol,
            sequence=book.sequence,
            bids=BookLevel.list_of(book.bids, spec),
            asks=BookLevel.list_of(book.asks, spec),
        )


@strawberry.type
class OrderBookUpdate:
    """A SNAPSHOT (the top ``depth`` levels) first, then DELTAs: the levels that changed,
    with their new total (0: the level is gone; a delta may carry levels beyond your
    depth). Apply a delta only if its ``previousSequence`` is the sequence you hold;
    otherwise you missed one: subscribe again for a new snapshot."""

    kind: BookUpdateKind
    symbol: str
    sequence: int
    previous_sequence: int | None
    bids: list[BookLevel]
    asks: list[BookLevel]

    @classmethod
    def from_update(
        cls, update: BookSnapshot | BookDelta, spec: MarketSpec | None = None
    ) -> OrderBookUpdate:
        delta = isinstance(update, BookDelta)
        return cls(
            kind=BookUpdateKind.DELTA if delta else BookUpdateKind.SNAPSHOT,
            symbol=update.symbol,
            sequence=update.sequence,
            previous_sequence=update.previous_sequence if delta else None,
            bids=BookLevel.list_of(update.bids, spec),
            asks=BookLevel.list_of(update.asks, spec),
        )


@strawberry.type
class Trade:
    trade_id: int
    symbol: str
    price: Decimal
    quantity: Decimal
    taker_side: OrderSide
    at: datetime

    @classmethod
    def from_row(cls, symbol: str, row: TradeRow, spec: MarketSpec | None = None) -> Trade:
        shown = places(spec)
        return cls(
            trade_id=row.trade_id,
            symbol=symbol,
            price=shown.show(row.price, shown.price),
            quantity=shown.quantity_of(row.quantity),
            taker_side=OrderSide(row.taker_side),
            at=row.at,
        )


@strawberry.type
class Ticker:
    symbol: str
    last_price: Decimal | None
    best_bid: Decimal | None
    best_ask: Decimal | None
    sequence: int
    at: datetime


@strawberry.type
class CandleNode:
    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = strawberry.field(description="Base quantity traded.")
    quote_volume: Decimal
    trades: int

    @classmethod
    def from_row(cls, row: Candle, spec: MarketSpec | None = None) -> CandleNode:
        shown = places(spec)
        return cls(
            open_time=row.open_time,
            open=shown.show(row.open, shown.price),
            high=shown.show(row.high, shown.price),
            low=shown.show(row.low, shown.price),
            close=shown.show(row.close, shown.price),
            volume=shown.quantity_of(row.volume),
            quote_volume=shown.quote_of(row.quote_volume),
            trades=row.trades,
        )


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


@strawberry.type
class Position:
    """One asset of a portfolio. Cost and PnL are in USD, from your trades on the
    platform (holdings that came in by deposit count at no cost basis and no PnL)."""

    currency: str
    quantity: Decimal = strawberry.field(description="Held now (available + held + staked).")
    average_cost: Decimal | None = strawberry.field(description="USD per unit bought.")
    cost_basis: Decimal = strawberry.field(description="USD paid for what you still hold.")
    realized_pnl: Decimal
    unrealized_pnl: Decimal = strawberry.field(description="At the last price.")
    price: Decimal = strawberry.field(description="USD per unit: the last price.")
    value: Decimal = strawberry.field(description="quantity x price, USD.")
    market_id: strawberry.Private[int | None]

    @strawberry.field(description="Where it is priced (its USD or USDT market).")
    async def market(self, info: Info) -> MarketNode | None:
        if self.market_id is None:
            return None
        return MarketNode.from_row(await info.context.loaders.market_by_id.load(self.market_id))

    @classmethod
    def from_view(cls, view: PositionView) -> Position:
        cents = Decimal("0.01")
        return cls(
            currency=view.currency,
            quantity=amount_in(view.currency, view.quantity),
            average_cost=view.average_cost,
            cost_basis=usd(view.cost_usd.quantize(cents)),
            realized_pnl=usd(view.realized_pnl_usd.quantize(cents)),
            unrealized_pnl=usd(view.unrealized_pnl_usd.quantize(cents)),
            price=view.price_usd.normalize(),
            value=usd(view.value_usd.quantize(cents)),
            market_id=view.market_id,
        )


@strawberry.type
class EquityPoint:
    at: datetime
    equity: Decimal = strawberry.field(description="USD.")


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
class PlaceOrderListInput:
    """OCO: ``orders`` holds two orders of the same side and quantity (e.g. a LIMIT and a
    STOP_LIMIT); the first to fill or trigger cancels the other; one hold covers both.
    BRACKET: ``entry`` (LIMIT or MARKET); once it has filled, a take-profit LIMIT at
    ``takeProfitPrice`` and a stop-loss at ``stopLossPrice`` (STOP_LIMIT with
    ``stopLossLimitPrice``, else STOP_MARKET) for the filled quantity, as an OCO."""

    symbol: str
    kind: OrderListKind
    client_list_id: str | None = None
    orders: list[OrderInput] | None = None
    entry: OrderInput | None = None
    take_profit_price: Decimal | None = None
    stop_loss_price: Decimal | None = None
    stop_loss_limit_price: Decimal | None = None


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
class MarketPayload:
    market: MarketNode


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


@strawberry.type
class Portfolio:
    equity: Decimal = strawberry.field(description="Everything you hold, in USD.")
    positions: list[Position] = strawberry.field(description="By currency.")
    user_id: strawberry.Private[int]

    @strawberry.field(description="Equity snapshots for charts, oldest first (at most 1000).")
    async def history(
        self,
        info: Info,
        start: Annotated[datetime, strawberry.argument(name="from")],
        end: Annotated[datetime | None, strawberry.argument(name="to")] = None,
    ) -> list[EquityPoint]:
        async with info.context.rt.sessions() as session:
            points = await reads.equity_history(
                session, user_id=self.user_id, start=start, end=end or info.context.rt.now()
            )
        return [EquityPoint(at=at, equity=usd(equity)) for at, equity in points]
