"""A fill's settlement (pure): its TRADE legs balance per currency and follow the TRADE
flow, and no fill ever draws more than its order's hold (property tests over real books:
every order holds what placement holds for it, ``orders.hold_units``)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.errors import InvariantViolation
from app.ledger.rules import AccountKind, AccountRef, check_entry
from app.trading.domain import orders
from app.trading.domain.matching import Fill, OrderBook, Place
from app.trading.domain.orders import OrderType, Side, TimeInForce
from app.trading.domain.settlement import TRADE, settle
from tests.trading.test_matching import SPEC  # BTC/USDT, fees 0.1 % and 0.25 %

D = Decimal
FREE = replace(SPEC, maker_fee=D(0), taker_fee=D(0))
PROPERTIES = settings(max_examples=150, derandomize=True, deadline=None)


def fill(**changes: object) -> Fill:
    values: dict[str, object] = dict(
        seq=1,
        trade_id=7,
        maker_order_id=1,
        taker_order_id=2,
        maker_user_id=10,
        taker_user_id=20,
        taker_side=Side.BUY,
        price=9_000_000,
        quantity=10,
        notional=900_000_000,
        maker_fee=900_000,
        taker_fee=2_250_000,
        maker_remaining=0,
        taker_remaining=0,
    )
    values.update(changes)
    return Fill(**values)  # type: ignore[arg-type]


def test_a_taker_buy_pays_value_and_taker_fee_and_the_maker_seller_receives_less_its_fee():
    s = settle(SPEC, fill(), buyer_hold_left=10**12, seller_hold_left=10**12)
    buyer, seller = 20, 10
    assert {(leg.account, leg.amount) for leg in s.legs} == {
        (AccountRef("USDT", AccountKind.HELD, buyer), D("-902.250000")),
        (AccountRef("USDT", AccountKind.AVAILABLE, seller), D("899.100000")),
        (AccountRef("USDT", AccountKind.FEES), D("3.150000")),
        (AccountRef("BTC", AccountKind.HELD, seller), D("-0.01000000")),
        (AccountRef("BTC", AccountKind.AVAILABLE, buyer), D("0.01000000")),
    }
    assert (s.buyer_draw, s.seller_draw) == (902_250_000, 1_000_000)
    assert (s.base, s.value, s.buyer_paid, s.seller_received) == (
        D("0.01"),
        D("900"),
        D("902.25"),
        D("899.1"),
    )
    assert (s.maker_fee, s.taker_fee) == (D("0.9"), D("2.25"))
    check_entry(TRADE, s.legs)


def test_a_taker_sell_is_the_seller_and_the_maker_the_buyer():
    s = settle(SPEC, fill(taker_side=Side.SELL), buyer_hold_left=10**12, seller_hold_left=10**12)
    assert s.buyer_draw == 900_000_000 + 900_000  # the maker's fee
    amounts = {leg.account: leg.amount for leg in s.legs}
    assert amounts[AccountRef("USDT", AccountKind.HELD, 10)] == D("-900.900000")
    assert amounts[AccountRef("USDT", AccountKind.AVAILABLE, 20)] == D("897.750000")
    assert amounts[AccountRef("BTC", AccountKind.AVAILABLE, 10)] == D("0.01")


def test_a_fee_free_fill_has_no_fee_leg():
    s = settle(
        FREE, fill(maker_fee=0, taker_fee=0), buyer_hold_left=10**12, seller_hold_left=10**12
    )
    assert AccountKind.FEES not in {leg.account.kind for leg in s.legs}
    assert len(s.legs) == 4
    check_entry(TRADE, s.legs)


@pytest.mark.parametrize(("buyer_left", "seller_left"), [(902_249_999, 10**9), (10**12, 999_999)])
def test_a_fill_beyond_a_hold_is_refused(buyer_left, seller_left):
    with pytest.raises(InvariantViolation, match="more than its hold"):
        settle(SPEC, fill(), buyer_hold_left=buyer_left, seller_hold_left=seller_left)


def test_the_trade_flow_refuses_legs_elsewhere():
    s = settle(SPEC, fill(), buyer_hold_left=10**12, seller_hold_left=10**12)
    with pytest.raises(InvariantViolation, match="HOLD entry"):
        check_entry("HOLD", s.legs)


# --- properties over real books ---------------------------------------------------------

orders_st = st.lists(
    st.tuples(
        st.sampled_from([Side.BUY, Side.SELL]),
        st.integers(min_value=1, max_value=40),  # price, ticks
        st.integers(min_value=1, max_value=25),  # lots
        st.sampled_from([OrderType.LIMIT, OrderType.MARKET]),
        st.integers(min_value=1, max_value=4),  # user
    ),
    min_size=1,
    max_size=30,
)


@PROPERTIES
@given(orders_st, st.sampled_from([SPEC, FREE]))
def test_fills_balance_and_never_overdraw_their_holds(stream, spec):
    book = OrderBook(spec)
    holds: dict[int, int] = {}  # order id -> minor units left
    for seq, (side, price, lots, type_, user) in enumerate(stream, start=1):
        holds[seq] = orders.hold_units(spec, side, price, lots)
        tif = TimeInForce.IOC if type_ is OrderType.MARKET else TimeInForce.GTC
        for event in book.handle(Place(seq, seq, user, side, type_, price, lots, tif)):
            if not isinstance(event, Fill):
                continue
            if event.taker_side is Side.BUY:
                buyer, seller = event.taker_order_id, event.maker_order_id
            else:
                buyer, seller = event.maker_order_id, event.taker_order_id
            s = settle(spec, event, buyer_hold_left=holds[buyer], seller_hold_left=holds[seller])
            check_entry(TRADE, s.legs)  # balanced per currency, along the TRADE flow
            holds[buyer] -= s.buyer_draw
            holds[seller] -= s.seller_draw
            assert holds[buyer] >= 0 and holds[seller] >= 0
            held = {
                leg.account.currency: -leg.amount
                for leg in s.legs
                if leg.account.kind is AccountKind.HELD
            }
            # what the HELD legs take is exactly what the holds lose
            assert held[spec.quote] == D(s.buyer_draw).scaleb(-spec.quote_scale)
            assert held[spec.base] == D(s.seller_draw).scaleb(-spec.base_scale)
    assert all(left >= 0 for left in holds.values())
