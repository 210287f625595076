"""Trading queries, mutations and subscriptions: parse, call one service, map."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from decimal import Decimal

import strawberry
from strawberry.relay.utils import to_base64
from strawberry.types import Info

from app.core.metrics import count_placement
from app.events import topics
from app.trading import commands, markets, order_lists, placement
from app.trading import reads as trading_reads
from app.trading.domain.orders import MarketSpec
from app.trading.domain.orders import MarketStatus as DomainMarketStatus
from db.models import Order as OrderRow
from graphql_schema.exchanges.markets import Venue
from graphql_schema.gateway.context import Context
from graphql_schema.ids import node_pk
from graphql_schema.trading.enums import MarketStatus, OrderListKind
from graphql_schema.trading.fields import market_row
from graphql_schema.trading.markets import (
    MarketNode,
    MarketPayload,
    OrderBook,
    OrderBookUpdate,
    Ticker,
    Trade,
    places,
)
from graphql_schema.trading.results import (
    AmendOrderResult,
    CancelAllOrdersResult,
    CancelOrderResult,
    PlaceOrderListResult,
    PlaceOrderResult,
    SetMarketStatusResult,
    SetTradingEnabledResult,
)
from graphql_schema.trading.types import (
    CancelAllOrdersPayload,
    FillUpdate,
    OrderListPayload,
    OrderPayload,
    OrderUpdate,
    PlaceOrderInput,
    PlaceOrderListInput,
    TradingEnabledPayload,
    order_nodes,
)
from resolvers import exchange_markets
from resolvers.common import attempt, stream_events, subscribe

Ctx = Info[Context, None]
ORDER = "Order"
ORDER_LIST = "OrderList"  # no node type: the id only names the list


# --- market data ----------------------------------------------------------------------


async def list_markets(info: Ctx) -> list[MarketNode]:
    async with info.context.rt.sessions() as session:
        rows = await markets.list_markets(session)
    for row in rows:
        info.context.loaders.market_by_id.prime(row.id, row)
    return [MarketNode.from_row(r) for r in rows]


async def market(info: Ctx, symbol: str) -> MarketNode:
    return MarketNode.from_row(await market_row(info, symbol))


async def order_book(
    info: Ctx, symbol: str, depth: int = 20, venue: Venue = Venue.PLATFORM
) -> OrderBook:
    """The top ``depth`` price levels per side, aggregated: the venue's, or an exchange's
    (``orders`` 0, ``sequence`` its update id or 0; kept about a second, for everyone)."""
    if venue is not Venue.PLATFORM:
        return await exchange_markets.order_book(info, venue, symbol, depth)
    row = await market_row(info, symbol)
    async with info.context.rt.sessions() as session:
        book = await trading_reads.order_book(
            session, market_id=row.id, symbol=row.symbol, depth=depth
        )
    return OrderBook.from_snapshot(book, row.spec)


async def recent_trades(info: Ctx, symbol: str, first: int = 50) -> list[Trade]:
    """The latest trades, newest first."""
    row = await market_row(info, symbol)
    async with info.context.rt.sessions() as session:
        trades = await trading_reads.recent_trades(session, market_id=row.id, first=first)
    return [Trade.from_row(row.symbol, t, row.spec) for t in trades]


# --- the user's orders, fills, portfolio ------------------------------------------------


# --- mutations ------------------------------------------------------------------------


def _order_payload(info: Ctx) -> Callable[[OrderRow], Awaitable[OrderPayload]]:
    async def payload(row: OrderRow) -> OrderPayload:
        (order,) = await order_nodes(info, [row])
        return OrderPayload(order=order)

    return payload


async def place_order(info: Ctx, input: PlaceOrderInput) -> PlaceOrderResult:
    """Place an order. It is matched before the answer when the engine keeps up (status
    OPEN, FILLED ...); NEW means it is queued. ``myOrders`` reports every change."""
    call = placement.place_order(
        info.context.rt,
        user_id=info.context.user_id,
        symbol=input.symbol,
        request=input.to_request(),
        client_order_id=input.client_order_id,
    )
    return await attempt(count_placement(call), _order_payload(info))


async def place_order_list(info: Ctx, input: PlaceOrderListInput) -> PlaceOrderListResult:
    """An OCO or a BRACKET (see the input)."""

    async def call() -> order_lists.PlacedList:
        oco, bracket = input.to_list()
        return await order_lists.place_order_list(
            info.context.rt,
            user_id=info.context.user_id,
            symbol=input.symbol,
            client_list_id=input.client_list_id,
            oco=oco,
            bracket=bracket,
        )

    async def payload(placed: order_lists.PlacedList) -> OrderListPayload:
        return OrderListPayload(
            list_id=strawberry.ID(to_base64(ORDER_LIST, placed.list.id)),
            kind=OrderListKind(placed.list.kind),
            client_list_id=placed.list.client_list_id,
            orders=await order_nodes(info, placed.orders),
        )

    return await attempt(call(), payload)


async def cancel_order(
    info: Ctx,
    id: strawberry.ID | None = None,
    client_order_id: str | None = None,
) -> CancelOrderResult:
    """Cancel by global id or by your clientOrderId."""

    async def call() -> OrderRow:
        return await commands.cancel_order(
            info.context.rt,
            user_id=info.context.user_id,
            order_id=node_pk(id, ORDER, field="id") if id is not None else None,
            client_order_id=client_order_id,
        )

    return await attempt(call(), _order_payload(info))


async def cancel_all_orders(info: Ctx, symbol: str | None = None) -> CancelAllOrdersResult:
    """Cancel every open order (on one market, or everywhere)."""
    call = commands.cancel_all_orders(info.context.rt, user_id=info.context.user_id, symbol=symbol)

    async def payload(rows: list[OrderRow]) -> CancelAllOrdersPayload:
        return CancelAllOrdersPayload(orders=await order_nodes(info, rows))

    return await attempt(call, payload)


async def amend_order(
    info: Ctx,
    id: strawberry.ID,
    price: Decimal | None = None,
    quantity: Decimal | None = None,
) -> AmendOrderResult:
    """New price and/or total quantity of a resting LIMIT order. It keeps its place in
    the queue only when the price stays and the quantity shrinks; a BUY holds more when
    it needs more."""

    async def call() -> OrderRow:
        return await commands.amend_order(
            info.context.rt,
            user_id=info.context.user_id,
            order_id=node_pk(id, ORDER, field="id"),
            price=price,
            quantity=quantity,
        )

    return await attempt(call(), _order_payload(info))


async def set_trading_enabled(info: Ctx, enabled: bool) -> SetTradingEnabledResult:
    """Your kill switch: false cancels all your orders and refuses new ones."""
    call = commands.set_trading_enabled(
        info.context.rt, user_id=info.context.user_id, enabled=enabled
    )

    async def payload(rows: list[OrderRow]) -> TradingEnabledPayload:
        return TradingEnabledPayload(
            trading_enabled=enabled, canceled_orders=await order_nodes(info, rows)
        )

    return await attempt(call, payload)


async def set_market_status(info: Ctx, symbol: str, status: MarketStatus) -> SetMarketStatusResult:
    """Admin: halt a market (no new orders) or open it again."""
    ctx = info.context
    call = commands.set_market_status(
        ctx.rt,
        actor_id=ctx.user_id,
        symbol=symbol,
        status=DomainMarketStatus(status.value),
    )
    return await attempt(call, lambda row: MarketPayload(market=MarketNode.from_row(row)))


# --- subscriptions --------------------------------------------------------------------


async def order_book_updates(
    info: Ctx, symbol: str, depth: int = 20, venue: Venue = Venue.PLATFORM
) -> AsyncGenerator[OrderBookUpdate, None]:
    if venue is not Venue.PLATFORM:  # an exchange's book, polled (shared by subscribers)
        async with aclosing(
            exchange_markets.order_book_updates(info, venue, symbol, depth)
        ) as polled:
            async for update in polled:
                yield update
        return
    row = await market_row(info, symbol)
    trading_reads.check_depth(depth)
    async with (
        subscribe(info, topics.BOOK, symbol=row.symbol) as events,
        aclosing(
            trading_reads.book_updates(
                info.context.rt, events, market_id=row.id, symbol=row.symbol, depth=depth
            )
        ) as updates,
    ):
        async for update in updates:
            # sockets on the same document share one execution
            # (graphql_schema.gateway.shared_subscriptions): this runs once per update
            yield OrderBookUpdate.from_update(update, row.spec)


async def trade_updates(info: Ctx, symbol: str) -> AsyncGenerator[Trade, None]:
    row = await market_row(info, symbol)
    shown = places(row.spec)
    async for trade in stream_events(
        info,
        topics.TRADES,
        lambda p: Trade(
            trade_id=p.trade_id,
            symbol=p.symbol,
            price=shown.show(p.price, shown.price),
            quantity=shown.quantity_of(p.quantity),
            taker_side=p.taker_side,
            at=p.at,
        ),
        symbol=row.symbol,
    ):
        yield trade


async def ticker_updates(info: Ctx, symbol: str) -> AsyncGenerator[Ticker, None]:
    row = await market_row(info, symbol)
    shown = places(row.spec)

    def convert(p: topics.Ticker) -> Ticker:
        def dec(v: Decimal | None) -> Decimal | None:
            return None if v is None else shown.price_of(v)

        return Ticker(
            symbol=p.symbol,
            last_price=dec(p.last),
            best_bid=dec(p.best_bid),
            best_ask=dec(p.best_ask),
            sequence=p.sequence,
            at=p.at,
        )

    async for tick in stream_events(info, topics.TICKER, convert, symbol=row.symbol):
        yield tick


async def my_order_updates(info: Ctx) -> AsyncGenerator[OrderUpdate, None]:
    user = info.context.require_user()
    specs = await _specs_by_symbol(info)
    async for update in stream_events(
        info,
        topics.ORDERS,
        lambda p: OrderUpdate.from_event(p, specs.get(p.symbol)),
        user_id=user.id,
    ):
        yield update


async def my_fill_updates(info: Ctx) -> AsyncGenerator[FillUpdate, None]:
    user = info.context.require_user()
    specs = await _specs_by_symbol(info)
    async for update in stream_events(
        info,
        topics.FILLS,
        lambda p: FillUpdate.from_event(p, specs.get(p.symbol)),
        user_id=user.id,
    ):
        yield update


async def _specs_by_symbol(info: Ctx) -> dict[str, MarketSpec]:
    """Every market's spec, read once when a subscription starts (a market's tick, lot
    and currencies never change)."""
    async with info.context.rt.sessions() as session:
        return {m.symbol: m.spec for m in await markets.list_markets(session)}
