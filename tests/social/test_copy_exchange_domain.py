"""Copies bound for an exchange account: fitting to the exchange's market, the client
order id, the account's state and the allocation cap, a fill there as the follow's
position sees it, the close's client order id: pure."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.social.domain.copying import (
    ExchangeLots,
    Planned,
    Skipped,
    SkipReason,
    account_refusal,
    capped_allocation,
    exchange_close_client_order_id,
    exchange_copy_client_order_id,
    exchange_fill_change,
    fit_to_market,
)

D = Decimal
MARKET = ExchangeLots(D("0.01"), D("0.00001"), D("0.0001"), D("5"))


@pytest.mark.parametrize(
    ("side", "quantity", "price", "expected"),
    [
        ("BUY", "0.123456789", "101.0049", Planned(D("0.12345"), D("101.00"))),  # down, down
        ("SELL", "0.123456789", "98.9951", Planned(D("0.12345"), D("99.00"))),  # down, up
        ("BUY", "0.00009", "60000", Skipped(SkipReason.BELOW_MINIMUM)),  # under the min amount
        ("BUY", "0.0004", "101", Skipped(SkipReason.BELOW_MINIMUM)),  # 0.04 USDT notional
        ("SELL", "0.000001", "101", Skipped(SkipReason.BELOW_MINIMUM)),  # under a lot
    ],
)
def test_fit_to_market(side, quantity, price, expected):
    assert fit_to_market(side, D(quantity), D(price), MARKET) == expected


@given(
    quantity=st.decimals(min_value=D("0.00001"), max_value=D("1000"), places=9),
    price=st.decimals(min_value=D("0.01"), max_value=D("100000"), places=6),
    buy=st.booleans(),
)
def test_a_fitted_copy_is_never_bigger_nor_worse_than_planned(quantity, price, buy):
    side = "BUY" if buy else "SELL"
    fitted = fit_to_market(side, quantity, price, MARKET)
    if isinstance(fitted, Planned):
        assert fitted.quantity <= quantity and fitted.quantity % MARKET.lot_size == 0
        assert fitted.price % MARKET.tick_size == 0
        assert fitted.price <= price if buy else fitted.price >= price
        assert fitted.quantity * fitted.price >= MARKET.min_notional


def test_the_client_order_id_is_the_copy_s_own_and_valid_everywhere():
    first = exchange_copy_client_order_id(7, 1234)
    assert first == exchange_copy_client_order_id(7, 1234)  # the same copy: the same order
    assert first != exchange_copy_client_order_id(7, 1235)
    assert first != exchange_copy_client_order_id(8, 1234)
    assert re.fullmatch(r"[a-z0-9]{18}", first)  # Kraken 18, OKX [a-z0-9]


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("ACTIVE", None),
        ("SUSPENDED", SkipReason.EXCHANGE_ACCOUNT_SUSPENDED),
        ("DISCONNECTED", SkipReason.EXCHANGE_ACCOUNT_DISCONNECTED),
        (None, SkipReason.EXCHANGE_ACCOUNT_DISCONNECTED),
    ],
)
def test_account_refusal(status, reason):
    assert account_refusal(status) == reason


def test_the_allocation_is_capped_by_what_the_account_holds():
    assert capped_allocation(D("500"), D("1234.5")) == D("500")
    assert capped_allocation(D("500"), D("120")) == D("120")
    assert capped_allocation(D("500"), None) == 0
    assert capped_allocation(D("500"), D("-1")) == 0


@pytest.mark.parametrize(
    ("side", "fee_currency", "quantity", "quote"),
    [
        ("BUY", "USDT", "0.5", "50.1"),  # paid, fee included
        ("SELL", "USDT", "0.5", "49.9"),  # received, fee deducted
        ("BUY", "BTC", "0.4999", "50"),  # less bought
        ("SELL", "BTC", "0.5001", "50"),  # more sold
        ("BUY", "BNB", "0.5", "50"),  # not the position's
        ("SELL", None, "0.5", "50"),
    ],
)
def test_a_fill_at_an_exchange_moves_the_position_by_its_fee_currency(
    side, fee_currency, quantity, quote
):
    fee = D("0.1") if fee_currency == "USDT" else D("0.0001")
    change = exchange_fill_change(side, D("0.5"), D("100"), fee, fee_currency,
                                  base="BTC", quote="USDT")  # fmt: skip
    assert (change.quantity, change.quote) == (D(quantity), D(quote))


def test_a_close_at_an_exchange_is_named_by_the_positions_version():
    first = exchange_close_client_order_id(7, "BTC", 3)
    assert re.fullmatch(r"[a-z0-9]{18}", first)
    assert first == exchange_close_client_order_id(7, "BTC", 3)
    others = {
        exchange_close_client_order_id(7, "BTC", 4),
        exchange_close_client_order_id(7, "ETH", 3),
        exchange_close_client_order_id(8, "BTC", 3),
        exchange_copy_client_order_id(7, 3),
    }
    assert first not in others and len(others) == 4
