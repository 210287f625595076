"""Automatic copy trading: leader fills become follower orders, follower fills become
follow positions, and a follow whose loss reaches its stop-loss pauses.

Two consumers of the outbox topic ``fills`` (``app.events.event_log``):

``copy-trading`` (``copy_batch``), for each fill of an ACTIVE leader and each ACTIVE
follow of that leader created before the fill::

    lock the checkpoint          read() holds the consumer row until the batch ends, so
                                 two workers take turns
    plan + record (commit)       one ``copies`` row per (follow, leader fill): PENDING with
                                 the order's quantity, limit price and clientOrderId
                                 ``copy-{follow}-{leader fill}``, or SKIPPED with the
                                 reason (outbox ``social.copy_skipped``)
    place                        ``placement.place_order`` for every PENDING copy (the same
                                 order path as a user's: risk checks, holds), follows
                                 concurrently, one follow's copies in order
    mark + advance (commit)      PLACED with the order id, or SKIPPED with the trading
                                 error's code; then the checkpoint moves

A worker killed anywhere re-reads the same fills; the copies recorded before it died
are not planned again, and a PENDING one is placed again with its stored parameters,
which ``place_order`` answers with the order it already placed (same clientOrderId).

``copy-positions`` (``apply_follower_fills``): each fill of a copy order (or of a close
order, ``close-{follow}-{currency}-{version}``) is applied to ``follow_positions``
(quantity, cost in quote fees included, realized profit at average cost) in the same
transaction as the checkpoint, so exactly once. Then the portfolio stop-loss of the
follows holding an asset whose market traded: realized plus unrealized profit at the
market's last price; at ``-stop_loss_percent`` of the allocation the follow is PAUSED
(``pause_reason`` STOP_LOSS, outbox ``social.follow_paused``) and, with
``close_on_stop_loss``, its positions are sold (``close_follow_positions``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import UserError
from app.events import event_log, outbox, topics
from app.runtime import Runtime
from app.social.domain import copying
from app.social.domain.copying import (
    CopyMode,
    Exposure,
    LeaderFill,
    Lots,
    Planned,
    Terms,
)
from app.trading import placement
from app.trading.domain.orders import FINAL_STATUSES, OrderRequest, OrderType, Side, TimeInForce
from app.trading.domain.positions import Position
from db.models import Copy, Order
from db.queries import Page, keyset_page, rows_by_ids
from db.raw import columns, driver
from db.session import in_transaction

log = logging.getLogger(__name__)

CONSUMER = "copy-trading"
POSITIONS_CONSUMER = "copy-positions"
TOPICS = (topics.FILLS.named(),)
STOP_LOSS = "STOP_LOSS"
_FINAL = [s.value for s in FINAL_STATUSES]
ZERO = Decimal(0)

# What a copy still has in flight: the quantity not yet applied to the follow's
# positions (PENDING: all of it; an order still live: what is not applied; a finished
# order: its fills not yet applied).
_IN_FLIGHT = (
    "(CASE WHEN o.status = ANY($2::text[]) THEN o.filled_quantity ELSE c.quantity END"
    " - c.filled_quantity)"
)


# --- closing a follow's positions ----------------------------------------------------------


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
           coalesce((SELECT sum({_IN_FLIGHT}) FROM copies c
                     LEFT JOIN orders o ON o.id = c.order_id
                     WHERE c.follow_id = f.id AND c.market_id = m.id AND c.side = 'SELL'
                       AND c.status <> 'SKIPPED'), 0) AS selling
    FROM follows f
    JOIN follow_positions p ON p.follow_id = f.id
    JOIN markets m ON m.base = p.currency AND m.quote = f.quote
    WHERE f.id = $1 AND p.quantity > 0
    ORDER BY p.currency
"""  # noqa: S608 (a constant fragment)


async def _close_plans(session: AsyncSession, follow_id: int) -> list[_Close]:
    connection = await driver(session)
    plans = []
    for r in await connection.fetch(_CLOSE_SQL, follow_id, _FINAL):
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
    as LIMIT IOC orders at the last price less the follow's slippage tolerance, through
    ``placement.place_order``. Safe to call again: until the first close's fills are
    applied the position keeps its version, so the same clientOrderId finds the same
    order. A close the market refuses is logged and left out."""
    async with rt.sessions() as session:
        plans = await _close_plans(session, follow_id)
    orders = []
    for plan in plans:
        existing = await _order_by_client_id(rt, plan.follower_id, plan.client_order_id)
        if existing is not None:
            orders.append(existing)
            continue
        try:
            order = await _place_ioc(
                rt,
                user_id=plan.follower_id,
                symbol=plan.symbol,
                side=Side.SELL,
                quantity=plan.quantity,
                price=plan.price,
                client_order_id=plan.client_order_id,
            )
        except UserError as error:
            log.warning(
                "follow close refused",
                extra={"follow_id": follow_id, "symbol": plan.symbol, "code": error.code},
            )
            continue
        orders.append(order)
    return orders


# --- copy-trading: leader fills -> copies ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class _LeaderFill:
    id: int
    market_id: int
    leader_id: int
    side: str
    created_at: datetime
    base: str
    lots: Lots
    fill: LeaderFill


@dataclass(slots=True)
class _Follow:
    id: int
    follower_id: int
    leader_id: int
    quote: str
    created_at: datetime
    terms: Terms
    cost: Decimal = ZERO  # of the positions it holds
    reserved: Decimal = ZERO  # quote of BUY copies in flight
    held: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))


@dataclass(frozen=True, slots=True)
class PendingCopy:
    id: int
    follow_id: int
    follower_id: int
    symbol: str
    side: str
    quantity: Decimal
    price: Decimal
    client_order_id: str


_LEADER_FILLS_SQL = """
    SELECT f.id, f.market_id, f.user_id, f.side, f.price, f.quantity, f.quote_amount,
           f.created_at, m.symbol, m.base, m.quote, m.tick_size, m.lot_size, m.min_notional
    FROM unnest($1::text[], $2::bigint[], $3::text[]) WITH ORDINALITY AS e(symbol, trade, liq, n)
    JOIN markets m ON m.symbol = e.symbol
    JOIN fills f ON f.market_id = m.id AND f.trade_id = e.trade AND f.liquidity = e.liq
    JOIN leaders l ON l.user_id = f.user_id AND l.status = 'ACTIVE'
    ORDER BY e.n
"""

_FOLLOWS_SQL = """
    SELECT id, follower_id, leader_id, mode, quote, allocation, fixed_amount, ratio,
           max_order_notional, max_position_per_asset, allowed_symbols, slippage_tolerance,
           created_at
    FROM follows WHERE leader_id = ANY($1::bigint[]) AND status = 'ACTIVE' ORDER BY id
"""

_EXPOSURE_SQL = f"""
    SELECT c.follow_id, m.base, c.side, sum({_IN_FLIGHT}) AS quantity,
           sum({_IN_FLIGHT} * c.price) AS value
    FROM copies c JOIN markets m ON m.id = c.market_id LEFT JOIN orders o ON o.id = c.order_id
    WHERE c.follow_id = ANY($1::bigint[]) AND c.status <> 'SKIPPED'
    GROUP BY c.follow_id, m.base, c.side
"""  # noqa: S608 (a constant fragment)

# The leader's position in the fill's base before the fill: the position now, less
# every fill of the leader in that asset since (this one included).
_POSITION_BEFORE_SQL = """
    SELECT s.fill_id, coalesce(p.quantity, 0) - coalesce((
        SELECT sum(CASE WHEN g.side = 'BUY' THEN g.quantity ELSE -g.quantity END)
        FROM fills g JOIN markets gm ON gm.id = g.market_id
        WHERE g.user_id = s.user_id AND gm.base = s.base AND g.id >= s.fill_id), 0) AS before
    FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS s(fill_id, user_id, base)
    LEFT JOIN positions p ON p.user_id = s.user_id AND p.currency = s.base
"""

_EQUITY_SQL = """
    SELECT a.user_id, sum(a.balance * coalesce(r.usd_price, 0)) AS usd
    FROM ledger_accounts a LEFT JOIN reference_prices r ON r.currency = a.currency
    WHERE a.user_id = ANY($1::bigint[]) GROUP BY a.user_id
"""

_INSERT_COPIES_SQL = """
    INSERT INTO copies (follow_id, leader_fill_id, status, reason, market_id, side, quantity,
                        price, client_order_id)
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[],
                         $6::text[], $7::numeric[], $8::numeric[], $9::text[])
    ON CONFLICT (follow_id, leader_fill_id) DO NOTHING
    RETURNING follow_id, leader_fill_id, status, reason
"""

_PENDING_SQL = """
    SELECT c.id, c.follow_id, f.follower_id, m.symbol, c.side, c.quantity, c.price,
           c.client_order_id
    FROM copies c JOIN follows f ON f.id = c.follow_id JOIN markets m ON m.id = c.market_id
    WHERE c.leader_fill_id = ANY($1::bigint[]) AND c.status = 'PENDING'
    ORDER BY c.follow_id, c.id
"""


async def _leader_fills(connection: Any, events: Sequence[event_log.Event]) -> list[_LeaderFill]:
    keys = _fills(events)
    if not keys:
        return []
    rows = await connection.fetch(
        _LEADER_FILLS_SQL,
        [k.symbol for k in keys],
        [k.trade_id for k in keys],
        [k.liquidity for k in keys],
    )
    return [
        _LeaderFill(
            id=r["id"],
            market_id=r["market_id"],
            leader_id=r["user_id"],
            side=r["side"],
            created_at=r["created_at"],
            base=r["base"],
            lots=Lots(r["tick_size"], r["lot_size"], r["min_notional"]),
            fill=LeaderFill(
                symbol=r["symbol"],
                quote=r["quote"],
                price=r["price"],
                quantity=r["quantity"],
                notional=r["quote_amount"],
            ),
        )
        for r in rows
    ]


def _terms(r: Any) -> Terms:
    return Terms(
        mode=CopyMode(r["mode"]),
        allocation=r["allocation"],
        fixed_amount=r["fixed_amount"],
        ratio=r["ratio"],
        max_order_notional=r["max_order_notional"],
        max_position_per_asset=r["max_position_per_asset"],
        allowed_symbols=r["allowed_symbols"],
        slippage_tolerance=r["slippage_tolerance"],
    )


async def _follows(connection: Any, leader_ids: list[int]) -> dict[int, list[_Follow]]:
    """The ACTIVE follows of the leaders, with what they hold and have in flight: every
    copy recorded so far, those of this batch's fills too when the batch runs again (it
    plans only the copies not recorded yet, and counts what it plans itself)."""
    rows = await connection.fetch(_FOLLOWS_SQL, leader_ids)
    follows = {
        r["id"]: _Follow(
            id=r["id"],
            follower_id=r["follower_id"],
            leader_id=r["leader_id"],
            quote=r["quote"],
            created_at=r["created_at"],
            terms=_terms(r),
        )
        for r in rows
    }
    ids = list(follows)
    if ids:
        for r in await connection.fetch(
            "SELECT follow_id, currency, quantity, cost FROM follow_positions"
            " WHERE follow_id = ANY($1::bigint[])",
            ids,
        ):
            follow = follows[r["follow_id"]]
            follow.cost += r["cost"]
            follow.held[r["currency"]] += r["quantity"]
        for r in await connection.fetch(_EXPOSURE_SQL, ids, _FINAL):
            follow = follows[r["follow_id"]]
            if r["side"] == "BUY":
                follow.reserved += r["value"]
                follow.held[r["base"]] += r["quantity"]
            else:
                follow.held[r["base"]] -= r["quantity"]
    by_leader: dict[int, list[_Follow]] = defaultdict(list)
    for follow in follows.values():
        by_leader[follow.leader_id].append(follow)
    return by_leader


async def _quote_equity(connection: Any, leader_ids: list[int]) -> dict[tuple[int, str], Decimal]:
    """Each leader's equity (ledger balances at the reference prices) in each quote."""
    prices = {
        r["currency"]: r["usd_price"]
        for r in await connection.fetch("SELECT currency, usd_price FROM reference_prices")
    }
    out = {}
    for r in await connection.fetch(_EQUITY_SQL, leader_ids):
        for quote, price in prices.items():
            if price:
                out[(r["user_id"], quote)] = r["usd"] / price
    return out


async def _positions_before(connection: Any, fills: list[_LeaderFill]) -> dict[int, Decimal]:
    sells = [f for f in fills if f.side == "SELL"]
    if not sells:
        return {}
    rows = await connection.fetch(
        _POSITION_BEFORE_SQL,
        [f.id for f in sells],
        [f.leader_id for f in sells],
        [f.base for f in sells],
    )
    return {r["fill_id"]: r["before"] for r in rows}


def _plan(
    follow: _Follow,
    leader_fill: _LeaderFill,
    *,
    equity: Decimal | None,
    position_before: Decimal | None,
) -> copying.Plan:
    fill, base = leader_fill.fill, leader_fill.base
    if leader_fill.side == "BUY":
        plan = copying.plan_open(
            follow.terms,
            fill,
            leader_fill.lots,
            quote=follow.quote,
            exposure=Exposure(
                allocation_used=follow.cost + follow.reserved,
                position_value=max(follow.held[base], ZERO) * fill.price,
            ),
            leader_equity=equity,
        )
        if isinstance(plan, Planned):
            follow.reserved += plan.quantity * plan.price
            follow.held[base] += plan.quantity
        return plan
    fraction = copying.close_fraction(fill.quantity, position_before or ZERO)
    plan = copying.plan_close(
        follow.terms, fill, leader_fill.lots, held=follow.held[base], fraction=fraction
    )
    if isinstance(plan, Planned):
        follow.held[base] -= plan.quantity
    return plan


async def _record_copies(
    session: AsyncSession, events: Sequence[event_log.Event]
) -> list[PendingCopy]:
    """Plan and store the copies of the batch's leader fills; the PENDING ones."""
    connection = await driver(session)
    fills = await _leader_fills(connection, events)
    if not fills:
        return []
    fill_ids = [f.id for f in fills]
    leader_ids = sorted({f.leader_id for f in fills})
    done = {
        (r["follow_id"], r["leader_fill_id"])
        for r in await connection.fetch(
            "SELECT follow_id, leader_fill_id FROM copies WHERE leader_fill_id = ANY($1::bigint[])",
            fill_ids,
        )
    }
    follows = await _follows(connection, leader_ids)
    proportional = any(
        f.terms.mode is CopyMode.EQUITY_PROPORTIONAL for fs in follows.values() for f in fs
    )
    equity = await _quote_equity(connection, leader_ids) if proportional else {}
    before = await _positions_before(connection, fills)
    rows: list[tuple[Any, ...]] = []
    followers: dict[int, int] = {}
    for leader_fill in fills:
        for follow in follows.get(leader_fill.leader_id, ()):
            if follow.created_at > leader_fill.created_at or (follow.id, leader_fill.id) in done:
                continue
            followers[follow.id] = follow.follower_id
            plan = _plan(
                follow,
                leader_fill,
                equity=equity.get((leader_fill.leader_id, follow.quote)),
                position_before=before.get(leader_fill.id),
            )
            if isinstance(plan, Planned):
                row = ("PENDING", None, plan.quantity.normalize(), plan.price.normalize())
                client_id = copying.copy_client_order_id(follow.id, leader_fill.id)
            else:
                row, client_id = ("SKIPPED", plan.reason, None, None), None
            where = (leader_fill.market_id, leader_fill.side)
            rows.append((follow.id, leader_fill.id, *row[:2], *where, *row[2:], client_id))
    if rows:
        inserted = await connection.fetch(_INSERT_COPIES_SQL, *columns(rows))
        symbols = {f.id: f.fill.symbol for f in fills}
        await outbox.write(
            session,
            *[
                _skipped_event(
                    followers[r["follow_id"]],
                    r["follow_id"],
                    r["leader_fill_id"],
                    symbols[r["leader_fill_id"]],
                    r["reason"],
                )
                for r in inserted
                if r["status"] == "SKIPPED"
            ],
        )
    return [
        PendingCopy(
            id=r["id"],
            follow_id=r["follow_id"],
            follower_id=r["follower_id"],
            symbol=r["symbol"],
            side=r["side"],
            quantity=r["quantity"],
            price=r["price"],
            client_order_id=r["client_order_id"],
        )
        for r in await connection.fetch(_PENDING_SQL, fill_ids)
    ]


def _skipped_event(
    follower_id: int, follow_id: int, leader_fill_id: int, symbol: str, reason: str
) -> topics.Event:
    skipped = topics.CopySkipped(
        follow_id=follow_id, leader_fill_id=leader_fill_id, symbol=symbol, reason=reason
    )
    return topics.copy_skipped(follower_id, skipped)


@dataclass(frozen=True, slots=True)
class _Outcome:
    copy: PendingCopy
    order_id: int | None
    reason: str | None


async def _place_ioc(
    rt: Runtime,
    *,
    user_id: int,
    symbol: str,
    side: Side,
    quantity: Decimal,
    price: Decimal,
    client_order_id: str,
) -> Order:
    """A copy or a close: a LIMIT IOC (the limit is the slippage bound) through the
    ordinary order path, idempotent on ``client_order_id``."""
    request = OrderRequest(
        side=side,
        type=OrderType.LIMIT,
        quantity=quantity,
        price=price,
        time_in_force=TimeInForce.IOC,
    )
    return await placement.place_order(
        rt, user_id=user_id, symbol=symbol, request=request, client_order_id=client_order_id
    )


async def _place(rt: Runtime, copy: PendingCopy) -> _Outcome:
    try:
        order = await _place_ioc(
            rt,
            user_id=copy.follower_id,
            symbol=copy.symbol,
            side=Side(copy.side),
            quantity=copy.quantity,
            price=copy.price,
            client_order_id=copy.client_order_id,
        )
    except UserError as error:
        return _Outcome(copy, None, error.code)
    return _Outcome(copy, order.id, None)


async def place_copies(rt: Runtime, copies: Sequence[PendingCopy]) -> list[_Outcome]:
    """Place the copies: follows concurrently (at most COPY_CONCURRENCY at once), the
    copies of one follow one after the other, in the leader's order."""
    by_follow: dict[int, list[PendingCopy]] = defaultdict(list)
    for copy in copies:
        by_follow[copy.follow_id].append(copy)
    gate = asyncio.Semaphore(rt.settings.copy_concurrency)

    async def one_follow(group: list[PendingCopy]) -> list[_Outcome]:
        async with gate:
            return [await _place(rt, copy) for copy in group]

    results = await asyncio.gather(*(one_follow(g) for g in by_follow.values()))
    return [outcome for group in results for outcome in group]


async def _mark(session: AsyncSession, outcomes: Sequence[_Outcome]) -> None:
    connection = await driver(session)
    placed = [o for o in outcomes if o.reason is None]
    if placed:
        await connection.execute(
            "UPDATE copies c SET status = 'PLACED', order_id = v.order_id, updated_at = now()"
            " FROM unnest($1::bigint[], $2::bigint[]) AS v(id, order_id)"
            " WHERE c.id = v.id AND c.status = 'PENDING'",
            [o.copy.id for o in placed],
            [o.order_id for o in placed],
        )
    refused = {o.copy.id: o for o in outcomes if o.reason is not None}
    if not refused:
        return
    skipped = await connection.fetch(
        "UPDATE copies c SET status = 'SKIPPED', reason = v.reason, updated_at = now()"
        " FROM unnest($1::bigint[], $2::text[]) AS v(id, reason)"
        " WHERE c.id = v.id AND c.status = 'PENDING' RETURNING c.id, c.leader_fill_id",
        list(refused),
        [o.reason for o in refused.values()],
    )
    events = []
    for row in sorted(skipped, key=lambda r: r["id"]):
        outcome = refused[row["id"]]
        copy = outcome.copy
        events.append(
            _skipped_event(
                copy.follower_id, copy.follow_id, row["leader_fill_id"], copy.symbol, outcome.reason
            )
        )
    await outbox.write(session, *events)


async def copy_batch(rt: Runtime, *, limit: int | None = None) -> int:
    """One batch of the ``copy-trading`` consumer; the number of events it handled."""
    async with rt.sessions() as lock_session, lock_session.begin():
        events = await event_log.read(
            lock_session, CONSUMER, topics=TOPICS, limit=limit or rt.settings.copy_batch_size
        )
        if events:
            await _copy_fills(rt, events)
        await event_log.advance(lock_session, CONSUMER, events)
    return len(events)


async def _copy_fills(rt: Runtime, events: Sequence[event_log.Event]) -> None:
    """Record the copies of these leader fills, place them, record what came of them."""

    async def record(session: AsyncSession) -> list[PendingCopy]:
        return await _record_copies(session, events)

    pending = await in_transaction(rt.sessions, record)
    if not pending:
        return
    outcomes = await place_copies(rt, pending)

    async def mark(session: AsyncSession) -> None:
        await _mark(session, outcomes)

    await in_transaction(rt.sessions, mark)


# --- copy-positions: follower fills -> follow positions, stop-loss ---------------------------


@dataclass(frozen=True, slots=True)
class _FollowerFill:
    follow_id: int
    copy_id: int | None
    currency: str
    side: str
    quantity: Decimal
    quote: Decimal  # paid (BUY, fee included) or received (SELL, fee deducted)


_FOLLOW_ORDERS_SQL = """
    SELECT o.id, o.user_id, o.client_order_id FROM orders o
    WHERE o.id = ANY($1::bigint[])
      AND (o.client_order_id LIKE 'copy-%' OR o.client_order_id LIKE 'close-%')
"""


def _fills(events: Sequence[event_log.Event]) -> list[topics.Fill]:
    """The fills of ``events`` (the ``fills`` topic's, each for its owner)."""
    return [topics.FILLS.parse(e.payload) for e in events if e.user_id is not None]


async def _follower_fills(
    connection: Any, events: Sequence[event_log.Event]
) -> list[_FollowerFill]:
    fills = _fills(events)
    if not fills:
        return []
    orders = {
        r["id"]: r
        for r in await connection.fetch(_FOLLOW_ORDERS_SQL, sorted({f.order_id for f in fills}))
    }
    if not orders:
        return []
    parsed = {i: copying.parse_client_order_id(r["client_order_id"]) for i, r in orders.items()}
    follow_ids = sorted({p[1] for p in parsed.values() if p is not None})
    follows = {
        r["id"]: r
        for r in await connection.fetch(
            "SELECT f.id, f.follower_id, f.quote FROM follows f WHERE f.id = ANY($1::bigint[])",
            follow_ids,
        )
    }
    copies = {
        r["client_order_id"]: r["id"]
        for r in await connection.fetch(
            "SELECT id, client_order_id FROM copies WHERE follow_id = ANY($1::bigint[])"
            " AND client_order_id = ANY($2::text[])",
            follow_ids,
            [r["client_order_id"] for r in orders.values()],
        )
    }
    markets = {
        r["symbol"]: r for r in await connection.fetch("SELECT symbol, base, quote FROM markets")
    }
    out = []
    for fill in fills:
        order = orders.get(fill.order_id)
        kind_follow = parsed.get(fill.order_id)
        if order is None or kind_follow is None:
            continue
        kind, follow_id = kind_follow
        follow, market = follows.get(follow_id), markets[fill.symbol]
        copy_id = copies.get(order["client_order_id"])
        if (
            follow is None
            or follow["follower_id"] != order["user_id"]
            or market["quote"] != follow["quote"]
            or (kind == "copy" and copy_id is None)
        ):
            continue  # not an order the copy worker or a close placed
        value, fee = fill.quote_amount, fill.fee
        out.append(
            _FollowerFill(
                follow_id=follow_id,
                copy_id=copy_id if kind == "copy" else None,
                currency=market["base"],
                side=fill.side,
                quantity=fill.quantity,
                quote=value + fee if fill.side == "BUY" else value - fee,
            )
        )
    return out


async def _apply_positions(connection: Any, fills: list[_FollowerFill]) -> None:
    keys = sorted({(f.follow_id, f.currency) for f in fills})
    follow_ids, currencies = [k[0] for k in keys], [k[1] for k in keys]
    await connection.execute(
        "INSERT INTO follow_positions (follow_id, currency)"
        " SELECT * FROM unnest($1::bigint[], $2::text[]) ON CONFLICT DO NOTHING",
        follow_ids,
        currencies,
    )
    rows = await connection.fetch(
        "SELECT follow_id, currency, quantity, cost, realized_pnl, version FROM follow_positions"
        " WHERE (follow_id, currency) IN (SELECT * FROM unnest($1::bigint[], $2::text[]))"
        " ORDER BY follow_id, currency FOR UPDATE",
        follow_ids,
        currencies,
    )
    state = {
        (r["follow_id"], r["currency"]): Position(r["quantity"], r["cost"], r["realized_pnl"])
        for r in rows
    }
    versions = {(r["follow_id"], r["currency"]): r["version"] for r in rows}
    applied: dict[int, Decimal] = defaultdict(Decimal)
    for fill in fills:
        key = (fill.follow_id, fill.currency)
        position = state[key]
        if fill.side == "BUY":
            state[key] = position.bought(fill.quantity, fill.quote)
        else:
            state[key] = position.sold(fill.quantity, fill.quote)
        versions[key] += 1
        if fill.copy_id is not None:
            applied[fill.copy_id] += fill.quantity
    await connection.executemany(
        "UPDATE follow_positions SET quantity = $3, cost = round($4, 18),"
        " realized_pnl = round($5, 18), version = $6, updated_at = now()"
        " WHERE follow_id = $1 AND currency = $2",
        [(k[0], k[1], s.quantity, s.cost, s.realized_pnl, versions[k]) for k, s in state.items()],
    )
    if applied:
        await connection.execute(
            "UPDATE copies c SET filled_quantity = c.filled_quantity + v.quantity,"
            " updated_at = now() FROM unnest($1::bigint[], $2::numeric[]) AS v(id, quantity)"
            " WHERE c.id = v.id",
            list(applied),
            list(applied.values()),
        )


_STOP_LOSS_SQL = """
    SELECT f.id, f.follower_id, f.allocation, f.stop_loss_percent, f.close_on_stop_loss,
           p.quantity, p.cost, p.realized_pnl, coalesce(m.last_price, m.reference_price) AS price
    FROM follows f
    JOIN follow_positions p ON p.follow_id = f.id
    LEFT JOIN markets m ON m.base = p.currency AND m.quote = f.quote
    WHERE f.status = 'ACTIVE' AND f.stop_loss_percent IS NOT NULL
      AND f.id IN (SELECT follow_id FROM follow_positions
                   WHERE follow_id = ANY($1::bigint[]) OR (currency = ANY($2::text[])
                                                           AND quantity > 0))
    ORDER BY f.id
"""


async def _check_stop_losses(
    session: AsyncSession, follow_ids: list[int], currencies: list[str]
) -> list[int]:
    """Pause the follows whose loss reached their stop-loss; those to close."""
    connection = await driver(session)
    rows = await connection.fetch(_STOP_LOSS_SQL, follow_ids, currencies)
    grouped: dict[int, list[Any]] = defaultdict(list)
    for r in rows:
        grouped[r["id"]].append(r)
    to_close = []
    for follow_id, positions in grouped.items():
        first = positions[0]
        pnl = copying.follow_pnl(
            (Position(r["quantity"], r["cost"], r["realized_pnl"]), r["price"]) for r in positions
        )
        if not copying.stop_loss_hit(pnl, first["allocation"], first["stop_loss_percent"]):
            continue
        paused = await connection.fetchval(
            "UPDATE follows SET status = 'PAUSED', pause_reason = $2, updated_at = now()"
            " WHERE id = $1 AND status = 'ACTIVE' RETURNING id",
            follow_id,
            STOP_LOSS,
        )
        if paused is None:
            continue
        paused_event = topics.FollowPaused(follow_id=follow_id, reason=STOP_LOSS)
        await outbox.write(session, topics.follow_paused(first["follower_id"], paused_event))
        if first["close_on_stop_loss"]:
            to_close.append(follow_id)
    return to_close


async def apply_follower_fills(rt: Runtime, *, limit: int = 1000) -> int:
    """One batch of the ``copy-positions`` consumer; the number of events it handled."""

    async def work(session: AsyncSession) -> tuple[int, list[int]]:
        events = await event_log.read(session, POSITIONS_CONSUMER, topics=TOPICS, limit=limit)
        if not events:
            await event_log.advance(session, POSITIONS_CONSUMER, events)
            return 0, []
        connection = await driver(session)
        fills = await _follower_fills(connection, events)
        if fills:
            await _apply_positions(connection, fills)
        symbols = sorted({f.symbol for f in _fills(events)})
        bases = sorted({s.split("/")[0] for s in symbols})
        to_close = await _check_stop_losses(session, sorted({f.follow_id for f in fills}), bases)
        await event_log.advance(session, POSITIONS_CONSUMER, events)
        return len(events), to_close

    handled, to_close = await in_transaction(rt.sessions, work)
    for follow_id in to_close:
        await close_follow_positions(rt, follow_id=follow_id)
    return handled


# --- reads -------------------------------------------------------------------------------


async def list_copies(
    session: AsyncSession, *, follow_id: int, first: int, after: str | None
) -> Page[Copy]:
    """A follow's copies, newest first."""
    return await keyset_page(
        session,
        select(Copy).where(Copy.follow_id == follow_id),
        key=Copy.id,
        first=first,
        after=after,
        descending=True,
    )


async def copies_by_ids(session: AsyncSession, ids: Sequence[int]) -> list[Copy | None]:
    return await rows_by_ids(session, Copy, ids)


# --- running -----------------------------------------------------------------------------


async def run_once(rt: Runtime) -> int:
    """Both consumers until neither has anything left: the background job."""
    total = 0
    while True:
        handled = await copy_batch(rt) + await apply_follower_fills(rt)
        total += handled
        if not handled:
            return total


async def run_worker(rt: Runtime) -> None:
    """The copy worker (``python -m app copy-worker``): both consumers, woken by the
    engines' NOTIFY and polling besides, until cancelled."""
    while True:
        try:
            handled = await run_once(rt)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("copy worker batch failed")
            handled = 0
        if not handled:
            await rt.applied.next_applied(rt.settings.copy_poll_seconds)
