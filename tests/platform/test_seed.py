"""The demo seed: a newcomer signs in and trades at once; leaders with history fill the
leaderboard; a second run changes nothing."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select

from app.seed import ALICE, DEMO_LEADERS, seed_demo_data
from app.trading.market_maker import MakerConfig, MarketMaker
from db.models import (
    Backtest,
    Deposit,
    Fill,
    JournalEntry,
    Leader,
    LedgerAccount,
    MarketCandle,
    Order,
    Posting,
    User,
)
from tests.support.documents import login

ME = "{ me { kycLevel wallets { currency available } } }"
PLACE = """
mutation($input: PlaceOrderInput!) {
  placeOrder(input: $input) {
    __typename
    ... on OrderPayload { order { status } }
    ... on Error { code message }
  }
}"""
BOARD = """
{ leaderboard(first: 10) { edges { node { rank trades winRate leader { displayName } } } } }
"""


async def _alice(gql) -> str:
    auth = await login(gql, ALICE.email, ALICE.password)
    assert auth["__typename"] == "AuthPayload", auth
    return auth["accessToken"]


async def test_alice_is_funded_at_kyc_1_and_trades_at_once(rt, gql, engines):
    await seed_demo_data(rt)
    token = await _alice(gql)
    me = (await gql.data(ME, token=token))["me"]
    assert me["kycLevel"] == 1
    available = {w["currency"]: Decimal(w["available"]) for w in me["wallets"]}
    assert available["USDT"] > 0 and available["BTC"] > 0, available
    placed = await gql.data(
        PLACE,
        {
            "input": {
                "symbol": "BTC/USDT",
                "side": "BUY",
                "type": "LIMIT",
                "quantity": "0.01",
                "price": "85000",
            }
        },
        token=token,
    )
    assert placed["placeOrder"]["__typename"] == "OrderPayload", placed
    assert placed["placeOrder"]["order"]["status"] == "OPEN"


async def test_the_leaderboard_shows_the_demo_leaders(rt, gql):
    await seed_demo_data(rt)  # starts and stops its own engines
    edges = (await gql.data(BOARD))["leaderboard"]["edges"]
    names = {e["node"]["leader"]["displayName"] for e in edges}
    assert len(edges) == len(DEMO_LEADERS) >= 3
    assert names == {leader.name for leader in DEMO_LEADERS}
    for edge in edges:
        assert edge["node"]["trades"] >= 2 * 5  # five round trips, fills both ways
        assert edge["node"]["winRate"] is not None
    async with rt.sessions() as session:
        fills = await session.scalar(select(func.count()).select_from(Fill))
    assert fills == 2 * 2 * sum(len(d.round_trips_bps) for d in DEMO_LEADERS)


async def _state(rt) -> dict[str, object]:
    async with rt.sessions() as session:

        async def count(model) -> int:  # type: ignore[no-untyped-def]
            return await session.scalar(select(func.count()).select_from(model))

        balances = (
            await session.execute(
                select(
                    LedgerAccount.user_id,
                    LedgerAccount.currency,
                    LedgerAccount.kind,
                    LedgerAccount.balance,
                ).order_by(LedgerAccount.id)
            )
        ).all()
        users = (
            await session.execute(
                select(User.id, User.kyc_level, User.updated_at).order_by(User.id)
            )
        ).all()
        return {
            "balances": balances,
            "users": users,
            "entries": await count(JournalEntry),
            "postings": await count(Posting),
            "deposits": await count(Deposit),
            "orders": await count(Order),
            "fills": await count(Fill),
            "candles": await count(MarketCandle),
            "backtests": await count(Backtest),
        }


async def test_seeding_twice_credits_and_trades_once(rt):
    await seed_demo_data(rt)
    first = await _state(rt)
    assert first["deposits"] and first["fills"] and first["entries"]
    assert first["candles"] and first["backtests"]
    await seed_demo_data(rt)
    assert await _state(rt) == first


async def test_leaders_get_their_history_beside_a_market_maker_s_quotes(rt, engines):
    """A database where the market maker already quotes (a run before this seed): the
    desk's orders must not trade with its quotes, or the leaders lack their fills."""
    await MarketMaker(rt, MakerConfig(levels=3, trade_probability=0)).cycle()
    await seed_demo_data(rt)
    async with rt.sessions() as session:
        leaders = await session.scalar(select(func.count()).select_from(Leader))
        sells = await session.scalar(
            select(func.count())
            .select_from(Fill)
            .join(User, User.id == Fill.user_id)
            .where(User.email.in_([d.login.email for d in DEMO_LEADERS]), Fill.side == "SELL")
        )
    assert leaders == len(DEMO_LEADERS)
    assert sells == sum(len(d.round_trips_bps) for d in DEMO_LEADERS)
