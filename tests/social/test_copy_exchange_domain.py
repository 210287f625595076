"""Copies bound for an exchange account: fitting to the exchange's market, the client
order id, the account's state and the allocation cap: pure."""

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
    exchange_copy_client_order_id,
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
