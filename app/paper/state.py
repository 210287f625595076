"""A paper account's state in PostgreSQL: loading it (the venue rebuilt from the log),
catching it up with the live market, and recording a step (log rows, mirrored orders and
fills, the paper book's entry, the owner's events on the outbox), all in the caller's
transaction.

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
from app.events import outbox
from app.exchanges.domain.catalogue import ExchangeId
from app.exchanges.domain.marketdata import source_of
from app.paper import feed, ledger
from app.paper.domain.session import (
    LogEntry,
    apply_entry,
    ledger_legs,
    order_changes,
    replay,
    tick_entry,
)
from app.trading.domain.orders import LIVE_STATUSES, OrderRequest, OrderStatus
from app.trading.markets import MarketRow, market_by_id
from app.venues.domain.simulated import SimulatedVenue
from app.venues.domain.venue import OrderFilled
from db.models import PaperAccount, PaperFill, PaperLogEntry, PaperOrder
from db.raw import bind, driver

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
# an account on an exchange's market: that exchange's trades in the market data store
_EXCHANGE_TRADES_AFTER = """
    SELECT id AS trade_id, price, amount AS quantity, time AS created_at FROM market_trades
    WHERE source = $1 AND symbol = $2 AND id > $3
    ORDER BY id LIMIT $4
"""
_EXCHANGE_LATEST_TRADE = """
    SELECT id AS trade_id, price, amount AS quantity, time AS created_at FROM market_trades
    WHERE source = $1 AND symbol = $2 AND id > $3
    ORDER BY id DESC LIMIT 1
"""
_HAS_LIVE_ORDERS = """
    SELECT EXISTS (SELECT 1 FROM paper_orders WHERE paper_account_id = $1
                   AND generation = $2 AND status = ANY($3::text[]))
"""
# what a step's statements return of the rows they write: its events' payloads (``feed``)
ORDER_COLUMNS = bind(
    "app.paper.state.ORDER_COLUMNS",
    PaperOrder,
    ("id", "order_id", "client_order_id", "side", "type", "status", "quantity",
     "filled_quantity", "price", "stop_price", "reason", "list_id", "list_role",
     "created_at", "updated_at"),
)  # fmt: skip
FILL_COLUMNS = bind(
    "app.paper.state.FILL_COLUMNS",
    PaperFill,
    ("id", "number", "order_id", "client_order_id", "side", "liquidity", "price",
     "quantity", "quote_amount", "fee", "filled_at"),
)  # fmt: skip
_INSERT_ORDER = f"""
    INSERT INTO paper_orders (paper_account_id, generation, order_id, client_order_id, side,
                              type, quantity, price, stop_price, status, list_id, list_role)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
    RETURNING {", ".join(ORDER_COLUMNS)}
"""  # noqa: S608 (column names only)
_INSERT_LIST = """
    INSERT INTO paper_order_lists (paper_account_id, generation, kind, client_list_id)
    VALUES ($1, $2, $3, $4) RETURNING id
"""
_UPDATE_ORDER = f"""
    UPDATE paper_orders SET status = $4, filled_quantity = filled_quantity + $5,
           reason = coalesce($6, reason), updated_at = now()
    WHERE paper_account_id = $1 AND generation = $2 AND order_id = $3
    RETURNING {", ".join(ORDER_COLUMNS)}
"""  # noqa: S608 (column names only)
_INSERT_FILL = f"""
    INSERT INTO paper_fills (paper_account_id, generation, number, order_id, client_order_id,
                             side, liquidity, price, quantity, quote_amount, fee, filled_at,
                             entry_id)
    SELECT $1, $2, * FROM unnest($3::bigint[], $4::bigint[], $5::text[], $6::text[],
                                 $7::text[], $8::numeric[], $9::numeric[], $10::numeric[],
                                 $11::numeric[], $12::timestamptz[], $13::bigint[])
    RETURNING {", ".join(FILL_COLUMNS)}
"""  # noqa: S608 (column names only)
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
    how many. An account on an exchange's market takes that exchange's trades from the
    market data store (``exchange_feed``), its ``last_trade_id`` a ``market_trades`` id."""
    connection = await driver(session)
    account = loaded.account
    live = await connection.fetchval(_HAS_LIVE_ORDERS, account.id, account.generation, LIVE)
    if account.exchange is not None:
        source = source_of(ExchangeId(account.exchange))
        where: tuple[Any, ...] = (source, loaded.market.symbol)
        sql = _EXCHANGE_TRADES_AFTER if live else _EXCHANGE_LATEST_TRADE
    else:
        where, sql = (account.market_id,), _TRADES_AFTER if live else _LATEST_TRADE
    limit = (CATCH_UP_LIMIT,) if live else ()
    rows = await connection.fetch(sql, *where, loaded.last_trade_id, *limit)
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
    changed, its fills, the paper book's entry that brings the ledger to the venue's
    balances, and its events for the owner (``feed``) on the outbox."""
    account = loaded.account
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
    written = await _insert_orders(connection, loaded)  # venue order id: its row
    events = loaded.venue.events(after=loaded.events_before)
    changes = order_changes(events)
    for order_id, change in sorted(changes.items()):
        row = await connection.fetchrow(
            _UPDATE_ORDER, account.id, account.generation, order_id, change.status.value,
            change.filled, change.reason,
        )  # fmt: skip
        if row is not None:
            written[order_id] = row
    fills = [e for e in events if isinstance(e, OrderFilled)]
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
    fill_rows = await _insert_fills(connection, account, fills, entry_id) if fills else []
    await outbox.write(
        session,
        *feed.step_events(
            account=account, symbol=loaded.market.symbol,
            fee_currency=loaded.market.spec.quote, fills=fill_rows, orders=written,
            sequences={order_id: c.number for order_id, c in changes.items()},
            last=loaded.events_before + len(events),
        ),
    )  # fmt: skip
    account.last_trade_id = loaded.last_trade_id
    await session.flush()


async def _insert_orders(connection: Any, loaded: Loaded) -> dict[int, Any]:
    """The step's new orders and lists; the orders' rows by venue order id."""
    account = loaded.account
    placed = [(order, None) for order in loaded.submitted]
    for new in loaded.lists:
        list_id = await connection.fetchval(
            _INSERT_LIST, account.id, account.generation, new.kind, new.client_list_id
        )
        placed += [(order, list_id) for order in new.legs]
    written: dict[int, Any] = {}
    for order, list_id in placed:
        request = order.request
        written[order.order_id] = await connection.fetchrow(
            _INSERT_ORDER, account.id, account.generation, order.order_id,
            order.client_order_id, request.side.value, request.type.value, request.quantity,
            request.price, request.stop_price, order.status.value, list_id, order.role,
        )  # fmt: skip
    return written


async def _insert_fills(
    connection: Any, account: PaperAccount, fills: list[OrderFilled], entry_id: int | None
) -> list[Any]:
    return list(
        await connection.fetch(
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
    )
