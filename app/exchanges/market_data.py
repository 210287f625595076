"""Exchanges' public market data for the platform's queries, subscriptions and jobs:
``ticker``, ``order_book``, ``recent_trades`` and ``candles`` of one exchange's market.

N callers cost one exchange request: answers are kept in Redis briefly (the order book
``EXCHANGE_BOOK_CACHE_SECONDS``, the ticker and recent trades
``EXCHANGE_TICKER_CACHE_SECONDS``), shared by every process (``kept_last_prices`` reads
the tickers kept, fetching nothing: an exchange bot's figures); calls in one process that
miss the cache together share one fetch (``SingleFlight``), and a process fetching holds
a Redis lock for it while the others wait for its answer. Errors are not kept (the next
call asks again).

Trades and candles fetched (and trades streamed) are written to the market data store
under the exchange's source (``exchange:<id>``), idempotently (app/marketdata/store.py);
``candles`` reads them back from the store, fetching first only what the store lacks in
the range asked (from the last candle held, which may have been open when it was
fetched)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import func, select

from app.exchanges.domain.catalogue import ExchangeId
from app.exchanges.domain.marketdata import (
    BOOK_MAX,
    ExchangeBook,
    ExchangeTicker,
    book_tier,
    check_depth,
    check_symbol,
    check_trades,
    source_of,
)
from app.marketdata import reads
from app.marketdata.domain.candles import Candle, Interval, interval_named
from app.marketdata.domain.trades import Trade
from app.marketdata.store import Written, store_candles, store_trades
from app.runtime import Runtime
from db.models.marketdata import MarketCandle

T = TypeVar("T")
PAGE = 1000  # candles asked per request (ccxt lowers it to each exchange's maximum)
MAX_PAGES = 12  # requests per ``candles`` call: a query asks for at most 1000 candles
LOCK_POLL_SECONDS = 0.02  # how often a process waiting for another's fetch looks for it


class SingleFlight:
    """Calls for the same key while one is running share its result (or its error)."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Future[Any]] = {}

    async def run(self, key: str, work: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        running = self._running.get(key)
        if running is None or running.get_loop() is not loop:
            running = asyncio.ensure_future(work())
            # a caller cancelled does not cancel the others' fetch; its error is theirs
            running.add_done_callback(lambda done: done.cancelled() or done.exception())
            running.add_done_callback(lambda done: self._forget(key, done))
            self._running[key] = running
        return await asyncio.shield(running)  # type: ignore[no-any-return]

    def _forget(self, key: str, done: asyncio.Future[Any]) -> None:
        if self._running.get(key) is done:
            del self._running[key]


def _flights(rt: Runtime) -> SingleFlight:
    return rt.coalescer("exchange-market-data", SingleFlight)


async def _cached(
    rt: Runtime,
    key: str,
    seconds: float,
    fetch: Callable[[], Awaitable[T]],
    encode: Callable[[T], str],
    decode: Callable[[bytes], T],
) -> T:
    """The value kept under ``key``, else ``fetch()``'s, kept ``seconds``: fetched once
    by this process (``SingleFlight``) and, while it holds ``key``'s lock, by no other."""
    if seconds <= 0:
        return await _flights(rt).run(key, fetch)
    if (held := await rt.redis.get(key)) is not None:
        return decode(held)

    async def work() -> T:
        held = await _fetched_elsewhere(rt, key)
        if held is not None:
            return decode(held)
        try:
            value = await fetch()
            await rt.redis.set(key, encode(value), px=max(1, int(seconds * 1000)))
            return value
        finally:
            await rt.redis.delete(_lock(key))

    return await _flights(rt).run(key, work)


def _lock(key: str) -> str:
    return f"{key}:fetching"


async def _fetched_elsewhere(rt: Runtime, key: str) -> bytes | None:
    """None once this process holds ``key``'s lock (it fetches); the value another
    process fetched meanwhile otherwise. The lock lasts as long as a request may take:
    a process that died holding it delays the others that long, no more."""
    lock_ms = int(rt.settings.exchange_request_timeout_seconds * 1000)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + lock_ms / 1000
    while True:
        if (held := await rt.redis.get(key)) is not None:
            return held  # type: ignore[no-any-return]
        if await rt.redis.set(_lock(key), "1", nx=True, px=lock_ms) or loop.time() > deadline:
            return None
        await asyncio.sleep(LOCK_POLL_SECONDS)


async def ticker(rt: Runtime, *, exchange: ExchangeId, symbol: str) -> ExchangeTicker:
    symbol = check_symbol(symbol)

    async def fetch() -> ExchangeTicker:
        async with rt.exchanges.public_session(exchange) as session:
            return await session.ticker(symbol)

    key = rt.redis_key("exchange-md", "ticker", exchange.value, symbol)
    seconds = rt.settings.exchange_ticker_cache_seconds
    return await _cached(rt, key, seconds, fetch, ExchangeTicker.to_json, ExchangeTicker.from_json)


async def kept_last_prices(
    rt: Runtime, markets: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], Decimal]:
    """The last prices of ``markets`` (exchange, symbol) in the tickers kept now (one
    Redis read, no request to any exchange); a market whose ticker is not kept, or has
    no last price, is left out."""
    wanted = sorted(set(markets))
    if not wanted:
        return {}
    keys = [rt.redis_key("exchange-md", "ticker", e, s) for e, s in wanted]
    found: dict[tuple[str, str], Decimal] = {}
    for market, held in zip(wanted, await rt.redis.mget(keys), strict=True):
        if held is not None and (last := ExchangeTicker.from_json(held).last) is not None:
            found[market] = last
    return found


async def order_book(rt: Runtime, *, exchange: ExchangeId, symbol: str, depth: int) -> ExchangeBook:
    """The top ``depth`` levels a side. Fetched at one of a few depths (``book_tier``),
    so requests of different depths share a fetch."""
    symbol, depth = check_symbol(symbol), check_depth(depth)
    tier = book_tier(depth, BOOK_MAX[exchange])

    async def fetch() -> ExchangeBook:
        async with rt.exchanges.public_session(exchange) as session:
            return await session.order_book(symbol, tier)

    key = rt.redis_key("exchange-md", "book", exchange.value, symbol, str(tier))
    seconds = rt.settings.exchange_book_cache_seconds
    book = await _cached(rt, key, seconds, fetch, ExchangeBook.to_json, ExchangeBook.from_json)
    return book.top(depth)


async def recent_trades(
    rt: Runtime, *, exchange: ExchangeId, symbol: str, first: int
) -> list[Trade]:
    """The latest ``first`` trades, newest first; each fetch is also stored."""
    symbol, first = check_symbol(symbol), check_trades(first)
    key = rt.redis_key("exchange-md", "trades", exchange.value, symbol, str(first))

    async def fetch() -> list[Trade]:
        async with rt.exchanges.public_session(exchange) as session:
            trades = await session.trades(symbol, first)
        await record_trades(rt, exchange=exchange, symbol=symbol, trades=trades)
        return trades

    fetched = await _flights(rt).run(key, lambda: _unless_recent(rt, key, fetch))
    if fetched is not None:
        return sorted(fetched, key=lambda t: t.time, reverse=True)[:first]
    async with rt.reads() as db:
        page = await _latest_trades(db, exchange, symbol, first)
    return page


async def record_trades(
    rt: Runtime, *, exchange: ExchangeId, symbol: str, trades: Sequence[Trade]
) -> Written:
    """``trades`` (fetched, or streamed: app/exchanges/trade_streams.py) into the store,
    each once (unique on the exchange's trade id)."""
    async with rt.sessions() as db, db.begin():
        return await store_trades(db, source=source_of(exchange), symbol=symbol, trades=trades)


async def _unless_recent(rt: Runtime, key: str, fetch: Callable[[], Awaitable[T]]) -> T | None:
    """``fetch()`` unless it was done in the last ``EXCHANGE_TICKER_CACHE_SECONDS`` (by
    any process): what it fetched is in the store, which is the cache (None)."""
    seconds = rt.settings.exchange_ticker_cache_seconds
    if seconds > 0 and not await rt.redis.set(key, "1", nx=True, px=int(seconds * 1000)):
        return None
    try:
        return await fetch()
    except BaseException:
        await rt.redis.delete(key)  # not fetched: the next call asks again
        raise


async def _latest_trades(db: Any, exchange: ExchangeId, symbol: str, first: int) -> list[Trade]:
    from db.models.marketdata import MarketTrade

    rows = await db.execute(
        select(MarketTrade)
        .where(MarketTrade.source == source_of(exchange), MarketTrade.symbol == symbol)
        .order_by(MarketTrade.time.desc(), MarketTrade.id.desc())
        .limit(first)
    )
    return [
        Trade(r.time, r.price, r.amount, r.side, r.trade_id)  # type: ignore[arg-type]
        for r in rows.scalars()
    ]


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a fetch into the store did: candles written, requests made, the next open
    time to fetch from (None: up to date)."""

    candles: int
    requests: int
    resume_at: datetime | None


async def fetch_candles(
    rt: Runtime,
    *,
    exchange: ExchangeId,
    symbol: str,
    interval: str,
    since: datetime,
    until: datetime,
    max_requests: int = MAX_PAGES,
) -> Fetched:
    """The exchange's candles opening in [since, until) into the store, page after page
    (at most ``max_requests``)."""
    grid = interval_named(interval)
    at, written, requests = grid.ceil(since), 0, 0
    async with rt.exchanges.public_session(exchange) as session:
        while at < until and requests < max_requests:
            page = await session.candles(symbol, interval, at, PAGE)
            requests += 1
            page = [c for c in page if at <= c.open_time < until]
            if not page:
                return Fetched(written, requests, None)
            async with rt.sessions() as db, db.begin():
                await store_candles(db, source=source_of(exchange), symbol=symbol,
                                    interval=interval, candles=page)  # fmt: skip
            written += len(page)
            at = grid.next(page[-1].open_time)
    return Fetched(written, requests, at if at < until else None)


async def candles(
    rt: Runtime,
    *,
    exchange: ExchangeId,
    symbol: str,
    interval: str,
    start: datetime,
    end: datetime,
) -> list[Candle]:
    """The exchange's candles opening in [start, end), through the store."""
    symbol, grid = check_symbol(symbol), interval_named(interval)
    source = source_of(exchange)
    async with rt.reads() as db:  # the range's checks (at most 1000 candles ...) first
        await reads.candles(db, source=source, symbol=symbol, interval=interval,
                            start=start, end=end)  # fmt: skip
        since = await _fetch_from(db, source, symbol, grid, start, end, rt.now())
    if since is not None:
        until = min(end, grid.next(grid.floor(rt.now())))
        key = rt.redis_key("exchange-md", "candles", exchange.value, symbol, interval,
                           since.isoformat(), until.isoformat())  # fmt: skip

        async def fetch() -> Fetched:
            return await fetch_candles(rt, exchange=exchange, symbol=symbol,
                                       interval=interval, since=since, until=until)  # fmt: skip

        await _flights(rt).run(key, lambda: _unless_recent(rt, key, fetch))
    async with rt.reads() as db:
        return await reads.candles(db, source=source, symbol=symbol, interval=interval,
                                   start=start, end=end)  # fmt: skip


async def _fetch_from(
    db: Any, source: str, symbol: str, grid: Interval, start: datetime, end: datetime,
    now: datetime,
) -> datetime | None:  # fmt: skip
    """Where the store's candles of [start, end) stop being whole: the range's first open
    time (nothing held, or a hole), else the last held (it may have been open then), or
    None when every candle up to now is held and the last one has closed."""
    first_open = grid.ceil(start)
    last_open = min(grid.floor(now), grid.shift(grid.ceil(end), -1))
    if last_open < first_open:
        return None  # the range is in the future
    held = (
        await db.execute(
            select(
                func.min(MarketCandle.open_time), func.max(MarketCandle.open_time), func.count()
            ).where(
                MarketCandle.source == source,
                MarketCandle.symbol == symbol,
                MarketCandle.interval == grid.name,
                MarketCandle.open_time >= first_open,
                MarketCandle.open_time < end,
            )
        )
    ).one()
    lowest, highest, count = held
    if highest is None or lowest != first_open or grid.count(lowest, highest) + 1 != count:
        return first_open
    if highest >= last_open and grid.next(highest) <= now:
        return None
    return highest  # type: ignore[no-any-return]
