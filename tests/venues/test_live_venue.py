"""The live internal venue behind the venue interface (``app.venues.live.LiveVenue``): the
platform's own engine, through the same use cases as the API, on real PostgreSQL with every
market's engine running. What the simulated venue promises holds here too: idempotent
client order ids, refusals as acks with the error's code that change nothing, fills as
numbered events."""

from __future__ import annotations

import pytest

from app.trading.domain.orders import OrderStatus, Side
from app.venues.domain.venue import AsyncVenue, Liquidity, OrderFilled
from app.venues.live import LiveVenue
from tests.support.trading import FAST_ENGINE, D, funded_user, limit, running_engines

BUY, SELL = Side.BUY, Side.SELL
SYMBOL = "BTC/USDT"


@pytest.fixture
async def engines(rt, monkeypatch):
    monkeypatch.setattr(rt, "settings", rt.settings.model_copy(update=FAST_ENGINE))
    async with running_engines(rt) as engines:
        yield engines


@pytest.fixture
async def venues(rt, engines) -> tuple[LiveVenue, LiveVenue]:
    maker = await funded_user(rt, "venue_maker", BTC="2", USDT="100000")
    taker = await funded_user(rt, "venue_taker", BTC="2", USDT="100000")
    return LiveVenue(rt, user_id=maker), LiveVenue(rt, user_id=taker)


async def test_a_resting_order_and_a_crossing_one_fill_as_maker_and_taker(venues):
    maker, taker = venues
    venue: AsyncVenue = maker  # the live venue is an AsyncVenue
    resting = await venue.submit(
        symbol=SYMBOL, client_order_id="mm-1", request=limit(SELL, "0.5", "90000")
    )
    assert resting.ok and resting.status is OrderStatus.OPEN
    assert [o.client_order_id for o in await maker.open_orders()] == ["mm-1"]

    crossing = await taker.submit(
        symbol=SYMBOL, client_order_id="t-1", request=limit(BUY, "0.2", "90100")
    )
    assert crossing.ok and crossing.status is OrderStatus.FILLED

    (sold,) = await maker.events()
    (bought,) = await taker.events()
    assert isinstance(sold, OrderFilled) and isinstance(bought, OrderFilled)
    assert (sold.client_order_id, sold.liquidity, sold.price, sold.quantity, sold.remaining) == (
        "mm-1", Liquidity.MAKER, D("90000"), D("0.2"), D("0.3")
    )  # fmt: skip
    assert (bought.client_order_id, bought.liquidity, bought.remaining) == (
        "t-1", Liquidity.TAKER, D(0)
    )  # fmt: skip
    assert bought.value == D("18000")
    assert await maker.events(after=sold.number) == ()
    balances = await taker.balances()
    assert balances["BTC"].total == D("2.2")
    assert balances["USDT"].total == D("100000") - D("18000") - bought.fee


async def test_a_client_order_id_makes_a_submit_idempotent(venues):
    maker, _ = venues
    request = limit(SELL, "0.1", "95000")
    first = await maker.submit(symbol=SYMBOL, client_order_id="same", request=request)
    again = await maker.submit(symbol=SYMBOL, client_order_id="same", request=request)
    assert again.ok and again.order_id == first.order_id
    other = await maker.submit(
        symbol=SYMBOL, client_order_id="same", request=limit(SELL, "0.2", "95000")
    )
    assert other.code == "CLIENT_ORDER_ID_REUSED"
    assert len(await maker.open_orders()) == 1


async def test_a_refusal_is_an_ack_with_its_code_and_changes_nothing(venues):
    maker, _ = venues
    before = await maker.balances()
    refused = await maker.submit(
        symbol=SYMBOL, client_order_id="too-big", request=limit(BUY, "1.5", "90000")
    )
    assert (refused.ok, refused.code, refused.order_id) == (False, "INSUFFICIENT_FUNDS", None)
    assert await maker.balances() == before
    assert await maker.open_orders() == ()


async def test_cancel_and_amend_by_client_order_id(venues):
    maker, _ = venues
    await maker.submit(symbol=SYMBOL, client_order_id="a", request=limit(SELL, "0.1", "95000"))
    amended = await maker.amend(client_order_id="a", price=D("96000"), quantity=D("0.1"))
    assert amended.ok
    (order,) = await maker.open_orders()
    assert order.price == D("96000")

    canceled = await maker.cancel(client_order_id="a")
    assert canceled.ok and canceled.status is OrderStatus.CANCELED
    assert await maker.open_orders() == ()
    assert (await maker.balances())["BTC"].held == 0

    assert (await maker.cancel(client_order_id="nope")).code == "ORDER_NOT_FOUND"
    assert (await maker.amend(client_order_id="nope", price=D(1), quantity=D(1))).code == (
        "ORDER_NOT_FOUND"
    )
    again = await maker.cancel(client_order_id="a")
    assert (again.ok, again.code, again.status) == (
        False, "ORDER_NOT_CANCELLABLE", OrderStatus.CANCELED
    )  # fmt: skip
