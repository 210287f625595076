"""The User's trading fields (orders, fills, portfolio) and the market lookup they share,
resolved here in the type layer so that types never import resolvers."""

from __future__ import annotations

from strawberry.types import Info

from app.trading import markets, reads
from app.trading.domain.orders import OrderStatus as DomainOrderStatus
from graphql_schema.gateway.context import Context
from graphql_schema.paging import to_connection
from graphql_schema.trading.enums import OrderStatus
from graphql_schema.trading.markets import market_specs
from graphql_schema.trading.portfolio import Portfolio, Position
from graphql_schema.trading.types import FillConnection, FillNode, OrderConnection, OrderNode
from graphql_schema.wallets.types import usd

Ctx = Info[Context, None]


async def market_row(info: Ctx, symbol: str) -> markets.MarketRow:
    async with info.context.rt.sessions() as session:
        return await markets.market_by_symbol(session, symbol)


async def orders_of(
    info: Ctx,
    user_id: int,
    status: list[OrderStatus] | None,
    symbol: str | None,
    first: int,
    after: str | None,
) -> OrderConnection:
    market_id = (await market_row(info, symbol)).id if symbol else None
    async with info.context.rt.sessions() as session:
        page = await reads.list_orders(
            session,
            user_id=user_id,
            first=first,
            after=after,
            statuses=[DomainOrderStatus(s.value) for s in status or ()],
            market_id=market_id,
        )
    for _, row in page.items:
        info.context.loaders.order_by_id.prime(row.id, row)
    specs = await market_specs(info, (row for _, row in page.items))
    return to_connection(  # type: ignore[return-value]
        OrderConnection, page, lambda row: OrderNode.from_row(row, specs.get(row.market_id))
    )


async def fills_of(info: Ctx, user_id: int, first: int, after: str | None) -> FillConnection:
    async with info.context.rt.sessions() as session:
        page = await reads.list_fills(session, user_id=user_id, first=first, after=after)
    specs = await market_specs(info, (row for _, row in page.items))
    return to_connection(  # type: ignore[return-value]
        FillConnection, page, lambda row: FillNode.from_row(row, specs.get(row.market_id))
    )


async def portfolio_of(info: Ctx, user_id: int) -> Portfolio:
    async with info.context.rt.sessions() as session:
        view = await reads.portfolio(session, user_id=user_id)
    return Portfolio(
        equity=usd(view.equity_usd),
        positions=[Position.from_view(p) for p in view.positions],
        user_id=user_id,
    )
