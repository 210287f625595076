"""One market-data contract every exchange passes, through the real ccxt against its
stand-in, without credentials: the ticker, the top N levels of the order book, recent
trades and candles as Decimals equal to what the exchange served; trades and candles
stored under the exchange's source, idempotently (fetching an overlapping range again
adds nothing); an unknown symbol, an exchange down and a rate limit as typed errors."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from app.exchanges import market_data
from app.exchanges.domain.catalogue import ExchangeId
from app.exchanges.domain.errors import (
    ExchangeRateLimited,
    ExchangeSymbolUnknown,
    ExchangeUnavailable,
)
from app.marketdata import reads
from app.marketdata.domain.candles import interval_named
from db.models.marketdata import MarketCandle, MarketTrade
from tests.exchanges.conftest import EXCHANGES

pytestmark = pytest.mark.parametrize("name", EXCHANGES)
MINUTE = interval_named("1m")


async def _count(rt, model, source: str) -> int:
    async with rt.sessions() as session:
        return await session.scalar(select(func.count()).where(model.source == source))


async def _forget_cache(rt) -> None:
    keys = [k async for k in rt.redis.scan_iter(match=rt.redis_key("exchange-md", "*"))]
    assert keys
    await rt.redis.unlink(*keys)


async def test_the_ticker_is_the_exchange_s_in_decimals(rt, exchanges, name):
    async with rt.exchanges.public_session(ExchangeId(name)) as session:
        ticker = await session.ticker("BTC/USDT")
    tape = exchanges[name].tapes["BTC/USDT"]
    assert (ticker.bid, ticker.ask) == (tape.bids[0][0], tape.asks[0][0])
    assert ticker.last == tape.trades[-1].price
    assert all(isinstance(v, Decimal) for v in (ticker.last, ticker.bid, ticker.ask))


async def test_the_order_book_is_its_top_levels(rt, exchanges, name):
    async with rt.exchanges.public_session(ExchangeId(name)) as session:
        book = await session.order_book("BTC/USDT", 7)
    tape = exchanges[name].tapes["BTC/USDT"]
    assert list(book.bids) == tape.bids[:7] and list(book.asks) == tape.asks[:7]
    assert book.bids[0][0] < book.asks[0][0]
    assert all(isinstance(p, Decimal) and isinstance(q, Decimal) for p, q in book.bids)


async def test_recent_trades_are_stored_once(rt, exchanges, name):
    tape = exchanges[name].tapes["BTC/USDT"]
    found = await market_data.recent_trades(rt, exchange=ExchangeId(name), symbol="BTC/USDT",
                                            first=10)  # fmt: skip
    assert [t.trade_id for t in found] == [str(t.trade_id) for t in reversed(tape.trades[-10:])]
    assert found[0].price == tape.trades[-1].price and found[0].amount == tape.trades[-1].amount
    assert {t.side for t in found} == {"BUY", "SELL"}
    assert await _count(rt, MarketTrade, f"exchange:{name}") == 10
    await _forget_cache(rt)  # the exchange is asked again
    await market_data.recent_trades(rt, exchange=ExchangeId(name), symbol="BTC/USDT", first=20)
    assert await _count(rt, MarketTrade, f"exchange:{name}") == 20  # 10 new, 10 unchanged


async def test_candles_are_stored_once_and_read_back(rt, exchanges, name):
    tape = exchanges[name].tapes["BTC/USDT"]
    end = MINUTE.floor(rt.now()) - timedelta(minutes=5)
    start = end - timedelta(minutes=30)
    fetched = await market_data.fetch_candles(rt, exchange=ExchangeId(name), symbol="BTC/USDT",
                                              interval="1m", since=start, until=end)  # fmt: skip
    assert fetched.candles == 30 and fetched.resume_at is None
    overlapping = await market_data.fetch_candles(
        rt, exchange=ExchangeId(name), symbol="BTC/USDT", interval="1m",
        since=start + timedelta(minutes=10), until=end + timedelta(minutes=2),
    )  # fmt: skip
    assert overlapping.candles == 22
    assert await _count(rt, MarketCandle, f"exchange:{name}") == 32
    async with rt.sessions() as session:
        held = await reads.candles(session, source=f"exchange:{name}", symbol="BTC/USDT",
                                   interval="1m", start=start, end=end)  # fmt: skip
    assert [c.open_time for c in held] == [start + timedelta(minutes=n) for n in range(30)]
    first = tape.candle(int(start.timestamp() * 1000), 60_000)
    assert (held[0].open, held[0].high, held[0].low, held[0].close, held[0].volume) == (
        first.open, first.high, first.low, first.close, first.volume)  # fmt: skip


async def test_an_unknown_symbol_is_a_typed_error(rt, exchanges, name):
    async with rt.exchanges.public_session(ExchangeId(name)) as session:
        with pytest.raises(ExchangeSymbolUnknown):
            await session.order_book("DOGE/USDT", 5)


async def test_an_exchange_down_is_unavailable_after_retries(rt, exchanges, name):
    server = exchanges[name]
    async with rt.exchanges.public_session(ExchangeId(name)) as session:
        await session.markets()  # loaded: the failures below hit the ticker
        server.fail_next(503, 503, 503)
        with pytest.raises(ExchangeUnavailable):
            await session.ticker("BTC/USDT")
    assert server.failures == []


async def test_a_rate_limit_is_typed_and_not_retried(rt, exchanges, name):
    server = exchanges[name]
    async with rt.exchanges.public_session(ExchangeId(name)) as session:
        await session.markets()
        before = len(server.requests)
        server.fail_next(429)
        with pytest.raises(ExchangeRateLimited):
            await session.order_book("BTC/USDT", 5)
    assert len(server.requests) == before + 1
