"""Following orders on connected exchange accounts: polling and reconciliation.

``poll_live`` (a background job) reconciles each account with live orders: its open
orders, those closed since the oldest live one was placed, and its trades since then,
read again every time. Fills are inserted once (unique on the exchange's trade id,
``ON CONFLICT DO NOTHING``) and an order's state only moves forward (``advance``, under
the rows' lock), so a run cut short, a gap, or two processes at once neither miss nor
double anything: the next run reads it all again. An order stream's reports are recorded
the same way (``record_streamed``, ``app.exchanges.streams``).

The exchange is called outside any database transaction."""

from __future__ import annotations

import logging
from collections.abc import Container, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select

from app.core.errors import UserError
from app.exchanges import order_events
from app.exchanges.accounts import DISCONNECTED
from app.exchanges.connector import ExchangeSession
from app.exchanges.domain.errors import ExchangeUnavailable
from app.exchanges.domain.orders import (
    LIVE,
    ExchangeOrderStatus,
    ReportedOrder,
    ReportedTrade,
    advance,
)
from app.exchanges.orders import exchange_session
from app.runtime import Runtime
from db.models import ExchangeConnection, ExchangeFill, ExchangeOrder
from db.raw import driver

log = logging.getLogger(__name__)

S = ExchangeOrderStatus

# a PENDING_SUBMIT order the exchange still does not know after this was never placed
# (the exchanges refuse a signed request older than their receive window: 5 to 30 s)
SETTLE_AFTER = timedelta(seconds=60)
# reconciliation reads orders and trades from this long before the oldest live order
LOOKBACK_MARGIN = timedelta(minutes=1)
# an ended order is followed this long for fills not yet read (``followed``)
FILLS_GRACE = timedelta(days=1)
_LIVE_VALUES = sorted(s.value for s in LIVE)


def followed(now: datetime) -> ColumnElement[bool]:
    """The orders reconciliation follows: the live ones, and those that ended (filled
    at once, canceled after fills) in the last ``FILLS_GRACE`` with fills still to read
    (their filled amount above their recorded fills)."""
    recorded = (
        select(func.coalesce(func.sum(ExchangeFill.quantity), 0))
        .where(ExchangeFill.order_id == ExchangeOrder.id)
        .scalar_subquery()
    )
    unread = and_(
        ExchangeOrder.filled > 0,
        ExchangeOrder.updated_at > now - FILLS_GRACE,
        ExchangeOrder.filled > recorded,
    )
    return or_(ExchangeOrder.status.in_(_LIVE_VALUES), unread)


async def poll_live(rt: Runtime, *, limit: int = 100, skip: Container[int] = ()) -> int:
    """Reconcile every account with orders to follow (a background job), except those
    in ``skip`` (followed by a healthy order stream, which reconciles them itself).
    Returns how many accounts were read; one account's failure does not stop the
    others."""
    async with rt.reads() as session:
        ids = list(
            await session.scalars(
                select(ExchangeOrder.connection_id)
                .join(ExchangeConnection, ExchangeConnection.id == ExchangeOrder.connection_id)
                .where(followed(rt.now()), ExchangeConnection.status != DISCONNECTED)
                .distinct()
                .limit(limit)
            )
        )
    ids = [connection_id for connection_id in ids if connection_id not in skip]
    for connection_id in ids:
        try:
            await reconcile_account(rt, connection_id=connection_id)
        except UserError as error:  # the exchange unavailable, its rate limit: next time
            log.warning("exchange reconciliation failed",
                        extra={"connection": connection_id, "code": error.code})  # fmt: skip
    return len(ids)


@dataclass(frozen=True, slots=True)
class Reconciled:
    orders_changed: int
    fills_added: int
    orders_filled: int = 0  # of the orders changed, those whose filled quantity grew


async def reconcile_account(
    rt: Runtime, *, connection_id: int, since: datetime | None = None
) -> Reconciled:
    """Read the account's open orders, the orders closed and the trades since ``since``
    (default: a minute before its oldest live order) on each market it has live orders
    in, and record them: each fill once, each order moved forward only. A live order
    none of those lists has (an exchange's closed list may hold only filled orders) is
    looked up by its client order id."""
    async with rt.reads() as session:
        connection = await session.get(ExchangeConnection, connection_id)
        live = list(
            await session.execute(
                select(ExchangeOrder.symbol, ExchangeOrder.client_order_id,
                       ExchangeOrder.created_at, ExchangeOrder.status)
                .where(ExchangeOrder.connection_id == connection_id,
                       followed(rt.now()))
            )
        )  # fmt: skip
    if connection is None or connection.sealed_secret is None or not live:
        return Reconciled(0, 0)
    start = since or min(row.created_at for row in live) - LOOKBACK_MARGIN
    changed = added = 0
    async with exchange_session(rt, connection) as session:
        for symbol in sorted({row.symbol for row in live}):
            wanted = [r.client_order_id for r in live if r.symbol == symbol and r.status in LIVE]
            orders = await _reports(session, symbol, start, wanted)
            trades = await session.my_trades(symbol=symbol, since=start)
            result = await _record_account(rt, connection_id, symbol, orders, trades)
            changed, added = changed + result.orders_changed, added + result.fills_added
    if changed or added:
        log.info("exchange account reconciled", extra={"connection": connection_id,
                 "orders": changed, "fills": added})  # fmt: skip
    return Reconciled(changed, added)


MAX_LOOKUPS = 50  # per account and run: the rest wait for the next run


async def _reports(
    session: ExchangeSession, symbol: str, since: datetime, wanted: Sequence[str]
) -> list[ReportedOrder]:
    """The exchange's recent orders on ``symbol``, and each of ``wanted`` (our client
    order ids) they miss, looked up one by one."""
    reports = list(await session.recent_orders(symbol=symbol, since=since))
    seen = {r.client_order_id for r in reports}
    for client_order_id in [c for c in wanted if c not in seen][:MAX_LOOKUPS]:
        found = await session.find_order(symbol=symbol, client_order_id=client_order_id)
        if found is not None:
            reports.append(found)
    return reports


_ORDERS_SQL = """
SELECT id, client_order_id, exchange_order_id, status, filled, quantity, created_at
FROM exchange_orders
WHERE connection_id = $1 AND symbol = $2
  AND (status = ANY($3::text[]) OR client_order_id = ANY($4::text[])
       OR exchange_order_id = ANY($5::text[]))
ORDER BY id
FOR UPDATE
"""
_UPDATE_SQL = f"""
UPDATE exchange_orders o SET status = u.status, filled = u.filled,
    exchange_order_id = coalesce(o.exchange_order_id, u.exchange_order_id),
    reject_code = u.reject_code, updated_at = $5
FROM unnest($1::bigint[], $2::text[], $3::numeric[], $4::text[], $6::text[])
    AS u(id, status, filled, exchange_order_id, reject_code)
WHERE o.id = u.id
RETURNING {", ".join("o." + c for c in order_events.ORDER_COLUMNS)}
"""  # noqa: S608 (column names only)
_FILLS_SQL = f"""
INSERT INTO exchange_fills
    (connection_id, order_id, symbol, trade_id, price, quantity, fee, fee_currency, filled_at)
SELECT $1, o.id, $2, t.trade_id, t.price, t.quantity, t.fee, t.fee_currency, t.at
FROM unnest($3::text[], $4::text[], $5::numeric[], $6::numeric[], $7::numeric[],
            $8::text[], $9::timestamptz[])
    AS t(trade_id, exchange_order_id, price, quantity, fee, fee_currency, at)
JOIN exchange_orders o
    ON o.connection_id = $1 AND o.symbol = $2 AND o.exchange_order_id = t.exchange_order_id
ON CONFLICT (connection_id, symbol, trade_id) DO NOTHING
RETURNING {", ".join(order_events.FILL_COLUMNS)}
"""  # noqa: S608 (column names only)


_OWNER_SQL = "SELECT user_id FROM exchange_connections WHERE id = $1"


async def record_streamed(
    rt: Runtime,
    *,
    connection_id: int,
    reported: Sequence[ReportedOrder] = (),
    trades: Sequence[ReportedTrade] = (),
) -> Reconciled:
    """Record what an account's order stream pushed, as reconciliation records what it
    reads (each fill once, each order moved forward only), market by market. A stream's
    reports are partial: an order they do not mention is left as it is."""
    changed = added = grew = 0
    for symbol in sorted({r.symbol for r in reported} | {t.symbol for t in trades}):
        result = await _record_account(
            rt, connection_id, symbol, [r for r in reported if r.symbol == symbol],
            [t for t in trades if t.symbol == symbol], complete=False,
        )  # fmt: skip
        changed, added = changed + result.orders_changed, added + result.fills_added
        grew += result.orders_filled
    return Reconciled(changed, added, grew)


async def _record_account(
    rt: Runtime,
    connection_id: int,
    symbol: str,
    reported: Sequence[ReportedOrder],
    trades: Sequence[ReportedTrade],
    *,
    complete: bool = True,
) -> Reconciled:
    """One transaction: the account's orders on ``symbol`` moved by the reports (matched
    by our client order id, else the exchange's), then the trades of its orders, once.
    ``complete``: the reports are all the exchange has (a PENDING_SUBMIT order missing
    from them long enough was never placed)."""
    now = rt.now()
    by_client = {r.client_order_id: r for r in reported if r.client_order_id}
    by_exchange = {r.exchange_order_id: r for r in reported}
    async with rt.sessions() as session, session.begin():
        connection = await driver(session)
        rows = await connection.fetch(
            _ORDERS_SQL, connection_id, symbol, _LIVE_VALUES, list(by_client), list(by_exchange)
        )
        updates = [u for row in rows if (u := _moved(row, by_client, by_exchange, now, complete))]
        before = {row["id"]: row["filled"] for row in rows}
        grew = sum(1 for u in updates if u[2] > before[u[0]])
        if updates:
            ids, statuses, filled, exchange_ids, codes = (
                list(c) for c in zip(*updates, strict=True)
            )
            moved = await connection.fetch(
                _UPDATE_SQL, ids, statuses, filled, exchange_ids, now, codes
            )
            await order_events.changed(session, moved)
        added = await connection.fetch(
            _FILLS_SQL, connection_id, symbol,
            [t.trade_id for t in trades], [t.exchange_order_id for t in trades],
            [t.price for t in trades], [t.quantity for t in trades], [t.fee for t in trades],
            [t.fee_currency for t in trades], [t.at for t in trades],
        )  # fmt: skip
        if added:
            owner = await connection.fetchval(_OWNER_SQL, connection_id)
            await order_events.filled(session, owner, added)
    return Reconciled(len(updates), len(added), grew)


def _moved(
    row: Any,
    by_client: dict[str, ReportedOrder],
    by_exchange: dict[str, ReportedOrder],
    now: datetime,
    complete: bool = True,
) -> tuple[int, str, Decimal, str | None, str | None] | None:
    """The row's new (id, status, filled, exchange id, reject code), or None: unchanged."""
    current = S(row["status"])
    report = by_client.get(row["client_order_id"]) or by_exchange.get(row["exchange_order_id"])
    if report is None:
        settled = complete and now - row["created_at"] > SETTLE_AFTER
        if current is S.PENDING_SUBMIT and settled:
            return (row["id"], S.REJECTED.value, row["filled"], None, ExchangeUnavailable.code)
        return None
    status = advance(current, report.status)
    filled = min(max(row["filled"], report.filled), row["quantity"])
    if status is current and filled == row["filled"] and row["exchange_order_id"]:
        return None
    return (row["id"], status.value, filled, report.exchange_order_id, None)
