"""Trading commands on what is placed: cancel, amend, cancel all, the kill switch, and the
admin's market status. Each stores its command for the market's engine and answers with
the orders as the engine left them, or the typed error of its outcome."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import audit
from app.core.errors import InsufficientFunds, NotAuthenticated, UserError, ValidationFailed
from app.exchanges import cancel_requests
from app.risk import gate as risk_gate
from app.runtime import Runtime
from app.trading import markets
from app.trading.command_queue import after_engine, enqueue, get_orders
from app.trading.domain import orders as rules
from app.trading.domain.errors import (
    InvalidAmend,
    MarketHalted,
    OrderNotAmendable,
    OrderNotCancellable,
    OrderNotFound,
)
from app.trading.domain.matching import RejectReason, rejection_error
from app.trading.domain.orders import FINAL_STATUSES, OrderEvent, OrderStatus, OrderType
from app.trading.markets import MarketRow
from app.trading.pretrade import lock_trader
from app.trading.sql import LIVE_STATUS_VALUES
from db.models import Bot, Order, User
from db.queries import lock_user
from db.raw import driver
from db.session import in_transaction

RESTING = frozenset({OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED})


async def _own_order(
    session: AsyncSession, user_id: int, order_id: int | None, client_order_id: str | None
) -> Order:
    if (order_id is None) == (client_order_id is None):
        raise ValidationFailed("Give the order's id or its clientOrderId", field="id")
    query = select(Order).where(Order.user_id == user_id)
    if order_id is not None:
        query = query.where(Order.id == order_id)
    else:
        query = query.where(Order.client_order_id == client_order_id)
    order = await session.scalar(query)
    if order is None:
        raise OrderNotFound(field="id" if order_id is not None else "clientOrderId")
    return order


async def _outcome(rt: Runtime, market_id: int, seq: int) -> str | None:
    async with rt.sessions() as session:
        connection = await driver(session)
        return await connection.fetchval(
            "SELECT outcome FROM order_commands WHERE market_id = $1 AND seq = $2",
            market_id,
            seq,
        )


_OUTCOME_ERRORS: dict[str, type[UserError]] = {
    OrderNotCancellable.code: OrderNotCancellable,
    OrderNotAmendable.code: OrderNotAmendable,
    InvalidAmend.code: InvalidAmend,
    InsufficientFunds.code: InsufficientFunds,
}


def _raise_outcome(outcome: str | None) -> None:
    if outcome and outcome != "OK":
        error = _OUTCOME_ERRORS.get(outcome)
        if error is None:
            raise rejection_error(RejectReason(outcome))
        raise error()


async def _applied_command(rt: Runtime, order: Order, seq: int) -> Order:
    """After a CANCEL or AMEND of ``order`` was enqueued as ``seq``: the order as the
    engine left it, or the typed error of the engine's outcome."""
    (done,) = await after_engine(rt, order.market_id, seq, [order.id])
    _raise_outcome(await _outcome(rt, order.market_id, seq))
    return done


async def cancel_order(
    rt: Runtime,
    *,
    user_id: int | None,
    order_id: int | None = None,
    client_order_id: str | None = None,
) -> Order:
    async def work(session: AsyncSession) -> tuple[Order, int]:
        if user_id is None:
            raise NotAuthenticated()
        order = await _own_order(session, user_id, order_id, client_order_id)
        if order.status in FINAL_STATUSES:
            rules.apply(order.status, OrderEvent.CANCEL)  # raises OrderNotCancellable
        seq = await enqueue(session, order.market_id, [("CANCEL", order.id, user_id, {})])
        return order, seq

    return await _applied_command(rt, *await in_transaction(rt.sessions, work))


@dataclass(frozen=True, slots=True)
class Amendment:
    """An amendment checked as the venue checks it, not yet risk-checked nor sent."""

    order: Order
    market: MarketRow
    price: int  # ticks
    lots: int  # the new total quantity

    def values(self) -> tuple[Decimal, Decimal, bool]:
        """The value of what is left of the order before and after (quote currency), and
        whether its price moves."""
        spec, order = self.market.spec, self.order
        filled = int(order.filled_quantity / spec.lot_size)
        old_price, old_lots = spec.to_ticks(order.book_price), spec.to_lots(order.quantity)
        before = spec.quote_amount(spec.notional_units(old_price, old_lots - filled))
        after = spec.quote_amount(spec.notional_units(self.price, self.lots - filled))
        return before, after, self.price != old_price


async def checked_amendment(
    rt: Runtime,
    session: AsyncSession,
    user_id: int,
    order_id: int,
    price: Decimal | None,
    quantity: Decimal | None,
) -> Amendment:
    """The amendment of the user's order, or the typed error the venue's rules give."""
    order = await _own_order(session, user_id, order_id, None)
    if order.type != OrderType.LIMIT.value or OrderStatus(order.status) not in RESTING:
        raise OrderNotAmendable()
    if price is None and quantity is None:
        raise InvalidAmend("Give a new price, a new quantity or both", field="price")
    market = await markets.market_by_id(session, order.market_id)
    spec = market.spec
    if spec.status is not rules.MarketStatus.OPEN:
        # an amendment replaces the order (and may trade): not on a halted market
        raise MarketHalted(f"Trading on {spec.symbol} is halted")
    new_price = spec.to_ticks(price if price is not None else order.book_price)
    new_lots = spec.to_lots(quantity if quantity is not None else order.quantity)
    if new_lots <= int(order.filled_quantity / spec.lot_size):
        raise InvalidAmend(field="quantity")
    if price is not None:
        reference = None if market.last_price is None else spec.nearest_ticks(market.last_price)
        rules.check_price_band(new_price, reference, rt.settings.trading_price_band_bps)
    rules.check_min_notional(spec, new_price, new_lots)
    return Amendment(order, market, new_price, new_lots)


async def amend_order(
    rt: Runtime,
    *,
    user_id: int | None,
    order_id: int,
    price: Decimal | None,
    quantity: Decimal | None,
) -> Order:
    """New price and/or total quantity of a resting LIMIT order. It keeps its place in
    the queue only when the price stays and the quantity does not grow."""

    async def work(session: AsyncSession) -> tuple[Order, int]:
        uid = await lock_trader(rt, session, user_id, order_id=order_id)
        amended = await checked_amendment(rt, session, uid, order_id, price, quantity)
        if rt.risk_checks:
            await _check_amend_risk(rt, session, uid, amended)
        order = amended.order
        seq = await enqueue(
            session,
            order.market_id,
            [("AMEND", order.id, uid, {"price": amended.price, "quantity": amended.lots})],
        )
        return order, seq

    return await _applied_command(rt, *await in_transaction(rt.sessions, work))


async def _check_amend_risk(
    rt: Runtime, session: AsyncSession, user_id: int, amended: Amendment
) -> None:
    """The amendment meets the risk states and limits (``Gate.check_amend``), in this
    transaction, under the trader's row lock taken as a placement takes it; a limit it
    nears notified here (``warn_pre_trade``)."""
    symbol = amended.market.symbol
    found, gate = await risk_gate.markets_and_gate(
        rt, session, [symbol], users=[user_id], client_order_ids=[amended.order.client_order_id]
    )
    before, after, moved = amended.values()
    decision = gate.check_amend(
        user_id=user_id,
        market=amended.market,
        usd_rate=found[symbol][1] if symbol in found else Decimal(0),
        side=rules.Side(amended.order.side),
        before=before,
        after=after,
        moved=moved,
        client_order_id=amended.order.client_order_id,
    )
    await risk_gate.warn_pre_trade(session, gate, [(user_id, decision)])


async def cancel_all_commands(
    session: AsyncSession, user_id: int, market_id: int | None
) -> list[tuple[int, int, list[int]]]:
    """CANCEL_ALL per market where the user has live orders: (market, seq, order ids)."""
    connection = await driver(session)
    rows = await connection.fetch(
        "SELECT market_id, array_agg(id ORDER BY id) AS ids FROM orders"
        " WHERE user_id = $1 AND status = ANY($2::text[])"
        " AND ($3::bigint IS NULL OR market_id = $3) GROUP BY market_id ORDER BY market_id",
        user_id,
        LIVE_STATUS_VALUES,
        market_id,
    )
    out = []
    for row in rows:
        seq = await enqueue(session, row["market_id"], [("CANCEL_ALL", None, user_id, {})])
        out.append((row["market_id"], seq, list(row["ids"])))
    return out


async def cancel_account_commands(
    session: AsyncSession, user_id: int
) -> list[tuple[int, int, list[int]]]:
    """CANCEL_ALL of the user's and of every sub-account's (their bots') live orders: one
    statement finds them, one command per account with live orders, per market: (market,
    seq, order ids). However many bots the user runs, one read and one enqueue a market."""
    connection = await driver(session)
    rows = await connection.fetch(
        "SELECT market_id, array_agg(DISTINCT user_id) AS users, array_agg(id ORDER BY id)"
        " AS ids FROM orders WHERE (user_id = $1 OR user_id IN ("
        "SELECT s.id FROM users s WHERE s.owner_id = $1)) AND status = ANY($2::text[])"
        " GROUP BY market_id ORDER BY market_id",
        user_id,
        LIVE_STATUS_VALUES,
    )
    out = []
    for row in rows:
        cancels = [("CANCEL_ALL", None, account, {}) for account in sorted(row["users"])]
        seq = await enqueue(session, row["market_id"], cancels)
        out.append((row["market_id"], seq, list(row["ids"])))
    return out


async def cancel_prefixed_commands(
    session: AsyncSession, user_id: int, prefix: str
) -> list[tuple[int, int, list[int]]]:
    """CANCEL each live order of the user whose clientOrderId starts with ``prefix`` (a
    follow's copy orders), in sequence per market: (market, last seq, order ids)."""
    connection = await driver(session)
    rows = await connection.fetch(
        "SELECT market_id, array_agg(id ORDER BY id) AS ids FROM orders"
        " WHERE user_id = $1 AND status = ANY($2::text[]) AND starts_with(client_order_id, $3)"
        " GROUP BY market_id ORDER BY market_id",
        user_id,
        LIVE_STATUS_VALUES,
        prefix,
    )
    out = []
    for row in rows:
        ids = list(row["ids"])
        seq = await enqueue(session, row["market_id"], [("CANCEL", i, user_id, {}) for i in ids])
        out.append((row["market_id"], seq, ids))
    return out


async def wait_for_commands(rt: Runtime, queued: list[tuple[int, int, list[int]]]) -> list[Order]:
    ids: list[int] = []
    for market_id, seq, order_ids in queued:
        await rt.applied.wait(market_id, seq, rt.settings.trading_wait_seconds)
        ids.extend(order_ids)
    return await get_orders(rt, ids) if ids else []


async def cancel_all_orders(
    rt: Runtime, *, user_id: int | None, symbol: str | None = None
) -> list[Order]:
    """Cancel every live order of the user (on one market, or everywhere)."""

    async def work(session: AsyncSession) -> list[tuple[int, int, list[int]]]:
        if user_id is None:
            raise NotAuthenticated()
        market_id = None
        if symbol is not None:
            market_id = (await markets.market_by_symbol(session, symbol)).id
        return await cancel_all_commands(session, user_id, market_id)

    queued = await in_transaction(rt.sessions, work)
    return await wait_for_commands(rt, queued)


async def set_trading_enabled(rt: Runtime, *, user_id: int | None, enabled: bool) -> list[Order]:
    """The kill switch. ``False`` refuses new orders and cancels every live one (the
    orders it canceled are returned), pauses the user's bots and cancels their exchange
    bots' orders at the exchanges (``app.exchanges.cancel_requests``: asked in this
    transaction, sent after it, retried by a job while an exchange is down); ``True``
    allows trading again."""

    async def work(session: AsyncSession) -> list[tuple[int, int, list[int]]]:
        if user_id is None:
            raise NotAuthenticated()
        user = await lock_user(session, user_id)
        if user is None:
            raise NotAuthenticated()
        user.trading_enabled = enabled
        await session.flush()
        if enabled:
            return []
        # the user's bots trade as sub-accounts: paused, and their orders canceled too;
        # their exchange bots' orders are canceled at the exchanges after the commit
        await session.execute(
            update(Bot).where(Bot.user_id == user_id, Bot.status != "STOPPED").values(paused=True)
        )
        await cancel_requests.ask_for_bots(session, user_id=user_id, now=rt.now())
        subs = (await session.scalars(select(User.id).where(User.owner_id == user_id))).all()
        queued = []
        for account in (user_id, *subs):
            queued.extend(await cancel_all_commands(session, account, None))
        return queued

    queued = await in_transaction(rt.sessions, work)
    if not enabled and user_id is not None:
        await cancel_requests.send_asked(rt, user_id=user_id)
    return await wait_for_commands(rt, queued)


async def set_market_status(
    rt: Runtime, *, actor_id: int | None, symbol: str, status: rules.MarketStatus
) -> MarketRow:
    """Admin: halt a market (no new orders; resting orders stay) or open it again. As every
    admin action: the admin read in its transaction, one audit row committed with it."""

    async def work(session: AsyncSession) -> MarketRow:
        actor = await audit.require_admin(session, actor_id)
        before = await markets.market_by_symbol(session, symbol)
        market = await markets.set_market_status(session, symbol, status)
        await audit.record(
            session,
            actor_id=actor.id,
            action="market.status",
            target=f"market:{market.symbol}",
            details={"from": before.spec.status.value, "to": status.value},
        )
        return market

    return await in_transaction(rt.sessions, work)
