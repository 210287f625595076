"""The pure parts of exchange orders: the state table (never backwards), the checks
against the exchange's market, the capability decision with the platform's corrections,
our client order ids."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.errors import ValidationFailed
from app.exchanges.domain.catalogue import ExchangeId
from app.exchanges.domain.markets import ExchangeMarket
from app.exchanges.domain.orders import (
    LIVE,
    STOP_CORRECTIONS,
    TRANSITIONS,
    ExchangeOrderStatus,
    ExchangeOrderType,
    OrderSubmission,
    advance,
    check_submission,
    new_client_order_id,
    order_types,
)
from app.trading.domain.orders import OrderStatus, Side

S = ExchangeOrderStatus
T = ExchangeOrderType
MARKET = ExchangeMarket(
    symbol="BTC/USDT", exchange_symbol="BTCUSDT", base="BTC", quote="USDT",
    tick_size=Decimal("0.01"), lot_size=Decimal("0.00001"), min_amount=Decimal("0.0001"),
    min_notional=Decimal(5), maker_fee=Decimal("0.001"), taker_fee=Decimal("0.001"),
    active=True,
)  # fmt: skip


def _order(**changes) -> OrderSubmission:
    fields = {"client_order_id": "co1", "symbol": "BTC/USDT", "side": Side.BUY,
              "type": T.LIMIT, "quantity": Decimal("0.01"), "price": Decimal(40000),
              **changes}  # fmt: skip
    return OrderSubmission(**fields)


def test_orders_only_move_forward():
    assert advance(S.PENDING_SUBMIT, S.FILLED) is S.FILLED
    assert advance(S.OPEN, S.PARTIALLY_FILLED) is S.PARTIALLY_FILLED
    assert advance(S.PARTIALLY_FILLED, S.OPEN) is S.PARTIALLY_FILLED  # a late report
    assert advance(S.FILLED, S.CANCELED) is S.FILLED
    assert advance(S.CANCELED, S.OPEN) is S.CANCELED
    assert advance(S.OPEN, S.REJECTED) is S.OPEN  # only an unplaced order is rejected


@given(st.lists(st.sampled_from(list(S)), max_size=12))
def test_no_sequence_of_reports_leaves_an_ended_order(reports):
    state = S.PENDING_SUBMIT
    for report in reports:
        before = state
        state = advance(state, report)
        assert state is before or state in TRANSITIONS[before]
        if before not in LIVE:
            assert state is before


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"price": Decimal("40000.001")}, "price"),
        ({"quantity": Decimal("0.000015")}, "quantity"),  # off the lot
        ({"quantity": Decimal("0.00005")}, "quantity"),  # under the minimum amount
        ({"quantity": Decimal("0.0001"), "price": Decimal(100)}, "quantity"),  # notional
        ({"quantity": Decimal(0)}, "quantity"),
        ({"quantity": Decimal("NaN")}, "quantity"),
        ({"quantity": Decimal("1e30")}, "quantity"),
        ({"price": None}, "price"),
        ({"type": T.MARKET}, "price"),
        ({"type": T.STOP_LOSS_LIMIT}, "stopPrice"),
        ({"type": T.STOP_LOSS, "price": None, "stop_price": Decimal("1.001")}, "stopPrice"),
        ({"stop_price": Decimal(45000)}, "stopPrice"),  # a limit order has none
    ],
)
def test_orders_off_the_market_s_rules_are_refused_naming_the_field(changes, field):
    with pytest.raises(ValidationFailed) as refused:
        check_submission(MARKET, _order(**changes))
    assert refused.value.field == field


def test_orders_on_the_market_s_rules_pass():
    check_submission(MARKET, _order())
    check_submission(MARKET, _order(type=T.MARKET, price=None, quantity=Decimal("0.0001")))
    check_submission(MARKET, _order(type=T.STOP_LOSS_LIMIT, stop_price=Decimal("40100.5")))
    with pytest.raises(ValidationFailed, match="not trading"):
        check_submission(
            ExchangeMarket(**{**{f: getattr(MARKET, f) for f in MARKET.__slots__},
                              "active": False}), _order())  # fmt: skip


def test_stops_are_native_where_ccxt_says_unless_corrected():
    for exchange in ExchangeId:
        for ccxt_says in (True, False):
            support = {
                s.type: s.emulated for s in order_types(exchange, ccxt_native_stop=ccxt_says)
            }
            stops = {T.STOP_LOSS, T.STOP_LOSS_LIMIT} if ccxt_says else set()
            native = STOP_CORRECTIONS.get(exchange, stops)
            assert support == {T.LIMIT: False, T.MARKET: False,
                               T.STOP_LOSS: T.STOP_LOSS not in native,
                               T.STOP_LOSS_LIMIT: T.STOP_LOSS_LIMIT not in native}  # fmt: skip
    assert STOP_CORRECTIONS[ExchangeId.OKX] == frozenset()  # its spot stops are algo orders
    # Coinbase's stops are stop-limits: ccxt refuses a stop market order there
    assert STOP_CORRECTIONS[ExchangeId.COINBASE] == {T.STOP_LOSS_LIMIT}


def test_client_order_ids_fit_every_exchange_and_do_not_repeat():
    ids = {new_client_order_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"[a-z0-9]{18}", i) for i in ids)  # Kraken 18, OKX [a-z0-9]


def test_every_exchange_order_status_reads_as_a_platform_status():
    from app.exchanges.venue import STATUSES

    assert set(STATUSES) == set(ExchangeOrderStatus)
    assert STATUSES[S.ARMED] is OrderStatus.UNTRIGGERED
