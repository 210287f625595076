"""OCO and bracket lists on connected exchange accounts, held by the platform (ccxt has
no unified OCO): the rules are in ``app.exchanges.domain.order_lists``.

Placing a list checks every leg against the market first (a bracket's exits at the
entry's full quantity), then records the list and places its legs through the ordinary
placement path (``orders.place_order``: risk gate, never twice; a stop the exchange has
not natively is ARMED, ``app.exchanges.triggers``). A leg refused leaves nothing half
placed: the list is CANCELED and its placed legs canceled.

``settle_lists`` (the ``exchange-order-lists`` job) moves each list on from what the
poller and the trigger job recorded: a leg that filled (in part) or fired cancels the
other (at the exchange if it was sent, else disarmed); a bracket whose entry ended with
a fill gets its exits for the filled quantity, with client order ids derived from the
list (two runners place them once: the second meets the unique client order id). The
exchange is called outside any transaction; a run cut short is redone by the next."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import exists, or_, select, update
from sqlalchemy.exc import IntegrityError

from app.core.errors import NotFound, UserError, ValidationFailed
from app.exchanges import orders, triggers
from app.exchanges.accounts import DISCONNECTED
from app.exchanges.domain.errors import ExchangeOrderNotCancellable
from app.exchanges.domain.order_lists import (
    BracketExits,
    LegRequest,
    LegState,
    ListKind,
    ListLeg,
    ListRole,
    ListStatus,
    bracket_exits,
    check_bracket,
    check_oco,
    exit_client_order_id,
    next_step,
)
from app.exchanges.domain.orders import LIVE, ExchangeOrderStatus, ExchangeOrderType
from app.runtime import Runtime
from app.trading.domain.orders import Side
from db.models import ExchangeConnection, ExchangeOrder, ExchangeOrderList

log = logging.getLogger(__name__)

S = ExchangeOrderStatus
_OPEN_LEGS = sorted([S.ARMED.value, *(s.value for s in LIVE)])


@dataclass(frozen=True, slots=True)
class LegInput:
    side: str
    type: str
    quantity: Decimal
    price: Decimal | None = None
    stop_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class PlaceOrderList:
    """An OCO (``orders``: a LIMIT and a stop) or a BRACKET (``entry`` and its exits'
    prices), as the client asked for it."""

    account_id: int
    symbol: str
    kind: str
    orders: Sequence[LegInput] | None = None
    entry: LegInput | None = None
    take_profit_price: Decimal | None = None
    stop_loss_price: Decimal | None = None
    stop_loss_limit_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class PlacedList:
    list: ExchangeOrderList
    orders: list[ExchangeOrder]


def _leg(given: LegInput) -> LegRequest:
    return LegRequest(
        side=orders.parse_enum(Side, given.side, "side"),
        type=orders.parse_enum(ExchangeOrderType, given.type, "type"),
        quantity=given.quantity, price=given.price, stop_price=given.stop_price,
    )  # fmt: skip


def _request(account_id: int, symbol: str, leg: LegRequest) -> orders.PlaceOrder:
    return orders.PlaceOrder(
        account_id=account_id, symbol=symbol, side=leg.side.value, type=leg.type.value,
        quantity=leg.quantity, price=leg.price, stop_price=leg.stop_price,
    )  # fmt: skip


def _planned(request: PlaceOrderList) -> tuple[ListKind, dict[ListRole, LegRequest],
                                               BracketExits | None]:  # fmt: skip
    """The legs placed now, by role (an OCO's two, a bracket's entry), and a bracket's
    exits; ``ValidationFailed`` for a list that is not one."""
    kind = orders.parse_enum(ListKind, request.kind, "kind")
    if kind is ListKind.OCO:
        if not request.orders:
            raise ValidationFailed("An OCO needs its two orders", field="orders")
        return kind, check_oco([_leg(o) for o in request.orders]), None
    if (
        request.entry is None
        or request.take_profit_price is None
        or (request.stop_loss_price is None)
    ):
        raise ValidationFailed(
            "A bracket needs entry, takeProfitPrice and stopLossPrice", field="entry"
        )
    entry = _leg(request.entry)
    exits = BracketExits(request.take_profit_price, request.stop_loss_price,
                         request.stop_loss_limit_price)  # fmt: skip
    check_bracket(entry, exits)
    return kind, {ListRole.ENTRY: entry}, exits


async def place_order_list(rt: Runtime, *, user_id: int, request: PlaceOrderList) -> PlacedList:
    kind, legs, exits = _planned(request)
    connection = await orders.tradable_connection(rt, user_id=user_id,
                                                  account_id=request.account_id)  # fmt: skip
    checked = list(legs.values())
    if exits is not None:
        entry = legs[ListRole.ENTRY]
        checked += bracket_exits(entry.side, exits, entry.quantity).values()
    async with orders.exchange_session(rt, connection) as session:  # every leg checked first
        market = orders.market_named(await session.markets(), request.symbol)
        for leg in checked:
            orders.submission_for(_request(connection.id, market.symbol, leg), market)
    async with rt.sessions() as db, db.begin():
        row = ExchangeOrderList(
            connection_id=connection.id, user_id=user_id, kind=kind.value,
            symbol=market.symbol, status=ListStatus.ACTIVE.value,
            take_profit_price=exits and exits.take_profit_price,
            stop_loss_price=exits and exits.stop_loss_price,
            stop_loss_limit_price=exits and exits.stop_loss_limit_price,
        )  # fmt: skip
        db.add(row)
        await db.flush()
        list_id = row.id
    # the stop first: an OCO's emulated stop is only armed, so a refused limit
    # leaves nothing at the exchange
    for role in sorted(legs, key=lambda r: r is not ListRole.STOP_LOSS):
        try:
            await orders.place_order(
                rt,
                user_id=user_id,
                leg=ListLeg(list_id, role),
                request=_request(connection.id, market.symbol, legs[role]),
            )
        except UserError:
            await _end(rt, list_id, ListStatus.CANCELED)
            await _cancel_live_legs(rt, user_id=user_id, list_id=list_id)
            raise
    return await get_list(rt, user_id=user_id, list_id=list_id)


async def get_list(rt: Runtime, *, user_id: int, list_id: int) -> PlacedList:
    async with rt.reads() as db:
        row = await db.scalar(
            select(ExchangeOrderList).where(
                ExchangeOrderList.id == list_id, ExchangeOrderList.user_id == user_id
            )
        )
        if row is None:
            raise NotFound("No such exchange order list of yours", field="id")
        legs = list(await db.scalars(
            select(ExchangeOrder).where(ExchangeOrder.list_id == list_id)
            .order_by(ExchangeOrder.id)
        ))  # fmt: skip
    return PlacedList(row, legs)


async def cancel_order_list(rt: Runtime, *, user_id: int, list_id: int) -> PlacedList:
    """Cancel every leg still live (the list first, so nothing new is placed for it)."""
    await get_list(rt, user_id=user_id, list_id=list_id)
    if not await _end(rt, list_id, ListStatus.CANCELED):
        raise ExchangeOrderNotCancellable("This order list has ended", field="id")
    await _cancel_live_legs(rt, user_id=user_id, list_id=list_id)
    return await get_list(rt, user_id=user_id, list_id=list_id)


async def _cancel_live_legs(rt: Runtime, *, user_id: int, list_id: int) -> None:
    """Each leg still live canceled (one not placed yet: by the job, later)."""
    async with rt.reads() as db:
        ids = list(await db.scalars(
            select(ExchangeOrder.id).where(ExchangeOrder.list_id == list_id,
                                           ExchangeOrder.status.in_(_OPEN_LEGS))
        ))  # fmt: skip
    await _cancel(rt, user_id=user_id, list_id=list_id, order_ids=ids)


async def _cancel(rt: Runtime, *, user_id: int, list_id: int, order_ids: Sequence[int]) -> None:
    for order_id in order_ids:
        try:
            await triggers.cancel_order(rt, user_id=user_id, order_id=order_id)
        except UserError as error:  # not placed yet, or the exchange away: next run
            log.info("exchange order list leg not canceled yet",
                     extra={"list": list_id, "order": order_id, "code": error.code})  # fmt: skip


async def _end(rt: Runtime, list_id: int, status: ListStatus) -> bool:
    """ACTIVE -> ``status``; whether it was ACTIVE."""
    async with rt.sessions() as db, db.begin():
        result = await db.execute(
            update(ExchangeOrderList)
            .where(ExchangeOrderList.id == list_id,
                   ExchangeOrderList.status == ListStatus.ACTIVE.value)
            .values(status=status.value, updated_at=rt.now())
        )  # fmt: skip
    return bool(result.rowcount)  # type: ignore[attr-defined]


# --- following ---------------------------------------------------------------------------


async def settle_lists(rt: Runtime, *, limit: int = 200) -> int:
    """Move on every list that is ACTIVE or has legs still live (a background job);
    returns how many were looked at. One list's failure does not stop the others."""
    live_leg = exists().where(ExchangeOrder.list_id == ExchangeOrderList.id,
                              ExchangeOrder.status.in_(_OPEN_LEGS))  # fmt: skip
    async with rt.reads() as db:
        ids = list(await db.scalars(
            select(ExchangeOrderList.id)
            .join(ExchangeConnection, ExchangeConnection.id == ExchangeOrderList.connection_id)
            .where(or_(ExchangeOrderList.status == ListStatus.ACTIVE.value, live_leg),
                   ExchangeConnection.status != DISCONNECTED)
            .order_by(ExchangeOrderList.id).limit(limit)
        ))  # fmt: skip
    for list_id in ids:
        try:
            await settle_list(rt, list_id=list_id)
        except UserError as error:
            log.warning("exchange order list not settled",
                        extra={"list": list_id, "code": error.code})  # fmt: skip
    return len(ids)


def _state(row: ExchangeOrder) -> LegState:
    return LegState(row.id, ListRole(row.list_role), S(row.status), row.filled,
                    triggered=row.triggered_at is not None)  # fmt: skip


async def settle_list(rt: Runtime, *, list_id: int) -> None:
    async with rt.reads() as db:
        row = await db.get(ExchangeOrderList, list_id)
        assert row is not None  # lists are never deleted
        legs = list(await db.scalars(select(ExchangeOrder).where(ExchangeOrder.list_id == list_id)))
    step = next_step(ListKind(row.kind), ListStatus(row.status), [_state(leg) for leg in legs])
    await _cancel(rt, user_id=row.user_id, list_id=list_id, order_ids=step.cancel)
    if step.exits_for is not None:
        [entry] = [leg for leg in legs if leg.list_role == ListRole.ENTRY.value]
        await _place_exits(rt, row, Side(entry.side), step.exits_for)
    if step.status is not None:
        await _end(rt, list_id, step.status)


async def _place_exits(
    rt: Runtime, row: ExchangeOrderList, entry_side: Side, quantity: Decimal
) -> None:
    """The bracket's exits for ``quantity``, the stop first; each once (its client order
    id is the list's). Exits the market refuses (a fill below its minimum) end the list
    with the refusal's code as its note."""
    assert row.take_profit_price is not None and row.stop_loss_price is not None
    exits = BracketExits(row.take_profit_price, row.stop_loss_price, row.stop_loss_limit_price)
    planned = bracket_exits(entry_side, exits, quantity)
    for role in (ListRole.STOP_LOSS, ListRole.TAKE_PROFIT):
        leg = ListLeg(row.id, role, exit_client_order_id(row.id, role))
        try:
            await orders.place_order(rt, user_id=row.user_id, leg=leg,
                                     request=_request(row.connection_id, row.symbol,
                                                      planned[role]))  # fmt: skip
        except IntegrityError:
            continue  # placed by another runner
        except ValidationFailed as error:
            await _note(rt, row.id, error.code)
            return


async def _note(rt: Runtime, list_id: int, note: str) -> None:
    async with rt.sessions() as db, db.begin():
        await db.execute(
            update(ExchangeOrderList)
            .where(ExchangeOrderList.id == list_id)
            .values(note=note, status=ListStatus.DONE.value, updated_at=rt.now())
        )
