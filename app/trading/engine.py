"""The matching engine of one market, around the pure ``OrderBook``: its single writer.

Ownership. ``MarketEngine.run`` holds the PostgreSQL advisory lock (ENGINE_LOCK, market
id) on its own connection and does every write on that same connection, so an engine
that lost its connection (and with it the lock) cannot commit anything more. A standby
engine (another process, ``python -m app engine``) retries the lock every
``TRADING_ENGINE_TAKEOVER_SECONDS`` and, once it has it, rebuilds the book from
PostgreSQL: the resting orders (with their queue priority and fee accumulator) as of
``markets.applied_seq``, then the commands after it.

Batches. The engine reads the commands after the last one it applied (woken by NOTIFY
``engine_wake``, or every poll interval), applies them to the book in sequence, and in
ONE transaction writes what they did: fills, their ledger settlement (linked transfers
between both users and the fee account), order updates, hold changes, positions, outbox
events (order book delta, trades, ticker, each user's orders and fills), the commands'
outcomes and ``markets.applied_seq`` / ``book_seq`` / ``last_price``, then NOTIFY
``engine_applied``. If the transaction fails the in-memory book is thrown away and
rebuilt from PostgreSQL, which still holds the state before the batch.

A batch costs the same round trips however many commands it has: BEGIN, the commands,
the orders they name (when not in memory), one statement locking what it settles
(``_LOCK_SQL``: accounts in primary-key order, positions), one writing it all
(``_WRITE_SQL``), COMMIT. The ledger entries of trades and releases are deferred
(``JournalBatch.defer``) until that lock; only a hold that may be refused (an amend that
needs more, a bracket's exits) locks its accounts at once.

Matching on placement. Where the process placing orders runs the market's engine, the
placement's transaction applies them (``apply_placed``, under ``MarketEngine.lock``, which
``step`` holds too): no batch of the engine's own, no NOTIFY either way. The engine is
``dirty`` from the moment it applies until the placement reports its COMMIT (``settled``);
a dirty engine rebuilds its book before its next batch.

Consequences. What follows from a command rather than from the log (an OCO sibling's
cancel after a fill or a trigger, a stop order that trades triggered, a bracket's exits
once its entry has filled, a GTD expiry) is applied with ``OrderBook.apply_consequence``
under the command's seq and committed with it. The trigger engine lives here too: the
market's conditional orders, evaluated against every trade price, each fired exactly
once (its status TRIGGERED commits with the fills it caused).

Money, per fill (all amounts in minor units, fees in the quote currency):

    buyer  HELD quote   -(value + buyer fee)     seller AVAILABLE quote +(value - seller fee)
    seller HELD base    -quantity                buyer  AVAILABLE base  +quantity
    FEES quote          +(buyer fee + seller fee)

An order's hold shrinks by what its fills spend; what is left goes back to AVAILABLE when
the order ends (and no other live order shares the hold: an OCO's legs hold once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from itertools import accumulate
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.background import stop_tasks
from app.core.errors import InsufficientFunds, InvariantViolation
from app.core.waits import within
from app.events import outbox
from app.events.engine_signals import APPLIED_CHANNEL, WAKE_CHANNEL
from app.ledger import holds
from app.ledger import journal as ledger
from app.ledger.holds import HoldEvent
from app.ledger.rules import AccountKind, move
from app.runtime import Runtime
from app.trading.domain import orders as rules
from app.trading.domain import settlement
from app.trading.domain.matching import (
    Accepted,
    Amend,
    Amended,
    AmendRejected,
    BookSnapshot,
    Cancel,
    CancelAll,
    CancelRejected,
    Event,
    ExpireDue,
    Fill,
    OrderBook,
    OrderDone,
    Place,
    Rejected,
    RestingOrder,
)
from app.trading.domain.orders import (
    FINAL_STATUSES,
    OrderEvent,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    TrailingOffsetType,
    TrailingSpec,
    TrailingState,
    Trigger,
    epoch_ms,
)
from app.trading.domain.positions import Position
from app.trading.markets import market_by_id
from app.trading.placement import OCO_ROLES, ORDER_COLUMNS, ListRole
from db.raw import columns, driver, unnest_parameters
from db.session import RETRYABLE_SQLSTATES, sqlstate

log = logging.getLogger(__name__)

ENGINE_LOCK = 0x6E67  # advisory lock class: (ENGINE_LOCK, market id)
CASH = frozenset({"USD", "USDT"})  # no position is kept in these
_D = Decimal


@dataclass(slots=True)
class LiveOrder:
    id: int
    user_id: int
    side: Side
    type: OrderType
    status: OrderStatus
    tif: TimeInForce
    post_only: bool
    quantity: int  # lots
    filled: int  # lots
    executed: int  # quote units
    fees: int  # quote units
    fee_numerator: int
    price: int  # book price, ticks
    stop: int | None
    trailing: TrailingSpec | None
    trailing_state: TrailingState | None
    expires_ms: int | None
    hold_id: int | None
    list_id: int | None
    list_role: str | None
    priority: int | None
    reason: str | None = None
    changed: bool = False  # publish a status event

    @property
    def trigger(self) -> Trigger | None:
        return rules.TYPE_RULES[self.type].trigger

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(slots=True)
class HoldState:
    id: int
    user_id: int
    currency: str
    amount: int  # minor units
    remaining: int
    spent: bool = False
    status: str = "PENDING"


@dataclass(slots=True)
class OrderIndex:
    """Ways into a market's live orders other than by id, so that no event scans them
    all (the engine keeps every resting order; one scan per fill or batch made each
    batch's cost grow with the size of the book)."""

    lists: dict[int, set[int]] = field(default_factory=dict)  # list id -> its orders
    users: dict[int, set[int]] = field(default_factory=dict)  # user id -> their orders
    conditional: set[int] = field(default_factory=set)  # with a trigger: stops and kin
    expiring: set[int] = field(default_factory=set)  # with an expiry (GTD)
    # remembered or changed since the last ``MarketEngine._forget_final``: only these
    # can have become final
    unsettled: set[int] = field(default_factory=set)

    def add(self, order: LiveOrder) -> None:
        if order.list_id is not None:
            self.lists.setdefault(order.list_id, set()).add(order.id)
        self.users.setdefault(order.user_id, set()).add(order.id)
        if order.trigger is not None:
            self.conditional.add(order.id)
        if order.expires_ms is not None:
            self.expiring.add(order.id)
        self.unsettled.add(order.id)

    def remove(self, order: LiveOrder) -> None:
        if order.list_id is not None:
            _discard(self.lists, order.list_id, order.id)
        _discard(self.users, order.user_id, order.id)
        self.conditional.discard(order.id)
        self.expiring.discard(order.id)

    def siblings(self, order: LiveOrder) -> set[int]:
        """The other orders of its list: the only ones that can share its hold (a
        placement takes a hold per order, or one per OCO; a bracket's exits share one)."""
        if order.list_id is None:
            return set()
        return self.lists.get(order.list_id, set()) - {order.id}


def _discard(groups: dict[int, set[int]], key: int, member: int) -> None:
    group = groups.get(key)
    if group is not None:
        group.discard(member)
        if not group:
            del groups[key]


@dataclass
class Batch:
    """What one transaction writes."""

    outcomes: dict[int, str] = field(default_factory=dict)
    orders: dict[int, LiveOrder] = field(default_factory=dict)  # touched
    holds: dict[int, HoldState] = field(default_factory=dict)  # touched
    fills: list[tuple[Any, ...]] = field(default_factory=list)
    trades: list[dict[str, Any]] = field(default_factory=list)
    levels: set[tuple[Side, int]] = field(default_factory=set)
    positions: list[tuple[int, str, Decimal, Decimal, bool]] = field(default_factory=list)
    # bracket entries that ended (filled, canceled, expired): their exits follow once the
    # events at hand are applied
    entries_done: list[LiveOrder] = field(default_factory=list)
    # the batch's postings, written together at its end (``_write``): fills carry the
    # number of their entry in it until then. Trades and releases are deferred (their
    # accounts locked together before the write, in primary-key order); what may be
    # refused (a hold taken by an amend or a bracket's exits) is posted at once.
    journal: ledger.JournalBatch = field(default_factory=ledger.JournalBatch)


_ORDER_FROM = """
    FROM orders o
    LEFT JOIN holds h ON h.id = o.hold_id
    LEFT JOIN currencies c ON c.code = h.currency
"""

# ``own_priority``: the order got its place in the queue from a command of its own (its
# PLACE or AMEND), not as a consequence of another order's command (a stop it triggered,
# a bracket's take-profit): see ``MarketEngine.restore``.
_LIVE_ORDERS_SQL = " ".join(
    (
        "SELECT",
        ORDER_COLUMNS,
        ", EXISTS (SELECT 1 FROM order_commands pc WHERE pc.market_id = o.market_id",
        "AND pc.seq = o.priority AND pc.order_id = o.id) AS own_priority",
        _ORDER_FROM,
        "WHERE o.market_id = $1",
        # the statuses as constants (not a parameter): the engine's connection plans
        # generically (``_own``), and a generic plan cannot prove a partial index's
        # predicate from a parameter
        "AND o.status IN (" + ", ".join(sorted(f"'{s.value}'" for s in rules.LIVE_STATUSES)) + ")",
        "ORDER BY o.id",
    )
)
# The orders and every order of their lists (a bracket's exits come with its entry).
_COMMANDS_SQL = (
    "SELECT seq, kind, order_id, user_id, args FROM order_commands"
    " WHERE market_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
)
_ORDERS_BY_ID_SQL = " ".join(
    (
        "SELECT",
        ORDER_COLUMNS,
        _ORDER_FROM,
        # one indexed lookup per id and per list: ``id = ANY OR list_id IN (...)`` was a
        # scan of every order ever placed
        "WHERE o.id IN (SELECT unnest($1::bigint[]) UNION SELECT l.id FROM orders f",
        "JOIN orders l ON l.list_id = f.list_id WHERE f.id = ANY($1::bigint[])) ORDER BY o.id",
    )
)

_POSITIONS_SQL_BODY = """
    SELECT p.user_id, p.currency, p.quantity, p.cost_usd, p.realized_pnl_usd
    FROM positions p
    JOIN unnest($4::bigint[], $5::text[]) AS k(user_id, currency)
      ON p.user_id = k.user_id AND p.currency = k.currency
    ORDER BY p.user_id, p.currency
    FOR UPDATE OF p
"""
# What a batch settles, locked in one statement before it is written: the accounts of its
# journal entries ($1..$3, ``ledger.ACCOUNT_CTES``: made if new, the others in primary-key
# order), its positions ($4, $5: made if new, the others in key order) and the quote
# currency's USD rate ($6). A row another transaction makes after this statement's
# snapshot is missing from the answer (locked by a statement after it).
_LOCK_SQL = f"""
    WITH {ledger.ACCOUNT_CTES},
    new_positions AS (
        INSERT INTO positions (user_id, currency)
        SELECT * FROM unnest($4::bigint[], $5::text[])
        ON CONFLICT DO NOTHING
        RETURNING user_id, currency, quantity, cost_usd, realized_pnl_usd
    ), old_positions AS (
        {_POSITIONS_SQL_BODY}
    )
    SELECT 'account' AS row, a.id, a.user_id, a.currency, a.kind, a.balance,
           NULL::numeric AS quantity, NULL::numeric AS cost_usd,
           NULL::numeric AS realized_pnl_usd
    FROM ({ledger.ACCOUNTS_LOCKED}) AS a
    UNION ALL
    SELECT 'position', NULL, user_id, currency, NULL, NULL, quantity, cost_usd,
           realized_pnl_usd
    FROM new_positions
    UNION ALL
    SELECT 'position', NULL, user_id, currency, NULL, NULL, quantity, cost_usd,
           realized_pnl_usd
    FROM old_positions
    UNION ALL
    SELECT 'rate', NULL, NULL, currency, NULL, usd_price, NULL, NULL, NULL
    FROM reference_prices WHERE currency = $6
"""  # noqa: S608 (no input in the text)
_POSITIONS_SQL = _POSITIONS_SQL_BODY.replace("$4", "$1").replace("$5", "$2")

# Everything a batch writes, in one statement after the journal's CTEs ($1..$11): its
# fills (with their journal entry, by number), the orders, holds and positions it changed,
# its outbox events, its commands' outcomes, the market's sequence and last price (and
# the base currency's reference price after a trade in a USD market), and the NOTIFY
# that tells waiting API processes the commands are applied (delivered at COMMIT).
_WRITE_ARRAYS = {
    "fills": (
        "bigint", "bigint", "bigint", "bigint", "text", "text", "numeric", "numeric",
        "numeric", "numeric", "bigint",
    ),
    "orders": (
        "bigint", "text", "numeric", "numeric", "numeric", "numeric", "numeric", "numeric",
        "bigint", "text", "bigint", "boolean", "numeric",
    ),
    "holds": ("bigint", "numeric", "numeric", "text"),
    "positions": ("bigint", "text", "numeric", "numeric", "numeric"),
    "events": outbox.EVENT_TYPES,
    "outcomes": ("bigint", "text"),
}  # fmt: skip
_W = ledger.JOURNAL_PARAMETERS + 1  # market id, fee currency, now; then the arrays
_A = dict(
    zip(
        _WRITE_ARRAYS,
        accumulate((len(t) for t in _WRITE_ARRAYS.values()), initial=_W + 3),
        strict=False,
    )
)
_M = _W + 3 + sum(len(t) for t in _WRITE_ARRAYS.values())  # the market's row, then NOTIFY
_WRITE_SQL = f"""
    WITH {ledger.JOURNAL_CTES},
    new_fills AS (
        INSERT INTO fills (market_id, trade_id, seq, order_id, user_id, side, liquidity,
                           price, quantity, quote_amount, fee, entry_id, fee_currency,
                           created_at)
        SELECT ${_W}, f.trade_id, f.seq, f.order_id, f.user_id, f.side, f.liquidity, f.price,
               f.quantity, f.quote_amount, f.fee, ids.id, ${_W + 1}, ${_W + 2}
        FROM unnest({unnest_parameters(_A["fills"], _WRITE_ARRAYS["fills"])})
             WITH ORDINALITY AS f(trade_id, seq, order_id, user_id, side, liquidity, price,
                                  quantity, quote_amount, fee, entry, n)
        JOIN ids ON ids.n = f.entry
        ORDER BY f.n
        RETURNING 1
    ), changed_orders AS (
        UPDATE orders o SET status = v.status, quantity = v.quantity,
               filled_quantity = v.filled_quantity, executed_value = v.executed_value,
               fees = v.fees, fee_numerator = v.fee_numerator, book_price = v.book_price,
               priority = v.priority, reason = v.reason, hold_id = v.hold_id,
               trailing_active = v.trailing_active, trailing_extreme = v.trailing_extreme,
               updated_at = ${_W + 2}
        FROM unnest({unnest_parameters(_A["orders"], _WRITE_ARRAYS["orders"])})
             AS v(id, status, quantity, filled_quantity, executed_value, fees, fee_numerator,
                  book_price, priority, reason, hold_id, trailing_active, trailing_extreme)
        WHERE o.id = v.id
        RETURNING 1
    ), changed_holds AS (
        UPDATE holds h SET amount = v.amount, remaining = v.remaining, status = v.status,
               resolved_at = CASE WHEN v.status = 'PENDING' THEN NULL ELSE now() END
        FROM unnest({unnest_parameters(_A["holds"], _WRITE_ARRAYS["holds"])})
             AS v(id, amount, remaining, status)
        WHERE h.id = v.id
        RETURNING 1
    ), changed_positions AS (
        UPDATE positions p SET quantity = v.quantity, cost_usd = round(v.cost, 18),
               realized_pnl_usd = round(v.pnl, 18), updated_at = now()
        FROM unnest({unnest_parameters(_A["positions"], _WRITE_ARRAYS["positions"])})
             AS v(user_id, currency, quantity, cost, pnl)
        WHERE p.user_id = v.user_id AND p.currency = v.currency
        RETURNING 1
    ), new_events AS (
        {outbox.insert_sql(_A["events"])}
        RETURNING 1
    ), command_outcomes AS (
        UPDATE order_commands c SET outcome = v.outcome
        FROM unnest({unnest_parameters(_A["outcomes"], _WRITE_ARRAYS["outcomes"])})
             AS v(seq, outcome)
        WHERE c.market_id = ${_W} AND c.seq = v.seq
        RETURNING 1
    ), market AS (
        UPDATE markets SET applied_seq = ${_M}, book_seq = ${_M + 1},
               last_trade_id = ${_M + 2}, last_price = ${_M + 3}::numeric
        WHERE id = ${_W} AND applied_seq <= ${_M}
        RETURNING id
    ), price AS (
        UPDATE reference_prices SET usd_price = ${_M + 3}::numeric, updated_at = now()
        WHERE currency = ${_M + 4} AND ${_M + 5}::boolean
        RETURNING 1
    ), applied AS (
        SELECT pg_notify(${_M + 6}, ${_M + 7}) FROM market
    )
    SELECT {ledger.JOURNAL_COUNTS},
           (SELECT count(*) FROM new_fills) AS fills,
           (SELECT count(*) FROM changed_orders) AS orders,
           (SELECT count(*) FROM changed_holds) AS holds,
           (SELECT count(*) FROM changed_positions) AS positions,
           (SELECT count(*) FROM new_events) AS events,
           (SELECT count(*) FROM command_outcomes) AS outcomes,
           (SELECT count(*) FROM market) AS market,
           (SELECT count(*) FROM price) AS priced,
           (SELECT count(*) FROM applied) AS announced
"""  # noqa: S608 (no input in the text: column names and parameter numbers)


def _units(amount: Decimal, scale: int) -> int:
    return int(amount.scaleb(scale))


class StaleEngine(Exception):
    """PostgreSQL no longer matches the engine's memory (the market was reset)."""


class MarketEngine:
    def __init__(self, rt: Runtime, market_id: int) -> None:
        self.rt = rt
        self.market_id = market_id
        self.wake = asyncio.Event()
        self.owner = False  # holds the lock
        self.book: OrderBook | None = None
        self.applied = 0  # == book.last_seq
        # Held while the book changes: by ``step``, and by a placement applying its own
        # commands in its transaction (``apply_placed``).
        self.lock = asyncio.Lock()
        # The book may differ from PostgreSQL (not built yet, or a batch that changed it
        # did not commit): ``restore`` before the next batch, no placement applies here.
        self.dirty = True

    # -- the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Own the market (waiting for the lock as a standby) and match until cancelled."""
        settings = self.rt.settings
        while True:
            try:
                async with self.rt.engine.connect() as connection:
                    try:
                        await self._own(connection)
                    finally:
                        # Never return a connection holding the market's lock to the pool.
                        await connection.invalidate()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The failed batch rolled back; the book is rebuilt from PostgreSQL.
                log.exception("matching engine failed", extra={"market": self.market_id})
                self.owner = False
                self.dirty = True
                await asyncio.sleep(settings.trading_engine_takeover_seconds)

    async def _own(self, connection: AsyncConnection) -> None:
        settings = self.rt.settings
        raw = await connection.get_raw_connection()
        pg = raw.driver_connection
        assert pg is not None
        while not await pg.fetchval(  # noqa: ASYNC110 (the lock is in PostgreSQL)
            "SELECT pg_try_advisory_lock($1, $2)", ENGINE_LOCK, self.market_id
        ):
            await asyncio.sleep(settings.trading_engine_takeover_seconds)
        self.owner = True
        # The batch statements run again and again with arrays of other lengths; under the
        # default plan_cache_mode PostgreSQL plans each execution afresh (a custom plan),
        # which cost more than running them. This connection is the engine's alone (never
        # returned to the pool), so the setting stays with it.
        await pg.execute("SET plan_cache_mode = force_generic_plan")

        def on_wake(_c: object, _pid: int, _channel: str, payload: str) -> None:
            if payload == str(self.market_id):
                self.wake.set()

        await pg.add_listener(WAKE_CHANNEL, on_wake)
        try:
            async with self.lock:
                await self.restore(connection)
            while True:
                self.wake.clear()
                busy = await self.step(connection)
                if not busy:
                    await within(self.wake.wait(), settings.trading_engine_poll_seconds)
        finally:
            self.owner = False
            with contextlib.suppress(Exception):
                await pg.remove_listener(WAKE_CHANNEL, on_wake)

    # -- state ------------------------------------------------------------------------

    async def restore(self, connection: AsyncConnection) -> None:
        """The book and the live orders as PostgreSQL has them."""
        async with AsyncSession(bind=connection) as session:
            market = await market_by_id(session, self.market_id)
            pg = await driver(session)
            rows = await pg.fetch(
                _LIVE_ORDERS_SQL,
                self.market_id,
            )
            await session.rollback()
        self.market = market
        self.spec = market.spec
        self.orders: dict[int, LiveOrder] = {}
        self.holds: dict[int, HoldState] = {}
        self.index = OrderIndex()
        for row in rows:
            self._remember(row)
        # Orders that share a priority (one command's seq) were queued in the order they
        # were placed: the command's own order first, then what it triggered (by id, as
        # the trigger engine fires them). ``OrderBook.restore`` sorts stably by priority.
        own = {row["id"] for row in rows if row["own_priority"]}
        resting = sorted(
            (
                o
                for o in self.orders.values()
                if o.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)
            ),
            key=lambda o: (o.priority, o.id not in own, o.id),
        )
        snapshot = BookSnapshot(
            market.applied_seq,
            market.last_trade_id,
            tuple(self._resting(o) for o in resting if o.side is Side.BUY),
            tuple(self._resting(o) for o in resting if o.side is Side.SELL),
        )
        self.book = OrderBook.restore(self.spec, snapshot)
        self.applied = market.applied_seq
        self.book_seq = market.book_seq
        self.last_price = (
            None if market.last_price is None else self.spec.nearest_ticks(market.last_price)
        )
        self.dirty = False

    def _resting(self, o: LiveOrder) -> RestingOrder:
        assert o.priority is not None
        return RestingOrder(
            o.id,
            o.user_id,
            o.side,
            o.price,
            o.quantity,
            o.quantity - o.filled,
            o.fee_numerator,
            o.priority,
            o.post_only,
            o.expires_ms,
        )

    def _remember(self, row: Any) -> LiveOrder:
        spec = self.spec
        trailing = None
        state = None
        if row["trailing_offset_type"] is not None:
            kind = TrailingOffsetType(row["trailing_offset_type"])
            offset = (
                spec.to_ticks(row["trailing_offset"])
                if kind is TrailingOffsetType.AMOUNT
                else int(row["trailing_offset"] * 100)
            )
            activation = (
                None if row["activation_price"] is None else spec.to_ticks(row["activation_price"])
            )
            trailing = TrailingSpec(offset, kind, activation)
            extreme = row["trailing_extreme"]
            state = TrailingState(
                row["trailing_active"], None if extreme is None else spec.to_ticks(extreme)
            )
        order = LiveOrder(
            id=row["id"],
            user_id=row["user_id"],
            side=Side(row["side"]),
            type=OrderType(row["type"]),
            status=OrderStatus(row["status"]),
            tif=TimeInForce(row["time_in_force"]),
            post_only=row["post_only"],
            quantity=spec.to_lots(row["quantity"]),
            filled=int(row["filled_quantity"] / spec.lot_size),
            executed=_units(row["executed_value"], spec.quote_scale),
            fees=_units(row["fees"], spec.quote_scale),
            fee_numerator=int(row["fee_numerator"]),
            price=spec.to_ticks(row["book_price"]),
            stop=None if row["stop_price"] is None else spec.to_ticks(row["stop_price"]),
            trailing=trailing,
            trailing_state=state,
            expires_ms=None if row["expires_at"] is None else epoch_ms(row["expires_at"]),
            hold_id=row["hold_id"],
            list_id=row["list_id"],
            list_role=row["list_role"],
            priority=row["priority"],
            reason=row["reason"],
        )
        self.orders[order.id] = order
        self.index.add(order)
        if row["hold_id"] is not None and row["hold_id"] not in self.holds:
            scale = row["hold_scale"]
            self.holds[row["hold_id"]] = HoldState(
                row["hold_id"],
                row["hold_user"],
                row["hold_currency"],
                _units(row["hold_amount"], scale),
                _units(row["hold_remaining"], scale),
                status=row["hold_status"],
            )
        if order.filled and order.hold_id is not None:
            # fills spent from it: when it ends it is POSTED, not VOIDED
            self.holds[order.hold_id].spent = True
        return order

    # -- one batch --------------------------------------------------------------------

    async def step(self, connection: AsyncConnection) -> bool:
        """Apply the next batch of commands (and due expiries); whether there was work."""
        async with self.lock:
            if self.dirty:
                await self.restore(connection)
            try:
                return await self._step(connection)
            except BaseException:
                self.dirty = True
                raise

    async def _step(self, connection: AsyncConnection) -> bool:
        limit = self.rt.settings.trading_engine_batch_size
        try:
            async with AsyncSession(bind=connection) as session, session.begin():
                pg = await driver(session)
                commands = await pg.fetch(_COMMANDS_SQL, self.market_id, self.applied, limit)
                now_ms = epoch_ms(self.rt.now())
                due = self._expiry_due(now_ms)
                if not commands and not due:
                    if (
                        await pg.fetchval(
                            "SELECT applied_seq FROM markets WHERE id = $1", self.market_id
                        )
                        != self.applied
                    ):
                        raise StaleEngine("the market's sequence moved under this engine")
                    return False
                await self._apply(session, commands, now_ms if due else None)
            self._forget_final()
            return len(commands) == limit
        except StaleEngine:
            log.warning(
                "market reset under the engine; rebuilding", extra={"market": self.market_id}
            )
            await self.restore(connection)
            return True
        except Exception as error:
            if sqlstate(error) not in RETRYABLE_SQLSTATES:
                raise
            # A deadlock (with another engine over shared accounts) or a serialization
            # failure: the batch rolled back. Rebuild from PostgreSQL and try again,
            # keeping the market.
            log.warning(
                "engine batch rolled back; retrying",
                extra={"market": self.market_id, "sqlstate": sqlstate(error)},
            )
            await self.restore(connection)
            await asyncio.sleep(random.uniform(0, 0.05))  # noqa: S311 (jitter)
            return True

    async def _apply(self, session: AsyncSession, commands: list[Any], due: int | None) -> None:
        """Apply ``commands`` (and the expiries due at ``due``, epoch ms) to the book and
        write what they did, in ``session``'s transaction."""
        pg = await driver(session)
        await self._load(pg, commands)
        batch = Batch()
        self.batch, self.session = batch, session
        for command in commands:
            await self._command(command)
        if due is not None:
            await self._expire(due)
            await self._hand_over()
        await self._write(pg, batch)

    async def apply_placed(self, session: AsyncSession, placed: Sequence[Any]) -> None:
        """Apply the commands a placement just stored, in its transaction: ``placed``,
        the rows ``trading._PLACE_SQL`` returned for this market (the command's ``seq``,
        ``kind``, ``order_id``, the order as ``ORDER_COLUMNS``), in seq order. The caller
        holds ``self.lock`` and the market's row (no other engine writes the market before
        it commits), and ``markets.applied_seq`` is ``self.applied``. Commands of others
        stored before them are read and applied first. The engine is ``dirty`` until the
        caller reports the commit (``settled``); if it does not commit, ``step`` rebuilds
        the book first."""
        assert self.lock.locked() and not self.dirty
        self.dirty = True
        pg = await driver(session)
        if placed[0]["seq"] == self.applied + 1:
            commands = list(placed)
            for row in placed:
                self._remember(row)
        else:  # others' commands came first
            commands = await pg.fetch(
                _COMMANDS_SQL, self.market_id, self.applied, placed[-1]["seq"] - self.applied
            )
        now_ms = epoch_ms(self.rt.now())
        await self._apply(session, commands, now_ms if self._expiry_due(now_ms) else None)

    def settled(self) -> None:
        """``apply_placed``'s transaction committed: the book is PostgreSQL's again."""
        self._forget_final()
        self.dirty = False

    async def _load(self, pg: Any, commands: list[Any]) -> None:
        wanted = {c["order_id"] for c in commands if c["order_id"] is not None}
        wanted -= set(self.orders)
        if not wanted:
            return
        rows = await pg.fetch(
            _ORDERS_BY_ID_SQL,
            list(wanted),
        )
        for row in rows:
            if row["id"] not in self.orders:
                self._remember(row)

    def _forget_final(self) -> None:
        index = self.index
        final = [self.orders[i] for i in sorted(index.unsettled) if self.orders[i].final]
        index.unsettled.clear()
        for order in final:
            del self.orders[order.id]
            index.remove(order)
        for order in final:
            if order.hold_id is not None and not any(
                self.orders[i].hold_id == order.hold_id for i in index.siblings(order)
            ):
                self.holds.pop(order.hold_id, None)

    def _expiry_due(self, now_ms: int) -> bool:
        return any(
            (o := self.orders[i]).expires_ms is not None and o.expires_ms <= now_ms and not o.final
            for i in self.index.expiring
        )

    def _orders_in(self, ids: set[int]) -> list[LiveOrder]:
        """Those orders by id (the order events are handled in, whatever the set's)."""
        return [self.orders[i] for i in sorted(ids)]

    # -- commands ---------------------------------------------------------------------

    async def _command(self, command: Any) -> None:
        assert self.book is not None
        seq, kind, order_id = command["seq"], command["kind"], command["order_id"]
        self.applied = seq
        outcome = "OK"
        order = self.orders.get(order_id) if order_id is not None else None
        if kind == "PLACE":
            assert order is not None
            await self._events(self.book.handle(self._place(seq, order)))
        elif kind == "ARM":
            assert order is not None
            self.book.skip(seq)
            if order.status is OrderStatus.UNTRIGGERED:
                self._touch(order)
                if self.last_price is not None:
                    await self._observe([self.last_price])
        elif kind == "CANCEL":
            assert order is not None
            outcome = await self._cancel(seq, order)
            if outcome == "OK" and order.list_role in OCO_ROLES:
                await self._cancel_siblings(order)  # canceling one leg cancels the OCO
        elif kind == "CANCEL_ALL":
            # orders off the book first: a bracket's exits canceled before its entry, so
            # the entry's end (partly filled) does not release them into the book
            for other in self._orders_in(self.index.users.get(command["user_id"], set())):
                if other.status in (
                    OrderStatus.UNTRIGGERED,
                    OrderStatus.PENDING,
                ):
                    await self._end(other, OrderEvent.CANCEL, "CANCELED")
            await self._events(self.book.handle(CancelAll(seq, command["user_id"])))
        elif kind == "AMEND":
            assert order is not None
            args = command["args"]
            args = json.loads(args) if isinstance(args, str) else args
            outcome = await self._amend(seq, order, args["price"], args["quantity"])
        else:
            self.book.skip(seq)
            outcome = "UNKNOWN_COMMAND"
        await self._hand_over()
        self.batch.outcomes[seq] = outcome

    def _place(self, seq: int, order: LiveOrder) -> Place:
        return Place(
            seq,
            order.id,
            order.user_id,
            order.side,
            rules.TYPE_RULES[order.type].book_type,
            order.price,
            order.quantity - order.filled,
            order.tif,
            order.post_only,
            order.expires_ms,
        )

    async def _cancel(self, seq: int, order: LiveOrder) -> str:
        assert self.book is not None
        if order.id in self.book:
            await self._events(self.book.handle(Cancel(seq, order.id)))
            return "OK"
        self.book.skip(seq)
        if order.final or order.status not in (
            OrderStatus.UNTRIGGERED,
            OrderStatus.PENDING,
            OrderStatus.TRIGGERED,
            OrderStatus.NEW,
        ):
            return "ORDER_NOT_CANCELLABLE"
        await self._end(order, OrderEvent.CANCEL, "CANCELED")
        return "OK"

    async def _amend(self, seq: int, order: LiveOrder, price: int, quantity: int) -> str:
        assert self.book is not None
        resting = self.book.resting(order.id)
        if resting is None or order.list_id is not None:
            self.book.skip(seq)
            return "ORDER_NOT_AMENDABLE"
        remaining = quantity - (resting.quantity - resting.remaining)
        if remaining <= 0 or price <= 0:
            self.book.skip(seq)
            return "INVALID_AMEND"
        hold = self.holds[order.hold_id] if order.hold_id is not None else None
        assert hold is not None
        need = self._hold_need(order.side, price, remaining, resting.fee_numerator)
        delta = need - hold.remaining
        if delta > 0:
            try:
                await self._move_hold(hold, delta)
            except InsufficientFunds:
                self.book.skip(seq)
                return InsufficientFunds.code
        old_price = order.price
        events = self.book.handle(Amend(seq, order.id, price, quantity))
        if any(isinstance(e, AmendRejected) for e in events):
            if delta > 0:
                await self._move_hold(hold, -delta)
            return next(e.reason.value for e in events if isinstance(e, AmendRejected))
        self.batch.levels.add((order.side, old_price))
        await self._events(events)
        if delta < 0 and not order.final:
            await self._move_hold(hold, delta)
        return "OK"

    def _hold_need(self, side: Side, price: int, lots: int, fee_numerator: int) -> int:
        spec = self.spec
        if side is Side.SELL:
            return lots * spec.base_units_per_lot
        notional = spec.notional_units(price, lots)
        rate = max(spec.maker_fee_numerator, spec.taker_fee_numerator)
        den = spec.fee_denominator
        return (
            notional + (-(-(fee_numerator + notional * rate) // den)) - (-(-fee_numerator // den))
        )

    async def _move_hold(self, hold: HoldState, delta: int) -> None:
        """Hold ``delta`` more (AVAILABLE -> HELD: may be refused), or release ``-delta``."""
        amount = self._amount(hold.currency, abs(delta))
        available = ledger.user_account(hold.user_id, hold.currency)
        held = ledger.user_account(hold.user_id, hold.currency, AccountKind.HELD)
        if delta > 0:
            await self.batch.journal.post(
                self.session,
                kind="HOLD",
                legs=move(amount, available, held),
                reference=f"hold:{hold.id}",
            )
        else:
            self.batch.journal.defer(
                kind="HOLD_VOID", legs=move(amount, held, available), reference=f"hold:{hold.id}"
            )
        holds.apply(hold, HoldEvent.TOP_UP if delta > 0 else HoldEvent.RELEASE, abs(delta))
        self.batch.holds[hold.id] = hold

    def _amount(self, currency: str, units: int) -> Decimal:
        scale = self.spec.base_scale if currency == self.spec.base else self.spec.quote_scale
        return _D(units).scaleb(-scale)

    # -- events -----------------------------------------------------------------------

    async def _events(self, events: list[Event]) -> None:
        prices: list[int] = []
        for event in events:
            if isinstance(event, Fill):
                await self._fill(event)
                prices.append(event.price)
            elif isinstance(event, Accepted):
                order = self.orders[event.order_id]
                self._transition(order, OrderEvent.ACCEPT)
                order.priority = event.seq
                resting = self.book.resting(order.id) if self.book else None
                if resting is not None:
                    self.batch.levels.add((order.side, order.price))
            elif isinstance(event, Rejected):
                order = self.orders[event.order_id]
                await self._end(order, OrderEvent.REJECT, event.reason.value)
                if order.list_role in OCO_ROLES:
                    # a list refused on arrival (the caller gets the error) leaves nothing
                    await self._cancel_siblings(order)
            elif isinstance(event, OrderDone):
                order = self.orders[event.order_id]
                done = (
                    OrderEvent.CANCEL if event.status is OrderStatus.CANCELED else OrderEvent.EXPIRE
                )
                self.batch.levels.add((order.side, order.price))
                await self._end(order, done, event.reason.value)
            elif isinstance(event, Amended):
                order = self.orders[event.order_id]
                self._transition(order, OrderEvent.AMEND)
                order.price, order.quantity = event.price, event.quantity
                if not event.kept_priority:
                    order.priority = event.seq
                self.batch.levels.add((order.side, order.price))
            elif isinstance(event, AmendRejected | CancelRejected):
                pass
        await self._hand_over()
        if prices:
            await self._observe(prices)

    async def _hand_over(self) -> None:
        entries = self.batch.entries_done
        while entries:
            await self._entry_done(entries.pop(0))

    def _touch(self, order: LiveOrder) -> None:
        self.batch.orders[order.id] = order
        self.index.unsettled.add(order.id)

    def _transition(self, order: LiveOrder, event: OrderEvent) -> None:
        order.status = rules.apply(order.status, event)
        order.changed = True
        self._touch(order)

    async def _end(self, order: LiveOrder, event: OrderEvent, reason: str | None) -> None:
        """The order leaves: release its hold (unless shared with a live order), and a
        bracket's entry hands over to its exits."""
        self._transition(order, event)
        order.reason = reason
        await self._finished(order)

    async def _finished(self, order: LiveOrder) -> None:
        """An order just became final (filled, canceled, expired, rejected)."""
        await self._release(order)
        if order.list_role == ListRole.ENTRY:
            self.batch.entries_done.append(order)

    async def _release(self, order: LiveOrder) -> None:
        if order.hold_id is None:
            return
        hold = self.holds.get(order.hold_id)
        if hold is None or hold.status != "PENDING":
            return
        if any(
            (o := self.orders[i]).hold_id == hold.id and not o.final
            for i in self.index.siblings(order)
        ):
            return
        if hold.remaining:
            await self._move_hold(hold, -hold.remaining)
        holds.apply(hold, HoldEvent.POST if hold.spent else HoldEvent.VOID)
        self.batch.holds[hold.id] = hold

    async def _fill(self, fill: Fill) -> None:
        spec = self.spec
        maker, taker = self.orders[fill.maker_order_id], self.orders[fill.taker_order_id]
        buyer, seller = (taker, maker) if fill.taker_side is Side.BUY else (maker, taker)
        value = fill.notional
        for order, fee, acc_delta in (
            (maker, fill.maker_fee, value * spec.maker_fee_numerator),
            (taker, fill.taker_fee, value * spec.taker_fee_numerator),
        ):
            order.filled += fill.quantity
            order.executed += value
            order.fees += fee
            order.fee_numerator += acc_delta
            done = fill.maker_remaining if order is maker else fill.taker_remaining
            self._transition(order, OrderEvent.FILL_PARTIAL if done else OrderEvent.FILL)
        buyer_hold = self.holds[buyer.hold_id]  # type: ignore[index]
        seller_hold = self.holds[seller.hold_id]  # type: ignore[index]
        settled = settlement.settle(
            spec,
            fill,
            buyer_hold_left=buyer_hold.remaining,
            seller_hold_left=seller_hold.remaining,
        )
        holds.apply(buyer_hold, HoldEvent.DRAW, settled.buyer_draw)
        holds.apply(seller_hold, HoldEvent.DRAW, settled.seller_draw)
        buyer_hold.spent = seller_hold.spent = True
        self.batch.holds[buyer_hold.id] = buyer_hold
        self.batch.holds[seller_hold.id] = seller_hold
        entry = self.batch.journal.defer(
            kind=settlement.TRADE,
            legs=settled.legs,
            reference=f"trade:{spec.symbol}:{fill.trade_id}",
        )
        price = spec.price(fill.price)
        quantity = spec.quantity(fill.quantity)
        for order, liquidity, fee in (
            (maker, "MAKER", settled.maker_fee),
            (taker, "TAKER", settled.taker_fee),
        ):
            self.batch.fills.append(
                (
                    fill.trade_id,
                    fill.seq,
                    order.id,
                    order.user_id,
                    order.side.value,
                    liquidity,
                    price,
                    quantity,
                    settled.value,
                    fee,
                    entry,  # its number in the batch's journal, until ``_write``
                )
            )
        self.batch.trades.append(
            {
                "tradeId": fill.trade_id,
                "price": str(price),
                "quantity": str(quantity),
                "takerSide": fill.taker_side.value,
                "sequence": fill.seq,
            }
        )
        paid, received, base = settled.buyer_paid, settled.seller_received, settled.base
        self.batch.positions.append((buyer.user_id, spec.base, base, paid, True))
        self.batch.positions.append((seller.user_id, spec.base, base, received, False))
        if spec.quote not in CASH:
            self.batch.positions.append((buyer.user_id, spec.quote, paid, settled.value, False))
            self.batch.positions.append((seller.user_id, spec.quote, received, settled.value, True))
        self.batch.levels.add((maker.side, maker.price))
        self.last_price = fill.price
        for order in (maker, taker):
            if order.list_role in OCO_ROLES:
                await self._cancel_siblings(order)
            if order.status is OrderStatus.FILLED:
                await self._finished(order)  # what a better price left of the hold is free

    async def _cancel_siblings(self, order: LiveOrder) -> None:
        assert self.book is not None
        for other in self._orders_in(self.index.siblings(order)):
            if other.list_role in OCO_ROLES and not other.final:
                if other.id in self.book:
                    await self._events(self.book.apply_consequence(Cancel(self.applied, other.id)))
                    other.reason = "OCO"
                else:
                    await self._end(other, OrderEvent.CANCEL, "OCO")

    async def _entry_done(self, entry: LiveOrder) -> None:
        siblings = self._orders_in(self.index.siblings(entry))
        exits = [o for o in siblings if o.status is OrderStatus.PENDING]
        if not exits:
            return
        if entry.filled == 0:
            for order in exits:
                await self._end(order, OrderEvent.CANCEL, "ENTRY_NOT_FILLED")
            return
        spec = self.spec
        for order in exits:
            order.quantity = entry.filled
        if exits[0].side is Side.SELL:
            currency, need = spec.base, entry.filled * spec.base_units_per_lot
        else:
            currency = spec.quote
            need = max(rules.hold_units(spec, Side.BUY, o.price, o.quantity) for o in exits)
        hold = HoldState(0, entry.user_id, currency, 0, 0)
        try:
            hold.id = await self._new_hold(hold, need)
        except InsufficientFunds:
            for order in exits:
                await self._end(order, OrderEvent.CANCEL, "INSUFFICIENT_FUNDS")
            return
        self.holds[hold.id] = hold
        for order in exits:
            order.hold_id = hold.id
            if order.list_role == ListRole.TAKE_PROFIT:
                self._transition(order, OrderEvent.RELEASE)
                await self._events(self.book.apply_consequence(self._place(self.applied, order)))  # type: ignore[union-attr]
            else:
                self._transition(order, OrderEvent.ARM)
        if self.last_price is not None:
            await self._observe([self.last_price])

    async def _new_hold(self, hold: HoldState, units: int) -> int:
        request = ledger.HoldRequest(
            hold.user_id,
            hold.currency,
            self._amount(hold.currency, units),
            reference=f"bracket:{self.market_id}",
        )
        await self.batch.journal.post(
            self.session, kind="HOLD", legs=holds.hold_legs(request), reference=request.reference
        )
        (hold_id,) = await holds.insert_holds(self.session, [request])
        hold.amount = hold.remaining = units
        return hold_id

    # -- triggers ---------------------------------------------------------------------

    async def _observe(self, prices: list[int]) -> None:
        """Fire the conditional orders these trade prices reach, each once (the trades
        of a fired order are observed in turn, through ``_events``)."""
        assert self.book is not None
        fired = [
            order
            for order in self._orders_in(self.index.conditional)
            if order.status is OrderStatus.UNTRIGGERED and self._fires(order, prices)
        ]
        for order in fired:
            if order.status is not OrderStatus.UNTRIGGERED:
                continue  # an OCO sibling fired first
            self._transition(order, OrderEvent.TRIGGER)
            if order.list_role in OCO_ROLES:
                await self._cancel_siblings(order)
            await self._events(self.book.apply_consequence(self._place(self.book.last_seq, order)))

    def _fires(self, order: LiveOrder, prices: list[int]) -> bool:
        if order.trigger is Trigger.TRAILING:
            assert order.trailing is not None
            state = order.trailing_state or rules.start_trailing(order.trailing)
            fired = False
            for price in prices:
                state, fired = rules.observe_trailing(order.side, order.trailing, state, price)
                if fired:
                    break
            if state != order.trailing_state:
                order.trailing_state = state
                self._touch(order)
            return fired
        valid = rules.ValidOrder(
            side=order.side,
            type=order.type,
            quantity=order.quantity,
            price=order.price,
            time_in_force=order.tif,
            stop_price=order.stop,
        )
        return any(rules.is_triggered(valid, price) for price in prices)

    async def _expire(self, now_ms: int) -> None:
        assert self.book is not None
        await self._events(self.book.apply_consequence(ExpireDue(self.applied, now_ms)))
        for order in self._orders_in(self.index.expiring):
            if (
                order.expires_ms is not None
                and order.expires_ms <= now_ms
                and order.status in (OrderStatus.UNTRIGGERED, OrderStatus.PENDING)
            ):
                await self._end(order, OrderEvent.EXPIRE, "GTD_EXPIRED")

    # -- writing ----------------------------------------------------------------------

    async def _write(self, pg: Any, batch: Batch) -> None:
        """The batch in two statements: lock what it settles (``_lock``), then write it
        all (``_WRITE_SQL``: journal, fills, orders, holds, positions, events, command
        outcomes, the market's sequence and price, the NOTIFY of what is applied)."""
        spec = self.spec
        now = self.rt.now()
        positions = await self._lock(pg, batch)
        # what another transaction made after _LOCK_SQL's snapshot is locked here
        await batch.journal.lock_and_settle(self.session)
        pending = batch.journal.take()
        journal = pending.parameters if pending else columns([], ledger.JOURNAL_PARAMETERS)
        events = self._events_of(batch, now)
        book_seq = self.applied if batch.levels else self.book_seq
        last_price = None if self.last_price is None else spec.price(self.last_price)
        assert self.book is not None
        rows = {
            "fills": batch.fills,
            "orders": self._order_rows(batch),
            "holds": [
                (
                    h.id,
                    self._amount(h.currency, h.amount),
                    self._amount(h.currency, h.remaining),
                    h.status,
                )
                for h in batch.holds.values()
            ],
            "positions": positions,
            "events": events,
            "outcomes": list(batch.outcomes.items()),
        }
        written = await pg.fetchrow(
            _WRITE_SQL,
            *journal,
            self.market_id,
            spec.quote,
            now,
            *(
                parameter
                for name, types in _WRITE_ARRAYS.items()
                for parameter in columns(rows[name], len(types))
            ),
            self.applied,
            book_seq,
            self.book.last_trade_id,
            last_price,
            spec.base,
            bool(batch.trades and spec.quote in CASH and last_price is not None),
            APPLIED_CHANNEL,
            f"{self.market_id}:{self.applied}",
        )
        if pending is not None:
            pending.check(written)
        if written["market"] != 1:
            raise InvariantViolation("another engine moved this market on")
        if any(written[name] != len(rows[name]) for name in _WRITE_ARRAYS):
            raise InvariantViolation(f"the engine's batch was not written exactly once: {written}")
        self.book_seq = book_seq

    async def _lock(self, pg: Any, batch: Batch) -> list[tuple[Any, ...]]:
        """Lock what the batch settles, in one statement (``_LOCK_SQL``): the accounts of
        its deferred journal entries (primary-key order, as every locker of accounts) and
        its positions, with the quote currency's USD rate; the positions' new rows."""
        journal = batch.journal
        refs = list(journal.unlocked())
        keys = sorted({(user, asset) for user, asset, *_ in batch.positions})
        if not refs and not keys:
            return []
        rows = await pg.fetch(
            _LOCK_SQL,
            *ledger.lock_accounts_parameters(refs),
            [k[0] for k in keys],
            [k[1] for k in keys],
            self.spec.quote,
        )
        journal.adopt(ledger.locked_accounts(r for r in rows if r["row"] == "account"))
        positions = [r for r in rows if r["row"] == "position"]
        have = {(r["user_id"], r["currency"]) for r in positions}
        if late := [k for k in keys if k not in have]:
            # made by another transaction after this statement's snapshot: locked now
            positions += await pg.fetch(_POSITIONS_SQL, [k[0] for k in late], [k[1] for k in late])
        current = {
            (r["user_id"], r["currency"]): Position(
                r["quantity"], r["cost_usd"], r["realized_pnl_usd"]
            )
            for r in positions
        }
        rate = next((r["balance"] for r in rows if r["row"] == "rate"), _D(0))
        for user, asset, quantity, quote_value, acquired in batch.positions:
            position = current[(user, asset)]
            usd = quote_value * rate
            if acquired:
                current[(user, asset)] = position.bought(quantity, usd)
            else:
                current[(user, asset)] = position.sold_tracked(quantity, usd)
        return [(k[0], k[1], (p := current[k]).quantity, p.cost, p.realized_pnl) for k in keys]

    def _order_rows(self, batch: Batch) -> list[tuple[Any, ...]]:
        spec = self.spec
        q = lambda units: _D(units).scaleb(-spec.quote_scale)  # noqa: E731
        rows = []
        for o in batch.orders.values():
            state = o.trailing_state
            rows.append(
                (
                    o.id,
                    o.status.value,
                    spec.quantity(o.quantity),
                    spec.quantity(o.filled),
                    q(o.executed),
                    q(o.fees),
                    _D(o.fee_numerator),
                    spec.price(o.price),
                    o.priority,
                    o.reason,
                    o.hold_id,
                    bool(state and state.active),
                    None if state is None or state.extreme is None else spec.price(state.extreme),
                )
            )
        return rows

    def _events_of(self, batch: Batch, now: datetime) -> list[tuple[str, int | None, str]]:
        """The batch's outbox events: book levels, trades, ticker, fills, order states."""
        assert self.book is not None
        spec = self.spec
        symbol = spec.symbol
        events: list[tuple[str, int | None, str]] = []
        if batch.levels:
            bids, asks = [], []
            for side, price in sorted(batch.levels, key=lambda x: (x[0].value, x[1])):
                lots, count = self.book.level(side, price)
                (bids if side is Side.BUY else asks).append(
                    [str(spec.price(price)), str(spec.quantity(lots)), count]
                )
            events.append(
                (
                    f"book:{symbol}",
                    None,
                    json.dumps(
                        {
                            "symbol": symbol,
                            "sequence": self.applied,
                            "previousSequence": self.book_seq,
                            "bids": bids,
                            "asks": asks,
                        }
                    ),
                )
            )
        at = now.isoformat()
        for trade in batch.trades:
            events.append(
                (f"trades:{symbol}", None, json.dumps({"symbol": symbol, "at": at, **trade}))
            )
        if batch.trades:
            best_bid, best_ask = self.book.best_bid, self.book.best_ask
            events.append(
                (
                    f"ticker:{symbol}",
                    None,
                    json.dumps(
                        {
                            "symbol": symbol,
                            "last": str(spec.price(self.last_price)) if self.last_price else None,
                            "bestBid": None if best_bid is None else str(spec.price(best_bid)),
                            "bestAsk": None if best_ask is None else str(spec.price(best_ask)),
                            "sequence": self.applied,
                            "at": at,
                        }
                    ),
                )
            )
        for fill in batch.fills:
            trade_id, seq, order_id, user_id, side, liquidity, price, qty, value, fee, _ = fill
            events.append(
                (
                    "fills",
                    user_id,
                    json.dumps(
                        {
                            "tradeId": trade_id,
                            "orderId": order_id,
                            "symbol": symbol,
                            "side": side,
                            "liquidity": liquidity,
                            "price": str(price),
                            "quantity": str(qty),
                            "quoteAmount": str(value),
                            "fee": str(fee),
                            "feeCurrency": spec.quote,
                            "sequence": seq,
                            "at": at,
                        }
                    ),
                )
            )
        for order in batch.orders.values():
            # A refusal on arrival is the placing caller's error, not an event; a
            # conditional order refused once it fired has no caller waiting: announce it.
            refused_on_arrival = order.status is OrderStatus.REJECTED and order.trigger is None
            if order.changed and not refused_on_arrival:
                events.append(
                    (
                        "orders",
                        order.user_id,
                        json.dumps(
                            {
                                "orderId": order.id,
                                "symbol": symbol,
                                "side": order.side.value,
                                "status": order.status.value,
                                "filledQuantity": str(spec.quantity(order.filled)),
                                "quantity": str(spec.quantity(order.quantity)),
                                "reason": order.reason,
                                "sequence": self.applied,
                                "at": at,
                            }
                        ),
                    )
                )
            order.changed = False
        return events


class EngineSet:
    """One ``MarketEngine`` per market, as tasks of this process."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.engines: dict[int, MarketEngine] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        async with self.rt.engine.connect() as connection:
            markets = await connection.execute(text("SELECT id, symbol FROM markets ORDER BY id"))
            for market_id, symbol in markets:
                self.engines[market_id] = self.rt.matching[symbol] = MarketEngine(
                    self.rt, market_id
                )
        for market_id, engine in self.engines.items():
            self._tasks.append(asyncio.create_task(engine.run(), name=f"engine-{market_id}"))

    async def wait_owned(self, timeout: float = 10) -> None:  # noqa: ASYNC109
        deadline = asyncio.get_running_loop().time() + timeout
        while not all(e.owner and e.book is not None for e in self.engines.values()):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("engines did not take their markets")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.rt.matching.clear()
        await stop_tasks(self._tasks)
