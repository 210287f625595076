"""Copy sizing, caps, rounding, closes, positions, stop-loss and profit share: pure."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.social.domain.copying import (
    CopyMode,
    Exposure,
    LeaderFill,
    Lots,
    Planned,
    Position,
    Skipped,
    SkipReason,
    Terms,
    close_client_order_id,
    close_fraction,
    copy_client_order_id,
    follow_pnl,
    limit_price,
    parse_client_order_id,
    plan_close,
    plan_copy,
    plan_open,
    profit_share,
    round_down,
    stop_loss_hit,
)

D = Decimal
BTC = Lots(tick_size=D("0.01"), lot_size=D("0.0001"), min_notional=D(5))


def fill(price: str = "100", quantity: str = "1", symbol: str = "BTC/USDT") -> LeaderFill:
    return LeaderFill(
        symbol=symbol,
        quote=symbol.split("/")[1],
        price=D(price),
        quantity=D(quantity),
        notional=D(price) * D(quantity),
    )


def terms(mode: CopyMode = CopyMode.FIXED_AMOUNT, **kw) -> Terms:
    defaults = {"allocation": D(1000), "fixed_amount": D(50), "ratio": D("0.5")}
    return Terms(mode=mode, **{**defaults, **kw})


def open_(t: Terms, f: LeaderFill | None = None, **kw) -> Planned | Skipped:
    exposure = kw.pop("exposure", Exposure())
    return plan_open(t, f or fill(), BTC, quote="USDT", exposure=exposure, **kw)


def test_each_mode_sizes_as_documented():
    assert open_(terms()) == Planned(D("0.5"), D("101"))
    assert open_(terms(CopyMode.FIXED_RATIO), fill(quantity="0.3")) == Planned(D("0.15"), D(101))
    proportional = terms(CopyMode.EQUITY_PROPORTIONAL, allocation=D(500))
    # the leader spent 100 of 1000: a tenth of 500 is 50, at 100 that is 0.5
    assert open_(proportional, leader_equity=D(1000)) == Planned(D("0.5"), D(101))
    assert open_(proportional, leader_equity=None) == Skipped(SkipReason.BELOW_MINIMUM)


def test_caps_clip_in_order_and_name_the_one_that_skipped():
    assert open_(terms(max_order_notional=D(30))) == Planned(D("0.3"), D(101))
    room = Exposure(position_value=D(80))
    assert open_(terms(max_position_per_asset=D(100)), exposure=room) == Planned(D("0.2"), D(101))
    full = Exposure(position_value=D(98))
    assert open_(terms(max_position_per_asset=D(100)), exposure=full) == Skipped(
        SkipReason.MAX_POSITION_REACHED
    )
    used = Exposure(allocation_used=D(990))
    assert open_(terms(), exposure=used) == Planned(D("0.1"), D(101))
    assert open_(terms(), exposure=Exposure(allocation_used=D(998))) == Skipped(
        SkipReason.ALLOCATION_EXHAUSTED
    )


def test_filters_skip():
    assert open_(terms(allowed_symbols=["ETH/USDT"])) == Skipped(SkipReason.SYMBOL_NOT_ALLOWED)
    assert open_(terms(allowed_symbols=["btc/usdt"])) == Planned(D("0.5"), D(101))
    assert open_(terms(), fill(symbol="BTC/USD")) == Skipped(SkipReason.QUOTE_MISMATCH)
    assert open_(terms(fixed_amount=D(4))) == Skipped(SkipReason.BELOW_MINIMUM)
    assert open_(terms(CopyMode.FIXED_RATIO, ratio=D("0.00001"))) == Skipped(
        SkipReason.BELOW_MINIMUM
    )


def test_limit_prices_round_against_the_follower_within_tolerance():
    assert limit_price("BUY", D("100.005"), D("0.01"), D("0.01")) == D("101.00")  # 101.00505
    assert limit_price("SELL", D("100.005"), D("0.01"), D("0.01")) == D("99.01")  # 99.00495
    assert limit_price("SELL", D("0.01"), D("0.5"), D("0.01")) == D("0.01")  # at least a tick


def test_closes_mirror_the_leaders_fraction_of_what_the_follow_holds():
    assert close_fraction(D("0.4"), D(1)) == D("0.4")
    assert close_fraction(D(2), D(1)) == 1  # sold more than tracked: all of it
    assert close_fraction(D(1), D(0)) == 1
    sell = fill(quantity="0.4")
    assert plan_close(terms(), sell, BTC, held=D("0.5"), fraction=D("0.4")) == Planned(
        D("0.2"), D(99)
    )
    assert plan_close(terms(), sell, BTC, held=D("0.33333"), fraction=D(1)) == Planned(
        D("0.3333"), D(99)
    )
    assert plan_close(terms(), sell, BTC, held=D(0), fraction=D(1)) == Skipped(
        SkipReason.NOTHING_TO_CLOSE
    )
    assert plan_close(terms(), sell, BTC, held=D("0.01"), fraction=D(1)) == Skipped(
        SkipReason.BELOW_MINIMUM
    )


def test_plan_copy_sizes_from_what_the_follow_has_used_and_holds():
    """The one sizing the live copier and the what-if share: a buy is capped by the
    allocation left after ``used`` and by the position value of ``held`` (never below 0);
    a sell closes the leader's fraction of ``held`` (all of it without a position before);
    both at the limit the slippage tolerance (1 %) allows."""
    t = terms(CopyMode.FIXED_AMOUNT, fixed_amount=D(500), max_position_per_asset=D(600))
    buy = {"buy": True, "quote": "USDT", "leader_equity": None, "position_before": None}
    assert plan_copy(t, fill(), BTC, used=D(0), held=D(0), **buy) == Planned(D(5), D("101.00"))
    # 900 of the 1,000 allocation used: 100 left
    assert plan_copy(t, fill(), BTC, used=D(900), held=D(0), **buy) == Planned(D(1), D("101.00"))
    # 5.5 held at 100 = 550 of the 600 per asset: 50 left
    assert plan_copy(t, fill(), BTC, used=D(0), held=D("5.5"), **buy) == Planned(
        D("0.5"), D("101.00")
    )
    # sells in flight beyond the position (held < 0) count as nothing held, not as room
    assert plan_copy(t, fill(), BTC, used=D(0), held=D(-3), **buy) == Planned(D(5), D("101.00"))
    sell = {"buy": False, "quote": "USDT", "leader_equity": None}
    assert plan_copy(
        t, fill(quantity="1"), BTC, used=D(0), held=D(4), position_before=D(4), **sell
    ) == Planned(D(1), D("99.00"))
    assert plan_copy(t, fill(), BTC, used=D(0), held=D(4), position_before=None, **sell) == (
        Planned(D(4), D("99.00"))
    )


def test_client_order_ids_are_deterministic_and_parse_back():
    assert copy_client_order_id(7, 42) == "copy-7-42"
    assert close_client_order_id(7, "BTC", 3) == "close-7-BTC-3"
    assert parse_client_order_id("copy-7-42") == ("copy", 7)
    assert parse_client_order_id("close-7-BTC-3") == ("close", 7)
    assert parse_client_order_id("copy-x-1") is None
    assert parse_client_order_id("9f1c2e") is None


def test_positions_at_average_cost():
    p = Position().bought(D(1), D("100.2")).bought(D(1), D("120.2"))
    assert p == Position(D(2), D("220.4"), D(0))
    p = p.sold(D("0.5"), D("59.88"))
    assert p == Position(D("1.5"), D("165.3"), D("59.88") - D("55.1"))
    assert p.unrealized(D(100)) == D("-15.3")
    assert Position(D(1), D(100)).sold(D(2), D(300)) == Position(D(0), D(0), D(200))


def test_stop_loss_counts_realized_and_unrealized():
    positions = [(Position(D("0.5"), D("50.1"), D(0)), D(80))]
    pnl = follow_pnl(positions)
    assert pnl == D("-10.1")
    assert stop_loss_hit(pnl, D(100), D(10))
    assert not stop_loss_hit(D("-9.99"), D(100), D(10))
    assert not stop_loss_hit(D(-1000), D(100), None)


def test_profit_share_above_the_high_water_mark_and_carried_when_short():
    unit = D("0.000001")
    full = profit_share(realized=D(150), high_water_mark=D(100), percent=D(10), available=D(99),
                        unit=unit)  # fmt: skip
    assert (full.due, full.paid, full.high_water_mark) == (D(5), D(5), D(150))
    short = profit_share(realized=D(150), high_water_mark=D(100), percent=D(10), available=D(2),
                         unit=unit)  # fmt: skip
    assert (short.due, short.paid, short.high_water_mark) == (D(5), D(2), D(120))
    # the next settlement charges the rest
    rest = profit_share(realized=D(150), high_water_mark=D(120), percent=D(10), available=D(99),
                        unit=unit)  # fmt: skip
    assert (rest.paid, rest.high_water_mark) == (D(3), D(150))
    below = profit_share(realized=D(90), high_water_mark=D(100), percent=D(10), available=D(99),
                         unit=unit)  # fmt: skip
    assert (below.due, below.paid, below.high_water_mark) == (0, 0, D(100))


amounts = st.decimals(min_value=D("0.01"), max_value=D(100000), places=2)


@given(
    price=amounts,
    fixed=amounts,
    max_order=st.none() | amounts,
    used=st.decimals(min_value=D(0), max_value=D(2000), places=2),
)
def test_a_planned_buy_respects_lot_tick_minimum_and_every_cap(price, fixed, max_order, used):
    t = terms(fixed_amount=fixed, max_order_notional=max_order, allocation=D(1000))
    plan = open_(t, fill(price=str(price)), exposure=Exposure(allocation_used=used))
    if isinstance(plan, Skipped):
        return
    assert plan.quantity % BTC.lot_size == 0 and plan.quantity > 0
    assert plan.price % BTC.tick_size == 0
    assert plan.price <= price * D("1.01")
    assert plan.quantity * plan.price >= BTC.min_notional
    notional = plan.quantity * price
    assert notional <= fixed
    assert max_order is None or notional <= max_order
    assert notional <= D(1000) - used


@given(
    held=st.decimals(min_value=D(0), max_value=D(100), places=8),
    fraction=st.decimals(min_value=D("0.0001"), max_value=D(1), places=4),
)
def test_a_close_never_sells_more_than_the_follow_holds(held, fraction):
    plan = plan_close(terms(), fill(), BTC, held=held, fraction=fraction)
    if isinstance(plan, Planned):
        assert plan.quantity <= held * fraction or (fraction == 1 and plan.quantity <= held)
        assert plan.quantity == round_down(plan.quantity, BTC.lot_size)


@pytest.mark.parametrize("amount", ["0", "-3"])
def test_round_down_of_nothing_is_zero(amount):
    assert round_down(D(amount), D("0.01")) == 0
