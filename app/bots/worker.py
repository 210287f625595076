"""Which bots to wake, and waking them: the background job ``bots``.

A bot is stepped only when something concerns it, so an idle bot costs nothing however
many there are:

    its orders     an ``orders`` event (any change of an order: accepted, filled,
                   canceled) of its sub-account wakes it, a paper bot's: a
                   ``paper-fills`` or ``paper-orders`` event of its paper account, an
                   exchange bot's: an ``exchange-orders`` or ``exchange-fills`` event of
                   its connected account (written where its orders' changes and fills
                   are recorded, in that transaction); the step reads what happened from the record
                   (``runner``)
    its market     a ``trades:<symbol>`` event wakes the bots whose band the trade reached
                   (paper bots alike: the live market's trades are their prices): at or
                   below ``watch_low``, at or above ``watch_high`` (each the machine's
                   ``watch``, stored by every step), or ``watch_all`` ones; an index
                   per bound finds them, never a scan of the bots; an exchange bot is
                   woken by its exchange's price instead, read from the exchange's
                   ticker once per run and market (``runner.exchange_prices``), when it
                   reached the bot's band and the bot has not seen it
    its timer      ``wake_at`` has come (an index on it)
    its webhook    an alert queued (``bot_alerts``, unprocessed)
    its commands   unsent ones, left by a crash between a step and its sends

Events are read through the event log (consumer ``bots``); the steps they cause run in
the transaction that moves its checkpoint, so a crash never loses a wake: the step and
the checkpoint commit together, and the commands they stored are sent after (again
after a crash: ``runner.send_commands``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.bots import runner
from app.events import event_log
from app.events.topics import (
    EXCHANGE_FILLS,
    EXCHANGE_ORDERS,
    ORDERS,
    PAPER_FILLS,
    PAPER_ORDERS,
    TRADES,
)
from app.runtime import Runtime
from db.raw import driver
from db.session import in_transaction

log = logging.getLogger(__name__)

CONSUMER = "bots"
BATCH = 1000  # events per transaction

_TRADES_PREFIX = TRADES.named("")  # "trades:", a market's topic: then its symbol
_SYMBOLS = "SELECT symbol FROM markets ORDER BY id"

_BY_ACCOUNT = """
    SELECT id FROM bots
    WHERE account_id = ANY($1::bigint[]) AND status <> 'STOPPED' AND NOT paused
"""
_BY_PAPER_ACCOUNT = """
    SELECT id FROM bots
    WHERE paper_account_id = ANY($1::bigint[]) AND status <> 'STOPPED' AND NOT paused
"""
_BY_EXCHANGE_ACCOUNT = """
    SELECT id FROM bots
    WHERE exchange_account_id = ANY($1::bigint[]) AND status <> 'STOPPED' AND NOT paused
"""
# the platform's trades wake the platform's bots (an exchange bot's prices are its
# exchange's, though its symbol may be the same: ``_BY_EXCHANGE_PRICE``)
_BY_PRICE = """
    SELECT id FROM bots WHERE (symbols[1]) = $1 AND watch_low >= $2
      AND status = 'RUNNING' AND NOT paused AND exchange_account_id IS NULL
    UNION
    SELECT id FROM bots WHERE (symbols[1]) = $1 AND watch_high <= $3
      AND status = 'RUNNING' AND NOT paused AND exchange_account_id IS NULL
    UNION
    SELECT id FROM bots WHERE watch_all AND $1 = ANY(symbols)
      AND status = 'RUNNING' AND NOT paused AND exchange_account_id IS NULL
"""
_BY_EXCHANGE_PRICE = """
    SELECT b.id FROM bots b
    JOIN exchange_connections c ON c.id = b.exchange_account_id
    JOIN unnest($1::text[], $2::text[], $3::numeric[]) AS p(exchange, symbol, price)
         ON p.exchange = c.exchange AND p.symbol = b.symbols[1]
    WHERE b.exchange_account_id IS NOT NULL AND b.status = 'RUNNING' AND NOT b.paused
      AND b.last_price IS DISTINCT FROM p.price
      AND (b.watch_all OR b.watch_low >= p.price OR b.watch_high <= p.price)
"""
_DUE = """
    SELECT id FROM bots WHERE wake_at <= $1 AND status <> 'STOPPED' AND NOT paused
    UNION
    SELECT a.bot_id FROM bot_alerts a JOIN bots b ON b.id = a.bot_id
    WHERE a.processed_at IS NULL AND b.status <> 'STOPPED' AND NOT b.paused
    UNION
    SELECT c.bot_id FROM bot_commands c WHERE c.sent_at IS NULL
"""


async def bots_to_wake(session: AsyncSession, events: Sequence[event_log.Event]) -> list[int]:
    """The bots the events concern: owners of the orders (live or paper), watchers of
    the prices."""
    connection = await driver(session)
    accounts = sorted({e.user_id for e in events if e.topic == ORDERS.name and e.user_id})
    papers: set[int] = set()
    connections: set[int] = set()
    prices: dict[str, list[Decimal]] = defaultdict(list)
    for event in events:
        if event.topic == PAPER_FILLS.name:
            papers.add(PAPER_FILLS.parse(event.payload).paper_account_id)
        elif event.topic == PAPER_ORDERS.name:
            papers.add(PAPER_ORDERS.parse(event.payload).paper_account_id)
        elif event.topic == EXCHANGE_ORDERS.name:
            connections.add(EXCHANGE_ORDERS.parse(event.payload).connection_id)
        elif event.topic == EXCHANGE_FILLS.name:
            connections.add(EXCHANGE_FILLS.parse(event.payload).connection_id)
        elif event.topic.startswith(_TRADES_PREFIX):
            trade = TRADES.parse(event.payload)
            prices[trade.symbol].append(trade.price)
    ids: set[int] = set()
    if accounts:
        ids.update(r["id"] for r in await connection.fetch(_BY_ACCOUNT, accounts))
    if papers:
        ids.update(r["id"] for r in await connection.fetch(_BY_PAPER_ACCOUNT, sorted(papers)))
    if connections:
        rows = await connection.fetch(_BY_EXCHANGE_ACCOUNT, sorted(connections))
        ids.update(r["id"] for r in rows)
    for symbol, seen in sorted(prices.items()):
        rows = await connection.fetch(_BY_PRICE, symbol, min(seen), max(seen))
        ids.update(r["id"] for r in rows)
    return sorted(ids)


async def _topics(rt: Runtime) -> list[str]:
    """The topics the job reads: orders, paper accounts' fills and orders, and every
    market's trades."""
    async with rt.sessions() as session:
        markets = await (await driver(session)).fetch(_SYMBOLS)
        await session.commit()
    return [
        ORDERS.name, PAPER_FILLS.name, PAPER_ORDERS.name, EXCHANGE_ORDERS.name,
        EXCHANGE_FILLS.name,
        *(TRADES.named(m["symbol"]) for m in markets),
    ]  # fmt: skip


async def _events_batch(
    rt: Runtime, topics: list[str], prices: runner.Prices
) -> tuple[int, runner.Stepped]:
    async def work(session: AsyncSession) -> tuple[int, runner.Stepped]:
        events = await event_log.read(session, CONSUMER, topics=topics, limit=BATCH)
        ids = await bots_to_wake(session, events)
        stepped = (
            await runner.step_bots(session, ids, now=rt.now(), prices=prices)
            if ids
            else runner.Stepped()
        )
        await event_log.advance(session, CONSUMER, events)
        return len(events), stepped

    return await in_transaction(rt.sessions, work)


async def _due(rt: Runtime, prices: runner.Prices) -> list[int]:
    """Bots due by their timer, alerts or unsent commands, and exchange bots whose band
    their exchange's price reached."""
    async with rt.sessions() as session:
        connection = await driver(session)
        rows: list[Any] = await connection.fetch(_DUE, rt.now())
        if prices:
            keys = sorted(prices)
            rows += await connection.fetch(
                _BY_EXCHANGE_PRICE, [k[0] for k in keys], [k[1] for k in keys],
                [prices[k] for k in keys],
            )  # fmt: skip
        await session.commit()
    return sorted({r["id"] for r in rows})


async def run_once(rt: Runtime) -> int:
    """Wake every bot something concerns until nothing is left; the bots stepped."""
    total = 0
    topics = await _topics(rt)
    prices = await runner.exchange_prices(rt)
    while True:
        read, stepped = await _events_batch(rt, topics, prices)
        total += len(stepped.bots)
        if stepped.bots:
            again = await runner.send_commands(rt, stepped.bots)
            if again:
                total += len((await runner.run_bots(rt, again, prices=prices)).bots)
        if read < BATCH:
            break
    due = await _due(rt, prices)
    if due:
        total += len((await runner.run_bots(rt, due, prices=prices)).bots)
    return total
