"""Order rules without a database: the market spec and its units, validation of every
order type, the status machine, holds and triggers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.errors import InvariantViolation, UserError
from app.trading.domain import orders
from app.trading.domain.errors import (
    BelowMinimumNotional,
    InvalidOrder,
    MarketHalted,
    OrderNotAmendable,
    OrderNotCancellable,
    PriceOffTick,
    PriceOutsideBand,
    QuantityOffLotSize,
    StopPriceWrongSide,
)
from app.trading.domain.orders import (
    FINAL_STATUSES,
    TRANSITIONS,
    MarketSpec,
    MarketStatus,
    OrderEvent,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    TrailingOffsetType,
    TrailingSpec,
    TrailingState,
    ValidOrder,
)

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
D = Decimal
PROPERTIES = settings(max_examples=150, derandomize=True, deadline=None)


def market(**overrides: Any) -> MarketSpec:
    args: dict[str, Any] = {
        "symbol": "BTC/USDT",
        "base": "BTC",
        "quote": "USDT",
        "base_scale": 8,
        "quote_scale": 6,
        "tick_size": D("0.01"),
        "lot_size": D("0.0001"),
        "min_notional": D("5"),
        "maker_fee": D("0.001"),
        "taker_fee": D("0.002"),
    }
    return MarketSpec(**{**args, **overrides})


def request(**overrides: Any) -> OrderRequest:
    args: dict[str, Any] = {
        "side": Side.BUY,
        "type": OrderType.LIMIT,
        "quantity": D("0.01"),
        "price": D("60000"),
    }
    return OrderRequest(**{**args, **overrides})


def validate(reference: str | None = "60000", band: int | None = None, **overrides: Any):
    return orders.validate_order(
        request(**overrides),
        market(),
        now=NOW,
        reference_price=None if reference is None else D(reference),
        price_band_bps=band,
    )


# --- the market and its units -------------------------------------------------------------


def test_units_of_a_market():
    spec = market()
    assert spec.units_per_tick_lot == 1  # 0.01 USDT x 0.0001 BTC = 0.000001 USDT
    assert spec.to_ticks(D("60000.01")) == 6_000_001
    assert spec.to_lots(D("0.0125")) == 125
    assert spec.price(6_000_001) == D("60000.01")
    assert spec.quantity(125) == D("0.0125")
    assert spec.notional_units(6_000_000, 100) == 600_000_000  # 600 USDT
    assert spec.quote_amount(600_000_000) == D("600")
    assert (spec.fee_denominator, spec.maker_fee_numerator, spec.taker_fee_numerator) == (
        1000,
        1,
        2,
    )
    assert spec.base_units_per_lot == 10_000


def test_fee_rates_with_different_precision_share_a_denominator():
    spec = market(maker_fee=D("0.00075"), taker_fee=D("0.001"))  # 3/4000 and 1/1000
    assert spec.fee_denominator == 4000
    assert (spec.maker_fee_numerator, spec.taker_fee_numerator) == (3, 4)


@pytest.mark.parametrize(
    "overrides",
    [
        {"tick_size": D("0.01"), "lot_size": D("0.00001")},  # fill values below 1e-6 USDT
        {"lot_size": D("0.000000001")},  # finer than a satoshi
        {"tick_size": D(0)},
        {"maker_fee": D(1)},
        {"taker_fee": D("-0.001")},
        {"min_notional": D(-1)},
    ],
)
def test_a_market_whose_fills_would_need_rounding_is_refused(overrides):
    with pytest.raises(InvariantViolation):
        market(**overrides)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (D("60000.001"), PriceOffTick),
        (D(0), InvalidOrder),
        (D(-1), InvalidOrder),
        (D("NaN"), InvalidOrder),
        (D("sNaN"), InvalidOrder),
        (D("Infinity"), InvalidOrder),
        (D("1e21"), InvalidOrder),
    ],
)
def test_prices_off_the_tick_or_not_positive(value, error):
    with pytest.raises(error) as caught:
        market().to_ticks(value, field="stopPrice")
    assert caught.value.field == "stopPrice"


def test_a_conversion_is_exact_far_beyond_the_decimal_context():
    # 29 significant digits: the default 28-digit context would round this onto the tick
    with pytest.raises(PriceOffTick):
        market().to_ticks(D("1000000000000000.0000000000001"))
    with pytest.raises(QuantityOffLotSize):
        market().to_lots(D("0.00015"))


@PROPERTIES
@given(ticks=st.integers(1, 10**15), lots=st.integers(1, 10**12))
def test_units_round_trip(ticks, lots):
    spec = market()
    assert spec.to_ticks(spec.price(ticks)) == ticks
    assert spec.to_lots(spec.quantity(lots)) == lots
    assert spec.quote_amount(spec.notional_units(ticks, lots)) == spec.price(ticks) * spec.quantity(
        lots
    )


def test_reference_prices_off_the_tick_are_rounded_down():
    assert market().nearest_ticks(D("60000.019")) == 6_000_001
    assert market().nearest_ticks(D("0.001")) == 1


@PROPERTIES
@given(
    tick=st.sampled_from(["0.01", "0.5", "0.03", "25", "1E-12", "7"]),
    digits=st.integers(-(10**45), 10**45),
    exponent=st.integers(-20, 5),
)
def test_a_reference_price_in_ticks_is_the_exact_floor(tick, digits, exponent):
    # prices of up to 46 digits: beyond the context's 28, Decimal's // refuses and the
    # exact ratio answers
    price = D(digits).scaleb(exponent)
    floor = Fraction(price) // Fraction(D(tick))
    assert market(tick_size=D(tick), quote_scale=16).nearest_ticks(price) == max(1, floor)


def test_epoch_ms():
    assert orders.epoch_ms(datetime(1970, 1, 1, 0, 0, 1, 500, tzinfo=UTC)) == 1000
    assert orders.epoch_ms(NOW) == int(NOW.timestamp()) * 1000


# --- validation ---------------------------------------------------------------------------


def test_a_limit_order():
    order = validate()
    assert order == ValidOrder(
        side=Side.BUY,
        type=OrderType.LIMIT,
        quantity=100,
        price=6_000_000,
        time_in_force=TimeInForce.GTC,
    )
    assert order.book_type is OrderType.LIMIT and order.trigger is None


def test_a_market_order_gets_a_worst_price_from_the_default_slippage():
    buy = validate(type=OrderType.MARKET, price=None)
    assert buy.price == 6_300_000  # 5 % above 60000
    assert buy.time_in_force is TimeInForce.IOC
    sell = validate(type=OrderType.MARKET, price=None, side=Side.SELL, max_slippage_bps=100)
    assert sell.price == 5_940_000  # 1 % below


def test_a_market_order_with_a_worst_price():
    order = validate(
        type=OrderType.MARKET, price=None, worst_price=D("60100"), time_in_force=TimeInForce.FOK
    )
    assert (order.price, order.time_in_force) == (6_010_000, TimeInForce.FOK)


def test_a_market_order_on_a_market_that_never_traded_needs_a_worst_price():
    with pytest.raises(InvalidOrder) as caught:
        validate(reference=None, type=OrderType.MARKET, price=None)
    assert caught.value.field == "worstPrice"
    order = validate(reference=None, type=OrderType.MARKET, price=None, worst_price=D("61000"))
    assert order.price == 6_100_000


def test_stop_and_take_profit_orders():
    stop = validate(type=OrderType.STOP_LIMIT, stop_price=D("61000"), price=D("61100"))
    assert (stop.stop_price, stop.price, stop.book_type) == (6_100_000, 6_110_000, OrderType.LIMIT)
    tp = validate(
        type=OrderType.TAKE_PROFIT_MARKET, side=Side.SELL, price=None, stop_price=D("62000")
    )
    assert tp.book_type is OrderType.MARKET
    assert tp.price == 5_890_000  # 5 % below the stop: the protection is from the trigger


@pytest.mark.parametrize(
    ("order_type", "side", "stop"),
    [
        (OrderType.STOP_MARKET, Side.BUY, "59000"),  # a buy stop is above the market
        (OrderType.STOP_MARKET, Side.SELL, "61000"),
        (OrderType.TAKE_PROFIT_MARKET, Side.BUY, "61000"),  # a buy take-profit is below
        (OrderType.TAKE_PROFIT_MARKET, Side.SELL, "59000"),
        (OrderType.STOP_MARKET, Side.BUY, "60000"),  # at the market is not beyond it
    ],
)
def test_a_stop_price_on_the_wrong_side_of_the_market(order_type, side, stop):
    with pytest.raises(StopPriceWrongSide) as caught:
        validate(type=order_type, side=side, price=None, stop_price=D(stop))
    assert caught.value.field == "stopPrice"


def test_trailing_stops():
    amount = validate(
        type=OrderType.TRAILING_STOP,
        side=Side.SELL,
        price=None,
        trailing_offset=D("500"),
        activation_price=D("61000"),
    )
    assert amount.trailing == TrailingSpec(50_000, TrailingOffsetType.AMOUNT, 6_100_000)
    percent = validate(
        type=OrderType.TRAILING_STOP,
        price=None,
        trailing_offset=D("1.5"),
        trailing_offset_type=TrailingOffsetType.PERCENT,
    )
    assert percent.trailing == TrailingSpec(150, TrailingOffsetType.PERCENT, None)
    # a BUY's stop starts 1.5 % above 60000 and only falls: the worst price is 5 % above that
    assert percent.price == 6_090_000 * 105 // 100


@pytest.mark.parametrize(
    ("overrides", "error", "field"),
    [
        ({"trailing_offset": D("100.005")}, PriceOffTick, "trailingOffset"),
        (
            {"trailing_offset": D("100"), "trailing_offset_type": TrailingOffsetType.PERCENT},
            InvalidOrder,
            "trailingOffset",
        ),
        (
            {"trailing_offset": D("0.001"), "trailing_offset_type": TrailingOffsetType.PERCENT},
            InvalidOrder,
            "trailingOffset",
        ),
        (
            {"trailing_offset": D("5"), "activation_price": D("61000")},  # a BUY activates below
            StopPriceWrongSide,
            "activationPrice",
        ),
        ({}, InvalidOrder, "trailingOffset"),
    ],
)
def test_bad_trailing_stops(overrides, error, field):
    with pytest.raises(error) as caught:
        validate(type=OrderType.TRAILING_STOP, price=None, **overrides)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"price": None}, "price"),  # LIMIT needs a price
        ({"type": OrderType.MARKET}, "price"),  # MARKET takes none
        ({"stop_price": D("61000")}, "stopPrice"),
        ({"type": OrderType.STOP_LIMIT}, "stopPrice"),
        ({"worst_price": D("1")}, "worstPrice"),
        ({"max_slippage_bps": 5}, "maxSlippageBps"),
        ({"trailing_offset": D("1")}, "trailingOffset"),
        ({"activation_price": D("1")}, "activationPrice"),
        ({"type": OrderType.MARKET, "price": None, "post_only": True}, "postOnly"),
        (
            {"type": OrderType.MARKET, "price": None, "worst_price": D("1"), "max_slippage_bps": 5},
            "worstPrice",
        ),
        ({"type": OrderType.MARKET, "price": None, "max_slippage_bps": 10_000}, "maxSlippageBps"),
        (
            {"type": OrderType.MARKET, "price": None, "time_in_force": TimeInForce.GTC},
            "timeInForce",
        ),
        ({"post_only": True, "time_in_force": TimeInForce.IOC}, "postOnly"),
        ({"time_in_force": TimeInForce.GTD}, "expiresAt"),
        ({"expires_at": NOW + timedelta(days=1)}, "expiresAt"),  # GTC with an expiry
        ({"time_in_force": TimeInForce.GTD, "expires_at": NOW}, "expiresAt"),
        ({"quantity": D(0)}, "quantity"),
    ],
)
def test_parameters_that_do_not_fit_the_order_type(overrides, field):
    with pytest.raises(InvalidOrder) as caught:
        validate(**overrides)
    assert caught.value.field == field
    assert caught.value.code == "INVALID_ORDER"


def test_a_gtd_order_and_a_post_only_order():
    gtd = validate(time_in_force=TimeInForce.GTD, expires_at=NOW + timedelta(hours=1))
    assert gtd.expires_at == NOW + timedelta(hours=1)
    assert validate(post_only=True).post_only


@pytest.mark.parametrize(
    ("overrides", "error", "field"),
    [
        ({"price": D("60000.005")}, PriceOffTick, "price"),
        ({"quantity": D("0.00015")}, QuantityOffLotSize, "quantity"),
        ({"quantity": D("0.0001"), "price": D("40000")}, BelowMinimumNotional, "quantity"),
    ],
)
def test_tick_lot_and_minimum_notional(overrides, error, field):
    with pytest.raises(error) as caught:
        validate(**overrides)
    assert caught.value.field == field


def test_one_lot_worth_the_minimum_notional_is_enough():
    assert validate(quantity=D("0.0001"), price=D("50000")).quantity == 1  # exactly 5 USDT


def test_the_minimum_notional_of_a_market_order_uses_the_last_price():
    with pytest.raises(BelowMinimumNotional):
        validate(reference="40000", type=OrderType.MARKET, price=None, quantity=D("0.0001"))


def test_the_price_band():
    assert validate(band=500, price=D("63000")).price == 6_300_000  # exactly 5 % away
    with pytest.raises(PriceOutsideBand) as caught:
        validate(band=500, price=D("63000.01"))
    assert caught.value.field == "price"
    with pytest.raises(PriceOutsideBand):
        validate(band=500, price=D("56999.99"))
    assert validate(reference=None, band=500, price=D("1000")).price == 100_000  # no last price


def test_a_halted_market_takes_no_orders():
    with pytest.raises(MarketHalted):
        orders.validate_order(
            request(), market(status=MarketStatus.HALTED), now=NOW, reference_price=None
        )


def test_every_validation_error_is_a_user_error_with_a_stable_code():
    from app.trading.domain import errors as trading_errors

    classes = [
        value
        for value in vars(trading_errors).values()
        if isinstance(value, type) and issubclass(value, UserError) and value is not UserError
    ]
    codes = [cls.code for cls in classes]
    assert len(set(codes)) == len(codes) > 10
    assert all(code.isupper() and code != UserError.code for code in codes)
    assert all(cls.__name__ in (trading_errors.__doc__ or "") for cls in classes)  # the tree


# --- the status machine -------------------------------------------------------------------


def test_the_usual_lives_of_an_order():
    def walk(*events: OrderEvent) -> OrderStatus:
        status = OrderStatus.NEW
        for event in events:
            status = orders.apply(status, event)
        return status

    E = OrderEvent
    assert walk(E.ACCEPT, E.FILL) is OrderStatus.FILLED
    assert walk(E.ACCEPT, E.FILL_PARTIAL, E.FILL_PARTIAL, E.FILL) is OrderStatus.FILLED
    assert walk(E.ACCEPT, E.FILL_PARTIAL, E.AMEND, E.CANCEL) is OrderStatus.CANCELED
    assert walk(E.ACCEPT, E.EXPIRE) is OrderStatus.EXPIRED
    assert walk(E.REJECT) is OrderStatus.REJECTED
    assert walk(E.ARM, E.AMEND, E.TRIGGER, E.ACCEPT, E.FILL) is OrderStatus.FILLED
    assert walk(E.ARM, E.TRIGGER, E.REJECT) is OrderStatus.REJECTED
    assert walk(E.ARM, E.EXPIRE) is OrderStatus.EXPIRED


@pytest.mark.parametrize("final", sorted(FINAL_STATUSES))
def test_a_final_order_cannot_be_canceled_amended_or_filled(final):
    with pytest.raises(OrderNotCancellable):
        orders.apply(final, OrderEvent.CANCEL)
    with pytest.raises(OrderNotAmendable):
        orders.apply(final, OrderEvent.AMEND)
    with pytest.raises(InvariantViolation):  # the engine and the database disagree: a bug
        orders.apply(final, OrderEvent.FILL)


def test_the_table_covers_every_status_and_final_statuses_have_no_way_out():
    sources = {status for status, _ in TRANSITIONS}
    targets = set(TRANSITIONS.values())
    assert sources | targets == set(OrderStatus)
    assert not sources & FINAL_STATUSES
    assert orders.LIVE_STATUSES == set(OrderStatus) - FINAL_STATUSES
    assert orders.apply("OPEN", OrderEvent.CANCEL) is OrderStatus.CANCELED  # stored strings


@pytest.mark.parametrize(
    ("status", "event"),
    [
        (OrderStatus.NEW, OrderEvent.FILL),
        (OrderStatus.NEW, OrderEvent.AMEND),
        (OrderStatus.UNTRIGGERED, OrderEvent.ACCEPT),
        (OrderStatus.OPEN, OrderEvent.TRIGGER),
        (OrderStatus.OPEN, OrderEvent.ACCEPT),
        (OrderStatus.TRIGGERED, OrderEvent.FILL),
    ],
)
def test_transitions_not_in_the_table_are_refused(status, event):
    with pytest.raises((InvariantViolation, UserError)):
        orders.apply(status, event)


# --- holds --------------------------------------------------------------------------------


def test_holds():
    spec = market()
    buy = validate()  # 0.01 BTC at 60000: 600 USDT + 0.2 % taker fee
    assert orders.hold_for(spec, buy) == ("USDT", D("601.2"))
    sell = validate(side=Side.SELL)
    assert orders.hold_for(spec, sell) == ("BTC", D("0.01"))
    market_buy = validate(type=OrderType.MARKET, price=None)  # at the worst price, 63000
    assert orders.hold_for(spec, market_buy) == ("USDT", D("631.26"))


@PROPERTIES
@given(price=st.integers(1, 10**9), lots=st.integers(1, 10**6))
def test_a_buy_hold_covers_value_and_fee_at_the_order_price(price, lots):
    spec = market(maker_fee=D("0.00075"), taker_fee=D("0.0011"))
    exact = spec.notional_units(price, lots) * Fraction("1.0011")
    assert exact <= orders.hold_units(spec, Side.BUY, price, lots) < exact + 1


# --- triggers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order_type", "side", "stop", "fires_at", "quiet_at"),
    [
        (OrderType.STOP_MARKET, Side.BUY, "61000", "61000", "60999.99"),
        (OrderType.STOP_MARKET, Side.SELL, "59000", "59000", "59000.01"),
        (OrderType.TAKE_PROFIT_MARKET, Side.BUY, "59000", "58000", "59000.01"),
        (OrderType.TAKE_PROFIT_MARKET, Side.SELL, "61000", "61500", "60999.99"),
    ],
)
def test_stop_and_take_profit_triggers(order_type, side, stop, fires_at, quiet_at):
    order = validate(type=order_type, side=side, price=None, stop_price=D(stop))
    spec = market()
    assert orders.is_triggered(order, spec.to_ticks(D(fires_at)))
    assert not orders.is_triggered(order, spec.to_ticks(D(quiet_at)))


def test_a_sell_trailing_stop_follows_the_highs_after_activation():
    spec = TrailingSpec(offset=100, offset_type=TrailingOffsetType.AMOUNT, activation=1_100)
    state = orders.start_trailing(spec)
    assert state == TrailingState(active=False)
    fired = []
    for last in (1_000, 1_050, 1_100, 1_300, 1_250, 1_201, 1_200):
        state, fire = orders.observe_trailing(Side.SELL, spec, state, last)
        fired.append(fire)
    # not active until 1100; highs 1300 -> stop 1200; fires at 1200
    assert fired == [False, False, False, False, False, False, True]
    assert state == TrailingState(active=True, extreme=1_300)


def test_a_buy_trailing_stop_by_percent_follows_the_lows():
    spec = TrailingSpec(offset=1_000, offset_type=TrailingOffsetType.PERCENT, activation=None)
    state = orders.start_trailing(spec)
    state, fired = orders.observe_trailing(Side.BUY, spec, state, 1_000)  # stop 1100
    assert not fired
    state, fired = orders.observe_trailing(Side.BUY, spec, state, 800)  # stop 880
    assert not fired and orders.trailing_stop_price(Side.BUY, spec, state.extreme or 0) == 880
    state, fired = orders.observe_trailing(Side.BUY, spec, state, 880)
    assert fired


def test_protection_prices():
    assert orders.protection_price(Side.BUY, 10_000, 250) == 10_250
    assert orders.protection_price(Side.BUY, 3, 100) == 3  # rounded down to a tick
    assert orders.protection_price(Side.SELL, 3, 100) == 3  # rounded up
    assert orders.protection_price(Side.SELL, 1, 9_999) == 1  # never below one tick
