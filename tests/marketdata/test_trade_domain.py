"""Trade rules, pure: which headerless layout a first row is, header names, sides, the
symbol check, made ids (hypothesis: identical trades share the made id, others not)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.marketdata.domain import trades
from app.marketdata.domain.layouts import Rejected, UnknownLayout

T0 = datetime(2024, 1, 1, tzinfo=UTC)
TRADE = ["7", "42000.5", "0.01", "420.005", "1704067200000", "True", "True"]


def test_headerless_rows_are_binance_trades_or_agg_trades_by_where_the_boolean_is():
    assert trades.positional(TRADE) is trades.BINANCE_TRADES
    assert trades.positional(TRADE[:6]) is trades.BINANCE_TRADES
    agg = ["7", "42000.5", "0.01", "70", "72", "1704067200000", "false", "true"]
    assert trades.positional(agg) is trades.BINANCE_AGG_TRADES
    assert trades.positional(agg[:7]) is trades.BINANCE_AGG_TRADES
    for row in (TRADE[:5], ["1", "2", "3", "4", "5", "6"], [*agg, "x"]):
        with pytest.raises(UnknownLayout):
            trades.positional(row)


def test_a_binance_row_and_its_taker_side():
    sold = trades.trade(TRADE, trades.BINANCE_TRADES, "BTC/USDT")
    assert sold == trades.Trade(T0, Decimal("42000.5"), Decimal("0.01"), "SELL", "7")
    bought = trades.trade([*TRADE[:5], "false"], trades.BINANCE_TRADES, "BTC/USDT")
    assert bought.side == "BUY"


def test_headers_in_common_names():
    columns = trades.from_header(["Trade ID", "Qty", "Price", "Transact Time", "Is Buyer Maker"])
    assert columns == trades.TradeColumns(time=3, price=2, amount=1, buyer_maker=4, id=0)
    with pytest.raises(UnknownLayout, match="no column for amount"):
        trades.from_header(["time", "price", "quote_qty"])


@pytest.mark.parametrize(
    ("side", "found"),
    [("buy", "BUY"), ("SELL", "SELL"), ("b", "BUY"), (" s ", "SELL"), ("", None), (None, None)],
)
def test_sides(side, found):
    row = {"time": "1704067200", "price": "1", "amount": "1", "side": side}
    assert trades.trade(row, trades.from_object_keys(list(row)), "BTC/USDT").side == found


def test_the_side_column_wins_over_is_buyer_maker_and_unknown_sides_are_refused():
    row = {"time": 1704067200, "price": 1, "amount": 1, "side": "buy", "is_buyer_maker": True}
    assert trades.trade(row, trades.from_object_keys(list(row)), "BTC/USDT").side == "BUY"
    with pytest.raises(Rejected, match="side is buy or sell"):
        trades.trade({**row, "side": "bid"}, trades.from_object_keys(list(row)), "BTC/USDT")


@pytest.mark.parametrize("given_symbol", ["BTC/USDT", "BTCUSDT", "btc-usdt", "BTC/USDT:USDT"])
def test_symbols_that_name_the_market(given_symbol):
    assert trades.same_symbol(given_symbol, "BTC/USDT")


@pytest.mark.parametrize("given_symbol", ["ETH/USDT", "BTC/USD", "BTCUSDTX"])
def test_symbols_that_do_not(given_symbol):
    assert not trades.same_symbol(given_symbol, "BTC/USDT")


decimals = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal(10**6), places=6)


@given(
    micros=st.integers(0, 10**15),
    price=decimals,
    amount=decimals,
    other=st.tuples(st.integers(0, 10**15), decimals, decimals),
)
def test_made_ids_tell_trades_apart_by_time_price_and_amount(micros, price, amount, other):
    def made(m, p, a):
        return trades.made_id(trades.Trade(T0 + timedelta(microseconds=m), p, a))

    assert made(micros, price, amount) == made(micros, price * 1, amount.normalize())
    assert (made(micros, price, amount) == made(*other)) == ((micros, price, amount) == other)
