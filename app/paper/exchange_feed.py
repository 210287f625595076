"""Paper accounts on an exchange's market (``paper_accounts.exchange``): the prices are
that exchange's public trades, read through the public market-data path (no key) into
the market data store (``app.marketdata.store``, source ``exchange:<id>``).

The ``paper-exchange-feed`` job (every ``EXCHANGE_ORDER_POLL_SECONDS``, the pace orders on
connected accounts are followed at), per (exchange, symbol) with open paper accounts
there::

    read the exchange's recent trades        outside any transaction (ccxt, public)
    store them                               unique on the exchange's trade id: a trade
                                             read twice is stored once
    catch up each account with live orders   ``live.advance_account``: the same step as
                                             the platform's paper-ticks, the trades read
                                             from the store after the account's last
                                             (``state.catch_up``)

The paper engine and its fill rules are the platform's (``app.paper.domain``); only the
price source differs. One exchange failing (unavailable, rate-limited) is logged and
read again next time; the others go on."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import UserError, ValidationFailed
from app.exchanges.domain.catalogue import ExchangeId
from app.exchanges.domain.marketdata import source_of
from app.marketdata.store import store_trades
from app.paper import live, state
from app.runtime import Runtime
from app.trading.domain.errors import UnknownMarket

log = logging.getLogger(__name__)

TRADES_PER_READ = 100
EXCHANGE_FIELD = "exchange"

_PAIRS = text("""
    SELECT DISTINCT a.exchange, m.symbol FROM paper_accounts a JOIN markets m ON m.id = a.market_id
    WHERE a.status = 'OPEN' AND a.exchange IS NOT NULL ORDER BY a.exchange, m.symbol
""")
_LIVE_ACCOUNTS = text("""
    SELECT DISTINCT a.id FROM paper_accounts a
    JOIN paper_orders o ON o.paper_account_id = a.id AND o.generation = a.generation
    JOIN markets m ON m.id = a.market_id
    WHERE a.status = 'OPEN' AND a.exchange = :exchange AND m.symbol = :symbol
      AND o.status = ANY(:live)
    ORDER BY a.id
""")


_LAST_PRICES = text("""
    SELECT k.exchange, k.symbol, (
        SELECT t.price FROM market_trades t
        WHERE t.source = 'exchange:' || k.exchange AND t.symbol = k.symbol
        ORDER BY t.id DESC LIMIT 1) AS price
    FROM unnest(CAST(:exchanges AS text[]), CAST(:symbols AS text[])) AS k(exchange, symbol)
""")


async def last_prices(
    session: AsyncSession, keys: Sequence[tuple[str, str]]
) -> list[Decimal | None]:
    """The last stored trade price of each (exchange, symbol), in the order of ``keys``
    (one statement): an exchange paper account's equity is valued at it."""
    params = {"exchanges": [e for e, _ in keys], "symbols": [s for _, s in keys]}
    rows = (await session.execute(_LAST_PRICES, params)).all()
    found = {(r.exchange, r.symbol): r.price for r in rows}
    return [found.get(key) for key in keys]


def parse_exchange(value: str) -> ExchangeId:
    """The exchange a paper account is opened on (``ValidationFailed`` for another)."""
    try:
        return ExchangeId(value.strip().lower())
    except ValueError:
        names = ", ".join(e.value for e in ExchangeId)
        raise ValidationFailed(f"exchange must be one of {names}", field=EXCHANGE_FIELD) from None


async def check_market(rt: Runtime, *, exchange: ExchangeId, symbol: str) -> None:
    """``symbol`` is an active spot market at ``exchange`` (``UnknownMarket`` if not);
    its recent trades are stored, so the account has a price from its first command."""
    async with rt.exchanges.public_session(exchange) as session:
        markets = await session.markets()
    if not any(m.symbol == symbol and m.active for m in markets):
        raise UnknownMarket(f"No spot market {symbol} at {exchange.value}", field="symbol")
    await pull(rt, exchange=exchange, symbol=symbol)


async def pull(rt: Runtime, *, exchange: ExchangeId, symbol: str) -> int:
    """Read the exchange's recent trades of ``symbol`` and store them; how many were new."""
    async with rt.exchanges.public_session(exchange) as session:
        trades = await session.trades(symbol, TRADES_PER_READ)
    async with rt.sessions() as db, db.begin():
        written = await store_trades(db, source=source_of(exchange), symbol=symbol, trades=trades)
    return written.inserted


async def _live_accounts(rt: Runtime, exchange: str, symbol: str) -> Sequence[int]:
    async with rt.reads() as db:
        params = {"exchange": exchange, "symbol": symbol, "live": state.LIVE}
        return list((await db.scalars(_LIVE_ACCOUNTS, params)).all())


async def markets(rt: Runtime) -> list[tuple[ExchangeId, str]]:
    """The (exchange, symbol) of every open paper account on an exchange's market."""
    async with rt.reads() as db:
        pairs = (await db.execute(_PAIRS)).all()
    return [(ExchangeId(exchange), symbol) for exchange, symbol in pairs]


async def run_once(rt: Runtime) -> int:
    """One pass of the job; the trades it stored."""
    total = 0
    for exchange_id, symbol in await markets(rt):
        exchange = exchange_id.value
        try:
            total += await pull(rt, exchange=exchange_id, symbol=symbol)
        except UserError as error:
            where = {"exchange": exchange, "symbol": symbol, "code": error.code}
            log.warning("paper exchange feed failed", extra=where)
            continue
        for account_id in await _live_accounts(rt, exchange, symbol):
            await live.advance_account(rt, account_id)
    return total
