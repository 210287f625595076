"""A bot's open orders and trades, on any venue: ``BotOrder`` and ``BotTrade`` show
the fields an order and a fill have on each (at the market's tick, lot and quote scale),
and link to the row itself: a live bot's ``Order`` / ``Fill`` (its sub-account's), a
paper bot's ``PaperOrder`` / ``PaperFill`` (its paper account's current run), an
exchange bot's ``ExchangeOrder`` / ``ExchangeFill`` (its connected account's, as the
exchange gave them: no platform market, ``market`` null; a trade's fee in the quote, one
the exchange took in the base valued at the fill's price).

Why not ``Order`` and ``Fill``: a paper order has no trade, time in force or fills of
the live book, and its id names a ``paper_orders`` row (as an ``Order`` id it would name
another order); ``id`` here is the global id of the row it shows, of its own type."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry
from strawberry import relay
from strawberry.relay.utils import to_base64
from strawberry.types import Info

from app.exchanges import venue
from app.exchanges.domain.orders import ExchangeOrderStatus, ExchangeOrderType
from app.trading.domain import orders as rules
from app.trading.domain.orders import MarketSpec
from app.trading.markets import MarketRow
from db.models import ExchangeFill, ExchangeOrder, PaperFill, PaperOrder
from db.models import Fill as FillRow
from db.models import Order as OrderRow
from graphql_schema.exchanges.orders import ExchangeFillType, ExchangeOrderNode
from graphql_schema.paper.types import PaperFillNode, PaperOrderNode
from graphql_schema.trading.enums import Liquidity, OrderSide, OrderStatus, OrderType
from graphql_schema.trading.markets import MarketNode, places
from graphql_schema.trading.types import FillNode, OrderNode

_ORDER, _FILL, _PAPER_ORDER, _PAPER_FILL = "Order", "Fill", "PaperOrder", "PaperFill"
_EXCHANGE_ORDER, _EXCHANGE_FILL = "ExchangeOrder", "ExchangeFill"
# an exchange order's status as the platform's (an emulated stop held: not triggered yet)
_EXCHANGE_STATUSES = {**venue.STATUSES, ExchangeOrderStatus.ARMED: rules.OrderStatus.UNTRIGGERED}


def _limit(type_: str, price: Decimal | None) -> Decimal | None:
    """The limit price of a limit type (a market type's is its worst price: not shown)."""
    book = rules.TYPE_RULES[rules.OrderType(type_)].book_type
    return price if book is rules.OrderType.LIMIT else None


@strawberry.type(
    description="One of a bot's open orders: a live bot's on the platform's venue"
    " (`order`), a paper bot's on its paper account (`paperOrder`), a bot's on an"
    " exchange account at the exchange (`exchangeOrder`)."
)
class BotOrder:
    id: strawberry.ID = strawberry.field(
        description="The global ID of the Order, the PaperOrder or the ExchangeOrder."
    )
    client_order_id: str
    side: OrderSide
    type: OrderType
    status: OrderStatus
    price: Decimal | None = strawberry.field(description="The limit price.")
    stop_price: Decimal | None
    quantity: Decimal
    filled_quantity: Decimal
    reason: str | None
    created_at: datetime
    order: OrderNode | None = strawberry.field(description="A live bot's: the order.")
    paper_order: PaperOrderNode | None = strawberry.field(
        description="A paper bot's: the order on its paper account."
    )
    exchange_order: ExchangeOrderNode | None = strawberry.field(
        description="A bot's on an exchange account: its order there."
    )
    market_row: strawberry.Private[MarketRow | None]
    market_id: strawberry.Private[int | None]

    @strawberry.field(description="The platform's market (null for an exchange's order).")
    async def market(self, info: Info) -> MarketNode | None:
        return await _market(info, self.market_row, self.market_id)

    @classmethod
    def of_order(cls, row: OrderRow, spec: MarketSpec | None) -> BotOrder:
        shown = places(spec)
        return cls(
            id=strawberry.ID(to_base64(_ORDER, row.id)), client_order_id=row.client_order_id,
            side=OrderSide(row.side), type=OrderType(row.type), status=OrderStatus(row.status),
            price=shown.price_of(_limit(row.type, row.book_price)),
            stop_price=shown.price_of(row.stop_price), quantity=shown.quantity_of(row.quantity),
            filled_quantity=shown.quantity_of(row.filled_quantity), reason=row.reason,
            created_at=row.created_at, order=OrderNode.from_row(row, spec), paper_order=None,
            exchange_order=None, market_row=None, market_id=row.market_id,
        )  # fmt: skip

    @classmethod
    def of_paper(cls, row: PaperOrder, market: MarketRow) -> BotOrder:
        shown = places(market.spec)
        return cls(
            id=strawberry.ID(to_base64(_PAPER_ORDER, row.id)),
            client_order_id=row.client_order_id, side=OrderSide(row.side),
            type=OrderType(row.type), status=OrderStatus(row.status),
            price=shown.price_of(_limit(row.type, row.price)),
            stop_price=shown.price_of(row.stop_price),
            quantity=shown.quantity_of(row.quantity or Decimal(0)),
            filled_quantity=shown.quantity_of(row.filled_quantity), reason=row.reason,
            created_at=row.created_at, order=None, paper_order=PaperOrderNode.from_row(row),
            exchange_order=None, market_row=market, market_id=market.id,
        )  # fmt: skip

    @classmethod
    def of_exchange(cls, row: ExchangeOrder, client_order_id: str) -> BotOrder:
        """``client_order_id``: the bot's (the exchange was sent its digest)."""
        return cls(
            id=strawberry.ID(to_base64(_EXCHANGE_ORDER, row.id)),
            client_order_id=client_order_id, side=OrderSide(row.side),
            type=OrderType(venue.PLATFORM_TYPES[ExchangeOrderType(row.type)].value),
            status=OrderStatus(_EXCHANGE_STATUSES[ExchangeOrderStatus(row.status)].value),
            price=row.price, stop_price=row.stop_price, quantity=row.quantity,
            filled_quantity=row.filled, reason=row.reject_code, created_at=row.created_at,
            order=None, paper_order=None, exchange_order=ExchangeOrderNode.from_row(row),
            market_row=None, market_id=None,
        )  # fmt: skip


@strawberry.type(
    description="One of a bot's trades: a live bot's fill on the platform's venue (`fill`),"
    " a paper bot's on its paper account (`paperFill`), a bot's on an exchange account"
    " at the exchange (`exchangeFill`: the fee as the exchange took it; here in the quote)."
)
class BotTrade:
    id: strawberry.ID = strawberry.field(
        description="The global ID of the Fill or the PaperFill; an exchange fill's own id."
    )
    side: OrderSide
    liquidity: Liquidity
    price: Decimal
    quantity: Decimal
    quote_amount: Decimal
    fee: Decimal
    fee_currency: str
    created_at: datetime = strawberry.field(
        description="When it was made (a paper fill: the time its simulated venue gave it)."
    )
    fill: FillNode | None = strawberry.field(description="A live bot's: its fill.")
    paper_fill: PaperFillNode | None = strawberry.field(
        description="A paper bot's: the fill on its paper account."
    )
    exchange_fill: ExchangeFillType | None = strawberry.field(
        description="A bot's on an exchange account: its fill there."
    )
    market_row: strawberry.Private[MarketRow | None]
    market_id: strawberry.Private[int | None]

    @strawberry.field(description="The platform's market (null for an exchange's fill).")
    async def market(self, info: Info) -> MarketNode | None:
        return await _market(info, self.market_row, self.market_id)

    @classmethod
    def of_fill(cls, row: FillRow, spec: MarketSpec | None) -> BotTrade:
        shown = places(spec)
        return cls(
            id=strawberry.ID(to_base64(_FILL, row.id)), side=OrderSide(row.side),
            liquidity=Liquidity(row.liquidity), price=shown.show(row.price, shown.price),
            quantity=shown.quantity_of(row.quantity), quote_amount=shown.quote_of(row.quote_amount),
            fee=shown.quote_of(row.fee), fee_currency=row.fee_currency, created_at=row.created_at,
            fill=FillNode.from_row(row, spec), paper_fill=None, exchange_fill=None,
            market_row=None, market_id=row.market_id,
        )  # fmt: skip

    @classmethod
    def of_paper(cls, row: PaperFill, market: MarketRow) -> BotTrade:
        spec = market.spec
        shown = places(spec)
        return cls(
            id=strawberry.ID(to_base64(_PAPER_FILL, row.id)), side=OrderSide(row.side),
            liquidity=Liquidity(row.liquidity), price=shown.show(row.price, shown.price),
            quantity=shown.quantity_of(row.quantity), quote_amount=shown.quote_of(row.quote_amount),
            fee=shown.quote_of(row.fee), fee_currency=spec.quote, created_at=row.filled_at,
            fill=None, paper_fill=PaperFillNode.from_row(row), exchange_fill=None,
            market_row=market, market_id=market.id,
        )  # fmt: skip

    @classmethod
    def of_exchange(cls, fill: ExchangeFill, order: ExchangeOrder) -> BotTrade:
        return cls(
            id=strawberry.ID(to_base64(_EXCHANGE_FILL, fill.id)), side=OrderSide(order.side),
            liquidity=Liquidity(venue.liquidity_of(order).value), price=fill.price,
            quantity=fill.quantity, quote_amount=fill.price * fill.quantity,
            fee=venue.quote_fee(fill, order.symbol), fee_currency=order.symbol.split("/")[1],
            created_at=fill.filled_at, fill=None, paper_fill=None,
            exchange_fill=ExchangeFillType.from_row(fill), market_row=None, market_id=None,
        )  # fmt: skip


@strawberry.type
class BotTradeConnection(relay.Connection[BotTrade]):
    """A bot's trades, newest first, paged by keyset cursor."""


async def _market(info: Info, row: MarketRow | None, market_id: int | None) -> MarketNode | None:
    if market_id is None:
        return None
    if row is None:
        row = await info.context.loaders.market_by_id.load(market_id)
    return MarketNode.from_row(row)
