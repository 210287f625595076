"""Helpers for the bots' GraphQL tests: the documents, a BTC/USDT market with a price
and asks to buy from, inputs with defaults, and candles in the market data store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, insert, select

from app.runtime import Runtime
from app.trading.domain.orders import Side
from app.venues.live import LiveVenue
from db.models import Bot, BotDecision, JournalEntry, User
from db.models.marketdata import MarketCandle
from tests.support.trading import funded_user, limit

SYMBOL = "BTC/USDT"
START = datetime(2026, 1, 1, tzinfo=UTC)

ERROR = "... on Error { __typename code field message }"
BOT_FIELDS = """id kind name status paper symbols quoteCurrency steps createdAt stoppedAt
  settings webhookUrl ipAllowlist budget equity pnl realisedPnl unrealisedPnl
  allocation { currency amount } holdings { currency amount }"""
PREFLIGHT = """price problem backtestSkipped funding { currency amount }
  dca { worstCaseCapital allDealsCapital orders { order deviation price quantity value fee
        position cost averageEntry breakeven takeProfit } }
  grid { lines quantityPerLevel problem
         levels { buy sell profitPerUnit profitFraction roundTripProfit } }
  backtest { source symbol interval candles start end orders fills decisions
             riskLimits riskRefusals riskTransitions
             metrics { bars trades finalEquity totalReturn feesPaid } }"""
CREATE = f"""mutation($input: CreateBotInput!) {{ createBot(input: $input) {{ __typename
  ... on CreateBotPayload {{ webhookUrl webhookSecret bot {{ {BOT_FIELDS} }}
                             preflight {{ {PREFLIGHT} }} }}
  {ERROR} }} }}"""
PREVIEW = f"""query($input: CreateBotInput!) {{ previewBot(input: $input) {{ __typename
  ... on BotPreflight {{ {PREFLIGHT} }} {ERROR} }} }}"""
ACTION = """mutation($id: ID!) {{ {name}(id: $id) {{ __typename
  ... on BotPayload {{ bot {{ id status name steps }} }} {error} }} }}"""
PAUSE = ACTION.format(name="pauseBot", error=ERROR)
RESUME = ACTION.format(name="resumeBot", error=ERROR)
STOP = f"""mutation($id: ID!, $close: Boolean! = false) {{
  stopBot(id: $id, closePosition: $close) {{ __typename
    ... on BotPayload {{ bot {{ id status stoppedAt holdings {{ currency amount }} }} }}
    {ERROR} }} }}"""
RENAME = f"""mutation($id: ID!, $name: String!) {{ renameBot(id: $id, name: $name) {{
  __typename ... on BotPayload {{ bot {{ id name }} }} {ERROR} }} }}"""
BOT = f"""query($id: ID!) {{ bot(id: $id) {{ {BOT_FIELDS}
  trades(first: 5) {{ edges {{ node {{ id side price quantity fee }} }} }}
  openOrders {{ id clientOrderId side price quantity status }}
  decisions(first: 50) {{ edges {{ cursor node {{ at action reason clientOrderId }} }}
                         pageInfo {{ hasNextPage }} }} }} }}"""
PAPER_BOT = f"""query($id: ID!) {{ bot(id: $id) {{ {BOT_FIELDS}
  paperAccount {{ id name status balances {{ currency available held total }}
                  orders(first: 50) {{ edges {{ node {{ id clientOrderId status }} }} }}
                  fills(first: 50) {{ edges {{ node {{ id clientOrderId side price quantity
                                                       fee }} }} }} }}
  trades(first: 20) {{ edges {{ node {{ id side liquidity price quantity quoteAmount fee
                                      feeCurrency createdAt market {{ symbol }}
                                      fill {{ id }} paperFill {{ id clientOrderId }} }} }} }}
  openOrders {{ id clientOrderId side type price stopPrice quantity filledQuantity status
                market {{ symbol }} order {{ id }}
                paperOrder {{ id clientOrderId status }} }} }} }}"""
BOTS = """query($first: Int!, $after: String) { bots(first: $first, after: $after) {
  edges { cursor node { id name status } } pageInfo { hasNextPage endCursor } } }"""
PAGE_OF_BOTS = """{ bots(first: 10) { edges { node { id status equity pnl realisedPnl
  unrealisedPnl holdings { currency amount }
  openOrders { clientOrderId side price status market { symbol } }
  trades(first: 3) { edges { node { price quantity } } }
  decisions(first: 3) { edges { node { action reason } } } } } } }"""


def grid_input(name: str = "grid", **settings: Any) -> dict[str, Any]:
    values = {"lower": "86000", "upper": "94000", "levels": 5, "investment": "1000"}
    values.update(settings)
    return {"name": name, "symbol": SYMBOL, "grid": values}


def dca_input(name: str = "dca", **settings: Any) -> dict[str, Any]:
    values = {"baseOrder": "500", "safetyOrder": "500", "maxSafetyOrders": 2,
              "priceDeviation": "0.02"}  # fmt: skip
    values.update(settings)
    return {"name": name, "symbol": SYMBOL, "dca": values}


async def btc_market(rt: Runtime) -> None:
    """BTC/USDT with a last price of 90000 and asks resting from 90100 up (the engines
    must be running)."""
    maker = LiveVenue(rt, user_id=await funded_user(rt, "bot_maker", BTC="10", USDT="1000000"))
    taker = LiveVenue(rt, user_id=await funded_user(rt, "bot_taker", BTC="10", USDT="1000000"))
    await maker.submit(symbol=SYMBOL, client_order_id="m0",
                       request=limit(Side.SELL, "0.01", "90000"))  # fmt: skip
    await taker.submit(symbol=SYMBOL, client_order_id="t0",
                       request=limit(Side.BUY, "0.01", "90000"))  # fmt: skip
    for n, price in enumerate(("90100", "90200", "90300")):
        await maker.submit(symbol=SYMBOL, client_order_id=f"ask{n}",
                           request=limit(Side.SELL, "1", price))  # fmt: skip


async def store_candles(
    rt: Runtime,
    closes: list[int | str],
    *,
    source: str = "file:test",
    interval: str = "1h",
    step: timedelta = timedelta(hours=1),
    start: datetime = START,
    symbol: str = SYMBOL,
) -> None:
    """Candles of ``closes``, each opening at the close before it."""
    rows, previous = [], Decimal(closes[0])
    for n, close in enumerate(map(Decimal, closes)):
        rows.append({
            "source": source, "symbol": symbol, "interval": interval,
            "open_time": start + n * step, "open": previous, "close": close,
            "high": max(previous, close), "low": min(previous, close), "volume": Decimal(100),
        })  # fmt: skip
        previous = close
    async with rt.sessions() as session, session.begin():
        await session.execute(insert(MarketCandle), rows)


async def written(rt: Runtime) -> tuple[int, int, int, int]:
    """(bots, decisions, users, journal entries): what a refused call must leave alone."""
    async with rt.sessions() as session:
        counts = [
            await session.scalar(select(func.count()).select_from(model))
            for model in (Bot, BotDecision, User, JournalEntry)
        ]
    return counts[0], counts[1], counts[2], counts[3]
