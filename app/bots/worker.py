"""Which bots to wake, and waking them: the background job ``bots``.

A bot is stepped only when something concerns it, so an idle bot costs nothing however
many there are:

    its orders     an ``orders`` event (any change of an order: accepted, filled,
                   canceled) of its sub-account wakes it, a paper bot's: a
                   ``paper-fills`` or ``paper-orders`` event of its paper account; the
                   step reads what happened from the record (``runner``)
    its market     a ``trades:<symbol>`` event wakes the bots whose band the trade reached
                   (paper bots alike: the live market's trades are their prices): at or
                   below ``watch_low``, at or above ``watch_high`` (each the machine's
                   ``watch``, stored by every step), or ``watch_all`` ones; an index
                   per bound finds them, never a scan of the bots
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
from app.events.topics import ORDERS, PAPER_FILLS, PAPER_ORDERS, TRADES
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
_BY_PRICE = """
    SELECT id FROM bots WHERE (symbols[1]) = $1 AND watch_low >= $2
      AND status = 'RUNNING' AND NOT paused
    UNION
    SELECT id FROM bots WHERE (symbols[1]) = $1 AND watch_high <= $3
      AND status = 'RUNNING' AND NOT paused
    UNION
    SELECT id FROM bots WHERE watch_all AND $1 = ANY(symbols)
      AND status = 'RUNNING' AND NOT paused
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
    prices: dict[str, list[Decimal]] = defaultdict(list)
    for event in events:
        if event.topic == PAPER_FILLS.name:
            papers.add(PAPER_FILLS.parse(event.payload).paper_account_id)
        elif event.topic == PAPER_ORDERS.name:
            papers.add(PAPER_ORDERS.parse(event.payload).paper_account_id)
        elif event.topic.startswith(_TRADES_PREFIX):
            trade = TRADES.parse(event.payload)
            prices[trade.symbol].append(trade.price)
    ids: set[int] = set()
    if accounts:
        ids.update(r["id"] for r in await connection.fetch(_BY_ACCOUNT, accounts))
    if papers:
        ids.update(r["id"] for r in await connection.fetch(_BY_PAPER_ACCOUNT, sorted(papers)))
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
        ORDERS.name, PAPER_FILLS.name, PAPER_ORDERS.name,
        *(TRADES.named(m["symbol"]) for m in markets),
    ]  # fmt: skip


async def _events_batch(rt: Runtime, topics: list[str]) -> tuple[int, runner.Stepped]:
    async def work(session: AsyncSession) -> tuple[int, runner.Stepped]:
        events = await event_log.read(session, CONSUMER, topics=topics, limit=BATCH)
        ids = await bots_to_wake(session, events)
        stepped = await runner.step_bots(session, ids, now=rt.now()) if ids else runner.Stepped()
        await event_log.advance(session, CONSUMER, events)
        return len(events), stepped

    return await in_transaction(rt.sessions, work)


async def _due(rt: Runtime) -> list[int]:
    async with rt.sessions() as session:
        connection = await driver(session)
        rows: list[Any] = await connection.fetch(_DUE, rt.now())
        await session.commit()
    return sorted(r["id"] for r in rows)


async def run_once(rt: Runtime) -> int:
    """Wake every bot something concerns until nothing is left; the bots stepped."""
    total = 0
    topics = await _topics(rt)
    while True:
        read, stepped = await _events_batch(rt, topics)
        total += len(stepped.bots)
        if stepped.bots:
            again = await runner.send_commands(rt, stepped.bots)
            if again:
                total += len((await runner.run_bots(rt, again)).bots)
        if read < BATCH:
            break
    due = await _due(rt)
    if due:
        total += len((await runner.run_bots(rt, due)).bots)
    return total
