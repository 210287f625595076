"""Orders on connected exchange accounts: placed and canceled through the connector
(ccxt) with the account's sealed key; ``app.exchanges.following`` follows them.

Never twice: the order's row, with our client order id, is committed PENDING_SUBMIT
(after the user's risk gate) before the exchange is asked. A write is sent once: when
its answer is lost (``ExchangeOutcomeUnknown``), the order is looked up by its client
order id, never re-sent; one still not found stays PENDING_SUBMIT and reconciliation
settles it (found: recorded; absent after ``following.SETTLE_AFTER``: REJECTED). A
process that dies between the commit and the answer leaves the same PENDING_SUBMIT row.

An order's state only moves forward (``advance``, under the row's lock, ``lock_order``),
here and in ``following``. The exchange is called outside any database transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFound, UserError, ValidationFailed
from app.exchanges import order_events, risk_counts
from app.exchanges.accounts import ACTIVE, DISCONNECTED, binding_of, sealed_of
from app.exchanges.connector import ExchangeSession
from app.exchanges.domain.catalogue import ExchangeId
from app.exchanges.domain.errors import (
    ExchangeOrderNotCancellable,
    ExchangeOrderNotFound,
    ExchangeOrderTypeNotAvailable,
    ExchangeOutcomeUnknown,
    ExchangeRejected,
    ExchangeUnavailable,
    UnsupportedExchange,
)
from app.exchanges.domain.markets import ExchangeMarket
from app.exchanges.domain.order_lists import ListLeg
from app.exchanges.domain.orders import (
    CANCELLABLE,
    LIVE,
    ORDER_EXCHANGES,
    QUOTE_SIZED_MARKET_BUYS,
    ExchangeOrderStatus,
    ExchangeOrderType,
    OrderSubmission,
    OrderTypeSupport,
    ReportedOrder,
    advance,
    check_submission,
    new_client_order_id,
)
from app.exchanges.domain.triggers import child_of
from app.risk.domain.checks import check_order
from app.risk.domain.limits import Figures, ProposedOrder
from app.risk.domain.states import PLATFORM_ID, Scope, ScopeRef
from app.risk.gate import bot_scope, read_context
from app.risk.sql import share_scopes
from app.runtime import Runtime
from app.trading.domain.errors import ClientOrderIdReused
from app.trading.domain.orders import Side
from app.trading.engine.settlement import CASH
from db.models import ExchangeConnection, ExchangeFill, ExchangeOrder
from db.queries import Page, PageKey, keyset_pages, rows_grouped_by
from db.raw import driver

log = logging.getLogger(__name__)

S = ExchangeOrderStatus


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """A placement as the client asked for it (parsed by ``parse_order``)."""

    account_id: int
    symbol: str
    side: str
    type: str
    quantity: Decimal
    price: Decimal | None = None
    stop_price: Decimal | None = None
    client_order_id: str | None = None  # the caller's (a bot's venue, a copy), or a new one
    bot_id: int | None = None  # a bot's order: its BOT scope's risk limits apply too
    follow_id: int | None = None  # a copy's or a close's: the follow's, and its FOLLOW scope


def parse_enum(enum: Any, text: str, field: str) -> Any:
    try:
        return enum(text.strip().upper())
    except ValueError:
        names = ", ".join(e.value for e in enum)
        raise ValidationFailed(f"{field} must be one of {names}", field=field) from None


def market_named(markets: Sequence[ExchangeMarket], symbol: str) -> ExchangeMarket:
    wanted = symbol.strip().upper()
    for market in markets:
        if market.symbol == wanted:
            return market
    raise ValidationFailed("No such spot market at this exchange", field="symbol")


def submission_for(request: PlaceOrder, market: ExchangeMarket) -> OrderSubmission:
    submission = OrderSubmission(
        client_order_id=request.client_order_id or new_client_order_id(),
        symbol=market.symbol,
        side=parse_enum(Side, request.side, "side"),
        type=parse_enum(ExchangeOrderType, request.type, "type"),
        quantity=request.quantity,
        price=request.price,
        stop_price=request.stop_price,
    )
    try:
        check_submission(market, submission)
    except InvalidOperation:  # a value beyond Decimal's context (a huge exponent)
        raise ValidationFailed("An amount is out of range", field="quantity") from None
    return submission


# --- reading -----------------------------------------------------------------------------


async def _connection(rt: Runtime, *, user_id: int, account_id: int) -> ExchangeConnection:
    async with rt.reads() as session:
        row = await session.scalar(
            select(ExchangeConnection).where(
                ExchangeConnection.id == account_id,
                ExchangeConnection.user_id == user_id,
                ExchangeConnection.status != DISCONNECTED,
            )
        )
    if row is None:
        raise NotFound("No such exchange account of yours", field="accountId")
    return row


async def get_order(rt: Runtime, *, user_id: int, order_id: int) -> ExchangeOrder:
    async with rt.reads() as session:
        row = await session.scalar(
            select(ExchangeOrder).where(
                ExchangeOrder.id == order_id, ExchangeOrder.user_id == user_id
            )
        )
    if row is None:
        raise NotFound("No such exchange order of yours", field="id")
    return row


async def orders_by_ids(
    session: AsyncSession, *, user_id: int, ids: Sequence[int]
) -> dict[int, ExchangeOrder]:
    rows = await session.scalars(
        select(ExchangeOrder).where(ExchangeOrder.id.in_(ids), ExchangeOrder.user_id == user_id)
    )
    return {row.id: row for row in rows}


async def orders_pages(session: AsyncSession, keys: Sequence[PageKey]) -> list[Page[ExchangeOrder]]:
    """Pages of accounts' orders, newest first (a ``PageKey`` per page), in one statement."""
    return await keyset_pages(
        session, ExchangeOrder, parent=ExchangeOrder.connection_id, key=ExchangeOrder.id,
        wanted=keys, descending=True,
    )  # fmt: skip


async def fills_by_order_ids(
    session: AsyncSession, order_ids: Sequence[int]
) -> list[list[ExchangeFill]]:
    """Each order's fills as recorded, oldest first (a DataLoader's batch)."""
    return await rows_grouped_by(session, ExchangeFill.order_id, order_ids)


def order_types(rt: Runtime, connection: ExchangeConnection) -> tuple[OrderTypeSupport, ...]:
    """Each order type at the account's exchange, native or to be emulated (no request
    is sent and no key opened: ccxt's capability data, corrected)."""
    return rt.exchanges.order_types(ExchangeId(connection.exchange))


def exchange_session(rt: Runtime, connection: ExchangeConnection) -> Any:
    exchange = ExchangeId(connection.exchange)
    return rt.exchanges.sealed_session(exchange, sealed_of(connection), binding_of(connection))


# --- placing -----------------------------------------------------------------------------


async def tradable_connection(rt: Runtime, *, user_id: int, account_id: int) -> ExchangeConnection:
    """The user's account, if orders can be placed on it now."""
    connection = await _connection(rt, user_id=user_id, account_id=account_id)
    if ExchangeId(connection.exchange) not in ORDER_EXCHANGES:
        raise UnsupportedExchange(
            f"Orders at {connection.exchange} are not available yet", field="accountId"
        )
    if connection.status != ACTIVE:
        raise ValidationFailed("This exchange account is suspended", field="accountId")
    return connection


async def place_order(
    rt: Runtime, *, user_id: int, request: PlaceOrder, leg: ListLeg | None = None
) -> ExchangeOrder:
    """Check it against the market and the user's risk scopes, record it PENDING_SUBMIT,
    send it once, record the answer (``leg``: as a leg of an order list, with the client
    order id the list gives it, if any)."""
    connection = await tradable_connection(rt, user_id=user_id, account_id=request.account_id)
    async with exchange_session(rt, connection) as session:
        market = market_named(await session.markets(), request.symbol)
        submission = submission_for(request, market)
        if leg is not None and leg.client_order_id is not None:
            submission = replace(submission, client_order_id=leg.client_order_id)
        support = {s.type: s for s in session.order_types()}[submission.type]
        emulated = support.emulated
        _check_sizing(ExchangeId(connection.exchange),
                      child_of(submission) if emulated else submission)  # fmt: skip
        try:
            order_id = await _record_pending(rt, connection, market, submission,
                                             emulated=emulated, leg=leg,
                                             bot_id=request.bot_id,
                                             follow_id=request.follow_id)  # fmt: skip
        except IntegrityError:  # the caller's client order id is the account's already
            raise ClientOrderIdReused(field="clientOrderId") from None
        if emulated:  # held ARMED by the platform (app/exchanges/triggers.py): not sent
            return await get_order(rt, user_id=user_id, order_id=order_id)
        return await submit(rt, session, order_id, submission)


def _check_sizing(exchange: ExchangeId, submission: OrderSubmission) -> None:
    """A market buy where the exchange sizes it in the quote currency is refused (the
    platform sends a base quantity and has no price to convert it with)."""
    if (
        exchange in QUOTE_SIZED_MARKET_BUYS
        and submission.type is ExchangeOrderType.MARKET
        and submission.side is Side.BUY
    ):
        raise ExchangeOrderTypeNotAvailable(
            f"A market buy at {exchange.value} is sized in the quote currency; place a"
            " limit buy instead",
            field="type",
        )


def proposed_order(market: ExchangeMarket, submission: OrderSubmission) -> ProposedOrder:
    """The order as the risk limits see it: its value in USD where its quote is cash
    and a price is known (a market order's value is not: 0), and what it acquires."""
    reference = submission.price or submission.stop_price
    notional = Decimal(0)
    if reference is not None and market.quote in CASH:
        notional = reference * submission.quantity
    acquired = market.base if submission.side is Side.BUY else market.quote
    return ProposedOrder(notional, None if acquired in CASH else acquired)


# the user's row, after the platform's risk scope lock (shared, as a placement takes it)
_LOCK_USER_SQL = f"""
    WITH {share_scopes("true", "false")}
    SELECT 1 FROM users WHERE (SELECT n FROM scopes) >= 0 AND id = $1 FOR NO KEY UPDATE
"""  # noqa: S608 (no input in the text)


async def check_risk(
    rt: Runtime, session: AsyncSession, user_id: int, order: ProposedOrder,
    bot_id: int | None = None, follow_id: int | None = None, *, new_order: bool = True,
) -> None:  # fmt: skip
    """The user's risk scopes that apply to an order at an exchange (ORDER, USER,
    PLATFORM, and a copy's FOLLOW): a HALTED one refuses it, a REDUCING one refuses an
    entry, a PRE_TRADE limit refuses what exceeds it. The user's row is locked first, as
    the platform's own placement does, so a state changing at this moment is seen. A
    bot's order meets its BOT scope too (``bot_scope``: its state and its limits, on no
    figures of its own: its owner's). The count limits see the user's platform orders and
    their exchange orders and cancels (``risk_counts``). ``new_order`` False: the order
    was counted already (an emulated stop's child), the counts do not judge it."""
    if not rt.risk_checks:
        return
    connection = await driver(session)
    await connection.execute(_LOCK_USER_SQL, user_id)
    follows = [follow_id] if follow_id is not None else []
    gate = await read_context(session, rt.now(), users=[user_id], follows=follows)
    refs = [ScopeRef(Scope.ORDER, user_id), *(ScopeRef(Scope.FOLLOW, f) for f in follows),
            ScopeRef(Scope.USER, user_id), ScopeRef(Scope.PLATFORM, PLATFORM_ID)]  # fmt: skip
    if bot_id is not None:
        refs.append(await bot_scope(session, gate, bot_id))
    limits = [limit for ref in refs for limit in gate.limits.get(ref, ())]
    figures = gate.figures.get(user_id, Figures())
    if new_order and risk_counts.watched(limits):
        figures = await risk_counts.with_exchange_counts(session, user_id, figures, gate.now)
    decision = check_order(
        order if new_order else replace(order, amends=True),
        scopes=refs,
        states=gate.states,
        limits=limits,
        figures=figures,
        now=gate.now,
    )
    if decision.binding is not None:
        raise decision.binding.error()


async def _record_pending(
    rt: Runtime,
    connection: ExchangeConnection,
    market: ExchangeMarket,
    submission: OrderSubmission,
    *,
    emulated: bool = False,
    leg: ListLeg | None = None,
    bot_id: int | None = None,
    follow_id: int | None = None,
) -> int:
    """The order's row, PENDING_SUBMIT (an emulated stop: ARMED), after the risk gate."""
    async with rt.sessions() as session, session.begin():
        order = proposed_order(market, submission)
        await check_risk(rt, session, connection.user_id, order, bot_id, follow_id)
        await _still_active(session, connection.id)
        row = ExchangeOrder(
            connection_id=connection.id, user_id=connection.user_id,
            client_order_id=submission.client_order_id, symbol=submission.symbol,
            side=submission.side.value, type=submission.type.value,
            quantity=submission.quantity, price=submission.price,
            stop_price=submission.stop_price, emulated=emulated,
            status=(S.ARMED if emulated else S.PENDING_SUBMIT).value, created_at=rt.now(),
            list_id=leg and leg.list_id, list_role=leg and leg.role.value,
            follow_id=follow_id,
        )  # fmt: skip
        session.add(row)
        await order_events.row_changed(session, row)
        return row.id


async def _still_active(session: AsyncSession, connection_id: int) -> None:
    """The account is ACTIVE, share-locked until the order is recorded: a suspension or
    disconnect (which disarms the account's stops under its row lock) waits, or is seen."""
    status = await session.scalar(
        select(ExchangeConnection.status)
        .where(ExchangeConnection.id == connection_id)
        .with_for_update(read=True)
    )
    if status != ACTIVE:
        raise ValidationFailed("This exchange account is suspended", field="accountId")


async def submit(
    rt: Runtime, session: ExchangeSession, order_id: int, submission: OrderSubmission
) -> ExchangeOrder:
    try:
        reported = await session.create_order(submission)
    except ExchangeOutcomeUnknown:
        return await _look_up(rt, session, order_id, submission)
    except UserError as error:
        await _reject(rt, order_id, error.code)
        raise
    return await _record_report(rt, order_id, reported)


async def _look_up(
    rt: Runtime, session: ExchangeSession, order_id: int, submission: OrderSubmission
) -> ExchangeOrder:
    """The answer was lost: find the order by our client order id (never re-send it)."""
    try:
        found = await session.find_order(
            symbol=submission.symbol, client_order_id=submission.client_order_id
        )
    except UserError:
        found = None
    if found is None:
        log.warning("exchange order outcome unknown", extra={"order": order_id})
        raise ExchangeUnavailable(
            "The exchange did not answer; the order is being checked and will show its"
            " outcome (do not place it again)"
        )
    return await _record_report(rt, order_id, found)


async def _reject(rt: Runtime, order_id: int, code: str) -> None:
    async with rt.sessions() as session, session.begin():
        row = await lock_order(session, order_id)
        if row.status == S.PENDING_SUBMIT.value:
            row.status, row.reject_code, row.updated_at = S.REJECTED.value, code, rt.now()
            await order_events.row_changed(session, row)


async def lock_order(session: AsyncSession, order_id: int) -> ExchangeOrder:
    row = await session.scalar(
        select(ExchangeOrder)
        .where(ExchangeOrder.id == order_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert row is not None  # orders are never deleted
    return row


def _apply(row: ExchangeOrder, reported: ReportedOrder, now: datetime) -> bool:
    """Move ``row`` by the exchange's report; whether anything changed."""
    status = advance(S(row.status), reported.status)
    filled = min(max(row.filled, reported.filled), row.quantity)
    if (status.value, filled, row.exchange_order_id) == (
        row.status,
        row.filled,
        reported.exchange_order_id,
    ):
        return False
    row.status, row.filled, row.updated_at = status.value, filled, now
    row.exchange_order_id = row.exchange_order_id or reported.exchange_order_id
    return True


async def _record_report(rt: Runtime, order_id: int, reported: ReportedOrder) -> ExchangeOrder:
    async with rt.sessions() as session, session.begin():
        row = await lock_order(session, order_id)
        if _apply(row, reported, rt.now()):
            await order_events.row_changed(session, row)
    return row


# --- canceling ---------------------------------------------------------------------------


async def cancel_order(rt: Runtime, *, user_id: int, order_id: int) -> ExchangeOrder:
    """Cancel an open order (once; an unknown outcome or an order the exchange no longer
    has open is read back from the exchange). An armed stop: ``triggers.cancel_order``."""
    row = await get_order(rt, user_id=user_id, order_id=order_id)
    if S(row.status) not in CANCELLABLE or row.exchange_order_id is None:
        raise ExchangeOrderNotCancellable(field="id")
    connection = await _connection(rt, user_id=user_id, account_id=row.connection_id)
    async with exchange_session(rt, connection) as session:
        await _cancel_asked(rt, row.id)
        try:
            await session.cancel_order(exchange_order_id=row.exchange_order_id, symbol=row.symbol)
            final = await _read_back(session, row)
        except (ExchangeOrderNotFound, ExchangeRejected, ExchangeOutcomeUnknown):
            # not open there any more (Binance refuses such a cancel), or the answer lost
            found = await session.find_order(symbol=row.symbol, client_order_id=row.client_order_id)
            if found is None:
                raise ExchangeUnavailable() from None
            row = await _record_report(rt, row.id, found)
            if S(row.status) in LIVE:
                raise ExchangeUnavailable() from None
            if row.status != S.CANCELED.value:
                raise ExchangeOrderNotCancellable(field="id") from None
            return row
    reported = ReportedOrder(row.exchange_order_id, row.client_order_id, row.symbol,
                             S.CANCELED, max(row.filled, final))  # fmt: skip
    return await _record_report(rt, row.id, reported)


async def _cancel_asked(rt: Runtime, order_id: int) -> None:
    """Stamp the order's cancel as asked now (CANCEL_RATE counts it), before it is sent."""
    async with rt.sessions() as session, session.begin():
        await session.execute(
            update(ExchangeOrder)
            .where(ExchangeOrder.id == order_id)
            .values(cancel_requested_at=rt.now())
        )


async def _read_back(session: ExchangeSession, row: ExchangeOrder) -> Decimal:
    """How much of a just-canceled order had filled (its fills are then read by the
    poller, which follows an ended order until its fills add up); what we knew if the
    exchange cannot say now."""
    try:
        found = await session.find_order(symbol=row.symbol, client_order_id=row.client_order_id)
    except UserError:
        return row.filled
    return row.filled if found is None else found.filled
