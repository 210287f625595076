"""The engine and the request side together, through the services (no GraphQL): order
types, refusals, amendments, order lists, the kill switch and settlement, on real
PostgreSQL with every market's engine running in the test's event loop."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest
from sqlalchemy import event, text

from app.core.errors import Forbidden, InsufficientFunds
from app.runtime import build_runtime
from app.trading import command_queue, commands, order_lists, placement, pretrade
from app.trading.domain import errors
from app.trading.domain.errors import FokNotFillable, PostOnlyWouldTake
from app.trading.domain.orders import (
    LIVE_STATUSES,
    MarketStatus,
    OrderType,
    Side,
    TimeInForce,
    TrailingOffsetType,
)
from app.trading.engine.runner import EngineSet
from app.trading.engine.state import OrderIndex
from tests.support.trading import (
    BTC,
    FAST_ENGINE,
    D,
    book_of,
    eventually,
    fees_collected,
    fills_of,
    funded_user,
    limit,
    market,
    market_id,
    place,
    reload,
    request,
    rows,
    running_engines,
    scalar,
    trade_at,
    wallet,
)

BUY, SELL = Side.BUY, Side.SELL
ZERO = D(0)


@pytest.fixture
async def engines(rt, monkeypatch):
    monkeypatch.setattr(rt, "settings", rt.settings.model_copy(update=FAST_ENGINE))
    async with running_engines(rt) as engines:
        yield engines


@pytest.fixture
async def tape(rt, engines):
    """Two users who print trades (``trade_at``), rich in both currencies."""
    return (
        await funded_user(rt, "tape_maker", BTC="100", USDT="1000000"),
        await funded_user(rt, "tape_taker", BTC="100", USDT="1000000"),
    )


async def outbox_mentions(rt, order_id: int) -> int:
    return await scalar(
        rt, "SELECT count(*) FROM outbox WHERE (payload->>'orderId')::bigint = $1", order_id
    )


# --- limit, market, IOC, FOK, post-only, GTD -----------------------------------------------


async def test_limit_orders_rest_then_cross_at_the_makers_price(rt, engines):
    seller = await funded_user(rt, "seller", BTC="1")
    buyer = await funded_user(rt, "buyer", USDT="1000")
    ask = await place(rt, seller, limit(SELL, "0.5", "100"))
    assert ask.status == "OPEN"
    assert await wallet(rt, seller, "BTC") == (D("0.5"), D("0.5"))
    bid = await place(rt, buyer, limit(BUY, "0.2", "99"))
    assert bid.status == "OPEN"
    book = await book_of(rt, engines)
    assert [(o.order_id, o.price, o.remaining) for o in book.asks] == [(ask.id, 10000, 5000)]
    assert [(o.order_id, o.price, o.remaining) for o in book.bids] == [(bid.id, 9900, 2000)]

    taker = await place(rt, buyer, limit(BUY, "0.3", "101"))
    assert taker.status == "FILLED"
    assert taker.filled_quantity == D("0.3")
    assert taker.executed_value == D("30")  # at the maker's 100, not 101
    assert (await reload(rt, ask.id)).status == "PARTIALLY_FILLED"
    (fill,) = await fills_of(rt, taker.id)
    assert (fill.price, fill.quantity, fill.liquidity) == (D("100"), D("0.3"), "TAKER")
    # the taker held for 101 and was filled at 100: what it did not spend is free again
    assert await wallet(rt, buyer, "USDT") == (D("1000") - D("30.06") - D("19.8396"), D("19.8396"))
    assert await wallet(rt, buyer, "BTC") == (D("0.3"), ZERO)


async def test_market_order_stops_at_its_worst_price(rt, engines):
    seller = await funded_user(rt, "seller", BTC="3")
    buyer = await funded_user(rt, "buyer", USDT="1000")
    for price in ("100", "101", "103"):
        await place(rt, seller, limit(SELL, "1", price))
    order = await place(rt, buyer, market(BUY, "3", worst_price=D("102")))
    assert order.status == "EXPIRED"
    assert order.reason == "PRICE_LIMIT"
    assert order.filled_quantity == D("2")
    assert [f.price for f in await fills_of(rt, order.id)] == [D("100"), D("101")]
    # a max slippage from the last price (101): 1 % allows up to 102.01, so 103 stays
    capped = await place(rt, buyer, market(BUY, "1", max_slippage_bps=100))
    assert (capped.status, capped.filled_quantity) == ("EXPIRED", ZERO)
    assert (await wallet(rt, buyer, "USDT"))[1] == ZERO
    book = await book_of(rt, engines)
    assert [(o.price, o.remaining) for o in book.asks] == [(10300, 10000)]


async def test_ioc_leftover_expires_and_releases_its_hold(rt, engines):
    seller = await funded_user(rt, "seller", BTC="1")
    buyer = await funded_user(rt, "buyer", USDT="1000")
    await place(rt, seller, limit(SELL, "0.1", "100"))
    order = await place(rt, buyer, limit(BUY, "0.5", "100", time_in_force=TimeInForce.IOC))
    assert (order.status, order.filled_quantity, order.reason) == (
        "EXPIRED",
        D("0.1"),
        "NO_LIQUIDITY",
    )
    assert await wallet(rt, buyer, "USDT") == (D("1000") - D("10.02"), ZERO)
    assert (await book_of(rt, engines)).bids == ()


async def test_fill_or_kill_that_cannot_fill_is_rejected_with_nothing_left(rt, engines):
    seller = await funded_user(rt, "seller", BTC="1")
    buyer = await funded_user(rt, "buyer", USDT="1000")
    await place(rt, seller, limit(SELL, "0.1", "100"))
    with pytest.raises(FokNotFillable):
        await place(
            rt,
            buyer,
            limit(BUY, "0.2", "100", time_in_force=TimeInForce.FOK),
            client_order_id="fok-1",
        )
    (order_id, status, reason) = (
        await rows(rt, "SELECT id, status, reason FROM orders WHERE client_order_id = 'fok-1'")
    )[0]
    assert (status, reason) == ("REJECTED", "FOK_NOT_FILLABLE")
    assert await wallet(rt, buyer, "USDT") == (D("1000"), ZERO)
    assert await outbox_mentions(rt, order_id) == 0
    assert await fills_of(rt, order_id) == []
    # a FOK that can fill does, completely
    filled = await place(rt, buyer, limit(BUY, "0.1", "100", time_in_force=TimeInForce.FOK))
    assert filled.status == "FILLED"


async def test_post_only_that_would_take_is_refused_and_holds_nothing(rt, engines):
    seller = await funded_user(rt, "seller", BTC="1")
    buyer = await funded_user(rt, "buyer", USDT="1000")
    await place(rt, seller, limit(SELL, "0.1", "100"))
    with pytest.raises(PostOnlyWouldTake):
        await place(rt, buyer, limit(BUY, "0.1", "100", post_only=True))
    assert await wallet(rt, buyer, "USDT") == (D("1000"), ZERO)
    assert await scalar(rt, "SELECT count(*) FROM fills") == 0
    maker = await place(rt, buyer, limit(BUY, "0.1", "99.99", post_only=True))
    assert maker.status == "OPEN"


async def test_good_till_date_expires_when_its_time_comes(rt, engines):
    seller = await funded_user(rt, "seller", BTC="1", USDT="100")
    now = rt.now()
    gtd = {"time_in_force": TimeInForce.GTD, "expires_at": now + timedelta(hours=1)}
    order = await place(rt, seller, limit(SELL, "0.4", "100", **gtd))
    assert order.status == "OPEN"
    stop = await place(
        rt, seller, request(BUY, OrderType.STOP_LIMIT, "0.1", stop_price="99", price="99", **gtd)
    )
    assert stop.status == "UNTRIGGERED"
    rt.clock = lambda: now + timedelta(minutes=59)
    await eventually(lambda: _status(rt, order.id, "EXPIRED"), within=0.3)
    assert (await reload(rt, order.id)).status == "OPEN"
    rt.clock = lambda: now + timedelta(hours=1, seconds=1)
    assert await eventually(lambda: _status(rt, order.id, "EXPIRED"))
    assert (await reload(rt, order.id)).reason == "GTD_EXPIRED"
    assert await eventually(lambda: _status(rt, stop.id, "EXPIRED"))
    assert await wallet(rt, seller, "BTC") == (D("1"), ZERO)
    assert await wallet(rt, seller, "USDT") == (D("100"), ZERO)
    assert (await book_of(rt, engines)).asks == ()


async def _status(rt, order_id: int, status: str) -> bool:
    return (await reload(rt, order_id)).status == status


# --- conditional orders --------------------------------------------------------------------


async def test_stop_market_sell_fires_once_when_the_price_falls_to_it(rt, engines, tape):
    stopper = await funded_user(rt, "stopper", BTC="1")
    bidder = await funded_user(rt, "bidder", USDT="1000")
    await trade_at(rt, *tape, "100")
    stop = await place(rt, stopper, request(SELL, OrderType.STOP_MARKET, "0.5", stop_price="95"))
    assert stop.status == "UNTRIGGERED"
    assert await wallet(rt, stopper, "BTC") == (D("0.5"), D("0.5"))
    await place(rt, bidder, limit(BUY, "2", "91"))  # 95 - 5 %: the stop sells down to 90.25
    await trade_at(rt, *tape, "96")
    assert (await reload(rt, stop.id)).status == "UNTRIGGERED"
    await trade_at(rt, *tape, "95")
    fired = await reload(rt, stop.id)
    assert (fired.status, fired.filled_quantity) == ("FILLED", D("0.5"))
    assert [(f.price, f.quantity) for f in await fills_of(rt, stop.id)] == [(D("91"), D("0.5"))]
    await trade_at(rt, *tape, "94")
    await trade_at(rt, *tape, "95")
    assert len(await fills_of(rt, stop.id)) == 1
    assert [(o.price, o.remaining) for o in (await book_of(rt, engines)).bids] == [(9100, 15000)]
    assert await wallet(rt, stopper, "BTC") == (D("0.5"), ZERO)


async def test_stops_cascade_within_one_command(rt, engines, tape):
    first = await funded_user(rt, "first", BTC="1")
    second = await funded_user(rt, "second", BTC="1")
    bidder = await funded_user(rt, "bidder", USDT="1000")
    await trade_at(rt, *tape, "100")
    a = await place(rt, first, request(SELL, OrderType.STOP_MARKET, "1", stop_price="95"))
    b = await place(rt, second, request(SELL, OrderType.STOP_MARKET, "0.5", stop_price="93"))
    await place(rt, bidder, limit(BUY, "0.5", "94"))
    await place(rt, bidder, limit(BUY, "1", "92"))
    await trade_at(rt, *tape, "95")  # a sells down to 92, which fires b
    assert [f.price for f in await fills_of(rt, a.id)] == [D("94"), D("92")]
    assert [f.price for f in await fills_of(rt, b.id)] == [D("92")]
    assert {(await reload(rt, o.id)).status for o in (a, b)} == {"FILLED"}
    assert (await book_of(rt, engines)).bids == ()


async def test_stop_limit_buy_rests_at_its_limit_once_triggered(rt, engines, tape):
    buyer = await funded_user(rt, "buyer", USDT="1000")
    await trade_at(rt, *tape, "100")
    stop = await place(
        rt, buyer, request(BUY, OrderType.STOP_LIMIT, "1", stop_price="105", price="106")
    )
    assert stop.status == "UNTRIGGERED"
    await trade_at(rt, *tape, "104.99")
    assert (await reload(rt, stop.id)).status == "UNTRIGGERED"
    await trade_at(rt, *tape, "105")
    assert (await reload(rt, stop.id)).status == "OPEN"  # no ask at 106 or below
    assert [(o.order_id, o.price) for o in (await book_of(rt, engines)).bids] == [(stop.id, 10600)]


async def test_take_profit_orders_fire_the_other_way(rt, engines, tape):
    holder = await funded_user(rt, "holder", BTC="1", USDT="1000")
    liquidity = await funded_user(rt, "liquidity", USDT="1000")
    await trade_at(rt, *tape, "100")
    # a SELL take-profit fires when the price rises to it, a BUY one when it falls
    sell = await place(
        rt, holder, request(SELL, OrderType.TAKE_PROFIT_MARKET, "0.2", stop_price="110")
    )
    buy = await place(
        rt, holder, request(BUY, OrderType.TAKE_PROFIT_LIMIT, "0.2", stop_price="90", price="90")
    )
    await place(rt, liquidity, limit(BUY, "0.2", "105"))  # the SELL sells down to 104.50
    await trade_at(rt, *tape, "109.99")
    assert (await reload(rt, sell.id)).status == "UNTRIGGERED"
    await trade_at(rt, *tape, "110")
    assert (await reload(rt, sell.id)).status == "FILLED"
    assert [f.price for f in await fills_of(rt, sell.id)] == [D("105")]
    assert (await reload(rt, buy.id)).status == "UNTRIGGERED"
    await trade_at(rt, *tape, "97")  # limit prices stay within 10 % of the last price
    await trade_at(rt, *tape, "90.01")
    assert (await reload(rt, buy.id)).status == "UNTRIGGERED"
    await trade_at(rt, *tape, "90")
    assert (await reload(rt, buy.id)).status == "OPEN"
    assert [o.order_id for o in (await book_of(rt, engines)).bids] == [buy.id]


async def test_trailing_stop_by_amount_follows_the_highs_and_fires_once(rt, engines, tape):
    holder = await funded_user(rt, "holder", BTC="1")
    bidder = await funded_user(rt, "bidder", USDT="1000")
    await trade_at(rt, *tape, "100")
    trailing = await place(
        rt, holder, request(SELL, OrderType.TRAILING_STOP, "0.3", trailing_offset="2")
    )
    assert trailing.status == "UNTRIGGERED"
    await place(rt, bidder, limit(BUY, "1", "99"))
    await trade_at(rt, *tape, "103")  # the stop rises to 101
    stored = await reload(rt, trailing.id)
    assert (stored.trailing_active, stored.trailing_extreme) == (True, D("103"))
    await trade_at(rt, *tape, "101.01")
    assert (await reload(rt, trailing.id)).status == "UNTRIGGERED"
    await trade_at(rt, *tape, "101")
    fired = await reload(rt, trailing.id)
    assert (fired.status, fired.filled_quantity) == ("FILLED", D("0.3"))
    assert [f.price for f in await fills_of(rt, trailing.id)] == [D("99")]
    await trade_at(rt, *tape, "100")
    assert len(await fills_of(rt, trailing.id)) == 1


async def test_trailing_stop_by_percent_waits_for_its_activation_price(rt, engines, tape):
    holder = await funded_user(rt, "holder", USDT="1000")
    asker = await funded_user(rt, "asker", BTC="1")
    await trade_at(rt, *tape, "100")
    trailing = await place(
        rt,
        holder,
        request(
            BUY,
            OrderType.TRAILING_STOP,
            "0.3",
            trailing_offset="2",
            trailing_offset_type=TrailingOffsetType.PERCENT,
            activation_price="95",
        ),
    )
    await place(rt, asker, limit(SELL, "1", "97"))
    await trade_at(rt, *tape, "96")  # not active yet: 96 is above its 2 % trail of 95
    stored = await reload(rt, trailing.id)
    assert (stored.status, stored.trailing_active) == ("UNTRIGGERED", False)
    await trade_at(rt, *tape, "95")  # active, the stop at 96.90
    await trade_at(rt, *tape, "94")  # the stop falls to 95.88
    await trade_at(rt, *tape, "95.87")
    assert (await reload(rt, trailing.id)).status == "UNTRIGGERED"
    await trade_at(rt, *tape, "95.88")
    fired = await reload(rt, trailing.id)
    assert (fired.status, fired.filled_quantity) == ("FILLED", D("0.3"))
    assert [f.price for f in await fills_of(rt, trailing.id)] == [D("97")]


# --- refusals: a typed error and nothing changed ----------------------------------------------


async def _footprint(rt, uid: int):
    return (
        await scalar(rt, "SELECT count(*) FROM orders WHERE user_id = $1", uid),
        await scalar(rt, "SELECT count(*) FROM holds WHERE user_id = $1", uid),
        await scalar(rt, "SELECT count(*) FROM order_commands WHERE user_id = $1", uid),
        await wallet(rt, uid, "BTC"),
        await wallet(rt, uid, "USDT"),
    )


async def _refused(rt, uid: int, error: type[Exception], call) -> Exception:
    before = await _footprint(rt, uid)
    with pytest.raises(error) as raised:
        await call
    assert await _footprint(rt, uid) == before
    return raised.value


async def test_bad_orders_are_refused_with_a_typed_error_and_change_nothing(rt, engines, tape):
    uid = await funded_user(rt, "trader", BTC="1", USDT="1000")
    await place(rt, uid, limit(BUY, "0.1", "90"))  # something held already
    await _refused(
        rt,
        uid,
        errors.UnknownMarket,
        placement.place_order(rt, user_id=uid, symbol="DOGE/USDT", request=limit(BUY, "1", "1")),
    )
    await _refused(rt, uid, errors.QuantityOffLotSize, place(rt, uid, limit(BUY, "0.00015", "100")))
    await _refused(
        rt, uid, errors.BelowMinimumNotional, place(rt, uid, limit(BUY, "0.0001", "100"))
    )
    await _refused(rt, uid, errors.PriceOffTick, place(rt, uid, limit(BUY, "0.1", "100.001")))
    await _refused(rt, uid, InsufficientFunds, place(rt, uid, limit(BUY, "10", "100")))
    await _refused(rt, uid, InsufficientFunds, place(rt, uid, limit(SELL, "1.0001", "100")))
    await _refused(rt, uid, errors.OrderTooLarge, place(rt, uid, limit(BUY, "20000", "100")))
    # no last price yet: a MARKET order needs a worst price
    await _refused(rt, uid, errors.InvalidOrder, place(rt, uid, market(BUY, "0.1")))
    await _refused(
        rt,
        uid,
        errors.InvalidOrder,
        place(rt, uid, limit(BUY, "0.1", "100", post_only=True, time_in_force=TimeInForce.IOC)),
    )
    await trade_at(rt, *tape, "100")  # a last price: the band and the stop side apply
    await _refused(rt, uid, errors.PriceOutsideBand, place(rt, uid, limit(SELL, "0.1", "110.01")))
    await _refused(rt, uid, errors.PriceOutsideBand, place(rt, uid, limit(BUY, "0.1", "89.99")))
    resting = await place(rt, uid, limit(BUY, "0.1", "90"))
    assert resting.status == "OPEN"  # 10 % from the last price is fine
    await _refused(
        rt,
        uid,
        errors.StopPriceWrongSide,
        place(rt, uid, request(SELL, OrderType.STOP_MARKET, "0.1", stop_price="100.01")),
    )
    await _refused(
        rt,
        uid,
        errors.StopPriceWrongSide,
        place(rt, uid, request(BUY, OrderType.STOP_LIMIT, "0.1", stop_price="99", price="99")),
    )
    admin = await funded_user(rt, "admin")
    async with rt.sessions() as session, session.begin():
        await session.execute(text("UPDATE users SET role = 'ADMIN' WHERE id = :id"), {"id": admin})
    halted = await commands.set_market_status(
        rt, actor_id=admin, symbol=BTC, status=MarketStatus.HALTED
    )
    assert halted.spec.status is MarketStatus.HALTED
    await _refused(rt, uid, errors.MarketHalted, place(rt, uid, limit(BUY, "0.1", "100")))
    amend = commands.amend_order(
        rt, user_id=uid, order_id=resting.id, price=D("101"), quantity=None
    )
    await _refused(rt, uid, errors.MarketHalted, amend)
    assert (await reload(rt, resting.id)).book_price == D("90")
    with pytest.raises(Forbidden):
        await commands.set_market_status(rt, actor_id=uid, symbol=BTC, status=MarketStatus.OPEN)
    await commands.set_market_status(rt, actor_id=admin, symbol=BTC, status=MarketStatus.OPEN)
    assert (await place(rt, uid, limit(BUY, "0.1", "100"))).status == "OPEN"


async def test_cancel_refuses_other_users_orders_and_final_ones(rt, engines):
    owner = await funded_user(rt, "owner", BTC="1")
    other = await funded_user(rt, "other", USDT="1000")
    ask = await place(rt, owner, limit(SELL, "0.1", "100"))
    with pytest.raises(errors.OrderNotFound):
        await commands.cancel_order(rt, user_id=other, order_id=ask.id)
    with pytest.raises(errors.OrderNotFound):
        await commands.cancel_order(rt, user_id=other, client_order_id=ask.client_order_id)
    assert (await reload(rt, ask.id)).status == "OPEN"
    canceled = await commands.cancel_order(rt, user_id=owner, order_id=ask.id)
    assert (canceled.status, canceled.reason) == ("CANCELED", "CANCELED")
    assert await wallet(rt, owner, "BTC") == (D("1"), ZERO)
    with pytest.raises(errors.OrderNotCancellable):
        await commands.cancel_order(rt, user_id=owner, order_id=ask.id)
    filled_ask = await place(rt, owner, limit(SELL, "0.1", "100"))
    await place(rt, other, limit(BUY, "0.1", "100"))
    with pytest.raises(errors.OrderNotCancellable):
        await commands.cancel_order(rt, user_id=owner, order_id=filled_ask.id)
    cancels = await scalar(rt, "SELECT count(*) FROM order_commands WHERE kind = 'CANCEL'")
    assert cancels == 1


async def test_client_order_id_returns_the_same_order_or_refuses_other_parameters(rt, engines):
    uid = await funded_user(rt, "trader", USDT="1000")
    first = await place(rt, uid, limit(BUY, "0.1", "99.5"), client_order_id="my-1")
    again = await place(rt, uid, limit(BUY, "0.10", "99.50"), client_order_id="my-1")
    assert again.id == first.id
    assert await scalar(rt, "SELECT count(*) FROM orders") == 1
    assert await wallet(rt, uid, "USDT") == (D("1000") - D("9.9699"), D("9.9699"))
    await _refused(
        rt,
        uid,
        errors.ClientOrderIdReused,
        place(rt, uid, limit(BUY, "0.1", "99.6"), client_order_id="my-1"),
    )
    # another user may use the same id
    other = await funded_user(rt, "other", USDT="1000")
    assert (
        await place(rt, other, limit(BUY, "0.1", "99.6"), client_order_id="my-1")
    ).id != first.id


async def test_client_list_id_returns_the_same_list_for_the_same_bracket(rt, engines):
    uid = await funded_user(rt, "trader", USDT="1000")

    def bracket(quantity: str, take_profit: str) -> order_lists.Bracket:
        return order_lists.Bracket(
            entry=limit(BUY, quantity, "100"),
            take_profit_price=D(take_profit),
            stop_loss_price=D("95"),
        )

    first = await order_lists.place_order_list(
        rt, user_id=uid, symbol=BTC, client_list_id="b-1", bracket=bracket("0.5", "110")
    )
    again = await order_lists.place_order_list(
        rt, user_id=uid, symbol="btc/usdt", client_list_id="b-1", bracket=bracket("0.50", "110.0")
    )
    assert again.list.id == first.list.id
    assert [o.id for o in again.orders] == [o.id for o in first.orders]
    assert await scalar(rt, "SELECT count(*) FROM orders") == 3
    with pytest.raises(errors.ClientOrderIdReused):
        await order_lists.place_order_list(
            rt, user_id=uid, symbol=BTC, client_list_id="b-1", bracket=bracket("0.5", "111")
        )


async def test_open_orders_are_limited_per_user(rt, engines, monkeypatch):
    monkeypatch.setattr(
        rt, "settings", rt.settings.model_copy(update={"trading_max_open_orders": 3})
    )
    uid = await funded_user(rt, "trader", USDT="1000")
    placed = [await place(rt, uid, limit(BUY, "0.1", price)) for price in ("97", "98", "99")]
    await _refused(rt, uid, errors.TooManyOpenOrders, place(rt, uid, limit(BUY, "0.1", "96")))
    await commands.cancel_order(rt, user_id=uid, order_id=placed[0].id)
    assert (await place(rt, uid, limit(BUY, "0.1", "96"))).status == "OPEN"


# --- amend ------------------------------------------------------------------------------------


async def _bid_queue(rt, engines) -> list[tuple[int, int, int]]:
    return [(o.order_id, o.price, o.remaining) for o in (await book_of(rt, engines)).bids]


async def test_amend_keeps_priority_only_when_the_order_shrinks(rt, engines):
    first = await funded_user(rt, "first", USDT="1000")
    second = await funded_user(rt, "second", USDT="1000")
    seller = await funded_user(rt, "seller", BTC="1")
    a = await place(rt, first, limit(BUY, "0.5", "99"))
    b = await place(rt, second, limit(BUY, "0.5", "99"))
    smaller = await commands.amend_order(
        rt, user_id=first, order_id=a.id, price=None, quantity=D("0.3")
    )
    assert (smaller.status, smaller.quantity, smaller.priority) == ("OPEN", D("0.3"), a.priority)
    assert await _bid_queue(rt, engines) == [(a.id, 9900, 3000), (b.id, 9900, 5000)]
    assert await wallet(rt, first, "USDT") == (D("1000") - D("29.7594"), D("29.7594"))
    larger = await commands.amend_order(
        rt, user_id=first, order_id=a.id, price=None, quantity=D("0.4")
    )
    assert larger.priority > b.priority
    assert await _bid_queue(rt, engines) == [(b.id, 9900, 5000), (a.id, 9900, 4000)]
    # a price change goes to the back of the new level, even back to the old price
    await commands.amend_order(rt, user_id=second, order_id=b.id, price=D("98"), quantity=None)
    await commands.amend_order(rt, user_id=second, order_id=b.id, price=D("99"), quantity=None)
    assert await _bid_queue(rt, engines) == [(a.id, 9900, 4000), (b.id, 9900, 5000)]
    taker = await place(rt, seller, limit(SELL, "0.4", "99"))
    assert taker.status == "FILLED"
    assert (await reload(rt, a.id)).status == "FILLED"
    assert (await reload(rt, b.id)).filled_quantity == ZERO
    assert await wallet(rt, first, "USDT") == (D("1000") - D("39.6396"), ZERO)  # maker fee


async def test_amend_to_a_higher_buy_price_holds_more_or_fails_unchanged(rt, engines):
    uid = await funded_user(rt, "trader", USDT="100")
    bid = await place(rt, uid, limit(BUY, "0.5", "99"))
    assert await wallet(rt, uid, "USDT") == (D("50.401"), D("49.599"))
    raised = await commands.amend_order(
        rt, user_id=uid, order_id=bid.id, price=D("99.5"), quantity=None
    )
    assert raised.book_price == D("99.5")
    assert await wallet(rt, uid, "USDT") == (D("50.1505"), D("49.8495"))
    before = await reload(rt, bid.id)
    with pytest.raises(InsufficientFunds):
        await commands.amend_order(rt, user_id=uid, order_id=bid.id, price=None, quantity=D("1.1"))
    after = await reload(rt, bid.id)
    assert (after.status, after.quantity, after.book_price, after.priority) == (
        before.status,
        before.quantity,
        before.book_price,
        before.priority,
    )
    assert await wallet(rt, uid, "USDT") == (D("50.1505"), D("49.8495"))
    assert await _bid_queue(rt, engines) == [(bid.id, 9950, 5000)]
    lower = await commands.amend_order(
        rt, user_id=uid, order_id=bid.id, price=D("90"), quantity=None
    )
    assert lower.book_price == D("90")
    assert await wallet(rt, uid, "USDT") == (D("54.91"), D("45.09"))


async def test_amend_that_crosses_trades_as_a_taker(rt, engines):
    buyer = await funded_user(rt, "buyer", USDT="1000")
    seller = await funded_user(rt, "seller", BTC="1")
    ask = await place(rt, seller, limit(SELL, "0.2", "100"))
    bid = await place(rt, buyer, limit(BUY, "0.5", "98"))
    amended = await commands.amend_order(
        rt, user_id=buyer, order_id=bid.id, price=D("100"), quantity=None
    )
    assert (amended.status, amended.filled_quantity) == ("PARTIALLY_FILLED", D("0.2"))
    (fill,) = await fills_of(rt, bid.id)
    assert (fill.liquidity, fill.price, fill.fee) == ("TAKER", D("100"), D("0.04"))
    assert (await reload(rt, ask.id)).status == "FILLED"
    assert await _bid_queue(rt, engines) == [(bid.id, 10000, 3000)]
    # what is held covers the rest at 100 plus the larger fee
    assert await wallet(rt, buyer, "USDT") == (D("1000") - D("20.04") - D("30.06"), D("30.06"))
    with pytest.raises(errors.PriceOutsideBand):  # 10 % from the last price, 100
        await commands.amend_order(rt, user_id=buyer, order_id=bid.id, price=D("89"), quantity=None)
    with pytest.raises(errors.InvalidAmend):
        await commands.amend_order(
            rt, user_id=buyer, order_id=bid.id, price=None, quantity=D("0.2")
        )
    assert await _bid_queue(rt, engines) == [(bid.id, 10000, 3000)]
    market_order = await place(rt, seller, limit(SELL, "0.3", "100", time_in_force=TimeInForce.IOC))
    assert market_order.status == "FILLED"
    with pytest.raises(errors.OrderNotAmendable):
        await commands.amend_order(rt, user_id=buyer, order_id=bid.id, price=D("99"), quantity=None)
    assert await wallet(rt, buyer, "USDT") == (D("1000") - D("20.04") - D("30.03"), ZERO)


# --- order lists --------------------------------------------------------------------------------


def _oco_sell(quantity: str = "0.5"):
    return [
        limit(SELL, quantity, "110"),
        request(SELL, OrderType.STOP_MARKET, quantity, stop_price="95"),
    ]


async def test_oco_limit_fill_cancels_the_stop_and_the_single_hold_is_released(rt, engines, tape):
    holder = await funded_user(rt, "holder", BTC="1")
    buyer = await funded_user(rt, "buyer", USDT="1000")
    await trade_at(rt, *tape, "100")
    placed = await order_lists.place_order_list(
        rt, user_id=holder, symbol=BTC, client_list_id="oco-1", oco=_oco_sell()
    )
    take, stop = placed.orders
    assert (take.status, stop.status) == ("OPEN", "UNTRIGGERED")
    assert take.hold_id == stop.hold_id
    assert await wallet(rt, holder, "BTC") == (D("0.5"), D("0.5"))  # held once, not twice
    partial = await place(rt, buyer, limit(BUY, "0.2", "110"))
    assert partial.status == "FILLED"
    assert (await reload(rt, stop.id)).status == "CANCELED"
    assert (await reload(rt, stop.id)).reason == "OCO"
    assert await wallet(rt, holder, "BTC") == (D("0.5"), D("0.3"))
    await place(rt, buyer, limit(BUY, "0.3", "110"))
    assert (await reload(rt, take.id)).status == "FILLED"
    assert await wallet(rt, holder, "BTC") == (D("0.5"), ZERO)
    assert await scalar(rt, "SELECT status FROM holds WHERE id = $1", take.hold_id) == "POSTED"
    await trade_at(rt, *tape, "100")
    await trade_at(rt, *tape, "95")
    assert (await reload(rt, stop.id)).filled_quantity == ZERO


async def test_canceling_one_oco_leg_cancels_the_other_and_frees_the_hold(rt, engines, tape):
    holder = await funded_user(rt, "holder", BTC="1")
    await trade_at(rt, *tape, "100")
    placed = await order_lists.place_order_list(
        rt, user_id=holder, symbol=BTC, client_list_id="oco-c", oco=_oco_sell()
    )
    take, stop = placed.orders
    canceled = await commands.cancel_order(rt, user_id=holder, order_id=take.id)
    assert canceled.status == "CANCELED"
    other = await reload(rt, stop.id)
    assert (other.status, other.reason) == ("CANCELED", "OCO")
    assert await wallet(rt, holder, "BTC") == (D("1"), ZERO)  # nothing held any more
    assert await scalar(rt, "SELECT status FROM holds WHERE id = $1", take.hold_id) == "VOIDED"
    await trade_at(rt, *tape, "95")  # the stop's level: nothing fires
    assert (await reload(rt, stop.id)).filled_quantity == ZERO


async def test_oco_stop_trigger_cancels_the_limit(rt, engines, tape):
    holder = await funded_user(rt, "holder", BTC="1")
    bidder = await funded_user(rt, "bidder", USDT="1000")
    await trade_at(rt, *tape, "100")
    placed = await order_lists.place_order_list(
        rt, user_id=holder, symbol=BTC, client_list_id="oco-2", oco=_oco_sell()
    )
    take, stop = placed.orders
    await place(rt, bidder, limit(BUY, "1", "94"))
    await trade_at(rt, *tape, "95")
    assert (await reload(rt, stop.id)).status == "FILLED"
    assert [f.price for f in await fills_of(rt, stop.id)] == [D("94")]
    canceled = await reload(rt, take.id)
    assert (canceled.status, canceled.reason) == ("CANCELED", "OCO")
    assert (await book_of(rt, engines)).asks == ()
    assert await wallet(rt, holder, "BTC") == (D("0.5"), ZERO)
    assert await wallet(rt, holder, "USDT") == (D("46.906"), ZERO)  # 0.5 x 94 - 0.2 %


async def test_oco_whose_limit_is_refused_on_arrival_leaves_nothing_live(rt, engines, tape):
    holder = await funded_user(rt, "holder", BTC="1")
    bidder = await funded_user(rt, "bidder", USDT="1000")
    await trade_at(rt, *tape, "100")
    await place(rt, bidder, limit(BUY, "0.5", "101"))
    legs = [
        limit(SELL, "0.5", "101", post_only=True),
        request(SELL, OrderType.STOP_MARKET, "0.5", stop_price="95"),
    ]
    with pytest.raises(PostOnlyWouldTake):
        await order_lists.place_order_list(
            rt, user_id=holder, symbol=BTC, client_list_id="oco-3", oco=legs
        )
    statuses = await rows(rt, "SELECT status FROM orders WHERE user_id = $1 ORDER BY id", holder)
    assert [r["status"] for r in statuses] == ["REJECTED", "CANCELED"]
    assert await wallet(rt, holder, "BTC") == (D("1"), ZERO)


def _bracket(quantity: str = "1", entry_price: str = "100"):
    return order_lists.Bracket(
        entry=limit(BUY, quantity, entry_price),
        take_profit_price=D("110"),
        stop_loss_price=D("95"),
    )


async def test_bracket_entry_fill_arms_its_exits_and_the_take_profit_cancels_the_stop(
    rt, engines, tape
):
    trader_id = await funded_user(rt, "trader", USDT="1000")
    seller = await funded_user(rt, "seller", BTC="2")
    await trade_at(rt, *tape, "100")
    placed = await order_lists.place_order_list(
        rt, user_id=trader_id, symbol=BTC, client_list_id="br-1", bracket=_bracket()
    )
    entry, take, stop = placed.orders
    assert (entry.status, take.status, stop.status) == ("OPEN", "PENDING", "PENDING")
    assert (take.hold_id, stop.hold_id) == (None, None)
    assert await wallet(rt, trader_id, "USDT") == (D("1000") - D("100.2"), D("100.2"))
    await place(rt, seller, limit(SELL, "1", "99"))  # at the entry's 100, the maker fee
    entry, take, stop = [await reload(rt, o.id) for o in placed.orders]
    assert (entry.status, take.status, stop.status) == ("FILLED", "OPEN", "UNTRIGGERED")
    assert (take.quantity, stop.quantity) == (D("1"), D("1"))
    assert take.hold_id == stop.hold_id is not None
    assert await wallet(rt, trader_id, "BTC") == (ZERO, D("1"))
    assert await wallet(rt, trader_id, "USDT") == (D("1000") - D("100.1"), ZERO)
    assert [(o.order_id, o.price) for o in (await book_of(rt, engines)).asks] == [(take.id, 11000)]
    # the take-profit fills: the stop-loss is canceled, the position sold
    buyer = await funded_user(rt, "buyer", USDT="1000")
    await place(rt, buyer, limit(BUY, "1", "110"))
    take, stop = await reload(rt, take.id), await reload(rt, stop.id)
    assert (take.status, stop.status, stop.reason) == ("FILLED", "CANCELED", "OCO")
    assert await wallet(rt, trader_id, "BTC") == (ZERO, ZERO)


async def test_bracket_stop_loss_fires_and_cancels_the_take_profit(rt, engines, tape):
    trader_id = await funded_user(rt, "trader", USDT="1000")
    seller = await funded_user(rt, "seller", BTC="2", USDT="1000")
    await trade_at(rt, *tape, "100")
    placed = await order_lists.place_order_list(
        rt, user_id=trader_id, symbol=BTC, client_list_id="br-2", bracket=_bracket("0.5")
    )
    await place(rt, seller, limit(SELL, "0.5", "100"))
    await place(rt, seller, limit(BUY, "1", "94"))
    await trade_at(rt, *tape, "95")
    entry, take, stop = [await reload(rt, o.id) for o in placed.orders]
    assert (entry.status, stop.status, take.status, take.reason) == (
        "FILLED",
        "FILLED",
        "CANCELED",
        "OCO",
    )
    assert [f.price for f in await fills_of(rt, stop.id)] == [D("94")]
    assert await wallet(rt, trader_id, "BTC") == (ZERO, ZERO)


async def test_bracket_exits_follow_what_the_entry_filled_or_go_with_it(rt, engines):
    trader_id = await funded_user(rt, "trader", USDT="1000")
    seller = await funded_user(rt, "seller", BTC="2")
    unfilled = await order_lists.place_order_list(
        rt, user_id=trader_id, symbol=BTC, client_list_id="br-3", bracket=_bracket()
    )
    await commands.cancel_order(rt, user_id=trader_id, order_id=unfilled.orders[0].id)
    statuses = [
        (o.status, o.reason)
        for o in await command_queue.get_orders(rt, [o.id for o in unfilled.orders])
    ]
    assert statuses == [
        ("CANCELED", "CANCELED"),
        ("CANCELED", "ENTRY_NOT_FILLED"),
        ("CANCELED", "ENTRY_NOT_FILLED"),
    ]
    assert await wallet(rt, trader_id, "USDT") == (D("1000"), ZERO)

    partial = await order_lists.place_order_list(
        rt, user_id=trader_id, symbol=BTC, client_list_id="br-4", bracket=_bracket()
    )
    await place(rt, seller, limit(SELL, "0.4", "100"))
    await commands.cancel_order(rt, user_id=trader_id, order_id=partial.orders[0].id)
    entry, take, stop = await command_queue.get_orders(rt, [o.id for o in partial.orders])
    assert (entry.status, entry.filled_quantity) == ("CANCELED", D("0.4"))
    assert (take.status, take.quantity, stop.status, stop.quantity) == (
        "OPEN",
        D("0.4"),
        "UNTRIGGERED",
        D("0.4"),
    )
    assert await wallet(rt, trader_id, "BTC") == (ZERO, D("0.4"))
    await commands.cancel_order(rt, user_id=trader_id, order_id=take.id)
    # the exits are an OCO: canceling one leg cancels the other and frees the hold
    stop = (await command_queue.get_orders(rt, [stop.id]))[0]
    assert (stop.status, stop.reason) == ("CANCELED", "OCO")
    assert await wallet(rt, trader_id, "BTC") == (D("0.4"), ZERO)


# --- the kill switch ----------------------------------------------------------------------------


async def test_kill_switch_cancels_everything_live_and_refuses_new_orders(rt, engines, tape):
    uid = await funded_user(rt, "trader", BTC="2", USDT="1000", ETH="1")
    await trade_at(rt, *tape, "100")
    resting = await place(rt, uid, limit(BUY, "0.1", "99"))
    stop = await place(rt, uid, request(SELL, OrderType.STOP_MARKET, "0.1", stop_price="90"))
    oco = await order_lists.place_order_list(
        rt, user_id=uid, symbol=BTC, client_list_id="oco", oco=_oco_sell()
    )
    bracket = await order_lists.place_order_list(
        rt, user_id=uid, symbol=BTC, client_list_id="br", bracket=_bracket("0.1", "98")
    )
    eth = await place(rt, uid, limit(SELL, "0.1", "3000"), symbol="ETH/USDT")
    live = [resting, stop, *oco.orders, *bracket.orders, eth]
    canceled = await commands.set_trading_enabled(rt, user_id=uid, enabled=False)
    assert sorted(o.id for o in canceled) == sorted(o.id for o in live)
    assert {o.status for o in canceled} == {"CANCELED"}
    assert await wallet(rt, uid, "BTC") == (D("2"), ZERO)
    assert await wallet(rt, uid, "USDT") == (D("1000"), ZERO)
    assert await wallet(rt, uid, "ETH") == (D("1"), ZERO)
    assert (await book_of(rt, engines)).bids == ()
    with pytest.raises(errors.TradingDisabled):
        await place(rt, uid, limit(BUY, "0.1", "99"))
    with pytest.raises(errors.TradingDisabled):
        await order_lists.place_order_list(
            rt, user_id=uid, symbol=BTC, client_list_id="oco-2", oco=_oco_sell()
        )
    assert await commands.set_trading_enabled(rt, user_id=uid, enabled=True) == []
    assert (await place(rt, uid, limit(BUY, "0.1", "99"))).status == "OPEN"


async def test_kill_switch_on_a_partly_filled_bracket_leaves_no_exit_live(rt, engines):
    """The entry rests partly filled, its exits wait: the kill switch cancels all three,
    and the entry's end does not release a take-profit into the book first."""
    uid = await funded_user(rt, "trader", USDT="1000")
    seller = await funded_user(rt, "seller", BTC="2")
    bracket = await order_lists.place_order_list(
        rt, user_id=uid, symbol=BTC, client_list_id="br-k", bracket=_bracket()
    )
    await place(rt, seller, limit(SELL, "0.4", "100"))
    canceled = await commands.set_trading_enabled(rt, user_id=uid, enabled=False)
    entry, take, stop = await command_queue.get_orders(rt, [o.id for o in bracket.orders])
    assert (entry.status, entry.filled_quantity) == ("CANCELED", D("0.4"))
    assert (take.status, stop.status) == ("CANCELED", "CANCELED")
    assert sorted(o.id for o in canceled) == sorted(o.id for o in bracket.orders)
    assert await wallet(rt, uid, "BTC") == (D("0.4"), ZERO)
    assert (await book_of(rt, engines)).asks == ()


# --- settlement ---------------------------------------------------------------------------------


async def test_settlement_moves_exact_amounts_and_fees_round_up_per_order(rt, engines):
    seller = await funded_user(rt, "seller", BTC="1")
    buyer = await funded_user(rt, "buyer", USDT="1000")
    await place(rt, seller, limit(SELL, "0.0503", "100.01"))
    one = await place(rt, buyer, limit(BUY, "0.0503", "100.01"))
    assert (one.executed_value, one.fees) == (D("5.030503"), D("0.010062"))  # 0.010061006 up
    ask1 = await place(rt, seller, limit(SELL, "0.0501", "100.02"))
    ask2 = await place(rt, seller, limit(SELL, "0.0502", "100.03"))
    two = await place(rt, buyer, limit(BUY, "0.1003", "100.03"))
    # 0.2 % of 5.011002 + 5.021506 is 0.020065016: one rounding per order, not per fill
    assert (two.executed_value, two.fees) == (D("10.032508"), D("0.020066"))
    assert [f.fee for f in await fills_of(rt, two.id)] == [D("0.010023"), D("0.010043")]
    assert [(await reload(rt, a.id)).fees for a in (ask1, ask2)] == [D("0.005012"), D("0.005022")]
    assert await wallet(rt, seller, "BTC") == (D("0.8494"), ZERO)
    assert await wallet(rt, seller, "USDT") == (D("15.047946"), ZERO)
    assert await wallet(rt, buyer, "BTC") == (D("0.1506"), ZERO)
    assert await wallet(rt, buyer, "USDT") == (D("984.906861"), ZERO)
    assert await fees_collected(rt, "USDT") == D("0.045193")
    for currency, funded in (("BTC", D("1")), ("USDT", D("1000"))):
        users = sum(await wallet(rt, seller, currency)) + sum(await wallet(rt, buyer, currency))
        assert users + await fees_collected(rt, currency) == funded
    for order in (one, two, ask1, ask2):
        fills = await fills_of(rt, order.id)
        stored = await reload(rt, order.id)
        assert sum(f.quantity for f in fills) == stored.filled_quantity == stored.quantity
        assert sum(f.quote_amount for f in fills) == stored.executed_value
        assert sum(f.fee for f in fills) == stored.fees


async def test_positions_track_cost_and_realized_profit(rt, engines):
    seller = await funded_user(rt, "seller", BTC="1")
    buyer = await funded_user(rt, "buyer", USDT="1000")
    await place(rt, seller, limit(SELL, "0.0503", "100.01"))
    await place(rt, buyer, limit(BUY, "0.0503", "100.01"))
    await place(rt, seller, limit(SELL, "0.1003", "100.03"))
    await place(rt, buyer, limit(BUY, "0.1003", "100.03"))
    cost = D("5.040565") + D("10.053076")  # what the buyer paid, fees included (USDT = 1 USD)
    assert await _position(rt, buyer) == (D("0.1506"), cost, ZERO)
    assert await _position(rt, seller) == (ZERO, ZERO, ZERO)  # funded from outside: no basis
    await place(rt, seller, limit(BUY, "0.05", "110"))
    await place(rt, buyer, limit(SELL, "0.05", "110"))
    share = cost * D("0.05") / D("0.1506")
    quantity, basis, realized = await _position(rt, buyer)
    assert quantity == D("0.1006")
    assert abs(basis - (cost - share)) < D("1e-15")
    assert abs(realized - (D("5.489") - share)) < D("1e-15")  # 5.50 less the 0.2 % taker fee
    assert await _position(rt, seller) == (D("0.05"), D("5.5055"), ZERO)


async def _position(rt, uid: int):
    (row,) = await rows(
        rt,
        "SELECT quantity, cost_usd, realized_pnl_usd FROM positions"
        " WHERE user_id = $1 AND currency = 'BTC'",
        uid,
    )
    return tuple(row)


# --- round trips --------------------------------------------------------------------------------


@pytest.fixture
async def recorded(rt):
    """The statements sent on each connection, by connection: asyncpg's query logger on
    every pooled connection as it is checked out (the engines' own too), and what
    SQLAlchemy sends (its prepared statements pass that logger by)."""
    sent: dict[int, list[str]] = {}

    def on_checkout(dbapi_connection, _record, _proxy) -> None:
        raw = dbapi_connection.driver_connection
        if id(raw) not in sent:
            log = sent[id(raw)] = []
            raw.add_query_logger(lambda record: log.append(record.query))

    def on_execute(connection, _cursor, statement, *_args) -> None:
        sent[id(connection.connection.driver_connection)].append(statement)

    sync_engine = rt.engine.sync_engine
    event.listen(sync_engine, "checkout", on_checkout)
    event.listen(sync_engine, "before_cursor_execute", on_execute)
    try:
        yield sent
    finally:
        event.remove(sync_engine, "checkout", on_checkout)
        event.remove(sync_engine, "before_cursor_execute", on_execute)


def transactions_with(sent: dict[int, list[str]], *markers: str) -> list[list[str]]:
    """The transactions (BEGIN to COMMIT or ROLLBACK) that sent statements containing
    every one of ``markers``, each as its statements, per connection in order."""
    found = []
    for log in sent.values():
        current: list[str] = []
        for query in log:
            current.append(query)
            if query.startswith("COMMIT") or query.startswith("ROLLBACK"):
                if all(any(m in q for q in current) for m in markers):
                    found.append(current)
                current = []
    return found


def ten_buyers(buyers: list[int]) -> list[placement._Placement]:
    """A BUY of 0.1 at 100 from each, as one ``place_orders`` batch."""

    def item(uid: int) -> placement._Placement:
        request = limit(BUY, "0.1", "100")
        return placement._Placement(
            uid, BTC, request, f"ten-{uid}", pretrade.request_digest(BTC, request), None
        )

    return [item(uid) for uid in buyers]


async def one_then_ten(rt, monkeypatch, *, on_placement: bool) -> list[placement._Placed]:
    """Ten sellers offer 0.1 at 100; one buyer takes an offer, then ten more buyers bid as
    one ``place_orders`` batch (nine fill, the last rests): that batch's answers, once
    the engine has applied it."""
    update = {**FAST_ENGINE, "trading_match_on_placement": on_placement}
    monkeypatch.setattr(rt, "settings", rt.settings.model_copy(update=update))
    sellers = [await funded_user(rt, f"seller{i}", BTC="1") for i in range(10)]
    buyers = [await funded_user(rt, f"buyer{i}", USDT="1000") for i in range(11)]
    async with running_engines(rt):
        for seller in sellers:
            await place(rt, seller, limit(SELL, "0.1", "100"))
        assert (await place(rt, buyers[0], limit(BUY, "0.1", "100"))).status == "FILLED"
        placed = await placement.place_orders(rt, ten_buyers(buyers[1:]))
        if not on_placement:
            assert await rt.applied.wait(placed[0].market_id, placed[-1].seq, 5)
    return placed


async def test_an_engine_batch_costs_the_same_statements_for_one_trade_or_ten(
    rt, recorded, monkeypatch
):
    # the engine's own batches: placements leave their orders to it
    placed = await one_then_ten(rt, monkeypatch, on_placement=False)
    assert all(p.order is None for p in placed)  # left to the engine
    orders = await command_queue.get_orders(rt, [p.order_id for p in placed])
    assert [o.status for o in orders] == ["FILLED"] * 9 + ["OPEN"]
    (*_, one, ten) = transactions_with(recorded, "new_fills AS")
    assert not transactions_with(recorded, "new_fills AS", "INSERT INTO order_commands")
    assert sum("new_fills AS" in q for q in ten) == 1
    # BEGIN, the commands, their orders, the lock (accounts, positions), the write, COMMIT
    assert len(one) == len(ten) == 6, (one, ten)
    assert await scalar(rt, "SELECT count(*) FROM fills") == 20


async def test_a_placement_is_matched_in_its_own_transaction_in_the_same_statements_for_one_or_ten(
    rt, recorded, monkeypatch
):
    placed = await one_then_ten(rt, monkeypatch, on_placement=True)
    # answered from the transaction that placed them, the engine's work in it
    assert [p.order.status for p in placed] == ["FILLED"] * 9 + ["OPEN"]
    (*_, one, ten) = transactions_with(recorded, "INSERT INTO order_commands")
    assert all(sum("new_fills AS" in q for q in t) == 1 for t in (one, ten))
    # BEGIN, the traders, the markets, the accounts, the orders and their commands (the
    # engine takes them from there), the engine's lock, its write, the orders as it left
    # them, COMMIT
    assert len(one) == len(ten) == 9, (one, ten)
    # and every batch that wrote fills was a placement's
    assert transactions_with(recorded, "new_fills AS") == transactions_with(
        recorded, "new_fills AS", "INSERT INTO order_commands"
    )
    assert await scalar(rt, "SELECT count(*) FROM fills") == 20
    assert await scalar(rt, "SELECT count(DISTINCT seq) FROM order_commands") == 21
    assert await scalar(rt, "SELECT applied_seq FROM markets WHERE symbol = $1", BTC) == 21


async def waiting_for_the_engine(rt) -> None:
    """Returns once a placement (of this process, the only one placing) waits for the
    engine's lock: it has locked its traders and read its markets (its transaction idle
    after that statement), and from that answer to the lock it does no I/O."""
    sql = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND state = 'idle in transaction' AND query LIKE '%quote_usd%'"
    )
    assert await eventually(lambda: scalar(rt, sql), interval=0.01)
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_placement_after_another_processs_command_applies_that_one_first(
    rt, recorded, monkeypatch
):
    """Price-time priority across processes: a command stored by another process (no
    engine of its own) while this one's placement waited for the engine's lock is
    applied first, in the placement's transaction."""
    # the engine steps only when woken (by the other process's command), not on a poll
    slow = {**FAST_ENGINE, "trading_engine_poll_seconds": 30}
    monkeypatch.setattr(rt, "settings", rt.settings.model_copy(update=slow))
    seller = await funded_user(rt, "seller", BTC="1")
    here = await funded_user(rt, "here", USDT="1000")
    there = await funded_user(rt, "there", USDT="1000")
    other = build_runtime(
        rt.settings, database_url=rt.settings.database_url, redis_url=rt.settings.redis_url
    )
    try:
        async with running_engines(rt):
            await place(rt, seller, limit(SELL, "0.1", "100"))
            engine = rt.matching[BTC]
            async with engine.lock:
                mine = asyncio.create_task(place(rt, here, limit(BUY, "0.1", "100")))
                await waiting_for_the_engine(rt)
                theirs = asyncio.create_task(place(other, there, limit(BUY, "0.1", "100")))
                stored = "SELECT count(*) = 2 FROM order_commands"
                assert await eventually(lambda: scalar(rt, stored), interval=0.01)
                assert not mine.done() and not theirs.done()
            assert (await mine).status == "OPEN"
            assert (await theirs).status == "FILLED"
    finally:
        await other.aclose()
    # the placement's transaction read the command stored before its own, and applied it
    matched = transactions_with(recorded, "INSERT INTO order_commands", "new_fills AS")
    assert len([t for t in matched if any("FROM order_commands WHERE" in q for q in t)]) == 1
    assert await scalar(rt, "SELECT count(*) FROM fills") == 2
    assert await scalar(rt, "SELECT applied_seq FROM markets WHERE symbol = $1", BTC) == 3


async def test_a_placement_waiting_for_the_engine_holds_no_account(rt, monkeypatch):
    """An engine's batch holding the engine's lock may settle against any trader's
    accounts: a placement waits for that lock before it locks any."""
    slow = {**FAST_ENGINE, "trading_engine_poll_seconds": 30}
    monkeypatch.setattr(rt, "settings", rt.settings.model_copy(update=slow))
    buyer = await funded_user(rt, "buyer", USDT="1000")
    async with running_engines(rt):
        async with rt.matching[BTC].lock:
            placing = asyncio.create_task(place(rt, buyer, limit(BUY, "0.1", "100")))
            await waiting_for_the_engine(rt)
            async with rt.engine.begin() as connection:
                locked = await connection.execute(
                    text("SELECT id FROM ledger_accounts WHERE user_id = :u FOR UPDATE NOWAIT"),
                    {"u": buyer},
                )
                assert len(locked.all()) >= 1
            assert not placing.done()
        assert (await placing).status == "OPEN"


@pytest.mark.parametrize("turns", range(6))
async def test_an_engine_stopped_just_as_it_is_woken_stops(rt, monkeypatch, turns):
    """Its cancellation is not lost however it falls with the wake-up (``asyncio.wait_for``
    on Python 3.11 swallowed it when the wait ended at that moment: the engine ran on and
    the shutdown waited for it forever)."""
    slow = {"trading_engine_poll_seconds": 30}  # idle engines wait for a wake-up
    monkeypatch.setattr(rt, "settings", rt.settings.model_copy(update=slow))
    engines = EngineSet(rt)
    await engines.start()
    try:
        await engines.wait_owned()
        await asyncio.sleep(0.05)  # each is waiting for its wake-up now
        for engine in engines.engines.values():
            engine.wake.set()
        for _ in range(turns):
            await asyncio.sleep(0)
    finally:
        await asyncio.wait_for(engines.stop(), 5)
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("engine-")]


# --- robustness ---------------------------------------------------------------------------------


@pytest.mark.parametrize("on_placement", [False, True], ids=["engine-batch", "on-placement"])
async def test_a_batch_that_deadlocks_is_retried_and_applied_once(
    rt, engines, caplog, monkeypatch, on_placement
):
    """The engine's own batch, or a placement matched in its own transaction (which is
    then tried again without matching, and the engine rebuilds its book and applies it)."""
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(
        rt, "settings", rt.settings.model_copy(update={"trading_match_on_placement": on_placement})
    )
    seller = await funded_user(rt, "seller", BTC="1")
    buyer = await funded_user(rt, "buyer", USDT="1000")
    await place(rt, seller, limit(SELL, "0.1", "100"))
    await place(rt, buyer, limit(BUY, "0.1", "100"))  # the fee account exists now
    await place(rt, seller, limit(SELL, "0.2", "100"))
    # the accounts the next trade settles; the engine locks them in id order
    settled = [
        row["id"]
        for row in await rows(
            rt,
            "SELECT id FROM ledger_accounts WHERE (user_id, currency, kind) IN"
            " (($1, 'USDT', 'HELD'), ($2, 'USDT', 'AVAILABLE'), ($2, 'BTC', 'HELD'),"
            " ($1, 'BTC', 'AVAILABLE'))"
            " OR (user_id IS NULL AND kind = 'FEES' AND currency = 'USDT') ORDER BY id",
            buyer,
            seller,
        )
    ]
    assert len(settled) == 5
    lock = "SELECT 1 FROM ledger_accounts WHERE id = :id FOR UPDATE"
    async with rt.engine.connect() as other:
        transaction = await other.begin()
        # this transaction waits longest before it looks for deadlocks: the engine finds it
        await other.execute(text("SET LOCAL deadlock_timeout = '10s'"))
        await other.execute(text(lock), {"id": settled[-1]})
        buy = asyncio.create_task(place(rt, buyer, limit(BUY, "0.2", "100")))
        # Wait until the engine holds the first accounts and waits for the last (under
        # load that takes longer than any fixed sleep).
        for _ in range(500):
            waiting = await scalar(
                rt,
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()",
            )
            if waiting:
                break
            await asyncio.sleep(0.01)
        assert waiting, "the engine never waited for the last account"
        assert not buy.done()
        await other.execute(text(lock), {"id": settled[0]})
        await transaction.rollback()
    assert (await buy).status == "FILLED"
    retried = "retrying transaction" if on_placement else "engine batch rolled back; retrying"
    assert any(retried == r.getMessage() for r in caplog.records)
    assert await scalar(rt, "SELECT count(*) FROM fills") == 4
    assert await wallet(rt, seller, "BTC") == (D("0.7"), ZERO)
    assert await wallet(rt, buyer, "BTC") == (D("0.3"), ZERO)
    assert await wallet(rt, buyer, "USDT") == (D("1000") - D("30.06"), ZERO)


# --- the engine's memory ------------------------------------------------------------------------


async def test_the_engine_keeps_exactly_the_live_orders_and_its_lookups_agree(rt, engines, tape):
    """The engine finds lists, a user's orders, stops and expiring orders through an
    index rather than by scanning every order it keeps: after fills, an OCO, a bracket,
    an expiry and a cancel-all, it keeps exactly the orders PostgreSQL has live, the
    holds they use, and an index equal to one built afresh from them."""
    maker = await funded_user(rt, "maker", BTC="5", USDT="5000")
    taker = await funded_user(rt, "taker", BTC="5", USDT="5000")
    leaver = await funded_user(rt, "leaver", BTC="5", USDT="5000")
    await trade_at(rt, *tape, "100")
    now = rt.now()
    gtd = {"time_in_force": TimeInForce.GTD, "expires_at": now + timedelta(hours=1)}
    await place(rt, maker, limit(SELL, "0.5", "101"))
    await place(rt, maker, limit(SELL, "0.5", "102", **gtd))
    await place(rt, maker, request(BUY, OrderType.STOP_LIMIT, "0.1", stop_price="120", price="120"))
    await place(rt, taker, limit(BUY, "0.7", "102"))  # fills the first, part of the second
    oco = await order_lists.place_order_list(
        rt, user_id=maker, symbol=BTC, client_list_id="oco-m", oco=_oco_sell()
    )
    bracket = await order_lists.place_order_list(
        rt, user_id=taker, symbol=BTC, client_list_id="br-m", bracket=_bracket("0.5")
    )
    await place(rt, maker, limit(SELL, "0.5", "99"))  # fills the bracket's entry
    await place(rt, leaver, limit(BUY, "0.1", "90"))
    await place(rt, leaver, request(SELL, OrderType.STOP_MARKET, "0.1", stop_price="80"))
    await commands.cancel_all_orders(rt, user_id=leaver)
    rt.clock = lambda: now + timedelta(hours=1, seconds=1)
    await trade_at(rt, *tape, "100")  # a batch after the expiry

    engine = engines.engines[await market_id(rt)].state  # its memory of the market
    live = await rows(
        rt,
        "SELECT id, hold_id FROM orders WHERE status = ANY($1::text[]) ORDER BY id",
        sorted(s.value for s in LIVE_STATUSES),
    )
    assert sorted(engine.orders) == [r["id"] for r in live]
    assert {o.id for o in oco.orders} & set(engine.orders)  # some of each list still live
    assert {o.id for o in bracket.orders} & set(engine.orders)
    assert set(engine.holds) == {r["hold_id"] for r in live if r["hold_id"] is not None}
    afresh = OrderIndex()
    for order in engine.orders.values():
        afresh.add(order)
    afresh.unsettled.clear()
    assert engine.index == afresh
    assert engine.index.users.get(leaver) is None
