"""Exchanges' public market data: the resolvers behind the ``venue`` argument of the
market-data queries and subscriptions, and an exchange's markets and recent trades.
Parse, one service call (app/exchanges/market_data.py, book_polling.py), map."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import datetime

from strawberry.types import Info

from app.core.errors import ValidationFailed
from app.exchanges import market_data
from app.exchanges.book_polling import book_changes
from app.exchanges.domain.catalogue import ExchangeId
from app.exchanges.domain.errors import UnsupportedExchange
from app.marketdata.domain.candles import VENUE
from app.trading import reads as trading_reads
from graphql_schema.exchanges import markets as shown
from graphql_schema.exchanges.markets import ExchangeMarket, Venue
from graphql_schema.gateway.context import Context
from graphql_schema.marketdata.types import MarketTrade, candle_node
from graphql_schema.trading.fields import market_row
from graphql_schema.trading.markets import CandleNode, OrderBook, OrderBookUpdate, Ticker, places

Ctx = Info[Context, None]


def exchange_of(venue: Venue) -> ExchangeId:
    exchange = venue.exchange
    if exchange is None:
        raise UnsupportedExchange("Name an exchange, not PLATFORM", field="venue")
    return exchange


async def exchange_markets(info: Ctx, venue: Venue) -> list[ExchangeMarket]:
    """The exchange's spot markets, with their tick, lot and minimums as the platform's."""
    async with info.context.rt.exchanges.public_session(exchange_of(venue)) as session:
        found = await session.markets()
    return [ExchangeMarket.of(venue, m) for m in sorted(found, key=lambda m: m.symbol)]


async def exchange_trades(
    info: Ctx, venue: Venue, symbol: str, first: int = 50
) -> list[MarketTrade]:
    """An exchange's latest trades, newest first (also kept in the market data store:
    ``marketTrades(source: "exchange:<id>")``)."""
    found = await market_data.recent_trades(
        info.context.rt, exchange=exchange_of(venue), symbol=symbol, first=first
    )
    return [shown.trade(t) for t in found]


async def order_book(info: Ctx, venue: Venue, symbol: str, depth: int) -> OrderBook:
    book = await market_data.order_book(
        info.context.rt, exchange=exchange_of(venue), symbol=symbol, depth=depth
    )
    return shown.order_book(book)


async def ticker(info: Ctx, symbol: str, venue: Venue = Venue.PLATFORM) -> Ticker:
    """The last price and the best bid and ask: the venue's now, or an exchange's (its
    ``sequence`` is 0)."""
    if venue is Venue.PLATFORM:
        return await _venue_ticker(info, symbol)
    found = await market_data.ticker(info.context.rt, exchange=exchange_of(venue), symbol=symbol)
    return shown.ticker(found)


async def _venue_ticker(info: Ctx, symbol: str) -> Ticker:
    row = await market_row(info, symbol)
    async with info.context.rt.reads() as session:
        book = await trading_reads.order_book(session, market_id=row.id, symbol=row.symbol, depth=1)
    places_of = places(row.spec)
    return Ticker(
        symbol=row.symbol,
        last_price=places_of.price_of(row.last_price),
        best_bid=places_of.price_of(book.bids[0].price if book.bids else None),
        best_ask=places_of.price_of(book.asks[0].price if book.asks else None),
        sequence=book.sequence,
        at=info.context.rt.now(),
    )


async def candles(
    info: Ctx, venue: Venue, source: str, symbol: str, interval: str, start: datetime,
    end: datetime,
) -> list[CandleNode]:  # fmt: skip
    if source != VENUE:
        raise ValidationFailed("Give a source or a venue, not both", field="venue")
    found = await market_data.candles(info.context.rt, exchange=exchange_of(venue),
                                      symbol=symbol, interval=interval, start=start,
                                      end=end)  # fmt: skip
    return [candle_node(c, None) for c in found]


async def order_book_updates(
    info: Ctx, venue: Venue, symbol: str, depth: int
) -> AsyncGenerator[OrderBookUpdate, None]:
    changes = book_changes(info.context.rt, exchange=exchange_of(venue), symbol=symbol,
                           depth=depth)  # fmt: skip
    async with aclosing(changes) as updates:
        async for change in updates:
            yield shown.book_update(change)
