"""Trading, the read side: order books, trades, candles, a user's orders, fills and
portfolio. Everything comes from PostgreSQL (the engine may run in another process), in
single statements so that a book and its sequence are one consistent snapshot."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import TransientError, ValidationFailed
from app.events.pubsub import Dropped, Event, Message
from app.events.topics import BOOK, BookLevels
from app.marketdata.candle_sql import ohlcv_select
from app.runtime import Runtime
from app.trading.domain.orders import OrderStatus
from app.trading.domain.positions import Position
from db.models import Fill, Order
from db.queries import Page, keyset_page, rows_grouped_by
from db.raw import driver

# Candle intervals and their PostgreSQL intervals.
INTERVALS = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "1d": timedelta(days=1),
}
MAX_CANDLES = 1000
MAX_DEPTH = 500


@dataclass(frozen=True, slots=True)
class BookLevel:
    price: Decimal
    quantity: Decimal
    orders: int


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    symbol: str
    sequence: int
    bids: list[BookLevel]
    asks: list[BookLevel]


@dataclass(frozen=True, slots=True)
class BookDelta:
    """The levels one engine batch changed, with their new totals (0: the level is gone)."""

    symbol: str
    sequence: int
    previous_sequence: int
    bids: list[BookLevel]
    asks: list[BookLevel]


@dataclass(frozen=True, slots=True)
class TradeRow:
    trade_id: int
    price: Decimal
    quantity: Decimal
    taker_side: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Candle:
    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    trades: int


@dataclass(frozen=True, slots=True)
class PositionView:
    currency: str
    quantity: Decimal  # held now (wallet total)
    tracked_quantity: Decimal  # bought through trading and not sold
    cost_usd: Decimal
    realized_pnl_usd: Decimal
    price_usd: Decimal
    market_id: int | None  # where it is priced (its USD / USDT market)

    @property
    def tracked(self) -> Position:
        return Position(self.tracked_quantity, self.cost_usd, self.realized_pnl_usd)

    @property
    def average_cost(self) -> Decimal | None:
        average = self.tracked.average_cost
        return None if average is None else average.quantize(Decimal("1e-8"))

    @property
    def value_usd(self) -> Decimal:
        return self.quantity * self.price_usd

    @property
    def unrealized_pnl_usd(self) -> Decimal:
        return self.tracked.unrealized(self.price_usd)


@dataclass(frozen=True, slots=True)
class PortfolioView:
    user_id: int
    equity_usd: Decimal
    positions: list[PositionView]


def check_depth(depth: int) -> int:
    if not 1 <= depth <= MAX_DEPTH:
        raise ValidationFailed(f"depth is between 1 and {MAX_DEPTH}", field="depth")
    return depth


_BOOK_SQL = """
    WITH levels AS (
        SELECT side, book_price AS price, sum(quantity - filled_quantity) AS quantity,
               count(*) AS orders
        FROM orders
        WHERE market_id = $1 AND status IN ('OPEN', 'PARTIALLY_FILLED')
        GROUP BY side, book_price
    )
    SELECT (SELECT book_seq FROM markets WHERE id = $1) AS sequence, x.*
    FROM (
        (SELECT * FROM levels WHERE side = 'BUY' ORDER BY price DESC LIMIT $2)
        UNION ALL
        (SELECT * FROM levels WHERE side = 'SELL' ORDER BY price ASC LIMIT $2)
    ) x
    RIGHT JOIN (SELECT 1) one ON true
"""


async def order_book(
    session: AsyncSession, *, market_id: int, symbol: str, depth: int
) -> BookSnapshot:
    """The aggregated book as of ``sequence`` (the last engine batch that changed it)."""
    check_depth(depth)
    connection = await driver(session)
    rows = await connection.fetch(_BOOK_SQL, market_id, depth)

    def side(name: str) -> list[BookLevel]:
        return _levels((r["price"], r["quantity"], r["orders"]) for r in rows if r["side"] == name)

    return BookSnapshot(symbol, rows[0]["sequence"] if rows else 0, side("BUY"), side("SELL"))


def _levels(rows: Iterable[Sequence[Any]]) -> list[BookLevel]:
    """Book levels from (price, quantity, orders): numbers or their strings."""
    return [BookLevel(Decimal(p).normalize(), Decimal(q).normalize(), n) for p, q, n in rows]


async def book_updates(
    rt: Runtime, events: AsyncIterator[Event], *, market_id: int, symbol: str, depth: int
) -> AsyncIterator[BookSnapshot | BookDelta]:
    """What an order-book subscriber is sent: a snapshot, then each delta of ``events``
    (the market's ``book:`` outbox events, subscribed to before the snapshot is read)
    that follows on from what was sent. A delta the snapshot covers, or a duplicate, is
    skipped; after a gap (a delta that does not follow on, or a ``Gap`` of the channel)
    a new snapshot from PostgreSQL. ``Dropped`` ends it with a TransientError (the
    client subscribes again)."""

    async def snapshot() -> BookSnapshot:
        async with rt.sessions() as session:
            return await order_book(session, market_id=market_id, symbol=symbol, depth=depth)

    current = await snapshot()
    yield current
    sequence = current.sequence
    async for event in events:
        if isinstance(event, Message):
            levels = BOOK.parse(event.data["payload"])
            if levels.sequence <= sequence:
                continue  # covered by the snapshot, or a duplicate
            if levels.previous_sequence == sequence:
                sequence = levels.sequence
                yield _book_delta(levels)
                continue
        elif isinstance(event, Dropped):
            raise TransientError("The order book stream ended: subscribe again")
        current = await snapshot()  # a gap: start again from PostgreSQL
        sequence = current.sequence
        yield current


def _book_delta(levels: BookLevels) -> BookDelta:
    """A delta from its outbox payload."""
    return BookDelta(
        symbol=levels.symbol,
        sequence=levels.sequence,
        previous_sequence=levels.previous_sequence,
        bids=_levels(levels.bids),
        asks=_levels(levels.asks),
    )


async def recent_trades(session: AsyncSession, *, market_id: int, first: int) -> list[TradeRow]:
    if not 1 <= first <= 1000:
        raise ValidationFailed("first is between 1 and 1000", field="first")
    connection = await driver(session)
    rows = await connection.fetch(
        "SELECT trade_id, price, quantity, side, created_at FROM fills"
        " WHERE market_id = $1 AND liquidity = 'TAKER' ORDER BY trade_id DESC LIMIT $2",
        market_id,
        first,
    )
    return [
        TradeRow(
            r["trade_id"],
            r["price"].normalize(),
            r["quantity"].normalize(),
            r["side"],
            r["created_at"],
        )
        for r in rows
    ]


_CANDLES = ohlcv_select(
    bucket="date_bin($2::interval, created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00')",
    rows="fills WHERE market_id = $1 AND liquidity = 'TAKER'"
    " AND created_at >= $3 AND created_at < $4",
    order=("trade_id",),
    volume="sum(quantity)",
    quote_volume="sum(quote_amount)",
    trades="count(*)",
)


async def candles(
    session: AsyncSession,
    *,
    market_id: int,
    interval: str,
    start: datetime,
    end: datetime,
) -> list[Candle]:
    """OHLCV per interval from the trades in [start, end); intervals without trades are
    left out."""
    step = INTERVALS.get(interval)
    if step is None:
        raise ValidationFailed(f"interval is one of {', '.join(INTERVALS)}", field="interval")
    if end <= start:
        raise ValidationFailed("to must be after from", field="to")
    if (end - start) / step > MAX_CANDLES:
        raise ValidationFailed(f"At most {MAX_CANDLES} candles per query", field="from")
    connection = await driver(session)
    rows = await connection.fetch(
        _CANDLES,
        market_id,
        step,
        start,
        end,
    )
    return [
        Candle(
            r["t"],
            r["open"].normalize(),
            r["high"].normalize(),
            r["low"].normalize(),
            r["close"].normalize(),
            r["volume"].normalize(),
            r["quote_volume"].normalize(),
            r["trades"],
        )
        for r in rows
    ]


async def list_orders(
    session: AsyncSession,
    *,
    user_id: int,
    first: int,
    after: str | None,
    statuses: Sequence[OrderStatus] | None = None,
    market_id: int | None = None,
) -> Page[Order]:
    """A user's orders, newest first."""
    statement = select(Order).where(Order.user_id == user_id)
    if statuses:
        statement = statement.where(Order.status.in_([s.value for s in statuses]))
    if market_id is not None:
        statement = statement.where(Order.market_id == market_id)
    return await keyset_page(
        session, statement, key=Order.id, first=first, after=after, descending=True
    )


async def list_fills(
    session: AsyncSession, *, user_id: int, first: int, after: str | None
) -> Page[Fill]:
    """A user's fills, newest first."""
    return await keyset_page(
        session,
        select(Fill).where(Fill.user_id == user_id),
        key=Fill.id,
        first=first,
        after=after,
        descending=True,
    )


async def fills_by_order_ids(session: AsyncSession, order_ids: Sequence[int]) -> list[list[Fill]]:
    return await rows_grouped_by(session, Fill.order_id, order_ids)


_PORTFOLIO_SQL = """
    WITH balances AS (
        SELECT a.currency, sum(a.balance) AS quantity
        FROM ledger_accounts a WHERE a.user_id = $1 GROUP BY a.currency
    ), assets AS (
        SELECT currency FROM balances WHERE quantity <> 0
        UNION SELECT currency FROM positions WHERE user_id = $1
    )
    SELECT s.currency, coalesce(b.quantity, 0) AS quantity,
           coalesce(p.quantity, 0) AS tracked, coalesce(p.cost_usd, 0) AS cost,
           coalesce(p.realized_pnl_usd, 0) AS realized, coalesce(r.usd_price, 0) AS price,
           (SELECT m.id FROM markets m WHERE m.base = s.currency AND m.quote IN ('USDT', 'USD')
            ORDER BY m.quote = 'USDT' DESC, m.id LIMIT 1) AS market_id
    FROM assets s
    LEFT JOIN balances b ON b.currency = s.currency
    LEFT JOIN positions p ON p.user_id = $1 AND p.currency = s.currency
    LEFT JOIN reference_prices r ON r.currency = s.currency
    ORDER BY s.currency
"""


async def portfolio(session: AsyncSession, *, user_id: int) -> PortfolioView:
    """Every asset the user holds or traded, valued at the reference prices (which the
    engines keep at the last trade price of each asset's USD market), in one statement."""
    connection = await driver(session)
    rows = await connection.fetch(_PORTFOLIO_SQL, user_id)
    positions = [
        PositionView(
            currency=r["currency"],
            quantity=r["quantity"].normalize(),
            tracked_quantity=r["tracked"],
            cost_usd=r["cost"],
            realized_pnl_usd=r["realized"],
            price_usd=r["price"],
            market_id=r["market_id"],
        )
        for r in rows
    ]
    equity = sum((p.value_usd for p in positions), Decimal(0))
    return PortfolioView(user_id, equity.quantize(Decimal("0.01")), positions)


async def equity_history(
    session: AsyncSession, *, user_id: int, start: datetime, end: datetime, limit: int = 1000
) -> list[tuple[datetime, Decimal]]:
    connection = await driver(session)
    rows = await connection.fetch(
        "SELECT taken_at, equity_usd FROM equity_snapshots WHERE user_id = $1"
        " AND taken_at >= $2 AND taken_at < $3 ORDER BY taken_at LIMIT $4",
        user_id,
        start,
        end,
        limit,
    )
    return [(r["taken_at"], r["equity_usd"].quantize(Decimal("0.01"))) for r in rows]


async def snapshot_equity(rt: Runtime) -> int:
    """Record every user's equity (USD, at the reference prices) now: one row per user
    with a balance. A periodic job (EQUITY_SNAPSHOT_INTERVAL_SECONDS)."""
    async with rt.sessions() as session, session.begin():
        connection = await driver(session)
        result = await connection.execute(
            """
            INSERT INTO equity_snapshots (user_id, taken_at, equity_usd)
            SELECT a.user_id, $1, round(sum(a.balance * coalesce(r.usd_price, 0)), 18)
            FROM ledger_accounts a LEFT JOIN reference_prices r ON r.currency = a.currency
            WHERE a.user_id IS NOT NULL
            GROUP BY a.user_id
            HAVING sum(a.balance) <> 0
            ON CONFLICT DO NOTHING
            """,
            rt.now(),
        )
    return int(result.split()[-1])
