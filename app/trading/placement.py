"""Trading, the request side: place orders (``order_lists``: OCO and bracket lists;
``commands``: cancel, amend, cancel-all, the kill switch, market status).

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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.coalesce import Coalescer
from app.core.errors import InvariantViolation, NotAuthenticated, UserError
from app.core.logs import request_id_var
from app.events.engine_signals import WAKE_CHANNEL
from app.ledger import holds
from app.ledger import journal as ledger
from app.risk import gate as risk_gate
from app.risk.domain.checks import Decision
from app.runtime import Runtime
from app.trading import markets
from app.trading.command_queue import after_engine, first_command, raise_if_refused
from app.trading.domain import orders as rules
from app.trading.domain.errors import ClientOrderIdReused, TradingDisabled
from app.trading.domain.orders import OrderRequest, ValidOrder
from app.trading.markets import MarketRow
from app.trading.pretrade import (
    check_client_id,
    check_risk,
    insufficient,
    order_row,
    request_digest,
)
from app.trading.sql import LIVE_STATUS_VALUES, PLACE_SQL, PLACED, TRADERS_SQL
from db.models import Order
from db.queries import rows_by_ids
from db.raw import driver
from db.session import in_transaction


async def existing_order(session: AsyncSession, user_id: int, client_order_id: str) -> Order | None:
    return await session.scalar(
        select(Order).where(Order.user_id == user_id, Order.client_order_id == client_order_id)
    )


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
        digest=request_digest(symbol, request),
        request_id=request_id_var.get(),
    )
    placed = await _placements(rt).submit(placement)
    if placed.order is not None:
        order = placed.order
    else:
        (order,) = await after_engine(rt, placed.market_id, placed.seq, [placed.order_id])
    raise_if_refused(order)
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
    risk: Decision | None  # the gate's: the limits it nears


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
    markets, USD rates     one statement, with the risk engine's context of the batch
                           (``app.risk.gate``: limits, states, the traders' figures)
    validate + risk        per item, in memory (the platform's limits, then the gate)
    engines' locks         ``lock_engines()``: the locks of the engines this process runs
                           for these markets (``_place_and_match``); the owned ones
    lock the accounts      AVAILABLE and HELD of every (user, currency), in id order;
                           a missing HELD one made only if AVAILABLE can fund a hold
    funds                  per item in order, against what the ones before it took
    write                  one statement (``PLACE_SQL``): the HOLD journal entries,
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
            TRADERS_SQL,
            [item.user_id for item in items],
            [item.client_order_id for item in items],
            LIVE_STATUS_VALUES,
            sorted({item.symbol for item in items}),
            rt.risk_checks,
        )
    }
    retried = [t["existing_id"] for t in traders.values() if t["existing_id"] is not None]
    existing = (
        {row.id: row for row in await rows_by_ids(session, Order, retried) if row is not None}
        if retried
        else {}
    )
    found, gate = await risk_gate.markets_and_gate(
        rt,
        session,
        [item.symbol for item in items],
        users=[item.user_id for i, item in enumerate(items) if i in traders],
        client_order_ids=[item.client_order_id for item in items],
    )
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
            check_risk(
                rt,
                market,
                [valid],
                usd_rate=usd_rate,
                open_orders=open_orders[user_id],
            )
            risk = gate.check(
                user_id=user_id,
                market=market,
                valid=valid,
                usd_rate=usd_rate,
                client_order_id=item.client_order_id,
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
            _Candidate(
                i, item, user_id, market, valid, hold, trader["order_id"], trader["hold_id"], risk
            )
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
            results[candidate.index] = insufficient(candidate.hold.currency, candidate.hold.amount)
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
        status, command = first_command(c.valid)
        order = order_row(
            user_id=c.user_id,
            market=c.market,
            request=c.item.request,
            valid=c.valid,
            client_order_id=c.item.client_order_id,
            digest=c.item.digest,
            status=status,
        )
        order.id, order.hold_id = c.order_id, c.hold_id  # taken with the traders' lock
        rows.append(
            PLACED.row(
                **{name: getattr(order, name) for name in PLACED.columns},
                hold_currency=c.hold.currency,
                hold_amount=c.hold.amount,
                kind=command,
            )
        )
    pending = journal.take()
    assert pending is not None  # one HOLD entry per funded order
    connection = await driver(session)
    here = {m.market_id: m for m in matchers if not m.dirty}
    written = await connection.fetch(
        PLACE_SQL,
        *pending.parameters,
        *PLACED.arrays(rows),
        WAKE_CHANNEL,
        list(here),
        [m.applied for m in here.values()],
    )
    pending.check(written[0])
    if written[0]["orders"] != len(funded) or len(written) != len(funded):
        raise InvariantViolation("orders were not written exactly once")
    await risk_gate.warn_pre_trade(session, gate, [(c.user_id, c.risk) for c in funded])
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
    engine applies the commands just stored in this transaction (``PLACE_SQL`` woke
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
