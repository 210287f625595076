"""The live internal venue behind the venue interface: the platform's own matching engine,
for one user, as ``app.venues.domain.venue.Venue`` describes it, with awaited methods
(``AsyncVenue``).

Each call is one of trading's use cases (``placement.place_order``,
``commands.cancel_order``, ``commands.amend_order``) or a read, so a bot, copy trading or a
backtest-turned-live strategy trades through exactly what the API does: the same checks,
holds, risk limits and typed errors. A refusal is an ``OrderAck`` carrying the error's
stable code, never an exception, as on the simulated venue. ``client_order_id`` makes a
submit idempotent (the platform's own rule: the same id and request returns the same
order; another request with it is ``CLIENT_ORDER_ID_REUSED``).

Events: the user's fills (``OrderFilled``), read from PostgreSQL (the record), numbered by
the fill's row id (increasing, with gaps: other users' fills). Not yet as events: an
order's acceptance, trigger and end without a last fill; a caller sees them in the acks
and in ``open_orders`` (an order that left it ended).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from sqlalchemy import select

from app.core.errors import UserError
from app.runtime import Runtime
from app.trading import commands, placement
from app.trading.domain.errors import OrderNotFound
from app.trading.domain.orders import (
    LIVE_STATUSES,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
)
from app.venues.domain.venue import (
    Balance,
    Liquidity,
    OpenOrder,
    OrderAck,
    OrderFilled,
    VenueEvent,
)
from app.wallets.wallets import wallets_by_user_ids
from db.models import Fill, Market, Order
from db.queries import filled_so_far

_LIVE = [s.value for s in LIVE_STATUSES]


def _ack(client_order_id: str, order: Order) -> OrderAck:
    return OrderAck(client_order_id, order.id, OrderStatus(order.status))


def _refused(client_order_id: str, error: UserError, order: Order | None = None) -> OrderAck:
    status = None if order is None else OrderStatus(order.status)
    return OrderAck(client_order_id, None if order is None else order.id, status, error.code)


class LiveVenue:
    """The platform's own venue for ``user_id``."""

    def __init__(self, rt: Runtime, *, user_id: int) -> None:
        self.rt = rt
        self.user_id = user_id

    async def _order(self, client_order_id: str) -> Order | None:
        async with self.rt.sessions() as session:
            return await placement.existing_order(session, self.user_id, client_order_id)

    async def submit(self, *, symbol: str, client_order_id: str, request: OrderRequest) -> OrderAck:
        try:
            order = await placement.place_order(
                self.rt,
                user_id=self.user_id,
                symbol=symbol,
                request=request,
                client_order_id=client_order_id,
            )
        except UserError as error:
            return _refused(client_order_id, error, await self._order(client_order_id))
        return _ack(client_order_id, order)

    async def cancel(self, *, client_order_id: str) -> OrderAck:
        try:
            order = await commands.cancel_order(
                self.rt, user_id=self.user_id, client_order_id=client_order_id
            )
        except UserError as error:
            return _refused(client_order_id, error, await self._order(client_order_id))
        return _ack(client_order_id, order)

    async def amend(self, *, client_order_id: str, price: Decimal, quantity: Decimal) -> OrderAck:
        order = await self._order(client_order_id)
        if order is None:
            return OrderAck(client_order_id, None, None, OrderNotFound.code)
        try:
            amended = await commands.amend_order(
                self.rt, user_id=self.user_id, order_id=order.id, price=price, quantity=quantity
            )
        except UserError as error:
            return _refused(client_order_id, error, await self._order(client_order_id))
        return _ack(client_order_id, amended)

    async def open_orders(self) -> tuple[OpenOrder, ...]:
        query = (
            select(Order, Market.symbol)
            .join(Market, Market.id == Order.market_id)
            .where(Order.user_id == self.user_id, Order.status.in_(_LIVE))
            .order_by(Order.id)
        )
        async with self.rt.sessions() as session:
            rows = (await session.execute(query)).all()
        return tuple(
            OpenOrder(
                order_id=o.id,
                client_order_id=o.client_order_id,
                symbol=symbol,
                side=Side(o.side),
                type=OrderType(o.type),
                quantity=o.quantity,
                filled=o.filled_quantity,
                price=o.book_price,
                stop_price=o.stop_price,
                status=OrderStatus(o.status),
            )
            for o, symbol in rows
        )

    async def balances(self) -> Mapping[str, Balance]:
        async with self.rt.sessions() as session:
            (wallets,) = await wallets_by_user_ids(session, [self.user_id])
        return {w.currency: Balance(w.currency, w.available, w.held) for w in wallets}

    async def events(self, *, after: int = 0, limit: int = 1000) -> tuple[VenueEvent, ...]:
        """The user's fills after the one numbered ``after``, oldest first."""
        query = (
            select(Fill, Order.client_order_id, Order.quantity, filled_so_far(Fill))
            .join(Order, Order.id == Fill.order_id)
            .where(Fill.user_id == self.user_id, Fill.id > after)
            .order_by(Fill.id)
            .limit(limit)
        )
        async with self.rt.sessions() as session:
            rows = (await session.execute(query)).all()
        return tuple(
            OrderFilled(
                number=fill.id,
                at=fill.created_at,
                order_id=fill.order_id,
                client_order_id=client_order_id,
                side=Side(fill.side),
                price=fill.price,
                quantity=fill.quantity,
                value=fill.quote_amount,
                fee=fill.fee,
                liquidity=Liquidity(fill.liquidity),
                remaining=quantity - filled,
            )
            for fill, client_order_id, quantity, filled in rows
        )
