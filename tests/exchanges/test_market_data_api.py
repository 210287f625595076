"""Exchanges' market data through the existing GraphQL queries with a ``venue``, the real
ccxt talking to the stand-ins: N callers cost one exchange request (Redis, briefly),
candles fetched into the store once, typed errors for an unknown symbol, an exchange
down or rate limited, and hostile input; the platform's own venue is the default and
unchanged."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from app.marketdata.domain.candles import interval_named

BOOK = """query($symbol: String!, $depth: Int!, $venue: Venue!) {
  orderBook(symbol: $symbol, depth: $depth, venue: $venue) {
    symbol sequence bids { price quantity orders } asks { price quantity } } }"""
TICKER = """query($symbol: String!, $venue: Venue!) {
  ticker(symbol: $symbol, venue: $venue) { symbol lastPrice bestBid bestAsk sequence at } }"""
CANDLES = """query($symbol: String!, $from: DateTime!, $to: DateTime!, $venue: Venue!) {
  candles(symbol: $symbol, interval: "1m", start: $from, end: $to, venue: $venue) {
    openTime open high low close volume } }"""
TRADES = """query($venue: Venue!, $first: Int!) {
  exchangeTrades(venue: $venue, symbol: "BTC/USDT", first: $first) {
    tradeId price quantity takerSide at } }"""
STORED = """{ marketTrades(source: "exchange:bybit", symbol: "BTC/USDT", first: 100) {
  edges { node { tradeId } } } }"""
MARKETS = "query($venue: Venue!) { exchangeMarkets(venue: $venue) { symbol exchangeSymbol tickSize lotSize minNotional status } }"  # noqa: E501
MINUTE = interval_named("1m")


def _codes(body: dict) -> list[tuple[str, str | None]]:
    return [(e["extensions"]["code"], e["extensions"].get("field")) for e in body["errors"]]


async def test_an_exchange_s_order_book_through_the_venue_argument(gql, exchanges):
    data = await gql.data(BOOK, {"symbol": "BTC/USDT", "depth": 3, "venue": "BINANCE"})
    book = data["orderBook"]
    assert [b["price"] for b in book["bids"]] == ["89999.99", "89999.98", "89999.97"]
    assert [a["price"] for a in book["asks"]] == ["90000.01", "90000.02", "90000.03"]
    assert book["bids"][0] == {"price": "89999.99", "quantity": "0.5", "orders": 0}
    assert book["sequence"] == exchanges["binance"].tapes["BTC/USDT"].update_id


async def test_the_platform_is_the_default_venue(gql, exchanges):
    query = '{ orderBook(symbol: "BTC/USDT") { symbol sequence bids { price } } }'
    data = await gql.data(query)
    assert data["orderBook"] == {"symbol": "BTC/USDT", "sequence": 0, "bids": []}
    assert all(s.requests == [] for s in exchanges.values())


async def test_many_callers_cost_one_exchange_request(gql, exchanges):
    server = exchanges["okx"]
    variables = [{"symbol": "BTC/USDT", "depth": d, "venue": "OKX"} for d in (1, 5, 20) * 4]
    answers = await asyncio.gather(*(gql.data(BOOK, v) for v in variables))
    assert {a["orderBook"]["bids"][0]["price"] for a in answers} == {"89999.99"}
    assert server.public_count("/market/books") == 1  # every depth up to 20 shares a fetch
    tickers = await asyncio.gather(
        *(gql.data(TICKER, {"symbol": "BTC/USDT", "venue": "OKX"}) for _ in range(8))
    )
    assert {t["ticker"]["bestAsk"] for t in tickers} == {"90000.01"}
    assert server.public_count("/market/ticker") == 1


async def test_an_exchange_s_ticker_and_the_venue_s(gql, exchanges):
    data = await gql.data(TICKER, {"symbol": "ETH/USDT", "venue": "KRAKEN"})
    assert data["ticker"]["symbol"] == "ETH/USDT"
    assert (data["ticker"]["bestBid"], data["ticker"]["bestAsk"]) == ("2999.99", "3000.01")
    venue = await gql.data(TICKER, {"symbol": "BTC/USDT", "venue": "PLATFORM"})
    assert venue["ticker"]["bestBid"] is None and venue["ticker"]["sequence"] == 0


async def test_candles_from_an_exchange_are_fetched_into_the_store_once(gql, rt, exchanges):
    server = exchanges["bybit"]
    end = MINUTE.floor(rt.now()) - timedelta(minutes=2)
    start = end - timedelta(minutes=20)
    variables = {"symbol": "BTC/USDT", "from": start.isoformat(), "to": end.isoformat(),
                 "venue": "BYBIT"}  # fmt: skip
    first = (await gql.data(CANDLES, variables))["candles"]
    assert len(first) == 20 and first[0]["openTime"].startswith(start.isoformat()[:16])
    tape = server.tapes["BTC/USDT"].candle(int(start.timestamp() * 1000), 60_000)
    assert first[0]["open"] == f"{tape.open.normalize():f}"
    asked = server.public_count("/market/kline")
    await rt.redis.unlink(*[k async for k in rt.redis.scan_iter(match=rt.redis_key("*"))])
    again = (await gql.data(CANDLES, variables))["candles"]
    assert again == first
    assert server.public_count("/market/kline") == asked  # all held and closed: not asked
    stored = '{ marketDataSources(source: "exchange:bybit") { symbol interval candles } }'
    assert (await gql.data(stored))["marketDataSources"] == [
        {"symbol": "BTC/USDT", "interval": "1m", "candles": 20}]  # fmt: skip


async def test_an_exchange_s_trades_are_kept_in_the_store(gql, exchanges):
    trades = (await gql.data(TRADES, {"venue": "BYBIT", "first": 5}))["exchangeTrades"]
    assert [t["tradeId"] for t in trades] == ["529", "528", "527", "526", "525"]
    assert trades[0]["takerSide"] in ("BUY", "SELL")
    stored = (await gql.data(STORED))["marketTrades"]["edges"]
    assert sorted(e["node"]["tradeId"] for e in stored) == ["525", "526", "527", "528", "529"]


async def test_an_exchange_s_markets(gql, exchanges):
    found = (await gql.data(MARKETS, {"venue": "COINBASE"}))["exchangeMarkets"]
    assert [(m["symbol"], m["exchangeSymbol"]) for m in found] == [
        ("BTC/USDT", "BTC-USDT"), ("ETH/USDT", "ETH-USDT")]  # fmt: skip
    assert (found[0]["tickSize"], found[0]["lotSize"], found[0]["status"]) == (
        "0.01", "0.00001", "OPEN")  # fmt: skip


@pytest.mark.parametrize(
    ("variables", "code", "field"),
    [
        ({"symbol": "DOGE/USDT"}, "EXCHANGE_SYMBOL_UNKNOWN", None),
        ({"symbol": "BTC/\x00USDT"}, "VALIDATION_FAILED", "symbol"),
        ({"symbol": "btc/usdt'; --"}, "VALIDATION_FAILED", "symbol"),
        ({"symbol": "B" * 10_000 + "/USDT"}, "VALIDATION_FAILED", "symbol"),
        ({"depth": 10**9}, "VALIDATION_FAILED", "depth"),
        ({"depth": 0}, "VALIDATION_FAILED", "depth"),
    ],
)
async def test_hostile_input_is_a_typed_error(gql, exchanges, variables, code, field):
    body = await gql(BOOK, {"symbol": "BTC/USDT", "depth": 5, "venue": "KRAKEN", **variables})
    assert _codes(body) == [(code, field)], body
    asked = [r.path for r in exchanges["kraken"].requests]
    assert "/0/public/Depth" not in asked


@pytest.mark.parametrize(("statuses", "code"), [((503, 503, 503), "EXCHANGE_UNAVAILABLE"),
                                                ((429,), "EXCHANGE_RATE_LIMITED")])  # fmt: skip
async def test_an_exchange_down_or_rate_limited_is_a_typed_error(gql, exchanges, statuses, code):
    server = exchanges["binance"]
    await gql.data(TICKER, {"symbol": "BTC/USDT", "venue": "BINANCE"})  # markets loaded
    server.fail_next(*statuses)
    body = await gql(BOOK, {"symbol": "BTC/USDT", "depth": 5, "venue": "BINANCE"})
    assert _codes(body) == [(code, None)]
    again = await gql.data(BOOK, {"symbol": "BTC/USDT", "depth": 5, "venue": "BINANCE"})
    assert again["orderBook"]["bids"]  # errors are not kept: the next call asks again


async def test_trades_limits_and_a_source_with_a_venue_are_typed_errors(gql, exchanges, rt):
    body = await gql(TRADES, {"venue": "OKX", "first": 10**6})
    assert _codes(body) == [("VALIDATION_FAILED", "first")]
    body = await gql(TRADES, {"venue": "PLATFORM", "first": 5})
    assert _codes(body) == [("UNSUPPORTED_EXCHANGE", "venue")]
    end = MINUTE.floor(rt.now())
    query = CANDLES.replace('interval: "1m"', 'interval: "1m", source: "file:x"')
    body = await gql(query, {"symbol": "BTC/USDT", "from": (end - timedelta(hours=1)).isoformat(),
                             "to": end.isoformat(), "venue": "OKX"})  # fmt: skip
    assert _codes(body) == [("VALIDATION_FAILED", "venue")]


@pytest.mark.parametrize(
    ("interval", "minutes", "symbol", "field"),
    [("7m", 60, "BTC/USDT", "interval"), ("1m", 60 * 24 * 30, "BTC/USDT", "from"),
     ("1m", 60, "BTC/USDT\x00", "symbol"), ("3m", 60, "BTC/USDT", "interval")],
)  # fmt: skip
async def test_hostile_candle_requests_are_typed_errors(gql, rt, exchanges, interval, minutes,
                                                        symbol, field):  # fmt: skip
    end = MINUTE.floor(rt.now())
    query = CANDLES.replace('interval: "1m"', f'interval: "{interval}"')
    body = await gql(query, {"symbol": symbol, "venue": "KRAKEN", "to": end.isoformat(),
                             "from": (end - timedelta(minutes=minutes)).isoformat()})  # fmt: skip
    assert _codes(body) == [("VALIDATION_FAILED", field)], body  # Kraken has no 3m candles
    assert exchanges["kraken"].public_count("/OHLC") == 0


async def test_two_processes_asking_together_cost_one_request(gql, rt, settings, stand_ins,
                                                              exchanges, monkeypatch):  # fmt: skip
    from app.exchanges import market_data
    from app.exchanges.domain.catalogue import ExchangeId
    from app.runtime import build_runtime
    from tests.exchanges.conftest import connector_for

    # kept longer than a loaded machine may take to ask ten times (the default is 1 s):
    # what is tested is that no two fetch at once, not how long the book is kept
    settings = settings.model_copy(update={"exchange_book_cache_seconds": 30})
    monkeypatch.setattr(rt, "settings", settings)
    other = build_runtime(settings, database_url=settings.database_url,
                          redis_url=settings.redis_url)  # fmt: skip
    other.exchanges = connector_for(other, stand_ins)
    try:
        books = await asyncio.gather(*(
            market_data.order_book(runtime, exchange=ExchangeId.COINBASE, symbol="ETH/USDT",
                                   depth=10)
            for runtime in (rt, other) * 5
        ))  # fmt: skip
    finally:
        await other.aclose()
    assert len({b.to_json() for b in books}) == 1
    assert exchanges["coinbase"].public_count("/product_book") == 1
