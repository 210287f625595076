"""Market data types: markets, order books and their updates, trades, tickers, candles;
and how a market's figures are shown (``places``: prices at its tick, quantities at its
lot, quote amounts at the quote currency's scale)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

import strawberry
from strawberry import relay
from strawberry.types import Info

from app.trading.domain.orders import MarketSpec
from app.trading.markets import MarketRow
from app.trading.reads import BookDelta, BookSnapshot, Candle, TradeRow
from app.trading.reads import BookLevel as LevelRow
from graphql_schema.ids import node_keys
from graphql_schema.scalars import at_places, places_of
from graphql_schema.trading.enums import BookUpdateKind, MarketStatus, OrderSide


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


@strawberry.type
class MarketPayload:
    market: MarketNode
