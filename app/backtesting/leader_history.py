"""The leader's history for the copy-trading what-if: who may replay whom, and the
leader's fills on one market over a period, from the fills table of the platform's own
venue, with the context the copy sizing needs.

Who: a user may replay themselves (leader or not), and anyone may replay a PUBLIC leader
(ACTIVE or STOPPED: the history is the same). An INVITE_ONLY leader, or a user who is no
leader, is ``NotALeader`` to anyone else: the answer does not tell a private leader from
no leader at all.

The context, per fill:
    position_before   (a SELL) the leader's position in the base before the fill, as the
                      live copier computes it: the position now, less every fill of the
                      leader in that base since (this one included)
    equity            (EQUITY_PROPORTIONAL only) the leader's equity in the quote currency
                      when it traded: the last equity snapshot at or before the fill, else
                      the first after it, else the equity now (ledger balances at the
                      reference prices, as the live copier values it), in USD divided by
                      the quote's reference price. The live copier takes the equity at the
                      moment of copying; snapshots are taken periodically, so this is the
                      nearest the history knows.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.backtesting.domain.copying import LeaderTrade
from app.social.domain.social import NotALeader, Visibility
from app.trading.domain.orders import Side
from db.models import Leader
from db.raw import driver

_FILLS_SQL = """
    SELECT f.id, f.created_at, f.side, f.price, f.quantity, f.quote_amount
    FROM fills f JOIN markets m ON m.id = f.market_id
    WHERE f.user_id = $1 AND m.symbol = $2 AND f.created_at >= $3 AND f.created_at < $4
    ORDER BY f.created_at, f.id
"""

_POSITION_BEFORE_SQL = """
    SELECT s.fill_id, coalesce((SELECT p.quantity FROM positions p
                                WHERE p.user_id = $1 AND p.currency = $2), 0)
      - coalesce((SELECT sum(CASE WHEN g.side = 'BUY' THEN g.quantity ELSE -g.quantity END)
                  FROM fills g JOIN markets gm ON gm.id = g.market_id
                  WHERE g.user_id = $1 AND gm.base = $2 AND g.id >= s.fill_id), 0) AS before
    FROM unnest($3::bigint[]) AS s(fill_id)
"""

_SNAPSHOT_SQL = """
    SELECT s.fill_id, coalesce(
        (SELECT e.equity_usd FROM equity_snapshots e
         WHERE e.user_id = $1 AND e.taken_at <= s.at ORDER BY e.taken_at DESC LIMIT 1),
        (SELECT e.equity_usd FROM equity_snapshots e
         WHERE e.user_id = $1 AND e.taken_at > s.at ORDER BY e.taken_at LIMIT 1)) AS usd
    FROM unnest($2::bigint[], $3::timestamptz[]) AS s(fill_id, at)
"""

_EQUITY_NOW_SQL = """
    SELECT sum(a.balance * coalesce(r.usd_price, 0)) FROM ledger_accounts a
    LEFT JOIN reference_prices r ON r.currency = a.currency WHERE a.user_id = $1
"""


async def check_replayable(session: AsyncSession, *, viewer_id: int | None, leader_id: int) -> None:
    """``NotALeader`` unless ``viewer_id`` may replay ``leader_id``'s fills."""
    if viewer_id is not None and viewer_id == leader_id:
        return
    leader = await session.get(Leader, leader_id)
    if leader is None or leader.visibility != Visibility.PUBLIC:
        raise NotALeader("There is no public leader with that id", field="leaderId")


async def leader_history(
    session: AsyncSession,
    *,
    leader_id: int,
    symbol: str,
    start: datetime,
    end: datetime,
    with_equity: bool = False,
) -> tuple[LeaderTrade, ...]:
    """The leader's fills on ``symbol`` in [start, end), oldest first, with the position
    before each SELL and (``with_equity``) the leader's equity in the quote currency."""
    connection = await driver(session)
    rows = await connection.fetch(_FILLS_SQL, leader_id, symbol, start, end)
    if not rows:
        return ()
    base, quote = symbol.split("/")
    sells = [r["id"] for r in rows if r["side"] == Side.SELL.value]
    before: dict[int, Decimal] = {}
    if sells:
        before = {
            r["fill_id"]: r["before"]
            for r in await connection.fetch(_POSITION_BEFORE_SQL, leader_id, base, sells)
        }
    equity: dict[int, Decimal | None] = {}
    if with_equity:
        equity = await _equity(connection, leader_id, quote, rows)
    return tuple(
        LeaderTrade(
            id=r["id"],
            at=r["created_at"],
            side=Side(r["side"]),
            price=r["price"],
            quantity=r["quantity"],
            notional=r["quote_amount"],
            position_before=before.get(r["id"], Decimal(0)),
            equity=equity.get(r["id"]),
        )
        for r in rows
    )


async def _equity(
    connection: Any, leader_id: int, quote: str, rows: list[Any]
) -> dict[int, Decimal | None]:
    quote_usd = await connection.fetchval(
        "SELECT usd_price FROM reference_prices WHERE currency = $1", quote
    )
    if not quote_usd:
        return {}
    snapshots = await connection.fetch(
        _SNAPSHOT_SQL, leader_id, [r["id"] for r in rows], [r["created_at"] for r in rows]
    )
    now: Decimal | None = None
    if any(s["usd"] is None for s in snapshots):
        now = await connection.fetchval(_EQUITY_NOW_SQL, leader_id)
    out: dict[int, Decimal | None] = {}
    for s in snapshots:
        usd = s["usd"] if s["usd"] is not None else now
        out[s["fill_id"]] = None if usd is None else usd / quote_usd
    return out
