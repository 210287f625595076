"""The simulated venue without a database: hand-computed fills for small candle sequences
in each path mode (a limit the low touches fills at its price, stops at their level or
the gap, partial fills capped by the volume share, latency, exact fees); idempotent
client order ids; refusals that change nothing; then a property over random order and
candle streams: cash, holds and positions always account exactly."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.errors import InvariantViolation
from app.trading.domain.orders import (
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    TrailingOffsetType,
)
from app.venues.domain.paths import Candle, PathMode, path_points
from app.venues.domain.simulated import SimulatedVenue, SimulationSettings
from app.venues.domain.venue import (
    Liquidity,
    OrderAccepted,
    OrderEnded,
    OrderFilled,
    OrderTriggered,
)
from tests.support.simulation import SPEC, SYMBOL, T0, random_candle

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
PROPERTIES = settings(max_examples=80, derandomize=True, deadline=None)


def candle(i: int, o: str, h: str, lo: str, c: str, volume: str = "100") -> Candle:
    return Candle(T0 + timedelta(hours=i), D(o), D(h), D(lo), D(c), D(volume))


def venue(
    usdt: str = "1000",
    btc: str = "0",
    *,
    path: PathMode = PathMode.ADVERSE_FIRST,
    share: str | None = "0.5",
    latency: int = 1,
    slippage_bps: int = 0,
    seed: int = 0,
) -> SimulatedVenue:
    """A venue that has played one candle closing at 100 (the reference price)."""
    v = SimulatedVenue(
        SPEC,
        balances={"USDT": D(usdt), "BTC": D(btc)},
        settings=SimulationSettings(
            path=path,
            volume_share=None if share is None else D(share),
            latency=latency,
            slippage_bps=slippage_bps,
            seed=seed,
        ),
        start=T0,
    )
    v.advance(candle(0, "100", "100", "100", "100"))
    return v


def submit(v: SimulatedVenue, cid: str, side: Side, type_: OrderType, qty: str, **kw: object):
    fields = {
        k: D(str(x)) if k in ("price", "stop_price", "trailing_offset") else x
        for k, x in kw.items()
    }
    return v.submit(
        symbol=SYMBOL,
        client_order_id=cid,
        request=OrderRequest(side, type_, D(qty), **fields),  # type: ignore[arg-type]
    )


def fills(v: SimulatedVenue) -> list[tuple[str, D, D, D, Liquidity]]:
    """(client id, price, quantity, fee, liquidity) of every fill, in order."""
    return [
        (e.client_order_id, e.price, e.quantity, e.fee, e.liquidity)
        for e in v.events()
        if isinstance(e, OrderFilled)
    ]


def balances(v: SimulatedVenue) -> dict[str, tuple[D, D]]:
    return {c: (b.available, b.held) for c, b in v.balances().items()}


# --- paths -----------------------------------------------------------------------------


def test_path_modes_order_the_extremes():
    c = candle(1, "100", "110", "90", "105")
    t = SPEC.nearest_ticks
    o, h, lo, cl = t(D(100)), t(D(110)), t(D(90)), t(D(105))
    assert path_points(c, SPEC, PathMode.OHLC, holding=True) == (o, h, lo, cl)
    assert path_points(c, SPEC, PathMode.OLHC, holding=False) == (o, lo, h, cl)
    # adverse first: a holder sees the low first, a flat account the high
    assert path_points(c, SPEC, PathMode.ADVERSE_FIRST, holding=True) == (o, lo, h, cl)
    assert path_points(c, SPEC, PathMode.ADVERSE_FIRST, holding=False) == (o, h, lo, cl)


def test_a_candle_must_be_one():
    with pytest.raises(InvariantViolation):
        candle(1, "100", "99", "90", "95")


# --- fills -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", list(PathMode))
def test_a_limit_buy_the_low_touches_fills_at_its_price_as_maker(path):
    v = venue(path=path)
    ack = submit(v, "b1", BUY, LIMIT, "1", price="98")
    assert ack.ok and ack.status is OrderStatus.NEW
    # hold: 98 + 0.2 % (the larger fee)
    assert balances(v)["USDT"] == (D("901.804000"), D("98.196000"))
    v.advance(candle(1, "100", "101", "97", "100"))
    # maker fee 0.1 % of 98 = 0.098; the rest of the hold (0.098) is released
    assert fills(v) == [("b1", D("98.00"), D("1.000"), D("0.098000"), Liquidity.MAKER)]
    assert balances(v) == {
        "USDT": (D("901.902000"), D("0E-6")),
        "BTC": (D("1.00000000"), D("0E-8")),
    }
    assert v.open_orders() == ()


def test_a_limit_the_low_does_not_reach_rests():
    v = venue()
    submit(v, "b1", BUY, LIMIT, "1", price="96.99")
    v.advance(candle(1, "100", "101", "97", "100"))
    assert fills(v) == []
    (open_order,) = v.open_orders()
    assert open_order.status is OrderStatus.OPEN and open_order.price == D("96.99")


def test_fees_are_rounded_up_to_the_quote_unit():
    v = venue()
    submit(v, "b1", BUY, LIMIT, "0.001", price="98.01")
    v.advance(candle(1, "100", "101", "97", "100"))
    # value 0.09801, maker fee 0.00009801 -> 0.000099
    assert fills(v) == [("b1", D("98.01"), D("0.001"), D("0.000099"), Liquidity.MAKER)]
    assert balances(v)["USDT"] == (D("1000") - D("0.098010") - D("0.000099"), D(0))


def test_a_partial_fill_is_capped_by_the_volume_share():
    v = venue(share="0.5")
    submit(v, "b1", BUY, LIMIT, "5", price="98")
    v.advance(candle(1, "100", "101", "97", "100", volume="4"))  # 2 BTC for us
    assert fills(v) == [("b1", D("98.00"), D("2.000"), D("0.196000"), Liquidity.MAKER)]
    (open_order,) = v.open_orders()
    assert open_order.status is OrderStatus.PARTIALLY_FILLED
    assert open_order.filled == D("2.000")
    v.advance(candle(2, "100", "101", "97", "100", volume="100"))
    assert fills(v)[1] == ("b1", D("98.00"), D("3.000"), D("0.294000"), Liquidity.MAKER)
    assert v.open_orders() == ()


def test_latency_delays_a_market_order_to_the_next_candle_open():
    v = venue(latency=1)
    submit(v, "m1", BUY, MARKET, "1", max_slippage_bps=1000)
    v.advance(candle(1, "102", "104", "101", "103"))
    # at the open, 102, as a taker: fee 0.2 % = 0.204
    assert fills(v) == [("m1", D("102.00"), D("1.000"), D("0.204000"), Liquidity.TAKER)]
    assert balances(v)["USDT"] == (D("1000") - D("102.204"), D(0))


def test_two_candles_latency_waits_two_opens():
    v = venue(latency=2)
    submit(v, "m1", BUY, MARKET, "1", max_slippage_bps=1000)
    v.advance(candle(1, "102", "104", "101", "103"))
    assert fills(v) == []
    v.advance(candle(2, "105", "106", "104", "105"))
    assert fills(v) == [("m1", D("105.00"), D("1.000"), D("0.210000"), Liquidity.TAKER)]


def test_zero_latency_trades_at_the_close_at_once():
    v = venue(latency=0)
    ack = submit(v, "m1", BUY, MARKET, "1")
    assert ack.status is OrderStatus.FILLED
    assert fills(v) == [("m1", D("100.00"), D("1.000"), D("0.200000"), Liquidity.TAKER)]


def test_a_market_order_beyond_the_volume_share_expires_the_rest():
    v = venue(share="0.1")
    submit(v, "m1", BUY, MARKET, "3", max_slippage_bps=1000)
    v.advance(candle(1, "100", "101", "99", "100", volume="20"))  # 2 BTC
    assert fills(v) == [("m1", D("100.00"), D("2.000"), D("0.400000"), Liquidity.TAKER)]
    ended = [e for e in v.events() if isinstance(e, OrderEnded)]
    assert [(e.status, e.reason) for e in ended] == [(OrderStatus.EXPIRED, "NO_LIQUIDITY")]
    assert balances(v)["USDT"] == (D("1000") - D("200.4"), D(0))


def test_a_market_order_does_not_trade_beyond_its_worst_price():
    v = venue()
    submit(v, "m1", BUY, MARKET, "1", max_slippage_bps=100)  # at most 101
    v.advance(candle(1, "102", "103", "101", "102"))
    assert fills(v) == []
    ((status, reason),) = [(e.status, e.reason) for e in v.events() if isinstance(e, OrderEnded)]
    assert status is OrderStatus.EXPIRED and reason == "PRICE_LIMIT"


def _stop_and_take_profit(path: PathMode, btc: str = "2") -> SimulatedVenue:
    v = venue(btc=btc, path=path)
    submit(v, "sl", SELL, OrderType.STOP_MARKET, "1", stop_price="97", max_slippage_bps=1000)
    submit(v, "tp", SELL, LIMIT, "1", price="103")
    v.advance(candle(1, "100", "104", "96", "100"))
    return v


def test_ohlc_takes_profit_before_the_stop():
    v = _stop_and_take_profit(PathMode.OHLC)
    assert fills(v) == [
        ("tp", D("103.00"), D("1.000"), D("0.103000"), Liquidity.MAKER),
        # fired on the way down, at its stop: a taker
        ("sl", D("97.00"), D("1.000"), D("0.194000"), Liquidity.TAKER),
    ]


@pytest.mark.parametrize("path", [PathMode.OLHC, PathMode.ADVERSE_FIRST])
def test_olhc_and_adverse_first_for_a_holder_stop_before_taking_profit(path):
    v = _stop_and_take_profit(path)
    assert [f[0] for f in fills(v)] == ["sl", "tp"]
    triggered = [e for e in v.events() if isinstance(e, OrderTriggered)]
    assert [(e.client_order_id, e.price) for e in triggered] == [("sl", D("97.00"))]


def test_adverse_first_when_flat_fires_a_buy_stop_at_the_high_first():
    v = venue(path=PathMode.ADVERSE_FIRST)
    submit(v, "stop", BUY, OrderType.STOP_MARKET, "1", stop_price="103", max_slippage_bps=1000)
    submit(v, "dip", BUY, LIMIT, "1", price="97")
    v.advance(candle(1, "100", "104", "96", "100"))
    assert [f[:2] for f in fills(v)] == [("stop", D("103.00")), ("dip", D("97.00"))]


def test_a_stop_gapped_through_fills_at_the_open():
    v = venue(btc="1")
    submit(v, "sl", SELL, OrderType.STOP_MARKET, "1", stop_price="97", max_slippage_bps=1000)
    v.advance(candle(1, "99", "100", "98", "99"))  # armed at the open, not reached
    accepted = [e for e in v.events() if isinstance(e, OrderAccepted)]
    assert accepted[0].status is OrderStatus.UNTRIGGERED
    v.advance(candle(2, "95", "96", "94", "95"))
    assert fills(v) == [("sl", D("95.00"), D("1.000"), D("0.190000"), Liquidity.TAKER)]


def test_a_trailing_stop_follows_the_high_and_fires_on_the_way_down():
    v = venue(btc="1", path=PathMode.OHLC)
    submit(
        v, "trail", SELL, OrderType.TRAILING_STOP, "1",
        trailing_offset="2", trailing_offset_type=TrailingOffsetType.AMOUNT,
        max_slippage_bps=2000,
    )  # fmt: skip
    v.advance(candle(1, "100", "110", "100", "105"))  # high 110: stop 108, fires there
    assert fills(v) == [("trail", D("108.00"), D("1.000"), D("0.216000"), Liquidity.TAKER)]


def test_slippage_is_seeded_and_adverse():
    def taker_price(seed: int) -> D:
        v = venue(slippage_bps=100, seed=seed)
        submit(v, "m1", BUY, MARKET, "1", max_slippage_bps=1000)
        v.advance(candle(1, "100", "101", "99", "100"))
        return fills(v)[0][1]

    prices = [taker_price(seed) for seed in range(8)]
    assert prices == [taker_price(seed) for seed in range(8)]
    assert all(D(100) <= p <= D(101) for p in prices) and len(set(prices)) > 1


# --- ids and refusals ---------------------------------------------------------------------


def test_a_client_order_id_is_idempotent():
    v = venue()
    first = submit(v, "b1", BUY, LIMIT, "1", price="98")
    before, events = balances(v), v.events()
    assert submit(v, "b1", BUY, LIMIT, "1", price="98") == first
    assert (balances(v), v.events(), len(v.open_orders())) == (before, events, 1)
    reused = submit(v, "b1", BUY, LIMIT, "2", price="98")
    assert reused.code == "CLIENT_ORDER_ID_REUSED" and reused.order_id == first.order_id
    assert (balances(v), v.events(), len(v.open_orders())) == (before, events, 1)


@pytest.mark.parametrize(
    ("side", "type_", "qty", "extra", "code"),
    [
        (BUY, LIMIT, "10", {"price": "100"}, "INSUFFICIENT_FUNDS"),  # 1000 + fees > 1000
        (SELL, LIMIT, "1", {"price": "100"}, "INSUFFICIENT_FUNDS"),  # no BTC
        (BUY, LIMIT, "1", {"price": "100.001"}, "PRICE_OFF_TICK"),
        (BUY, LIMIT, "0.0001", {"price": "100"}, "QUANTITY_OFF_LOT_SIZE"),
        (SELL, OrderType.STOP_MARKET, "1", {"stop_price": "101"}, "STOP_PRICE_WRONG_SIDE"),
    ],
)
def test_a_refused_order_changes_nothing(side, type_, qty, extra, code):
    v = venue()
    before = balances(v)
    ack = submit(v, "x", side, type_, qty, **extra)
    assert (ack.code, ack.status) == (code, OrderStatus.REJECTED)
    assert balances(v) == before and v.open_orders() == ()
    (ended,) = v.events()
    assert isinstance(ended, OrderEnded) and ended.reason == code
    v.advance(candle(1, "100", "200", "50", "100"))
    assert fills(v) == [] and balances(v) == before


def test_just_enough_funds_are_taken():
    v = venue(usdt="100.2")  # 100 + 0.2 % exactly
    assert submit(v, "b1", BUY, LIMIT, "1", price="100").ok
    assert balances(v)["USDT"] == (D("0"), D("100.2"))


def test_an_unknown_market_is_refused():
    v = venue()
    ack = v.submit(
        symbol="ETH/USDT", client_order_id="e", request=OrderRequest(BUY, LIMIT, D(1), price=D(1))
    )
    assert ack.code == "UNKNOWN_MARKET"


def test_cancel_releases_the_hold_before_and_after_arrival():
    v = venue()
    submit(v, "a", BUY, LIMIT, "1", price="90")
    submit(v, "b", BUY, LIMIT, "1", price="90")
    assert v.cancel(client_order_id="a").status is OrderStatus.CANCELED  # not arrived yet
    v.advance(candle(1, "100", "101", "99", "100"))
    assert v.cancel(client_order_id="b").status is OrderStatus.CANCELED  # on the book
    assert balances(v)["USDT"] == (D("1000"), D(0))
    assert v.cancel(client_order_id="b").code == "ORDER_NOT_CANCELLABLE"
    assert v.cancel(client_order_id="nope").code == "ORDER_NOT_FOUND"


def test_amend_moves_the_hold_and_refuses_an_overspend():
    v = venue()
    submit(v, "b", BUY, LIMIT, "1", price="90")
    v.advance(candle(1, "100", "101", "99", "100"))
    assert v.amend(client_order_id="b", price=D("80"), quantity=D("2")).ok
    assert balances(v)["USDT"] == (D("1000") - D("160.32"), D("160.32"))
    refused = v.amend(client_order_id="b", price=D("90"), quantity=D("20"))
    assert refused.code == "INSUFFICIENT_FUNDS"
    assert balances(v)["USDT"] == (D("1000") - D("160.32"), D("160.32"))


# --- accounting, as a property ------------------------------------------------------------

order_op = st.tuples(
    st.just("submit"),
    st.sampled_from([BUY, SELL]),
    st.sampled_from([LIMIT, MARKET, OrderType.STOP_MARKET]),
    st.integers(1, 3000),  # lots
    st.integers(-800, 800),  # ticks from the last close
)
cancel_op = st.tuples(st.just("cancel"), st.integers(0, 20))
candle_op = st.tuples(
    st.just("candle"),
    st.integers(-500, 500),
    st.integers(0, 400),
    st.integers(0, 400),
    st.integers(-500, 500),
    st.integers(0, 20),
)
# steps: a few orders and cancels, then a candle
ops = st.lists(
    st.tuples(st.lists(st.one_of(order_op, cancel_op), max_size=3), candle_op).map(
        lambda step: [*step[0], step[1]]
    ),
    max_size=15,
).map(lambda steps: [op for step in steps for op in step])


@PROPERTIES
@given(ops=ops, path=st.sampled_from(list(PathMode)), latency=st.integers(0, 2))
def test_cash_holds_and_position_always_account(ops, path, latency):
    v = venue(usdt="500", btc="2", path=path, latency=latency, share="0.3")
    start = {"USDT": D(500), "BTC": D(2)}
    cids: list[str] = []
    hour, last = 1, 10000  # ticks
    for op in ops:
        if op[0] == "submit":
            _, side, type_, lots, offset = op
            price = SPEC.price(max(1, last + offset))
            extra: dict[str, object] = {"price": price} if type_ is LIMIT else {}
            if type_ is OrderType.STOP_MARKET:
                away = abs(offset) or 1
                stop = last - away if side is SELL else last + away
                extra = {"stop_price": SPEC.price(max(1, stop)), "max_slippage_bps": 2000}
            if type_ is MARKET:
                extra = {"max_slippage_bps": 500}
            cids.append(f"o{len(cids)}")
            submit(v, cids[-1], side, type_, str(SPEC.quantity(lots)), **extra)
        elif op[0] == "cancel" and cids:
            v.cancel(client_order_id=cids[op[1] % len(cids)])
        elif op[0] == "candle":
            _, move, up, down, close_move, volume = op
            o = max(200, last + move)
            c = max(200, o + close_move)
            v.advance(random_candle(hour, o, c, up, down, volume))
            hour, last = hour + 1, c
        _check_accounts(v, start)


def _check_accounts(v: SimulatedVenue, start: dict[str, D]) -> None:
    done = [e for e in v.events() if isinstance(e, OrderFilled)]
    bought = sum((f.quantity for f in done if f.side is BUY), D(0))
    sold = sum((f.quantity for f in done if f.side is SELL), D(0))
    paid = sum((f.value + f.fee for f in done if f.side is BUY), D(0))
    received = sum((f.value - f.fee for f in done if f.side is SELL), D(0))
    b = v.balances()
    assert b["USDT"].total == start["USDT"] - paid + received
    assert b["BTC"].total == start["BTC"] + bought - sold
    assert all(x.available >= 0 and x.held >= 0 for x in b.values())
    open_orders = v.open_orders()
    # a sell holds exactly its unfilled quantity; a buy at least its value at its price
    assert b["BTC"].held == sum(
        (o.quantity - o.filled for o in open_orders if o.side is SELL), D(0)
    )
    buys = [o for o in open_orders if o.side is BUY]
    assert b["USDT"].held >= sum(((o.quantity - o.filled) * o.price for o in buys), D(0))
    if not buys:
        assert b["USDT"].held == 0
