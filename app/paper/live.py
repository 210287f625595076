"""Live prices for paper accounts: the ``paper-ticks`` consumer of the event log follows
the platform's trades (``trades:<symbol>`` topics, with a checkpoint, as copy trading
follows fills) and catches up every open paper account with live orders on a market
that traded (``state.catch_up``: the trades themselves are read from the fills table, so
a step is the same whoever runs it, the consumer or the account's next command).

An account without live orders is left alone: its next command takes the latest trade
first. Each account is a transaction of its own (its row locked), after which the batch's
checkpoint commits.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.events import event_log
from app.events.topics import TRADES
from app.paper import state
from app.runtime import Runtime
from db.raw import driver
from db.session import in_transaction

CONSUMER = "paper-ticks"
_SYMBOLS = "SELECT id, symbol FROM markets ORDER BY id"
_ACCOUNTS = """
    SELECT DISTINCT a.id FROM paper_accounts a
    JOIN paper_orders o ON o.paper_account_id = a.id AND o.generation = a.generation
    JOIN markets m ON m.id = a.market_id
    WHERE a.status = 'OPEN' AND a.exchange IS NULL AND m.symbol = ANY($1::text[])
      AND o.status = ANY($2::text[])
    ORDER BY a.id
"""


async def advance_account(rt: Runtime, paper_account_id: int) -> int:
    """Catch one paper account up with its market; the trades it took."""

    async def work(session: AsyncSession) -> int:
        loaded = await state.load(session, paper_account_id=paper_account_id, user_id=None)
        if loaded.account.status != state.OPEN:
            return 0
        taken = await state.catch_up(session, loaded)
        if taken:
            await state.record(session, loaded, kind="PAPER_TICK")
        return taken

    return await in_transaction(rt.sessions, work)


async def run_once(rt: Runtime, *, limit: int = 500) -> int:
    """One pass of the consumer: the markets that traded since its checkpoint, their
    paper accounts caught up; the trade events it read."""
    async with rt.sessions() as session:
        markets = await (await driver(session)).fetch(_SYMBOLS)
    names = [TRADES.named(m["symbol"]) for m in markets]
    total = 0
    while True:
        async with rt.sessions() as session, session.begin():
            events = await event_log.read(session, CONSUMER, topics=names, limit=limit)
            symbols = sorted({e.payload["symbol"] for e in events})
            accounts = []
            if symbols:
                accounts = [
                    r["id"]
                    for r in await (await driver(session)).fetch(_ACCOUNTS, symbols, state.LIVE)
                ]
            for account_id in accounts:
                await advance_account(rt, account_id)
            await event_log.advance(session, CONSUMER, events)
        total += len(events)
        if len(events) < limit:
            return total
