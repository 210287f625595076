"""Copies sent to a follower's exchange account (a follow with ``exchange_account_id``).

``copy_planning`` records such a copy PENDING (sized, not yet fitted to the exchange's
market) in the copy-trading batch's transaction; this sender runs after that batch has
committed (``copy_trading.run_once``) and talks to the exchange outside any database
transaction. Per copy, oldest first::

    an order with its client order id     PLACED with that order: it was sent before and
    exists already                        the worker stopped before marking the copy
    account DISCONNECTED / SUSPENDED      SKIPPED (EXCHANGE_ACCOUNT_DISCONNECTED / _SUSPENDED)
    PENDING longer than ``STALE_AFTER``   SKIPPED (EXCHANGE_UNAVAILABLE): not sent late
    no spot market of its base/quote     SKIPPED (EXCHANGE_MARKET_NOT_FOUND)
    below the lot, minimum amount or      SKIPPED (BELOW_MINIMUM), never sent
    minimum notional once fitted
    otherwise                             ``app.exchanges.orders.place_order`` (LIMIT at the
                                          fitted slippage bound, the copy's client order id,
                                          the FOLLOW risk scope too): PLACED, or SKIPPED with
                                          the refusal's code; an exchange unavailable or
                                          rate-limited leaves it PENDING, tried again after
                                          ``RETRY_AFTER`` (until ``STALE_AFTER``)

Never twice: the client order id is the copy's own (``exchange_copy_client_order_id``)
and ``place_order`` commits the order's row (unique per account and client order id)
PENDING_SUBMIT before sending; a second sender, a redelivered leader fill or a restart
finds that row and sends nothing. A send whose answer was lost leaves the row
PENDING_SUBMIT for the ``exchange-orders`` reconciliation; the copy is linked to it.
Every skip writes ``social.copy_skipped`` like the platform's copies."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text

from app.core.errors import UserError
from app.events import outbox
from app.exchanges import orders
from app.exchanges.domain.catalogue import ExchangeId
from app.exchanges.domain.errors import ExchangeRateLimited, ExchangeUnavailable
from app.exchanges.domain.markets import ExchangeMarket
from app.exchanges.domain.orders import ExchangeOrderType
from app.runtime import Runtime
from app.social.copy_planning import skipped_event
from app.social.domain import copying
from app.social.domain.copying import ExchangeLots, Planned, SkipReason
from app.trading.domain.errors import ClientOrderIdReused

log = logging.getLogger(__name__)

# a copy not sent by then is skipped: the leader's price is stale
STALE_AFTER = timedelta(minutes=5)
# a copy whose exchange was unavailable is tried again after this (not at every poll)
RETRY_AFTER = timedelta(seconds=5)
BATCH = 200
_TRANSIENT = (ExchangeUnavailable.code, ExchangeRateLimited.code)


@dataclass(frozen=True, slots=True)
class ExchangeCopy:
    id: int
    follow_id: int
    follower_id: int
    leader_fill_id: int
    account_id: int
    account_status: str
    exchange: str
    symbol: str  # the platform's
    base: str
    quote: str
    side: str
    quantity: Decimal
    price: Decimal
    client_order_id: str
    created_at: datetime


_PENDING_SQL = text("""
    SELECT c.id, c.follow_id, f.follower_id, c.leader_fill_id, c.exchange_account_id,
           x.status AS account_status, x.exchange, m.symbol, m.base, m.quote, c.side,
           c.quantity, c.price, c.client_order_id, c.created_at
    FROM copies c JOIN follows f ON f.id = c.follow_id JOIN markets m ON m.id = c.market_id
    JOIN exchange_connections x ON x.id = c.exchange_account_id
    WHERE c.status = 'PENDING' AND c.exchange_account_id IS NOT NULL
      AND (c.updated_at = c.created_at OR c.updated_at < :retry_before)
    ORDER BY c.id LIMIT :limit
""")
_RETRY_LATER_SQL = text(
    "UPDATE copies SET updated_at = now() WHERE id = :id AND status = 'PENDING'"
)
_EXISTING_SQL = text(
    "SELECT id, quantity, price FROM exchange_orders"
    " WHERE connection_id = :account AND client_order_id = :client"
)
_PLACED_SQL = text("""
    UPDATE copies SET status = 'PLACED', exchange_order_id = :order, quantity = :quantity,
                      price = :price, updated_at = now()
    WHERE id = :id AND status = 'PENDING'
""")
_SKIPPED_SQL = text("""
    UPDATE copies SET status = 'SKIPPED', reason = :reason, updated_at = now()
    WHERE id = :id AND status = 'PENDING' RETURNING id
""")


async def send_pending(rt: Runtime, *, limit: int = BATCH) -> int:
    """Send the PENDING exchange copies (follows concurrently, at most COPY_CONCURRENCY,
    one follow's copies in order); how many were settled (PLACED or SKIPPED: those left
    PENDING for a transient failure are not counted, so ``run_once`` stops)."""
    async with rt.reads() as session:
        params = {"limit": limit, "retry_before": rt.now() - RETRY_AFTER}
        rows = (await session.execute(_PENDING_SQL, params)).mappings().all()
    by_follow: dict[int, list[ExchangeCopy]] = defaultdict(list)
    for row in rows:
        copy = _copy_of(row)
        by_follow[copy.follow_id].append(copy)
    gate = asyncio.Semaphore(rt.settings.copy_concurrency)

    async def one_follow(group: list[ExchangeCopy]) -> int:
        async with gate:
            return sum([await send(rt, copy) for copy in group])

    return sum(await asyncio.gather(*(one_follow(g) for g in by_follow.values())))


def _copy_of(row: Any) -> ExchangeCopy:
    return ExchangeCopy(
        id=row["id"],
        follow_id=row["follow_id"],
        follower_id=row["follower_id"],
        leader_fill_id=row["leader_fill_id"],
        account_id=row["exchange_account_id"],
        account_status=row["account_status"],
        exchange=row["exchange"],
        symbol=row["symbol"],
        base=row["base"],
        quote=row["quote"],
        side=row["side"],
        quantity=row["quantity"],
        price=row["price"],
        client_order_id=row["client_order_id"],
        created_at=row["created_at"],
    )


async def send(rt: Runtime, copy: ExchangeCopy) -> bool:
    """Settle one copy (see the module's table); whether it was settled."""
    existing = await _existing_order(rt, copy)
    if existing is not None:
        return await _placed(rt, copy, existing)
    reason: str | None = copying.account_refusal(copy.account_status)
    if reason is None and rt.now() - copy.created_at > STALE_AFTER:
        reason = SkipReason.EXCHANGE_UNAVAILABLE
    if reason is not None:
        return await _skip(rt, copy, reason)
    try:
        market = await exchange_market(rt, copy.exchange, copy.base, copy.quote)
    except UserError as error:
        return await _failed(rt, copy, error)
    if market is None:
        return await _skip(rt, copy, SkipReason.EXCHANGE_MARKET_NOT_FOUND)
    fitted = copying.fit_to_market(copy.side, copy.quantity, copy.price, lots_of(market))
    if not isinstance(fitted, Planned):
        return await _skip(rt, copy, fitted.reason)
    return await _place(rt, copy, market, fitted)


async def exchange_market(
    rt: Runtime, exchange: str, base: str, quote: str
) -> ExchangeMarket | None:
    """The exchange's active spot market of ``base`` / ``quote``, if any."""
    async with rt.exchanges.public_session(ExchangeId(exchange)) as session:
        markets = await session.markets()
    for market in markets:
        if (market.base, market.quote) == (base, quote) and market.active:
            return market
    return None


def lots_of(market: ExchangeMarket) -> ExchangeLots:
    return ExchangeLots(
        tick_size=market.tick_size,
        lot_size=market.lot_size,
        min_amount=market.min_amount,
        min_notional=market.min_notional,
    )


async def _place(rt: Runtime, copy: ExchangeCopy, market: ExchangeMarket, plan: Planned) -> bool:
    request = orders.PlaceOrder(
        account_id=copy.account_id,
        symbol=market.symbol,
        side=copy.side,
        type=ExchangeOrderType.LIMIT.value,
        quantity=plan.quantity,
        price=plan.price,
        client_order_id=copy.client_order_id,
        follow_id=copy.follow_id,
    )
    try:
        order = await orders.place_order(rt, user_id=copy.follower_id, request=request)
    except ClientOrderIdReused:  # another sender recorded it first: that one sends it
        existing = await _existing_order(rt, copy)
        assert existing is not None  # the unique row that refused ours
        return await _placed(rt, copy, existing)
    except UserError as error:
        return await _failed(rt, copy, error)
    return await _placed(rt, copy, _Sent(order.id, order.quantity, order.price))


async def _failed(rt: Runtime, copy: ExchangeCopy, error: UserError) -> bool:
    """A refusal skips the copy with its code; a transient failure leaves it PENDING (an
    order recorded before the answer was lost is linked on the next run)."""
    if error.code not in _TRANSIENT:
        return await _skip(rt, copy, error.code)
    log.warning("exchange copy not sent yet", extra={"copy": copy.id, "code": error.code})
    existing = await _existing_order(rt, copy)
    if existing is not None:
        return await _placed(rt, copy, existing)
    async with rt.sessions() as session, session.begin():
        await session.execute(_RETRY_LATER_SQL, {"id": copy.id})
    return False


@dataclass(frozen=True, slots=True)
class _Sent:
    """The exchange order of a copy: its row, and what was sent."""

    order_id: int
    quantity: Decimal
    price: Decimal | None


async def _existing_order(rt: Runtime, copy: ExchangeCopy) -> _Sent | None:
    async with rt.reads() as session:
        params = {"account": copy.account_id, "client": copy.client_order_id}
        row = (await session.execute(_EXISTING_SQL, params)).first()
    return _Sent(row.id, row.quantity, row.price) if row is not None else None


async def _placed(rt: Runtime, copy: ExchangeCopy, sent: _Sent) -> bool:
    price = sent.price if sent.price is not None else copy.price
    async with rt.sessions() as session, session.begin():
        values = {"id": copy.id, "order": sent.order_id, "quantity": sent.quantity.normalize(),
                  "price": price.normalize()}  # fmt: skip
        await session.execute(_PLACED_SQL, values)
    return True


async def _skip(rt: Runtime, copy: ExchangeCopy, reason: str) -> bool:
    async with rt.sessions() as session, session.begin():
        done = await session.scalar(_SKIPPED_SQL, {"id": copy.id, "reason": str(reason)})
        if done is not None:
            event = skipped_event(copy.follower_id, copy.follow_id, copy.leader_fill_id,
                                  copy.symbol, copy.side, str(reason))  # fmt: skip
            await outbox.write(session, event)
    return True
