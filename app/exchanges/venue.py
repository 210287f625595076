"""One connected exchange account behind the venue interface (``AsyncVenue`` of
``app.venues.domain.venue``): what a bot trades through on a connected account.

Each call is one of ``app.exchanges.orders``'s service functions, so an order here meets
what the API's does: the account's status, the exchange market's tick, lot and minimum
notional, the user's risk scopes (a bot's BOT scope too), PENDING_SUBMIT before it is
sent and never sent twice. A refusal is an ``OrderAck`` carrying the error's stable
code, never an exception (as ``LiveVenue``).

Client order ids: the caller's (a bot's ``bot:12:g:3``) are not what every exchange
takes (OKX: letters and digits, 32 at most), so the exchange is sent
``exchange_client_id(id)``, a digest of it: the same id is always the same order, and
submitting it again (a restart, a second process) returns the order placed with it,
never a second one. The same id with another request is ``CLIENT_ORDER_ID_REUSED``.

    submit      ``orders.place_order`` (LIMIT, MARKET; STOP_MARKET and STOP_LIMIT as the
                exchange's STOP_LOSS and STOP_LOSS_LIMIT). A MARKET buy where the
                exchange sizes market buys in the quote (Coinbase) goes as a LIMIT at
                its worst price (a marketable limit: it trades at once at the book's
                prices, never beyond the worst). Post-only, IOC/FOK/GTD, trailing and
                take-profit types: ``EXCHANGE_ORDER_TYPE_NOT_AVAILABLE``
    cancel      ``orders.cancel_order``; an order already ended acks its status
    amend       ``EXCHANGE_AMEND_NOT_AVAILABLE`` (cancel and place again)
    open_orders the account's live orders, from ``exchange_orders``
    balances    read from the exchange now
    events      the account's fills (``exchange_fills``), numbered by their row id
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal

from sqlalchemy import select

from app.core.errors import NotFound, UserError
from app.exchanges import orders
from app.exchanges.accounts import balances as exchange_balances
from app.exchanges.domain.catalogue import ExchangeId
from app.exchanges.domain.errors import ExchangeAmendNotAvailable, ExchangeOrderTypeNotAvailable
from app.exchanges.domain.orders import (
    CLIENT_ORDER_ID_PREFIX,
    LIVE,
    QUOTE_SIZED_MARKET_BUYS,
    ExchangeOrderStatus,
    ExchangeOrderType,
    derived_client_order_id,
    derived_client_order_id_sql,
)
from app.runtime import Runtime
from app.trading.domain.errors import ClientOrderIdReused, OrderNotFound
from app.trading.domain.orders import (
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from app.venues.domain.venue import (
    Balance,
    Liquidity,
    OpenOrder,
    OrderAck,
    OrderFilled,
    VenueEvent,
)
from db.models import ExchangeConnection, ExchangeFill, ExchangeOrder
from db.queries import filled_so_far

S = ExchangeOrderStatus
# the platform's order types the exchanges take, as theirs
TYPES: Mapping[OrderType, ExchangeOrderType] = {
    OrderType.LIMIT: ExchangeOrderType.LIMIT,
    OrderType.MARKET: ExchangeOrderType.MARKET,
    OrderType.STOP_MARKET: ExchangeOrderType.STOP_LOSS,
    OrderType.STOP_LIMIT: ExchangeOrderType.STOP_LOSS_LIMIT,
}
PLATFORM_TYPES = {v: k for k, v in TYPES.items()}
# an exchange order's status as the platform's (PENDING_SUBMIT: recorded, not yet placed)
STATUSES: Mapping[S, OrderStatus] = {
    S.PENDING_SUBMIT: OrderStatus.NEW,
    S.OPEN: OrderStatus.OPEN,
    S.PARTIALLY_FILLED: OrderStatus.PARTIALLY_FILLED,
    S.FILLED: OrderStatus.FILLED,
    S.CANCELED: OrderStatus.CANCELED,
    S.REJECTED: OrderStatus.REJECTED,
    S.ARMED: OrderStatus.UNTRIGGERED,  # an emulated stop the platform holds
}
_LIVE_VALUES = sorted(s.value for s in LIVE)


def exchange_client_id(client_order_id: str) -> str:
    """The client order id the exchange is sent for the caller's ``client_order_id``
    (letters and digits, 18 characters: every exchange takes it)."""
    return derived_client_order_id(CLIENT_ORDER_ID_PREFIX, client_order_id)


def exchange_client_id_sql(key_sql: str) -> str:
    """``exchange_client_id`` in SQL, of the text expression ``key_sql`` (statements that
    find a bot's exchange orders from its commands' client order ids)."""
    return derived_client_order_id_sql(CLIENT_ORDER_ID_PREFIX, key_sql)


def status_of(row: ExchangeOrder) -> OrderStatus:
    return STATUSES[S(row.status)]


def _ack(client_order_id: str, row: ExchangeOrder, code: str | None = None) -> OrderAck:
    return OrderAck(client_order_id, row.id, status_of(row), code)


def placement(
    exchange: ExchangeId, account_id: int, symbol: str, request: OrderRequest
) -> orders.PlaceOrder:
    """``request`` as an exchange placement (``ExchangeOrderTypeNotAvailable`` for what
    no exchange order says)."""
    kind = TYPES.get(request.type)
    unsupported = (
        kind is None
        or request.post_only
        or request.time_in_force not in (None, TimeInForce.GTC, TimeInForce.IOC)
        or (request.time_in_force is TimeInForce.IOC and kind is not ExchangeOrderType.MARKET)
    )
    if kind is None or unsupported:
        raise ExchangeOrderTypeNotAvailable(field="type")
    price = request.price
    if (
        kind is ExchangeOrderType.MARKET
        and request.side is Side.BUY
        and exchange in QUOTE_SIZED_MARKET_BUYS
        and request.worst_price is not None
    ):
        kind, price = ExchangeOrderType.LIMIT, request.worst_price  # a marketable limit
    elif kind is ExchangeOrderType.MARKET:
        price = None
    return orders.PlaceOrder(
        account_id=account_id, symbol=symbol, side=request.side.value, type=kind.value,
        quantity=request.quantity, price=price, stop_price=request.stop_price,
    )  # fmt: skip


def _same(row: ExchangeOrder, wanted: orders.PlaceOrder) -> bool:
    return (row.symbol, row.side, row.type, row.quantity, row.price) == (
        wanted.symbol.strip().upper(), wanted.side, wanted.type, wanted.quantity, wanted.price,
    )  # fmt: skip


class ExchangeVenue:
    """The connected account ``account_id`` of ``user_id``; ``bot_id``: the bot trading
    through it (its BOT scope's risk limits apply)."""

    def __init__(
        self, rt: Runtime, *, user_id: int, account_id: int, bot_id: int | None = None
    ) -> None:
        self.rt = rt
        self.user_id = user_id
        self.account_id = account_id
        self.bot_id = bot_id

    async def order_of(self, client_order_id: str) -> ExchangeOrder | None:
        """The account's order placed with the caller's ``client_order_id``."""
        async with self.rt.reads() as session:
            return await session.scalar(
                select(ExchangeOrder).where(
                    ExchangeOrder.connection_id == self.account_id,
                    ExchangeOrder.user_id == self.user_id,
                    ExchangeOrder.client_order_id == exchange_client_id(client_order_id),
                )
            )

    async def _exchange(self) -> ExchangeId:
        async with self.rt.reads() as session:
            exchange = await session.scalar(
                select(ExchangeConnection.exchange).where(
                    ExchangeConnection.id == self.account_id,
                    ExchangeConnection.user_id == self.user_id,
                )
            )
        if exchange is None:
            raise NotFound("No such exchange account of yours", field="accountId")
        return ExchangeId(exchange)

    async def submit(self, *, symbol: str, client_order_id: str, request: OrderRequest) -> OrderAck:
        try:
            wanted = placement(await self._exchange(), self.account_id, symbol, request)
            placed = await self.order_of(client_order_id)
            if placed is not None:
                code = None if _same(placed, wanted) else ClientOrderIdReused.code
                return _ack(client_order_id, placed, code)
            row = await orders.place_order(self.rt, user_id=self.user_id, request=_named(
                wanted, exchange_client_id(client_order_id), self.bot_id
            ))  # fmt: skip
        except ClientOrderIdReused:  # the same submit at this moment (another process)
            placed = await self.order_of(client_order_id)
            if placed is None:
                return OrderAck(client_order_id, None, None, ClientOrderIdReused.code)
            return _ack(client_order_id, placed, None if _same(placed, wanted) else
                        ClientOrderIdReused.code)  # fmt: skip
        except UserError as error:
            return await self._refused(client_order_id, error)
        return _ack(client_order_id, row)

    async def _refused(self, client_order_id: str, error: UserError) -> OrderAck:
        row = await self.order_of(client_order_id)
        if row is None:
            return OrderAck(client_order_id, None, None, error.code)
        return _ack(client_order_id, row, error.code)

    async def cancel(self, *, client_order_id: str) -> OrderAck:
        row = await self.order_of(client_order_id)
        if row is None:
            return OrderAck(client_order_id, None, None, OrderNotFound.code)
        if S(row.status) not in LIVE:
            return _ack(client_order_id, row)  # ended already: nothing to cancel
        try:
            row = await orders.cancel_order(self.rt, user_id=self.user_id, order_id=row.id)
        except UserError as error:
            return await self._refused(client_order_id, error)
        return _ack(client_order_id, row)

    async def amend(self, *, client_order_id: str, price: Decimal, quantity: Decimal) -> OrderAck:
        row = await self.order_of(client_order_id)
        if row is None:
            return OrderAck(client_order_id, None, None, OrderNotFound.code)
        return _ack(client_order_id, row, ExchangeAmendNotAvailable.code)

    async def open_orders(self) -> tuple[OpenOrder, ...]:
        async with self.rt.reads() as session:
            rows = await session.scalars(
                select(ExchangeOrder)
                .where(
                    ExchangeOrder.connection_id == self.account_id,
                    ExchangeOrder.user_id == self.user_id,
                    ExchangeOrder.status.in_(_LIVE_VALUES),
                )
                .order_by(ExchangeOrder.id)
            )
            return tuple(
                OpenOrder(
                    order_id=o.id,
                    client_order_id=o.client_order_id,
                    symbol=o.symbol,
                    side=Side(o.side),
                    type=PLATFORM_TYPES[ExchangeOrderType(o.type)],
                    quantity=o.quantity,
                    filled=o.filled,
                    price=o.price or Decimal(0),
                    stop_price=o.stop_price,
                    status=status_of(o),
                )
                for o in rows
            )

    async def balances(self) -> Mapping[str, Balance]:
        """The account's balances, read from the exchange now."""
        async with self.rt.reads() as session:
            connection = await session.get(ExchangeConnection, self.account_id)
        if connection is None or connection.user_id != self.user_id:
            return {}
        read = await exchange_balances(self.rt, connection)
        return {b.currency: Balance(b.currency, b.free, b.used) for b in read}

    async def events(self, *, after: int = 0, limit: int = 1000) -> tuple[VenueEvent, ...]:
        """The account's fills after the one numbered ``after``, oldest first: the fee
        in the quote (a fee in the base is valued at the fill's price); the liquidity
        is not reported: a LIMIT order's fills read as MAKER, others as TAKER."""
        query = (
            select(ExchangeFill, ExchangeOrder, filled_so_far(ExchangeFill))
            .join(ExchangeOrder, ExchangeOrder.id == ExchangeFill.order_id)
            .where(
                ExchangeFill.connection_id == self.account_id,
                ExchangeOrder.user_id == self.user_id,
                ExchangeFill.id > after,
            )
            .order_by(ExchangeFill.id)
            .limit(limit)
        )
        async with self.rt.reads() as session:
            rows = (await session.execute(query)).all()
        events: list[VenueEvent] = []
        for fill, order, filled in rows:
            events.append(OrderFilled(
                number=fill.id, at=fill.filled_at, order_id=order.id,
                client_order_id=order.client_order_id, side=Side(order.side),
                price=fill.price, quantity=fill.quantity, value=fill.price * fill.quantity,
                fee=quote_fee(fill, order.symbol),
                liquidity=liquidity_of(order),
                remaining=order.quantity - filled,
            ))  # fmt: skip
        return tuple(events)


def liquidity_of(order: ExchangeOrder) -> Liquidity:
    """The exchanges do not report it: a LIMIT order's fills read as MAKER, others as
    TAKER."""
    return Liquidity.MAKER if order.type == ExchangeOrderType.LIMIT.value else Liquidity.TAKER


def quote_fee(fill: ExchangeFill, symbol: str) -> Decimal:
    """A fill's fee in its market's quote: a fee the exchange took in the base is valued
    at the fill's price."""
    base = symbol.split("/")[0]
    return fill.fee * fill.price if fill.fee_currency == base else fill.fee


def _named(
    wanted: orders.PlaceOrder, client_order_id: str, bot_id: int | None
) -> orders.PlaceOrder:
    return replace(wanted, client_order_id=client_order_id, bot_id=bot_id)
