"""Closing a follow's positions: the sells placed when a follow's stop-loss is hit
(``follow_positions``) or when the follower closes it (``follows``). A follow on a
connected exchange account is closed there (``exchange_close``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.runtime import Runtime
from app.social import exchange_close
from app.social.copy_orders import FINAL, IN_FLIGHT, place_ioc
from app.social.domain import copying
from app.social.domain.copying import Lots
from app.trading import placement
from app.trading.domain.orders import Side
from db.models import Order
from db.raw import driver

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Close:
    follower_id: int
    symbol: str
    client_order_id: str
    quantity: Decimal
    price: Decimal


_CLOSE_SQL = f"""
    SELECT f.follower_id, f.slippage_tolerance, p.currency, p.quantity, p.version,
           m.id AS market_id, m.symbol, m.tick_size, m.lot_size, m.min_notional,
           coalesce(m.last_price, m.reference_price) AS price,
           coalesce((SELECT a.balance FROM ledger_accounts a WHERE a.user_id = f.follower_id
                     AND a.currency = p.currency AND a.kind = 'AVAILABLE'), 0) AS available,
           coalesce((SELECT sum({IN_FLIGHT}) FROM copies c
                     LEFT JOIN orders o ON o.id = c.order_id
                     WHERE c.follow_id = f.id AND c.market_id = m.id AND c.side = 'SELL'
                       AND c.status <> 'SKIPPED'), 0) AS selling
    FROM follows f
    JOIN follow_positions p ON p.follow_id = f.id
    JOIN markets m ON m.base = p.currency AND m.quote = f.quote
    WHERE f.id = $1 AND p.quantity > 0
    ORDER BY p.currency
"""  # noqa: S608 (a constant fragment)


_AT_EXCHANGE_SQL = text("SELECT exchange_account_id IS NOT NULL FROM follows WHERE id = :id")


async def _close_plans(session: AsyncSession, follow_id: int) -> list[_Close]:
    connection = await driver(session)
    plans = []
    for r in await connection.fetch(_CLOSE_SQL, follow_id, FINAL):
        lots = Lots(r["tick_size"], r["lot_size"], r["min_notional"])
        price = copying.limit_price("SELL", r["price"], r["slippage_tolerance"], lots.tick_size)
        held = min(r["quantity"] - r["selling"], r["available"])
        quantity = copying.round_down(held, lots.lot_size)
        if quantity <= 0 or quantity * price < lots.min_notional:
            continue  # dust: nothing the market would take
        client_id = copying.close_client_order_id(follow_id, r["currency"], r["version"])
        quantity, price = quantity.normalize(), price.normalize()
        plans.append(_Close(r["follower_id"], r["symbol"], client_id, quantity, price))
    return plans


async def _order_by_client_id(rt: Runtime, user_id: int, client_order_id: str) -> Order | None:
    async with rt.sessions() as session:
        return await placement.existing_order(session, user_id, client_order_id)


async def close_follow_positions(rt: Runtime, *, follow_id: int) -> list[Order]:
    """Sell what the follower holds because of ``follow_id`` (each asset's position,
    less copy sells in flight, at most its available balance, rounded down to the lot),
    as LIMIT IOC orders at the last price less the follow's slippage tolerance, on the
    follower's live venue. Safe to call again: until the first close's fills are
    applied the position keeps its version, so the same clientOrderId finds the same
    order. A close the market refuses is logged and left out. A follow on an exchange
    account is sold there (``exchange_close``, its orders are no platform orders: [])."""
    async with rt.sessions() as session:
        if await session.scalar(_AT_EXCHANGE_SQL, {"id": follow_id}):
            await exchange_close.close_at_exchange(rt, follow_id=follow_id)
            return []
        plans = await _close_plans(session, follow_id)
    orders = []
    for plan in plans:
        existing = await _order_by_client_id(rt, plan.follower_id, plan.client_order_id)
        if existing is not None:
            orders.append(existing)
            continue
        ack = await place_ioc(
            rt,
            user_id=plan.follower_id,
            symbol=plan.symbol,
            side=Side.SELL,
            quantity=plan.quantity,
            price=plan.price,
            client_order_id=plan.client_order_id,
        )
        if not ack.ok:
            log.warning(
                "follow close refused",
                extra={"follow_id": follow_id, "symbol": plan.symbol, "code": ack.code},
            )
            continue
        placed = await _order_by_client_id(rt, plan.follower_id, plan.client_order_id)
        assert placed is not None  # the venue just accepted it
        orders.append(placed)
    return orders
