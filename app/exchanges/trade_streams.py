"""Exchanges' public trades over their WebSocket (``ccxt.pro`` watch_trades, where
``ExchangeConnector.trades_streamed``: Binance, OKX), for the markets that want them
(``wanted``: those with armed emulated stops by default; the background job adds the
markets of exchange paper accounts).

``TradeStreams.supervise`` (a background job, every ``exchange_stream_check_seconds``)
opens a stream per such market and closes it when the market is no longer wanted. A
stream runs in a task of its own:

    subscribe -> judge the market's armed stops on its REST trades (what came before
                 the stream: the gap) -> healthy
              -> each streamed batch: into the market data store (each trade once,
                 unique on the exchange's trade id, as the REST path stores it), then
                 the market's armed stops judged on it (``triggers.judge_market``)
    a dropped connection or a failure: not healthy; wait (backoff, doubling up to its
    maximum), subscribe again, read the gap over REST again.

While a market's stream is healthy the ``exchange-triggers`` job skips it (``healthy``);
a stop is claimed under its row lock (``triggers.fire``), so the stream and a poll in
another process never send its child twice."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

from app.core.errors import UserError
from app.exchanges import market_data, triggers
from app.exchanges.connector import TradeStream
from app.exchanges.domain.catalogue import ExchangeId
from app.runtime import Runtime

log = logging.getLogger(__name__)

Market = tuple[ExchangeId, str]
Wanted = Callable[[Runtime], Awaitable[Iterable[Market]]]
MAX_STREAMS = 1000  # per process


class TradeStreams:
    """This process's public trade streams, one task per market (``supervise`` keeps
    them)."""

    def __init__(self, wanted: Wanted = triggers.armed_markets) -> None:
        self._wanted = wanted
        self._tasks: dict[Market, asyncio.Task[None]] = {}
        self.healthy: set[Market] = set()  # subscribed, the gap read: the poll skips them
        self.batches = 0  # streamed batches stored and judged (for tests and logs)

    def __len__(self) -> int:
        return len(self._tasks)

    async def supervise(self, rt: Runtime) -> int:
        """Start and stop streams to match the markets that want one; how many run."""
        wanted = {m for m in await self._wanted(rt) if rt.exchanges.trades_streamed(m[0])}
        for market, task in list(self._tasks.items()):
            if market not in wanted or task.done():
                await self._stop(market)
        for market in sorted(wanted - self._tasks.keys())[: MAX_STREAMS - len(self._tasks)]:
            name = f"exchange-trades-{market[0].value}-{market[1]}"
            self._tasks[market] = asyncio.create_task(self._follow(rt, market), name=name)
        return len(self._tasks)

    async def aclose(self) -> None:
        for market in list(self._tasks):
            await self._stop(market)

    async def _stop(self, market: Market) -> None:
        task = self._tasks.pop(market)
        self.healthy.discard(market)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _follow(self, rt: Runtime, market: Market) -> None:
        """Stream, read the gap on every (re)connect, reconnect with backoff, until stopped."""
        settings = rt.settings
        wait = 0.0
        exchange, symbol = market
        where = {"exchange": exchange.value, "symbol": symbol}
        while True:
            try:
                async with rt.exchanges.trade_stream(exchange) as stream:
                    await self._pump(rt, market, stream)
            except UserError as error:  # dropped, the exchange unavailable, refused
                log.warning(
                    "exchange trade stream interrupted", extra={**where, "code": error.code}
                )
            except Exception:  # a bug, the database away: logged, tried again later
                log.exception("exchange trade stream failed", extra=where)
            finally:
                opened = market in self.healthy
                self.healthy.discard(market)
            first = settings.exchange_stream_backoff_seconds
            wait = first if opened or not wait else wait * 2
            await asyncio.sleep(min(wait, settings.exchange_stream_backoff_max_seconds))

    async def _pump(self, rt: Runtime, market: Market, stream: TradeStream) -> None:
        """Store and judge the stream's batches until it fails (raised)."""
        exchange, symbol = market

        async def batches() -> None:
            while True:
                trades = await stream.trades(symbol)
                await market_data.record_trades(rt, exchange=exchange, symbol=symbol,
                                                trades=trades)  # fmt: skip
                await triggers.judge_market(rt, exchange=exchange, symbol=symbol, trades=trades)
                self.batches += 1

        watcher = asyncio.create_task(batches())
        try:
            subscribed = asyncio.ensure_future(stream.subscribed())
            await asyncio.wait({watcher, subscribed}, return_when=asyncio.FIRST_COMPLETED)
            subscribed.cancel()
            if not watcher.done():  # the gap: what traded before the stream, over REST
                await triggers.check_market(rt, exchange=exchange, symbol=symbol)
                self.healthy.add(market)
                log.info("exchange trade stream open", extra={"exchange": exchange.value,
                                                              "symbol": symbol})  # fmt: skip
            await watcher
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
