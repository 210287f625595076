"""Planning the copies of leader fills (the first half of the ``copy-trading`` consumer,
``copy_placement``): for each fill of an ACTIVE leader and each ACTIVE follow of that
leader created before the fill, one ``copies`` row: PENDING with the order's quantity,
limit price and clientOrderId ``copy-{follow}-{leader fill}``, or SKIPPED with the reason
(outbox ``social.copy_skipped``). A leader's bots trade as sub-accounts of the leader
(``users.owner_id``): their fills are the leader's fills, sized against the bot's own
position and the leader's equity with every bot's. The sizing rules are
``app.social.domain.copying``'s; this module reads what they need (the follows' terms,
what each holds and has in flight, the leader's equity and position) and stores their
answers.

A follow that names the follower's exchange account (``follows.exchange_account_id``)
gets its copies planned the same way, with two differences: its allocation is capped by
what the account holds there (the mirror, ``copying.capped_allocation``) and the copy is
not rounded to the platform market (``copying.UNROUNDED``): ``copy_exchange`` fits it to
the exchange's market and sends it after this transaction commits. Its clientOrderId is
``copying.exchange_copy_client_order_id``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.events import event_log, outbox, topics
from app.social import copy_orders
from app.social.copy_orders import FINAL, IN_FLIGHT
from app.social.domain import copying
from app.social.domain.copying import (
    CopyMode,
    LeaderFill,
    Lots,
    Planned,
    Terms,
)
from db.raw import columns, driver

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class _LeaderFill:
    id: int
    market_id: int
    leader_id: int
    trader_id: int  # who traded: the leader, or one of the leader's bots (a sub-account)
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
    exchange_account_id: int | None = None
    account_status: str | None = None  # the exchange account's
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
    SELECT f.id, f.market_id, f.user_id AS trader_id, l.user_id, f.side, f.price, f.quantity,
           f.quote_amount, f.created_at, m.symbol, m.base, m.quote, m.tick_size, m.lot_size,
           m.min_notional
    FROM unnest($1::text[], $2::bigint[], $3::text[]) WITH ORDINALITY AS e(symbol, trade, liq, n)
    JOIN markets m ON m.symbol = e.symbol
    JOIN fills f ON f.market_id = m.id AND f.trade_id = e.trade AND f.liquidity = e.liq
    JOIN users u ON u.id = f.user_id
    JOIN leaders l ON l.user_id = coalesce(u.owner_id, u.id) AND l.status = 'ACTIVE'
    ORDER BY e.n
"""

_FOLLOWS_SQL = """
    SELECT f.id, f.follower_id, f.leader_id, f.mode, f.quote, f.allocation, f.fixed_amount,
           f.ratio, f.max_order_notional, f.max_position_per_asset, f.allowed_symbols,
           f.slippage_tolerance, f.created_at, f.exchange_account_id,
           x.status AS account_status
    FROM follows f LEFT JOIN exchange_connections x ON x.id = f.exchange_account_id
    WHERE f.leader_id = ANY($1::bigint[]) AND f.status = 'ACTIVE' ORDER BY f.id
"""

# A copy sent to an exchange counts what it bought or sold there not yet applied to
# follow_positions (its order's fills once it has ended, until then all of it, less what
# ``follow_positions`` applied: ``c.filled_quantity``).
_EXCHANGE_HELD = (
    "(CASE WHEN x.status IN ('FILLED', 'CANCELED', 'REJECTED') THEN x.filled ELSE c.quantity END"
    " - c.filled_quantity)"
)
_HELD = f"(CASE WHEN c.exchange_account_id IS NULL THEN {IN_FLIGHT} ELSE {_EXCHANGE_HELD} END)"
_EXPOSURE_SQL = f"""
    SELECT c.follow_id, m.base, c.side, sum({_HELD}) AS quantity,
           sum({_HELD} * c.price) AS value
    FROM copies c JOIN markets m ON m.id = c.market_id LEFT JOIN orders o ON o.id = c.order_id
    LEFT JOIN exchange_orders x ON x.id = c.exchange_order_id
    WHERE c.follow_id = ANY($1::bigint[]) AND c.status <> 'SKIPPED'
    GROUP BY c.follow_id, m.base, c.side
"""  # noqa: S608 (constant fragments)

# What each exchange account holds, mirrored (app.exchanges.custody), in USD.
_MIRROR_EQUITY_SQL = """
    SELECT a.exchange_account_id AS id, sum(a.balance * coalesce(r.usd_price, 0)) AS usd
    FROM ledger_accounts a LEFT JOIN reference_prices r ON r.currency = a.currency
    WHERE a.exchange_account_id = ANY($1::bigint[])
      AND a.kind IN ('EXCHANGE_FREE', 'EXCHANGE_USED')
    GROUP BY a.exchange_account_id
"""

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
    SELECT coalesce(u.owner_id, u.id) AS user_id, sum(a.balance * coalesce(r.usd_price, 0)) AS usd
    FROM users u JOIN ledger_accounts a ON a.user_id = u.id
    LEFT JOIN reference_prices r ON r.currency = a.currency
    WHERE u.id = ANY($1::bigint[]) OR u.owner_id = ANY($1::bigint[])
    GROUP BY coalesce(u.owner_id, u.id)
"""

_INSERT_COPIES_SQL = """
    INSERT INTO copies (follow_id, leader_fill_id, status, reason, market_id, side, quantity,
                        price, client_order_id, exchange_account_id)
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[],
                         $6::text[], $7::numeric[], $8::numeric[], $9::text[], $10::bigint[])
    ON CONFLICT (follow_id, leader_fill_id) DO NOTHING
    RETURNING follow_id, leader_fill_id, status, reason
"""

_PENDING_SQL = """
    SELECT c.id, c.follow_id, f.follower_id, m.symbol, c.side, c.quantity, c.price,
           c.client_order_id
    FROM copies c JOIN follows f ON f.id = c.follow_id JOIN markets m ON m.id = c.market_id
    WHERE c.leader_fill_id = ANY($1::bigint[]) AND c.status = 'PENDING'
      AND c.exchange_account_id IS NULL
    ORDER BY c.follow_id, c.id
"""


async def _leader_fills(connection: Any, events: Sequence[event_log.Event]) -> list[_LeaderFill]:
    keys = copy_orders.fills(events)
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
            trader_id=r["trader_id"],
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
            exchange_account_id=r["exchange_account_id"],
            account_status=r["account_status"],
        )
        for r in rows
    }
    await _cap_by_mirror(connection, [f for f in follows.values() if f.exchange_account_id])
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
        for r in await connection.fetch(_EXPOSURE_SQL, ids, FINAL):
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


async def _cap_by_mirror(connection: Any, follows: list[_Follow]) -> None:
    """Each exchange follow's allocation capped by what its account holds there."""
    if not follows:
        return
    accounts = sorted({f.exchange_account_id for f in follows if f.exchange_account_id})
    usd = {r["id"]: r["usd"] for r in await connection.fetch(_MIRROR_EQUITY_SQL, accounts)}
    quotes = sorted({f.quote for f in follows})
    prices = {
        r["currency"]: r["usd_price"]
        for r in await connection.fetch(
            "SELECT currency, usd_price FROM reference_prices WHERE currency = ANY($1::text[])",
            quotes,
        )
    }
    for follow in follows:
        held, price = usd.get(follow.exchange_account_id), prices.get(follow.quote)
        equity = held / price if held is not None and price else None
        capped = copying.capped_allocation(follow.terms.allocation, equity)
        follow.terms = replace(follow.terms, allocation=capped)


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
        [f.trader_id for f in sells],
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
    fill, base, buy = leader_fill.fill, leader_fill.base, leader_fill.side == "BUY"
    if follow.exchange_account_id is not None:
        refusal = copying.account_refusal(follow.account_status)
        if refusal is not None:
            return copying.Skipped(refusal)
    lots = copying.UNROUNDED if follow.exchange_account_id else leader_fill.lots
    plan = copying.plan_copy(
        follow.terms,
        fill,
        lots,
        buy=buy,
        quote=follow.quote,
        used=follow.cost + follow.reserved,
        held=follow.held[base],
        leader_equity=equity,
        position_before=position_before,
    )
    if isinstance(plan, Planned) and buy:  # the copy is in flight from now on
        follow.reserved += plan.quantity * plan.price
        follow.held[base] += plan.quantity
    elif isinstance(plan, Planned):
        follow.held[base] -= plan.quantity
    return plan


async def record_copies(
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
                client_id = _client_order_id(follow, leader_fill.id)
            else:
                row, client_id = ("SKIPPED", plan.reason, None, None), None
            where = (leader_fill.market_id, leader_fill.side)
            rows.append((follow.id, leader_fill.id, *row[:2], *where, *row[2:], client_id,
                         follow.exchange_account_id))  # fmt: skip
    if rows:
        inserted = await connection.fetch(_INSERT_COPIES_SQL, *columns(rows))
        symbols = {f.id: f.fill.symbol for f in fills}
        sides = {f.id: f.side for f in fills}
        await outbox.write(
            session,
            *[
                skipped_event(
                    followers[r["follow_id"]],
                    r["follow_id"],
                    r["leader_fill_id"],
                    symbols[r["leader_fill_id"]],
                    sides[r["leader_fill_id"]],
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


def _client_order_id(follow: _Follow, leader_fill_id: int) -> str:
    if follow.exchange_account_id is not None:
        return copying.exchange_copy_client_order_id(follow.id, leader_fill_id)
    return copying.copy_client_order_id(follow.id, leader_fill_id)


def skipped_event(
    follower_id: int, follow_id: int, leader_fill_id: int, symbol: str, side: str, reason: str
) -> topics.Event:
    skipped = topics.CopySkipped(
        follow_id=follow_id,
        leader_fill_id=leader_fill_id,
        symbol=symbol,
        side=side,
        reason=reason,
    )
    return topics.copy_skipped(follower_id, skipped)
