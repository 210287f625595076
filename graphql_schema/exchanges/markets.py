"""Exchanges' public market data in GraphQL: the ``Venue`` argument of the market-data
queries and subscriptions (the platform's own venue by default), an exchange's markets
(``ExchangeMarket``), and its ticker, book and trades shown in the venue's types."""

from __future__ import annotations

from decimal import Decimal
from enum import Enum

import strawberry

from app.exchanges.book_polling import BookChange
from app.exchanges.domain.catalogue import SUPPORTED, ExchangeId
from app.exchanges.domain.marketdata import ExchangeBook, ExchangeTicker, Level
from app.exchanges.domain.markets import ExchangeMarket as DomainMarket
from app.marketdata.domain.trades import Trade as DomainTrade
from graphql_schema.marketdata.types import MarketTrade
from graphql_schema.trading.enums import BookUpdateKind, MarketStatus, OrderSide
from graphql_schema.trading.markets import BookLevel, OrderBook, OrderBookUpdate, Ticker


@strawberry.enum(
    description="Where market data comes from: the platform's own venue, or an exchange"
    " (its public data through ccxt, kept briefly and shared by every caller)."
)
class Venue(Enum):
    PLATFORM = "platform"
    BINANCE = "binance"
    KRAKEN = "kraken"
    OKX = "okx"
    BYBIT = "bybit"
    COINBASE = "coinbase"

    @property
    def exchange(self) -> ExchangeId | None:
        return None if self is Venue.PLATFORM else ExchangeId(self.value)


assert {v.value for v in Venue} == {"platform", *SUPPORTED}, "a Venue per supported exchange"


@strawberry.type(description="A spot market of an exchange, as the platform's rules.")
class ExchangeMarket:
    venue: Venue
    symbol: str = strawberry.field(description="BASE/QUOTE (ccxt's unified symbol).")
    exchange_symbol: str = strawberry.field(description="The exchange's own id of it.")
    base: str
    quote: str
    tick_size: Decimal
    lot_size: Decimal
    min_amount: Decimal | None
    min_notional: Decimal | None = strawberry.field(description="Null: the exchange states none.")
    maker_fee: Decimal
    taker_fee: Decimal
    status: MarketStatus

    @classmethod
    def of(cls, venue: Venue, market: DomainMarket) -> ExchangeMarket:
        return cls(
            venue=venue,
            symbol=market.symbol,
            exchange_symbol=market.exchange_symbol,
            base=market.base,
            quote=market.quote,
            tick_size=market.tick_size.normalize(),
            lot_size=market.lot_size.normalize(),
            min_amount=None if market.min_amount is None else market.min_amount.normalize(),
            min_notional=None if market.min_notional is None else market.min_notional.normalize(),
            maker_fee=market.maker_fee.normalize(),
            taker_fee=market.taker_fee.normalize(),
            status=MarketStatus.OPEN if market.active else MarketStatus.HALTED,
        )


def _levels(levels: tuple[Level, ...]) -> list[BookLevel]:
    """An exchange's levels; ``orders`` is 0: exchanges do not all say."""
    return [BookLevel(price=p.normalize(), quantity=q.normalize(), orders=0) for p, q in levels]


def order_book(book: ExchangeBook) -> OrderBook:
    """``sequence``: the exchange's update id where it gives one (else 0)."""
    return OrderBook(symbol=book.symbol, sequence=book.nonce or 0,
                     bids=_levels(book.bids), asks=_levels(book.asks))  # fmt: skip


def book_update(change: BookChange) -> OrderBookUpdate:
    delta = change.previous_sequence is not None
    return OrderBookUpdate(
        kind=BookUpdateKind.DELTA if delta else BookUpdateKind.SNAPSHOT,
        symbol=change.symbol,
        sequence=change.sequence,
        previous_sequence=change.previous_sequence,
        bids=_levels(change.bids),
        asks=_levels(change.asks),
    )


def ticker(found: ExchangeTicker) -> Ticker:
    def shown(value: Decimal | None) -> Decimal | None:
        return None if value is None else value.normalize()

    return Ticker(symbol=found.symbol, last_price=shown(found.last), best_bid=shown(found.bid),
                  best_ask=shown(found.ask), sequence=0, at=found.at)  # fmt: skip


def trade(found: DomainTrade) -> MarketTrade:
    return MarketTrade(
        trade_id=found.trade_id or "",
        price=found.price.normalize(),
        quantity=found.amount.normalize(),
        taker_side=None if found.side is None else OrderSide(found.side),
        at=found.time,
    )
