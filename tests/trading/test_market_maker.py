"""The built-in market maker: pure quoting rules, then cycles against running engines."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal

from sqlalchemy import select

from app.__main__ import with_embedded_defaults
from app.accounts.domain.passwords import verify_password
from app.core.settings import Settings
from app.trading import commands, placement
from app.trading.domain import market_making as mm
from app.trading.domain.orders import MarketSpec, OrderRequest, OrderType, Side
from app.trading.market_maker import (
    FUNDING_KIND,
    MAKER_EMAIL,
    MakerConfig,
    MarketMaker,
    ensure_traders,
)
from db.models import User
from db.raw import driver
from tests.support.money import balances, fund
from tests.support.trading import D, trader

BTC_USDT = MarketSpec(
    symbol="BTC/USDT",
    base="BTC",
    quote="USDT",
    base_scale=8,
    quote_scale=6,
    tick_size=D("0.01"),
    lot_size=D("0.0001"),
    min_notional=D("5"),
    maker_fee=D("0.001"),
    taker_fee=D("0.002"),
)
SHAPE = mm.LadderShape(levels=4, spread_bps=20, step_bps=10, level_value=D("2000"))
QUIET = MakerConfig(seed=7, levels=3, trade_probability=0)  # quotes, never trades
BUSY = MakerConfig(seed=7, levels=3, trade_probability=1)  # trades on every market


# --- pure -----------------------------------------------------------------------------------


def test_the_ladder_is_layered_on_tick_and_lot_above_the_minimum_notional():
    quotes = mm.ladder(BTC_USDT, D("90000"), SHAPE, random.Random(1))
    bids = [q for q in quotes if q.side is Side.BUY]
    asks = [q for q in quotes if q.side is Side.SELL]
    assert len(bids) == len(asks) == 4
    assert [q.side for q in quotes[:4]] == [Side.BUY, Side.SELL, Side.BUY, Side.SELL]
    assert [q.price for q in bids] == sorted((q.price for q in bids), reverse=True)
    assert [q.price for q in asks] == sorted(q.price for q in asks)
    assert len({q.price for q in quotes}) == 8
    assert BTC_USDT.price(bids[0].price) < D("90000") < BTC_USDT.price(asks[0].price)
    assert BTC_USDT.price(bids[0].price) == D("89910.00")  # 10 bps: half the spread
    assert BTC_USDT.price(asks[-1].price) == D("90360.00")  # 10 + 3 x 10 bps
    for q in quotes:
        value = BTC_USDT.quote_amount(BTC_USDT.notional_units(q.price, q.quantity))
        assert value >= BTC_USDT.min_notional


def test_a_tiny_level_value_still_quotes_the_minimum_notional():
    shape = mm.LadderShape(levels=1, spread_bps=20, step_bps=10, level_value=D("0.01"))
    bid, ask = mm.ladder(BTC_USDT, D("90000"), shape, random.Random(1))
    for q in (bid, ask):
        assert q.quantity == mm.min_lots(BTC_USDT, q.price) == 1  # 0.0001 BTC is ~9 USDT


def test_the_walk_is_seeded_and_keeps_cash_fixed():
    def run(seed: int) -> list[dict[str, Decimal]]:
        walk = mm.PriceWalk(fixed=frozenset({"USDT"}))
        rng = random.Random(seed)
        known = {"BTC": D("90000"), "USDT": D("1")}
        steps = []
        for _ in range(5):
            walk.step(rng, 10, known)
            steps.append(dict(walk.prices))
        return steps

    assert run(3) == run(3)
    assert run(3) != run(4)
    assert all(step["USDT"] == 1 for step in run(3))
    assert all(abs(step["BTC"] / 90000 - 1) < D("0.01") for step in run(3))


def test_the_reference_stays_inside_the_band_of_the_last_price():
    assert mm.keep_in_band(D("120"), D("100"), 500) == D("105")
    assert mm.keep_in_band(D("80"), D("100"), 500) == D("95")
    assert mm.keep_in_band(D("101"), D("100"), 500) == D("101")
    assert mm.keep_in_band(D("500"), None, 500) == D("500")


def test_the_taker_takes_the_best_quote_and_draws_the_same_either_way():
    quotes = mm.ladder(BTC_USDT, D("90000"), SHAPE, random.Random(1))
    take = mm.taker_order(BTC_USDT, quotes, random.Random(2), 1.0)
    assert take is not None
    best = next(q for q in quotes if q.side is not take.side)
    assert take.price == best.price and 1 <= take.quantity <= best.quantity
    never, always = random.Random(5), random.Random(5)
    assert mm.taker_order(BTC_USDT, quotes, never, 0.0) is None
    mm.taker_order(BTC_USDT, quotes, always, 1.0)
    assert never.random() == always.random()


def test_serve_with_embedded_servers_turns_the_maker_on_unless_told_otherwise():
    assert Settings(env="test").market_maker_enabled is False  # tests: off by default
    embedded = Settings(database_url=None, redis_url=None)
    assert with_embedded_defaults(embedded).market_maker_enabled is True
    explicit = Settings(database_url=None, redis_url=None, market_maker_enabled=False)
    assert with_embedded_defaults(explicit).market_maker_enabled is False
    external = Settings(database_url="postgresql://x/y", redis_url="redis://x")
    assert with_embedded_defaults(external).market_maker_enabled is False


# --- against the engines ---------------------------------------------------------------------


async def _quotes(rt, user_id: int) -> list[tuple[str, str, Decimal, Decimal]]:
    """The user's live orders: (symbol, side, price, quantity), sorted."""
    async with rt.sessions() as session:
        pg = await driver(session)
        rows = await pg.fetch(
            "SELECT m.symbol, o.side, o.book_price, o.quantity FROM orders o"
            " JOIN markets m ON m.id = o.market_id"
            " WHERE o.user_id = $1 AND o.status IN ('OPEN', 'PARTIALLY_FILLED')",
            user_id,
        )
    return sorted((r[0], r[1], r[2].normalize(), r[3].normalize()) for r in rows)


async def _reference_prices(rt) -> dict[str, Decimal]:
    async with rt.sessions() as session:
        pg = await driver(session)
        rows = await pg.fetch("SELECT currency, usd_price FROM reference_prices")
    return {r["currency"]: r["usd_price"] for r in rows}


async def _last_prices(rt) -> dict[str, Decimal | None]:
    async with rt.sessions() as session:
        pg = await driver(session)
        rows = await pg.fetch("SELECT symbol, last_price FROM markets")
    return {r["symbol"]: r["last_price"] for r in rows}


async def test_a_cycle_quotes_bids_below_asks_on_every_market(rt, engines):
    maker = MarketMaker(rt, QUIET)
    plans = await maker.cycle()
    assert len(plans) == 5
    traders = await ensure_traders(rt)
    live = await _quotes(rt, traders.maker_id)
    assert len(live) == 5 * 2 * QUIET.levels
    for engine in engines.engines.values():
        book = engine.book
        assert book.best_bid is not None and book.best_ask is not None
        assert book.best_bid < book.best_ask
    btc = [q for q in live if q[0] == "BTC/USDT"]
    best_bid = max(q[2] for q in btc if q[1] == "BUY")
    best_ask = min(q[2] for q in btc if q[1] == "SELL")
    assert D("89000") < best_bid < best_ask < D("91000")

    await maker.cycle()  # the previous quotes are replaced, not added to
    assert len(await _quotes(rt, traders.maker_id)) == 5 * 2 * QUIET.levels


async def test_a_users_marketable_buy_fills_against_the_maker(gql, rt, engines):
    await MarketMaker(rt, QUIET).cycle()
    traders = await ensure_traders(rt)
    best_ask = min(
        q[2] for q in await _quotes(rt, traders.maker_id) if q[:2] == ("BTC/USDT", "SELL")
    )
    buyer, _ = await trader(gql, rt, "buyer@example.com", USDT="1000")
    order = await placement.place_order(
        rt,
        user_id=buyer,
        symbol="BTC/USDT",
        request=OrderRequest(
            side=Side.BUY, type=OrderType.LIMIT, quantity=D("0.001"), price=best_ask
        ),
    )
    assert order.status == "FILLED"
    async with rt.sessions() as session:
        pg = await driver(session)
        sides = await pg.fetch(
            "SELECT user_id, liquidity, price FROM fills WHERE trade_id IN"
            " (SELECT trade_id FROM fills WHERE order_id = $1) ORDER BY user_id",
            order.id,
        )
    assert {(r["user_id"], r["liquidity"]) for r in sides} == {
        (buyer, "TAKER"),
        (traders.maker_id, "MAKER"),
    }
    assert {r["price"] for r in sides} == {best_ask}
    assert (await balances(rt, buyer))["BTC"][0] == D("0.001")
    assert (await _reference_prices(rt))["BTC"] == best_ask


async def test_the_flow_trades_move_last_and_reference_prices(rt, engines):
    before = await _reference_prices(rt)
    maker = MarketMaker(rt, BUSY)
    for _ in range(2):
        await maker.cycle()
    after = await _reference_prices(rt)
    last = await _last_prices(rt)
    assert all(price is not None for price in last.values())
    for currency in ("BTC", "ETH", "SOL"):
        assert after[currency] != before[currency]
        assert abs(after[currency] / before[currency] - 1) < D("0.02")
    assert after["USD"] == after["USDT"] == 1
    cross = after["ETH"] / after["BTC"]  # ETH/BTC trades near the USD prices' cross rate
    assert abs(last["ETH/BTC"] / cross - 1) < D("0.01")
    traders = await ensure_traders(rt)
    async with rt.sessions() as session:
        pg = await driver(session)
        flow_fills = await pg.fetchval(
            "SELECT count(*) FROM fills WHERE user_id = $1", traders.flow_id
        )
    assert flow_fills >= 5


async def test_the_same_seed_quotes_the_same(rt, engines):
    traders = await ensure_traders(rt)
    await MarketMaker(rt, QUIET).cycle()
    first = await _quotes(rt, traders.maker_id)
    await MarketMaker(rt, QUIET).cycle()  # a fresh maker, the same seed and prices
    assert await _quotes(rt, traders.maker_id) == first
    await MarketMaker(rt, MakerConfig(seed=8, levels=3, trade_probability=0)).cycle()
    assert await _quotes(rt, traders.maker_id) != first


async def test_the_system_users_are_funded_once_then_topped_up_when_low(rt, engines):
    maker = MarketMaker(rt, QUIET)
    await maker.cycle()
    await maker.cycle()
    traders = await ensure_traders(rt)
    async with rt.sessions() as session:
        user = await session.scalar(select(User).where(User.email == MAKER_EMAIL))
        pg = await driver(session)
        fundings = await pg.fetchval(
            "SELECT count(*) FROM journal_entries WHERE kind = $1", FUNDING_KIND
        )
    assert user.role == "USER" and user.email_verified_at is not None
    assert not verify_password(user.password_hash, "!")
    assert fundings == 1
    available, held = (await balances(rt, traders.maker_id))["BTC"]
    assert available + held >= D("10")  # about a million USD of each currency

    # most of the maker's BTC leaves: the next cycle tops it up
    await commands.cancel_all_orders(rt, user_id=traders.maker_id)
    await fund(rt, traders.maker_id, "BTC", str(-(available + held) + D("1")))
    await maker.cycle()
    available, held = (await balances(rt, traders.maker_id))["BTC"]
    assert available + held >= D("10")


async def test_started_it_quotes_and_stopped_it_withdraws_its_quotes(rt, engines):
    maker = MarketMaker(rt, QUIET)
    maker.start()
    traders = await ensure_traders(rt)
    for _ in range(200):
        if len(await _quotes(rt, traders.maker_id)) == 5 * 2 * QUIET.levels:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the maker did not quote")
    await maker.stop()
    assert await _quotes(rt, traders.maker_id) == []
