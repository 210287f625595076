"""Trading, the request side: place, cancel and amend orders, order lists, the kill switch.

Each mutation validates, applies pre-trade risk, holds the funds and stores its command
in sequence for the market's engine (``app.trading.engine``), all in one transaction:

    lock the user row      serialises one user's trading (open-order count, kill switch,
                           clientOrderId idempotency)
    validate + risk        ``app.trading.domain.orders.validate_order``, then notional / open orders
    hold                   ledger AVAILABLE -> HELD, recorded as a PENDING hold
    insert the order       NEW (or UNTRIGGERED for a conditional order, PENDING for the
                           exits of a bracket)
    sequence               UPDATE markets SET next_seq = next_seq + n: the row lock makes
                           commands commit in sequence order; taken last, held briefly
    NOTIFY engine_wake     delivered at commit

then waits (``TRADING_WAIT_SECONDS``) until the engine has applied the command and answers
with the order as the engine left it; a refusal only the book can decide (fill-or-kill,
post-only) becomes its typed error, with the hold already released by the engine. If the
engine is slow the order is returned as NEW and goes on; ``myOrders`` reports the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from app.core.coalesce import Coalescer
from app.core.errors import (
    InsufficientFunds,
    InvariantViolation,
    NotAuthenticated,
    UserError,
    ValidationFailed,
)
from app.core.logs import request_id_var
from app.events.engine_signals import WAKE_CHANNEL
from app.ledger import holds
from app.ledger import journal as ledger
from app.runtime import Runtime
from app.trading import markets
from app.trading.domain import orders as rules
from app.trading.domain.errors import (
    ClientOrderIdReused,
    InvalidAmend,
    InvalidOrder,
    MarketHalted,
    OrderNotAmendable,
    OrderNotCancellable,
    OrderNotFound,
    OrderTooLarge,
    TooManyOpenOrders,
    TradingDisabled,
)
from app.trading.domain.matching import RejectReason, rejection_error
from app.trading.domain.orders import (
    FINAL_STATUSES,
    LIVE_STATUSES,
    OrderEvent,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    ValidOrder,
)
from app.trading.markets import MarketRow
from db.models import Order, OrderList
from db.queries import lock_user, rows_by_ids
from db.raw import columns, driver, unnest_parameters
from db.session import in_transaction

MAX_CLIENT_ID = 64
RESTING = frozenset({OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED})
_LIVE = [s.value for s in LIVE_STATUSES]


class ListKind:
    OCO = "OCO"
    BRACKET = "BRACKET"


class ListRole:
    LEG = "LEG"  # an OCO leg
    ENTRY = "ENTRY"
    TAKE_PROFIT = "TAKE_PROFIT"
    STOP_LOSS = "STOP_LOSS"


# The roles whose first fill or trigger cancels the others of their list.
OCO_ROLES = frozenset({ListRole.LEG, ListRole.TAKE_PROFIT, ListRole.STOP_LOSS})


@dataclass(frozen=True, slots=True)
class Bracket:
    """An entry, then (once it has filled) a take-profit LIMIT and a stop-loss, as OCO."""

    entry: OrderRequest
    take_profit_price: Decimal
    stop_loss_price: Decimal
    stop_loss_limit_price: Decimal | None = None  # STOP_LIMIT instead of STOP_MARKET


@dataclass(frozen=True, slots=True)
class PlacedList:
    list: OrderList
    orders: list[Order]


# --- helpers ---------------------------------------------------------------------------


def check_client_id(value: str | None, field: str = "clientOrderId") -> str:
    if value is None:
        return uuid.uuid4().hex
    value = value.strip()
    if not value or len(value) > MAX_CLIENT_ID or not value.isprintable():
        raise ValidationFailed(f"At most {MAX_CLIENT_ID} printable characters", field=field)
    return value


def _plain(value: Any) -> Any:
    """``value`` as JSON, equal values alike (0.10 == 0.1), nested ones too (a bracket's
    entry)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return str(value.normalize())
    return str(value) if value is not None and not isinstance(value, bool | int) else value


def _digest(*parts: Any) -> str:
    body = json.dumps(
        [_plain(asdict(p) if hasattr(p, "__dataclass_fields__") else p) for p in parts],
        sort_keys=True,
    )
    return hashlib.sha256(body.encode()).hexdigest()


async def _lock_trader(session: AsyncSession, user_id: int | None) -> int:
    if user_id is None:
        raise NotAuthenticated()
    user = await lock_user(session, user_id)
    if user is None:
        raise NotAuthenticated()
    if not user.trading_enabled:
        raise TradingDisabled()
    return user_id


def _check_risk(
    rt: Runtime,
    market: MarketRow,
    orders: Sequence[ValidOrder],
    *,
    usd_rate: Decimal,
    open_orders: int,
) -> None:
    """Maximum order value (USD, at the order's price) and maximum open orders
    (``open_orders``: the user's live orders before these)."""
    limit = rt.settings.trading_max_order_notional_usd
    for order in orders:
        units = market.spec.notional_units(order.price, order.quantity)
        if market.spec.quote_amount(units) * usd_rate > limit:
            raise OrderTooLarge(
                f"An order is worth at most {limit.normalize():f} USD", field="quantity"
            )
    if open_orders + len(orders) > rt.settings.trading_max_open_orders:
        raise TooManyOpenOrders(
            f"At most {rt.settings.trading_max_open_orders} open orders", field="quantity"
        )


async def _open_orders(session: AsyncSession, user_id: int) -> int:
    connection = await driver(session)
    return await connection.fetchval(
        "SELECT count(*) FROM orders WHERE user_id = $1 AND status = ANY($2::text[])",
        user_id,
        _LIVE,
    )


def _hold_amount(market: MarketRow, orders: Sequence[ValidOrder]) -> tuple[str, Decimal]:
    """One hold for orders that share it (an OCO's legs): the largest of their needs."""
    needs = [rules.hold_for(market.spec, order) for order in orders]
    currencies = {currency for currency, _ in needs}
    if len(currencies) != 1:
        raise InvalidOrder("The orders of a list must hold the same currency", field="side")
    return needs[0][0], max(amount for _, amount in needs)


def _order_row(
    *,
    user_id: int,
    market: MarketRow,
    request: OrderRequest,
    valid: ValidOrder,
    client_order_id: str,
    digest: str,
    status: OrderStatus,
    list_id: int | None = None,
    list_role: str | None = None,
) -> Order:
    spec = market.spec
    now_status = status.value
    return Order(
        user_id=user_id,
        market_id=market.id,
        client_order_id=client_order_id,
        request_hash=digest,
        list_id=list_id,
        list_role=list_role,
        side=valid.side.value,
        type=valid.type.value,
        time_in_force=valid.time_in_force.value,
        post_only=valid.post_only,
        status=now_status,
        quantity=spec.quantity(valid.quantity),
        price=request.price,
        book_price=spec.price(valid.price),
        stop_price=None if valid.stop_price is None else spec.price(valid.stop_price),
        trailing_offset=request.trailing_offset if valid.trailing else None,
        trailing_offset_type=valid.trailing.offset_type.value if valid.trailing else None,
        activation_price=(
            spec.price(valid.trailing.activation)
            if valid.trailing and valid.trailing.activation is not None
            else None
        ),
        trailing_active=bool(valid.trailing and valid.trailing.activation is None),
        expires_at=valid.expires_at,
    )


async def _hold(
    session: AsyncSession, user_id: int, currency: str, amount: Decimal, reference: str
) -> int:
    try:
        hold = await holds.place_hold(
            session, user_id=user_id, currency=currency, amount=amount, reference=reference
        )
    except InsufficientFunds as error:
        raise _insufficient(currency, amount) from error
    return hold.id


def _insufficient(currency: str, amount: Decimal) -> InsufficientFunds:
    return InsufficientFunds(
        f"Insufficient {currency} balance: the order needs {amount.normalize():f}",
        field="quantity",
    )


_ENQUEUE_SQL = """
    WITH seq AS (
        UPDATE markets SET next_seq = next_seq + cardinality($2::text[]) WHERE id = $1
        RETURNING next_seq
    ), commands AS (
        INSERT INTO order_commands (market_id, seq, kind, order_id, user_id, args)
        SELECT $1, seq.next_seq - cardinality($2::text[]) + c.n, c.kind, c.order_id,
               c.user_id, c.args
        FROM seq, unnest($2::text[], $3::bigint[], $4::bigint[], $5::jsonb[])
             WITH ORDINALITY AS c(kind, order_id, user_id, args, n)
        RETURNING seq
    ), wake AS (
        SELECT pg_notify($6, $1::text)
    ), held AS (
        UPDATE orders o SET hold_id = h.hold_id
        FROM unnest($7::bigint[], $8::bigint[]) AS h(order_id, hold_id)
        WHERE o.id = h.order_id
        RETURNING o.id
    )
    SELECT (SELECT max(seq) FROM commands) AS last, (SELECT count(*) FROM wake) AS woken,
           (SELECT count(*) FROM held) AS held
"""


async def enqueue(
    session: AsyncSession,
    market_id: int,
    commands: Sequence[tuple[str, int | None, int, dict]],
    *,
    holds: Sequence[tuple[Order, int]] = (),
) -> int:
    """Store (kind, order id, user id, args) commands in sequence and wake the engine
    (NOTIFY, delivered at commit); the last seq. One statement, and the last of its
    transaction: the markets row lock that orders the commands is held only from here
    to COMMIT. ``holds``: (order, hold id) pairs to link in the same statement."""
    for order, hold_id in holds:
        set_committed_value(order, "hold_id", hold_id)
    connection = await driver(session)
    row = await connection.fetchrow(
        _ENQUEUE_SQL,
        market_id,
        [kind for kind, _, _, _ in commands],
        [order_id for _, order_id, _, _ in commands],
        [user_id for _, _, user_id, _ in commands],
        [json.dumps(args) for _, _, _, args in commands],
        WAKE_CHANNEL,
        [order.id for order, _ in holds],
        [hold_id for _, hold_id in holds],
    )
    return int(row["last"])


def _first_command(valid: ValidOrder) -> tuple[OrderStatus, str]:
    if valid.trigger is None:
        return OrderStatus.NEW, "PLACE"
    return rules.apply(OrderStatus.NEW, OrderEvent.ARM), "ARM"


async def _existing(session: AsyncSession, user_id: int, client_order_id: str) -> Order | None:
    return await session.scalar(
        select(Order).where(Order.user_id == user_id, Order.client_order_id == client_order_id)
    )


async def _after_engine(
    rt: Runtime, market_id: int, seq: int, order_ids: Sequence[int]
) -> list[Order]:
    """Wait until the engine has applied ``seq``; the orders as it left them (read
    together with those of the other calls waiting at the same time: one query)."""
    await rt.applied.wait(market_id, seq, rt.settings.trading_wait_seconds)
    reads = rt.coalescer("read_orders", lambda: Coalescer(_read_orders(rt), max_batch=500))
    return list(await asyncio.gather(*(reads.submit(order_id) for order_id in order_ids)))


def _read_orders(rt: Runtime) -> Callable[[list[int]], Awaitable[list[Order | BaseException]]]:
    async def run(order_ids: list[int]) -> list[Order | BaseException]:
        async with rt.reads() as session:
            rows = await rows_by_ids(session, Order, order_ids)
        return [
            row if row is not None else InvariantViolation(f"order {order_id} missing")
            for order_id, row in zip(order_ids, rows, strict=True)
        ]

    return run


async def get_orders(rt: Runtime, order_ids: Sequence[int]) -> list[Order]:
    async with rt.reads() as session:
        rows = await rows_by_ids(session, Order, order_ids)
    if None in rows:
        raise InvariantViolation(f"orders missing: {order_ids}")
    return rows  # type: ignore[return-value]


def _raise_if_refused(order: Order) -> None:
    if order.status == OrderStatus.REJECTED.value and order.reason:
        try:
            raise rejection_error(RejectReason(order.reason))
        except ValueError:
            raise InvalidOrder(f"The order was rejected: {order.reason}") from None


# --- placing ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Placement:
    """One ``place_order`` call, as it waits for its batch."""

    user_id: int | None
    symbol: str
    request: OrderRequest
    client_order_id: str
    digest: str
    request_id: str | None


@dataclass(frozen=True, slots=True)
class _Placed:
    order_id: int
    market_id: int
    seq: int | None  # the command's; None for a retry answered with the order it placed
    order: Order | None = None  # a retry's, as read


async def place_order(
    rt: Runtime,
    *,
    user_id: int | None,
    symbol: str,
    request: OrderRequest,
    client_order_id: str | None = None,
) -> Order:
    """Place one order; a retry with the same ``client_order_id`` returns the same order.

    Concurrent calls in this process share a transaction (``place_orders``, through a
    ``Coalescer``: group commit); each still gets its own answer or typed error."""
    client_order_id = check_client_id(client_order_id)
    symbol = symbol.upper()
    placement = _Placement(
        user_id=user_id,
        symbol=symbol,
        request=request,
        client_order_id=client_order_id,
        digest=_digest(symbol, request),
        request_id=request_id_var.get(),
    )
    placed = await _placements(rt).submit(placement)
    if placed.order is not None:
        order = placed.order
    else:
        (order,) = await _after_engine(rt, placed.market_id, placed.seq, [placed.order_id])
    _raise_if_refused(order)
    return order


def _placements(rt: Runtime) -> Coalescer[_Placement, _Placed]:
    def make() -> Coalescer[_Placement, _Placed]:
        async def run(items: list[_Placement]) -> list[_Placed | BaseException]:
            return await place_orders(rt, items)

        return Coalescer(
            run,
            max_batch=rt.settings.trading_placement_batch,
            concurrency=rt.settings.trading_placement_concurrency,
        )

    return rt.coalescer("place_orders", make)


async def place_orders(rt: Runtime, items: Sequence[_Placement]) -> list[_Placed | BaseException]:
    """Place many orders in one transaction: per item the order (or the one a retry of its
    clientOrderId placed) or its typed error, decided as ``place_order`` alone would. A
    second item with the same user and clientOrderId goes in a transaction after the
    first's, as a retry of it. If the transaction fails as a whole (say another process
    placed the same clientOrderId at the same moment), each item is tried on its own."""
    first: list[int] = []
    again: list[int] = []
    seen: set[tuple[int | None, str]] = set()
    for i, item in enumerate(items):
        key = (item.user_id, item.client_order_id)
        (again if key in seen else first).append(i)
        seen.add(key)
    results: list[_Placed | BaseException] = [InvariantViolation("not placed")] * len(items)
    chosen = [items[i] for i in first]
    try:
        answers = await _place_and_match(rt, chosen)
    except (UserError, IntegrityError) as error:
        if len(chosen) > 1:
            answers = [(await place_orders(rt, [item]))[0] for item in chosen]
        elif isinstance(error, IntegrityError):
            # the same clientOrderId, placed by another process since this one looked:
            # once more, and it is a retry of that order
            answers = await _place_and_match(rt, chosen)
        else:
            answers = [error]
    for i, answer in zip(first, answers, strict=True):
        results[i] = answer
    if again:
        for i, answer in zip(again, await place_orders(rt, [items[i] for i in again]), strict=True):
            results[i] = answer
    return results


class Matcher(Protocol):
    """What placing needs of a market's engine running in this process
    (``app.trading.engine.MarketEngine``)."""

    market_id: int
    lock: asyncio.Lock
    owner: bool
    dirty: bool
    applied: int
    wake: asyncio.Event

    async def apply_placed(self, session: AsyncSession, placed: Sequence[Any]) -> None: ...

    def settled(self) -> None: ...


async def _place_and_match(
    rt: Runtime, items: Sequence[_Placement]
) -> list[_Placed | BaseException]:
    """``_place_all`` in one transaction. Where this process runs the engine of an item's
    market, it matches the orders in that same transaction and reads them back in it: one
    transaction instead of two, no NOTIFY either way.

    The transaction takes the engines' locks (in market order) once it has locked its
    traders and before it locks any account: an engine's batch, holding its lock, may
    wait for accounts (never for a user's row), so a transaction must not hold accounts
    while it waits for an engine. Meanwhile the next batch can lock its traders and read
    its markets. The locks are held until COMMIT or ROLLBACK; an engine that applied
    commands is ``settled`` before its lock is let go if they committed."""
    here = rt.matching if rt.settings.trading_match_on_placement else {}
    engines = sorted(
        {here[item.symbol] for item in items if item.symbol in here},
        key=lambda m: m.market_id,
    )
    matched: list[Matcher] = []
    attempt: list[contextlib.AsyncExitStack] = []

    def each_attempt() -> contextlib.AsyncExitStack:
        attempt[:] = [contextlib.AsyncExitStack()]
        return attempt[0]

    def done(engine: Matcher, committed: bool) -> None:
        if committed and engine in matched:
            engine.settled()
        elif engine.dirty:  # what it applied did not commit: rebuild now
            engine.wake.set()

    async def lock_engines() -> list[Matcher]:
        locks = attempt[0]
        for engine in engines:
            await locks.enter_async_context(engine.lock)
            locks.push(lambda kind, *_, engine=engine: done(engine, kind is None))
        return [engine for engine in engines if engine.owner]

    return await in_transaction(
        rt.sessions,
        lambda session: _place_all(rt, session, items, lock_engines, matched),
        around=each_attempt,
    )


# ``generic``: the rest of the placement transaction (markets, accounts, ``_PLACE_SQL``)
# runs on generic plans. Those statements come again and again with arrays of other
# lengths, and under the default plan_cache_mode PostgreSQL plans each execution afresh
# (a custom plan), which cost more than running them (``_PLACE_SQL``: ~0.4 ms of ~1 ms).
# Set for the transaction only (``is_local``), from its first statement (no extra round
# trip), which itself is planned before it takes effect: its live-orders count keeps the
# partial index that a custom plan can prove from ``$3``.
_TRADERS_SQL = """
    WITH generic AS MATERIALIZED (
        SELECT set_config('plan_cache_mode', 'force_generic_plan', true) AS mode
    )
    SELECT w.n, u.trading_enabled,
           (SELECT o.id FROM orders o
            WHERE o.user_id = u.id AND o.client_order_id = w.client_order_id) AS existing_id,
           (SELECT count(*) FROM orders o
            WHERE o.user_id = u.id AND o.status = ANY($3::text[])) AS open_orders,
           nextval(pg_get_serial_sequence('orders', 'id')) AS order_id,
           nextval(pg_get_serial_sequence('holds', 'id')) AS hold_id
    FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS w(user_id, client_order_id, n)
    JOIN users u ON u.id = w.user_id
    CROSS JOIN generic
    ORDER BY u.id
    FOR NO KEY UPDATE OF u
"""


@dataclass(slots=True)
class _Candidate:
    index: int
    item: _Placement
    user_id: int
    market: MarketRow
    valid: ValidOrder
    hold: ledger.HoldRequest
    order_id: int  # taken for it with the traders' lock
    hold_id: int


async def _place_all(
    rt: Runtime,
    session: AsyncSession,
    items: Sequence[_Placement],
    lock_engines: Callable[[], Awaitable[list[Matcher]]],
    matched: list[Matcher],
) -> list[_Placed | BaseException]:
    """``place_orders``' transaction, for items of distinct (user, clientOrderId):

    lock the traders       one statement, in id order (as ``lock_user``): kill switch,
                           the order a retried clientOrderId placed, live orders; an
                           order id and a hold id per item
    markets, USD rates     one statement
    validate + risk        per item, in memory
    engines' locks         ``lock_engines()``: the locks of the engines this process runs
                           for these markets (``_place_and_match``); the owned ones
    lock the accounts      AVAILABLE and HELD of every (user, currency), in id order;
                           a missing HELD one made only if AVAILABLE can fund a hold
    funds                  per item in order, against what the ones before it took
    write                  one statement (``_PLACE_SQL``): the HOLD journal entries,
                           holds, orders, their commands in sequence per market (the
                           markets rows locked last) and the engines' wake-up
    match                  where one of those engines is current: its batch on this
                           transaction (lock, write), then the orders as it left them

    Five round trips with BEGIN and COMMIT, however many orders (three more if matched):
    under load each one waits its turn on the event loop, so their number is most of a
    batch's time. ``matched``: the engines that applied commands in this transaction.
    """
    results: list[_Placed | BaseException] = [InvariantViolation("not placed")] * len(items)
    matched.clear()  # a retried transaction starts again
    connection = await driver(session)
    traders = {
        row["n"] - 1: row
        for row in await connection.fetch(
            _TRADERS_SQL,
            [item.user_id for item in items],
            [item.client_order_id for item in items],
            _LIVE,
        )
    }
    retried = [t["existing_id"] for t in traders.values() if t["existing_id"] is not None]
    existing = (
        {row.id: row for row in await rows_by_ids(session, Order, retried) if row is not None}
        if retried
        else {}
    )
    found = await markets.markets_with_quote_rates(session, [item.symbol for item in items])
    open_orders = {items[i].user_id: int(t["open_orders"]) for i, t in traders.items()}
    candidates: list[_Candidate] = []
    for i, item in enumerate(items):
        trader = traders.get(i)
        try:
            if trader is None:
                raise NotAuthenticated()
            if not trader["trading_enabled"]:
                raise TradingDisabled()
            if trader["existing_id"] is not None:
                order = existing[trader["existing_id"]]
                if order.request_hash != item.digest:
                    raise ClientOrderIdReused(field="clientOrderId")
                results[i] = _Placed(order.id, order.market_id, None, order)
                continue
            if item.symbol not in found:
                raise markets.unknown_market(item.symbol)
            market, usd_rate = found[item.symbol]
            valid = rules.validate_order(
                item.request,
                market.spec,
                now=rt.now(),
                reference_price=market.last_price,
                price_band_bps=rt.settings.trading_price_band_bps,
            )
            user_id = int(item.user_id)  # type: ignore[arg-type]  # the trader row exists
            _check_risk(
                rt,
                market,
                [valid],
                usd_rate=usd_rate,
                open_orders=open_orders[user_id],
            )
        except UserError as error:
            results[i] = error
            continue
        open_orders[user_id] += 1
        currency, amount = rules.hold_for(market.spec, valid)
        hold = ledger.HoldRequest(
            user_id, currency, amount, f"order:{trader['order_id']}", item.request_id
        )
        candidates.append(
            _Candidate(i, item, user_id, market, valid, hold, trader["order_id"], trader["hold_id"])
        )
    if not candidates:
        return results
    matchers = await lock_engines()
    accounts, affordable = await ledger.lock_for_holds(session, [c.hold for c in candidates])
    funded = []
    for candidate, ok in zip(candidates, affordable, strict=True):
        if ok:
            funded.append(candidate)
        else:
            results[candidate.index] = _insufficient(candidate.hold.currency, candidate.hold.amount)
    if not funded:
        return results
    journal = ledger.JournalBatch()
    journal.adopt(accounts)
    rows = []
    for c in funded:
        await journal.post(
            session,
            kind="HOLD",
            legs=holds.hold_legs(c.hold),
            reference=c.hold.reference,
            request_id=c.hold.request_id,
        )
        status, command = _first_command(c.valid)
        order = _order_row(
            user_id=c.user_id,
            market=c.market,
            request=c.item.request,
            valid=c.valid,
            client_order_id=c.item.client_order_id,
            digest=c.item.digest,
            status=status,
        )
        columns_of_order = (getattr(order, name) for name in _PLACED_COLUMNS[1:-1])
        rows.append(
            (c.order_id, *columns_of_order, c.hold_id, c.hold.currency, c.hold.amount, command)
        )
    pending = journal.take()
    assert pending is not None  # one HOLD entry per funded order
    connection = await driver(session)
    here = {m.market_id: m for m in matchers if not m.dirty}
    written = await connection.fetch(
        _PLACE_SQL,
        *pending.parameters,
        *columns(rows),
        WAKE_CHANNEL,
        list(here),
        [m.applied for m in here.values()],
    )
    pending.check(written[0])
    if written[0]["orders"] != len(funded) or len(written) != len(funded):
        raise InvariantViolation("orders were not written exactly once")
    seqs = {row["order_id"]: row["seq"] for row in written}
    answers = await _match_here(session, here, written, matched)
    for c in funded:
        results[c.index] = _Placed(
            c.order_id, c.market.id, seqs[c.order_id], answers.get(c.order_id)
        )
    return results


async def _match_here(
    session: AsyncSession, here: dict[int, Matcher], written: list[Any], matched: list[Matcher]
) -> dict[int, Order]:
    """Where this process runs a market's engine and it is current (``applied_seq``), the
    engine applies the commands just stored in this transaction (``_PLACE_SQL`` woke
    nobody for them); their orders as it left them, by id. ``matched``: those engines."""
    mine: dict[int, list[Any]] = {}
    for row in written:
        market_id = row["market_id"]
        if market_id in here and row["applied_seq"] == here[market_id].applied:
            mine.setdefault(market_id, []).append(row)
    for market_id, rows in mine.items():
        matched.append(here[market_id])
        await here[market_id].apply_placed(session, rows)
    if not mine:
        return {}
    ids = [row["order_id"] for row in written if row["market_id"] in mine]
    return {order.id: order for order in await rows_by_ids(session, Order, ids) if order}


# the orders' columns as _PLACE_SQL takes them (id first, hold_id last)
_PLACED_COLUMNS = (
    "id", "user_id", "market_id", "client_order_id", "request_hash", "side", "type",
    "time_in_force", "post_only", "status", "quantity", "price", "book_price", "stop_price",
    "trailing_offset", "trailing_offset_type", "activation_price", "trailing_active",
    "expires_at", "hold_id",
)  # fmt: skip
_PLACED_TYPES = (
    "bigint", "bigint", "bigint", "text", "text", "text", "text", "text", "boolean", "text",
    "numeric", "numeric", "numeric", "numeric", "numeric", "text", "numeric", "boolean",
    "timestamptz", "bigint",
)  # fmt: skip


# An order as the matching engine loads it (``o`` orders, ``h`` its hold, ``c`` the hold's
# currency): read by the engine, and returned by ``_PLACE_SQL`` for it
ORDER_COLUMNS = """
    o.id, o.user_id, o.side, o.type, o.status, o.time_in_force, o.post_only, o.quantity,
    o.filled_quantity, o.executed_value, o.fees, o.fee_numerator, o.book_price,
    o.stop_price, o.trailing_offset, o.trailing_offset_type, o.activation_price,
    o.trailing_active, o.trailing_extreme, o.expires_at, o.hold_id, o.list_id, o.list_role,
    o.priority, o.reason, h.user_id AS hold_user, h.currency AS hold_currency,
    h.amount AS hold_amount, h.remaining AS hold_remaining, h.status AS hold_status,
    c.scale AS hold_scale
"""
# Everything a batch of orders writes, in one statement after the journal's CTEs (the
# HOLD entries, $1..$11): the holds and the orders (ids taken with the traders' lock),
# their commands in sequence per market, the engines' wake-up. The markets rows locked
# here (the sequence) are held only to COMMIT. No wake-up for a market whose engine runs
# in this process and applies them in this transaction: the last two arrays, (market id,
# the seq its engine has applied); it does unless ``markets.applied_seq`` says otherwise.
_P = ledger.JOURNAL_PARAMETERS + 1  # the first of this statement's own parameters
_C = _P + len(_PLACED_COLUMNS)  # hold currency, hold amount, command kind; then the channel
_PLACE_SQL = f"""
    WITH {ledger.JOURNAL_CTES},
    placed AS (
        SELECT * FROM unnest({unnest_parameters(_P, _PLACED_TYPES)}, ${_C}::text[],
                             ${_C + 1}::numeric[], ${_C + 2}::text[])
        WITH ORDINALITY AS p({", ".join(_PLACED_COLUMNS)}, hold_currency, hold_amount, kind, n)
    ), new_holds AS (
        INSERT INTO holds (id, user_id, currency, amount, remaining, reference, status)
        OVERRIDING SYSTEM VALUE
        SELECT hold_id, user_id, hold_currency, hold_amount, hold_amount, 'order:' || id,
               'PENDING'
        FROM placed
        RETURNING *
    ), new_orders AS (
        INSERT INTO orders ({", ".join(_PLACED_COLUMNS)})
        OVERRIDING SYSTEM VALUE
        SELECT {", ".join(_PLACED_COLUMNS)} FROM placed ORDER BY n
        RETURNING *
    ), per_market AS (
        SELECT market_id, count(*) AS placed FROM placed GROUP BY market_id
    ), seq AS (
        UPDATE markets m SET next_seq = m.next_seq + per_market.placed
        FROM per_market WHERE m.id = per_market.market_id
        RETURNING m.id, m.next_seq - per_market.placed AS before, m.applied_seq
    ), commands AS (
        INSERT INTO order_commands (market_id, seq, kind, order_id, user_id, args)
        SELECT p.market_id, seq.before + row_number() OVER (PARTITION BY p.market_id ORDER BY p.n),
               p.kind, p.id, p.user_id, '{{}}'::jsonb
        FROM placed p JOIN seq ON seq.id = p.market_id
        RETURNING market_id, order_id, seq, kind
    ), wake AS (
        SELECT pg_notify(${_C + 3}, s.id::text)
        FROM seq s LEFT JOIN unnest(${_C + 4}::bigint[], ${_C + 5}::bigint[]) AS here(id, applied)
          ON here.id = s.id
        WHERE here.applied IS DISTINCT FROM s.applied_seq
    )
    SELECT cmd.market_id, cmd.order_id, cmd.seq, cmd.kind, s.applied_seq, {ORDER_COLUMNS},
           {ledger.JOURNAL_COUNTS},
           (SELECT count(*) FROM new_holds) AS holds, (SELECT count(*) FROM new_orders) AS orders,
           (SELECT count(*) FROM wake) AS woken
    FROM commands cmd
    JOIN seq s ON s.id = cmd.market_id
    JOIN new_orders o ON o.id = cmd.order_id
    JOIN new_holds h ON h.id = o.hold_id
    JOIN currencies c ON c.code = h.currency
    ORDER BY cmd.seq
"""  # noqa: S608 (no input in the text: column names and parameter numbers)


async def place_order_list(
    rt: Runtime,
    *,
    user_id: int | None,
    symbol: str,
    client_list_id: str | None,
    oco: Sequence[OrderRequest] | None = None,
    bracket: Bracket | None = None,
) -> PlacedList:
    """An OCO (two orders of the same side and quantity sharing one hold: the first to
    fill or trigger cancels the other) or a BRACKET (an entry; once it has filled, a
    take-profit LIMIT and a stop-loss STOP as an OCO for the filled quantity)."""
    if (oco is None) == (bracket is None):
        raise InvalidOrder("Give an OCO or a bracket", field="kind")
    client_list_id = check_client_id(client_list_id, "clientListId")
    kind = ListKind.OCO if oco is not None else ListKind.BRACKET
    digest = _digest(symbol.upper(), kind, *(oco or ()), *([bracket] if bracket else []))

    async def work(session: AsyncSession) -> tuple[OrderList, list[Order], int | None]:
        uid = await _lock_trader(session, user_id)
        existing = await session.scalar(
            select(OrderList).where(
                OrderList.user_id == uid, OrderList.client_list_id == client_list_id
            )
        )
        if existing is not None:
            if existing.request_hash != digest:
                raise ClientOrderIdReused(
                    "This clientListId was used for a different list", field="clientListId"
                )
            rows = (
                await session.scalars(
                    select(Order).where(Order.list_id == existing.id).order_by(Order.id)
                )
            ).all()
            return existing, list(rows), None
        market, usd_rate = await markets.market_with_quote_rate(session, symbol)
        order_list = OrderList(
            user_id=uid,
            market_id=market.id,
            kind=kind,
            client_list_id=client_list_id,
            request_hash=digest,
        )
        session.add(order_list)
        await session.flush()
        if oco is not None:
            plan = _plan_oco(rt, market, oco)
        else:
            assert bracket is not None
            plan = _plan_bracket(rt, market, bracket)
        _check_risk(
            rt,
            market,
            [valid for _, valid, _, _ in plan],
            usd_rate=usd_rate,
            open_orders=await _open_orders(session, uid),
        )
        rows = []
        for i, (request, valid, role, status) in enumerate(plan):
            row = _order_row(
                user_id=uid,
                market=market,
                request=request,
                valid=valid,
                client_order_id=f"{client_list_id}:{i}",
                digest=digest,
                status=status,
                list_id=order_list.id,
                list_role=role,
            )
            session.add(row)
            rows.append(row)
        await session.flush()
        funded = [
            (v, row)
            for (_, v, _, status), row in zip(plan, rows, strict=True)
            if status is not OrderStatus.PENDING
        ]
        currency, amount = _hold_amount(market, [v for v, _ in funded])
        hold_id = await _hold(session, uid, currency, amount, f"order-list:{order_list.id}")
        commands = [
            ("PLACE" if row.status == "NEW" else "ARM", row.id, uid, {}) for _, row in funded
        ]
        seq = await enqueue(
            session, market.id, commands, holds=[(row, hold_id) for _, row in funded]
        )
        return order_list, rows, seq

    order_list, rows, seq = await in_transaction(rt.sessions, work)
    ids = [row.id for row in rows]
    if seq is not None:
        rows = await _after_engine(rt, order_list.market_id, seq, ids)
    for row in rows:
        if row.list_role in (ListRole.ENTRY, ListRole.LEG):
            _raise_if_refused(row)
    return PlacedList(order_list, rows)


_Plan = list[tuple[OrderRequest, ValidOrder, str, OrderStatus]]


def _validate(
    rt: Runtime, market: MarketRow, request: OrderRequest, band: bool = True
) -> ValidOrder:
    return rules.validate_order(
        request,
        market.spec,
        now=rt.now(),
        reference_price=market.last_price,
        price_band_bps=rt.settings.trading_price_band_bps if band else None,
    )


def _plan_oco(rt: Runtime, market: MarketRow, legs: Sequence[OrderRequest]) -> _Plan:
    if len(legs) != 2:
        raise InvalidOrder("An OCO has exactly two orders", field="orders")
    first, second = legs
    if first.side != second.side or first.quantity != second.quantity:
        raise InvalidOrder("Both orders of an OCO have the same side and quantity", field="orders")
    if OrderType.MARKET in (first.type, second.type) or first.type == second.type:
        raise InvalidOrder(
            "An OCO joins two different order types, neither of them MARKET", field="orders"
        )
    plan: _Plan = []
    for request in legs:
        valid = _validate(rt, market, request)
        status, _ = _first_command(valid)
        plan.append((request, valid, ListRole.LEG, status))
    return plan


def _plan_bracket(rt: Runtime, market: MarketRow, bracket: Bracket) -> _Plan:
    entry = bracket.entry
    if entry.type not in (OrderType.LIMIT, OrderType.MARKET):
        raise InvalidOrder("A bracket's entry is a LIMIT or MARKET order", field="entry")
    valid_entry = _validate(rt, market, entry)
    exit_side = Side.SELL if entry.side is Side.BUY else Side.BUY
    entry_price = market.spec.price(valid_entry.price) if entry.type is OrderType.LIMIT else None
    reference = entry_price or market.last_price
    take_profit = OrderRequest(
        side=exit_side,
        type=OrderType.LIMIT,
        quantity=entry.quantity,
        price=bracket.take_profit_price,
    )
    stop_loss = OrderRequest(
        side=exit_side,
        type=OrderType.STOP_LIMIT if bracket.stop_loss_limit_price else OrderType.STOP_MARKET,
        quantity=entry.quantity,
        stop_price=bracket.stop_loss_price,
        price=bracket.stop_loss_limit_price,
    )
    valid_tp = rules.validate_order(
        take_profit, market.spec, now=rt.now(), reference_price=None, price_band_bps=None
    )
    if reference is not None:
        beyond = (
            bracket.take_profit_price > reference
            if entry.side is Side.BUY
            else (bracket.take_profit_price < reference)
        )
        if not beyond:
            raise InvalidOrder(
                "The take-profit price must be beyond the entry price", field="takeProfitPrice"
            )
    try:
        valid_sl = rules.validate_order(
            stop_loss, market.spec, now=rt.now(), reference_price=reference, price_band_bps=None
        )
    except UserError as error:
        error.field = "stopLossPrice" if error.field == "stopPrice" else error.field
        raise
    return [
        (entry, valid_entry, ListRole.ENTRY, OrderStatus.NEW),
        (take_profit, valid_tp, ListRole.TAKE_PROFIT, OrderStatus.PENDING),
        (stop_loss, valid_sl, ListRole.STOP_LOSS, OrderStatus.PENDING),
    ]


# --- cancel, amend, kill switch -----------------------------------------------------------


async def _own_order(
    session: AsyncSession, user_id: int, order_id: int | None, client_order_id: str | None
) -> Order:
    if (order_id is None) == (client_order_id is None):
        raise ValidationFailed("Give the order's id or its clientOrderId", field="id")
    query = select(Order).where(Order.user_id == user_id)
    if order_id is not None:
        query = query.where(Order.id == order_id)
    else:
        query = query.where(Order.client_order_id == client_order_id)
    order = await session.scalar(query)
    if order is None:
        raise OrderNotFound(field="id" if order_id is not None else "clientOrderId")
    return order


async def _outcome(rt: Runtime, market_id: int, seq: int) -> str | None:
    async with rt.sessions() as session:
        connection = await driver(session)
        return await connection.fetchval(
            "SELECT outcome FROM order_commands WHERE market_id = $1 AND seq = $2",
            market_id,
            seq,
        )


_OUTCOME_ERRORS: dict[str, type[UserError]] = {
    OrderNotCancellable.code: OrderNotCancellable,
    OrderNotAmendable.code: OrderNotAmendable,
    InvalidAmend.code: InvalidAmend,
    InsufficientFunds.code: InsufficientFunds,
}


def _raise_outcome(outcome: str | None) -> None:
    if outcome and outcome != "OK":
        error = _OUTCOME_ERRORS.get(outcome)
        if error is None:
            raise rejection_error(RejectReason(outcome))
        raise error()


async def _applied_command(rt: Runtime, order: Order, seq: int) -> Order:
    """After a CANCEL or AMEND of ``order`` was enqueued as ``seq``: the order as the
    engine left it, or the typed error of the engine's outcome."""
    (done,) = await _after_engine(rt, order.market_id, seq, [order.id])
    _raise_outcome(await _outcome(rt, order.market_id, seq))
    return done


async def cancel_order(
    rt: Runtime,
    *,
    user_id: int | None,
    order_id: int | None = None,
    client_order_id: str | None = None,
) -> Order:
    async def work(session: AsyncSession) -> tuple[Order, int]:
        if user_id is None:
            raise NotAuthenticated()
        order = await _own_order(session, user_id, order_id, client_order_id)
        if order.status in FINAL_STATUSES:
            rules.apply(order.status, OrderEvent.CANCEL)  # raises OrderNotCancellable
        seq = await enqueue(session, order.market_id, [("CANCEL", order.id, user_id, {})])
        return order, seq

    return await _applied_command(rt, *await in_transaction(rt.sessions, work))


async def amend_order(
    rt: Runtime,
    *,
    user_id: int | None,
    order_id: int,
    price: Decimal | None,
    quantity: Decimal | None,
) -> Order:
    """New price and/or total quantity of a resting LIMIT order. It keeps its place in
    the queue only when the price stays and the quantity does not grow."""

    async def work(session: AsyncSession) -> tuple[Order, int]:
        uid = await _lock_trader(session, user_id)
        order = await _own_order(session, uid, order_id, None)
        if order.type != OrderType.LIMIT.value or OrderStatus(order.status) not in RESTING:
            raise OrderNotAmendable()
        if price is None and quantity is None:
            raise InvalidAmend("Give a new price, a new quantity or both", field="price")
        market = await markets.market_by_id(session, order.market_id)
        spec = market.spec
        if spec.status is not rules.MarketStatus.OPEN:
            # an amendment replaces the order (and may trade): not on a halted market
            raise MarketHalted(f"Trading on {spec.symbol} is halted")
        new_price = spec.to_ticks(price if price is not None else order.book_price)
        new_lots = spec.to_lots(quantity if quantity is not None else order.quantity)
        if new_lots <= int(order.filled_quantity / spec.lot_size):
            raise InvalidAmend(field="quantity")
        if price is not None:
            reference = None if market.last_price is None else spec.nearest_ticks(market.last_price)
            rules.check_price_band(new_price, reference, rt.settings.trading_price_band_bps)
        rules.check_min_notional(spec, new_price, new_lots)
        seq = await enqueue(
            session,
            order.market_id,
            [("AMEND", order.id, uid, {"price": new_price, "quantity": new_lots})],
        )
        return order, seq

    return await _applied_command(rt, *await in_transaction(rt.sessions, work))


async def _cancel_all_commands(
    session: AsyncSession, user_id: int, market_id: int | None
) -> list[tuple[int, int, list[int]]]:
    """CANCEL_ALL per market where the user has live orders: (market, seq, order ids)."""
    connection = await driver(session)
    rows = await connection.fetch(
        "SELECT market_id, array_agg(id ORDER BY id) AS ids FROM orders"
        " WHERE user_id = $1 AND status = ANY($2::text[])"
        " AND ($3::bigint IS NULL OR market_id = $3) GROUP BY market_id ORDER BY market_id",
        user_id,
        _LIVE,
        market_id,
    )
    out = []
    for row in rows:
        seq = await enqueue(session, row["market_id"], [("CANCEL_ALL", None, user_id, {})])
        out.append((row["market_id"], seq, list(row["ids"])))
    return out


async def _wait_all(rt: Runtime, queued: list[tuple[int, int, list[int]]]) -> list[Order]:
    ids: list[int] = []
    for market_id, seq, order_ids in queued:
        await rt.applied.wait(market_id, seq, rt.settings.trading_wait_seconds)
        ids.extend(order_ids)
    return await get_orders(rt, ids) if ids else []


async def cancel_all_orders(
    rt: Runtime, *, user_id: int | None, symbol: str | None = None
) -> list[Order]:
    """Cancel every live order of the user (on one market, or everywhere)."""

    async def work(session: AsyncSession) -> list[tuple[int, int, list[int]]]:
        if user_id is None:
            raise NotAuthenticated()
        market_id = None
        if symbol is not None:
            market_id = (await markets.market_by_symbol(session, symbol)).id
        return await _cancel_all_commands(session, user_id, market_id)

    queued = await in_transaction(rt.sessions, work)
    return await _wait_all(rt, queued)


async def set_trading_enabled(rt: Runtime, *, user_id: int | None, enabled: bool) -> list[Order]:
    """The kill switch. ``False`` refuses new orders and cancels every live one (the
    orders it canceled are returned); ``True`` allows trading again."""

    async def work(session: AsyncSession) -> list[tuple[int, int, list[int]]]:
        if user_id is None:
            raise NotAuthenticated()
        user = await lock_user(session, user_id)
        if user is None:
            raise NotAuthenticated()
        user.trading_enabled = enabled
        await session.flush()
        return [] if enabled else await _cancel_all_commands(session, user_id, None)

    queued = await in_transaction(rt.sessions, work)
    return await _wait_all(rt, queued)


async def set_market_status(
    rt: Runtime, *, actor_role: str | None, symbol: str, status: rules.MarketStatus
) -> MarketRow:
    """Admin: halt a market (no new orders; resting orders stay) or open it again."""
    from app.core.errors import Forbidden

    if actor_role != "ADMIN":
        raise Forbidden()

    async def work(session: AsyncSession) -> MarketRow:
        await markets.market_by_symbol(session, symbol)
        return await markets.set_market_status(session, symbol, status)

    return await in_transaction(rt.sessions, work)
