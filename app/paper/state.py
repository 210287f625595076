"""A paper account's state in PostgreSQL: loading it (the venue rebuilt from the log),
catching it up with the live market, and recording a step (log rows, mirrored orders and
fills, the paper book's entry), all in the caller's transaction.

Every change of a paper account runs ``load`` (which locks the account's row, so the
live consumer and the user's commands take turns), gives the venue what it is to do,
then ``record``: nothing is written unless the whole step is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFound
from app.paper import ledger
from app.paper.domain.session import (
    LogEntry,
    apply_entry,
    ledger_legs,
    replay,
    tick_entry,
)
from app.trading.domain.orders import LIVE_STATUSES, OrderRequest, OrderStatus
from app.trading.markets import MarketRow, market_by_id
from app.venues.domain.simulated import SimulatedVenue
from app.venues.domain.venue import OrderAccepted, OrderEnded, OrderFilled, OrderTriggered
from db.models import PaperAccount, PaperLogEntry
from db.raw import driver

OPEN, CLOSED = "OPEN", "CLOSED"
LIVE = [s.value for s in LIVE_STATUSES]
_TRADES_AFTER = """
    SELECT trade_id, price, quantity, created_at FROM fills
    WHERE market_id = $1 AND liquidity = 'TAKER' AND trade_id > $2
    ORDER BY trade_id LIMIT $3
"""
_LATEST_TRADE = """
    SELECT trade_id, price, quantity, created_at FROM fills
    WHERE market_id = $1 AND liquidity = 'TAKER' AND trade_id > $2
    ORDER BY trade_id DESC LIMIT 1
"""
_HAS_LIVE_ORDERS = """
    SELECT EXISTS (SELECT 1 FROM paper_orders WHERE paper_account_id = $1
                   AND generation = $2 AND status = ANY($3::text[]))
"""
_INSERT_ORDER = """
    INSERT INTO paper_orders (paper_account_id, generation, order_id, client_order_id, side,
                              type, quantity, price, stop_price, status, list_id, list_role)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
"""
_INSERT_LIST = """
    INSERT INTO paper_order_lists (paper_account_id, generation, kind, client_list_id)
    VALUES ($1, $2, $3, $4) RETURNING id
"""
_UPDATE_ORDER = """
    UPDATE paper_orders SET status = $4, filled_quantity = filled_quantity + $5,
           reason = coalesce($6, reason), updated_at = now()
    WHERE paper_account_id = $1 AND generation = $2 AND order_id = $3
"""
_INSERT_FILL = """
    INSERT INTO paper_fills (paper_account_id, generation, number, order_id, client_order_id,
                             side, liquidity, price, quantity, quote_amount, fee, filled_at,
                             entry_id)
    SELECT $1, $2, * FROM unnest($3::bigint[], $4::bigint[], $5::text[], $6::text[],
                                 $7::text[], $8::numeric[], $9::numeric[], $10::numeric[],
                                 $11::numeric[], $12::timestamptz[], $13::bigint[])
"""
CATCH_UP_LIMIT = 10_000  # trades a step takes from the live market at most


@dataclass(frozen=True, slots=True)
class NewOrder:
    """An order a step placed: its mirrored row's first values."""

    order_id: int
    client_order_id: str
    request: OrderRequest
    status: OrderStatus = OrderStatus.NEW  # PENDING: a bracket's exit
    role: str | None = None  # a list's leg: its ``ListRole``


@dataclass(frozen=True, slots=True)
class NewList:
    client_list_id: str
    kind: str  # a ``ListKind``
    legs: tuple[NewOrder, ...]


@dataclass
class Loaded:
    """A paper account locked for a step, its venue rebuilt from its log."""

    account: PaperAccount
    market: MarketRow
    venue: SimulatedVenue
    seq: int  # the last log entry's number
    events_before: int  # the venue's events before this step
    entries: list[LogEntry] = field(default_factory=list)  # this step's
    submitted: list[NewOrder] = field(default_factory=list)  # this step's single orders
    lists: list[NewList] = field(default_factory=list)  # this step's lists
    last_trade_id: int = 0


async def get_account(
    session: AsyncSession, *, paper_account_id: int, user_id: int | None, lock: bool = False
) -> PaperAccount:
    """The paper account (``NotFound`` when it is not ``user_id``'s)."""
    statement = select(PaperAccount).where(PaperAccount.id == paper_account_id)
    if lock:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    account = await session.scalar(statement)
    if account is None or (user_id is not None and account.user_id != user_id):
        raise NotFound("No such paper account", field="paperAccountId")
    return account


def starting_balances(account: PaperAccount) -> dict[str, Decimal]:
    return {c: Decimal(a) for c, a in account.starting_balances.items()}


async def log_of(session: AsyncSession, account: PaperAccount) -> list[LogEntry]:
    rows = await session.execute(
        select(PaperLogEntry.kind, PaperLogEntry.payload)
        .where(
            PaperLogEntry.paper_account_id == account.id,
            PaperLogEntry.generation == account.generation,
        )
        .order_by(PaperLogEntry.seq)
    )
    return [LogEntry(kind, payload) for kind, payload in rows.all()]


async def load(session: AsyncSession, *, paper_account_id: int, user_id: int | None) -> Loaded:
    """Lock the account and rebuild its venue from its log."""
    account = await get_account(
        session, paper_account_id=paper_account_id, user_id=user_id, lock=True
    )
    market = await market_by_id(session, account.market_id)
    entries = await log_of(session, account)
    venue = replay(market.spec, starting_balances(account), account.started_at, entries)
    return Loaded(
        account, market, venue, len(entries), len(venue.events()),
        last_trade_id=account.last_trade_id,
    )  # fmt: skip


def give(loaded: Loaded, entry: LogEntry) -> None:
    """Give the venue one entry of this step."""
    apply_entry(loaded.venue, entry)
    loaded.entries.append(entry)


async def catch_up(session: AsyncSession, loaded: Loaded) -> int:
    """Give the venue the live market's trades since the account's last: all of them
    while it has live orders, else only the latest (its price is all that matters);
    how many."""
    connection = await driver(session)
    account = loaded.account
    live = await connection.fetchval(_HAS_LIVE_ORDERS, account.id, account.generation, LIVE)
    if live:
        rows = await connection.fetch(
            _TRADES_AFTER, account.market_id, loaded.last_trade_id, CATCH_UP_LIMIT
        )
    else:
        rows = await connection.fetch(_LATEST_TRADE, account.market_id, loaded.last_trade_id)
    for r in rows:
        give(
            loaded,
            tick_entry(
                trade_id=r["trade_id"], price=r["price"], quantity=r["quantity"],
                at=r["created_at"],
            ),
        )  # fmt: skip
        loaded.last_trade_id = r["trade_id"]
    return len(rows)


async def record(session: AsyncSession, loaded: Loaded, *, kind: str) -> None:
    """Write the step: its log entries, the orders and lists it placed, the orders it
    changed, its fills and the paper book's entry that brings the ledger to the venue's balances."""
    account, spec = loaded.account, loaded.market.spec
    connection = await driver(session)
    for offset, entry in enumerate(loaded.entries, start=1):
        session.add(
            PaperLogEntry(
                paper_account_id=account.id,
                generation=account.generation,
                seq=loaded.seq + offset,
                kind=entry.kind,
                payload=dict(entry.payload),
            )
        )
    placed = [(order, None) for order in loaded.submitted]
    for new in loaded.lists:
        list_id = await connection.fetchval(
            _INSERT_LIST, account.id, account.generation, new.kind, new.client_list_id
        )
        placed += [(order, list_id) for order in new.legs]
    for order, list_id in placed:
        request = order.request
        await connection.execute(
            _INSERT_ORDER, account.id, account.generation, order.order_id,
            order.client_order_id, request.side.value, request.type.value, request.quantity,
            request.price, request.stop_price, order.status.value, list_id, order.role,
        )  # fmt: skip
    events = loaded.venue.events(after=loaded.events_before)
    changes: dict[int, list[Any]] = {}  # order id: [status, filled, reason]
    fills = [e for e in events if isinstance(e, OrderFilled)]
    for event in events:
        change = changes.setdefault(event.order_id, [None, Decimal(0), None])
        if isinstance(event, OrderAccepted):
            change[0] = event.status.value
        elif isinstance(event, OrderTriggered):
            change[0] = OrderStatus.TRIGGERED.value
        elif isinstance(event, OrderFilled):
            change[0] = (
                OrderStatus.PARTIALLY_FILLED if event.remaining else OrderStatus.FILLED
            ).value
            change[1] += event.quantity
        elif isinstance(event, OrderEnded):
            change[0], change[2] = event.status.value, event.reason
    for order_id, (status, filled, reason) in sorted(changes.items()):
        await connection.execute(
            _UPDATE_ORDER, account.id, account.generation, order_id, status, filled, reason
        )
    entry_id = None
    legs = ledger_legs(
        account.id, await ledger.balances(session, account.id), loaded.venue.balances()
    )
    if legs:
        entry_id = await ledger.post(
            session,
            paper_account_id=account.id,
            kind="PAPER_FILL" if fills else kind,
            legs=legs,
            reference=f"paper:{account.id}:{account.generation}:{loaded.seq + len(loaded.entries)}",
        )
    if fills:
        await connection.execute(
            _INSERT_FILL,
            account.id,
            account.generation,
            [f.number for f in fills],
            [f.order_id for f in fills],
            [f.client_order_id for f in fills],
            [f.side.value for f in fills],
            [f.liquidity.value for f in fills],
            [f.price for f in fills],
            [f.quantity for f in fills],
            [f.value for f in fills],
            [f.fee for f in fills],
            [f.at for f in fills],
            [entry_id] * len(fills),
        )
    account.last_trade_id = loaded.last_trade_id
    del spec
    await session.flush()
