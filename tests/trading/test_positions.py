"""The one position at average cost (pure), as copy trading and the portfolio use it:
today's numbers pinned (cost basis, average cost, realised PnL on partial closes, fees)."""

from __future__ import annotations

from decimal import Decimal

from app.trading.domain.positions import Position

D = Decimal


def test_buys_add_quantity_and_cost_fees_included():
    p = Position().bought(D(1), D("100.2")).bought(D(1), D("120.2"))
    assert p == Position(D(2), D("220.4"), D(0))
    assert p.average_cost == D("110.2")


def test_a_partial_sale_releases_the_average_cost_of_what_is_sold():
    p = Position(D(2), D("220.4")).sold(D("0.5"), D("59.88"))  # 60 less a 0.12 fee
    assert p == Position(D("1.5"), D("165.3"), D("4.78"))
    assert p.average_cost == D("110.2")  # unchanged by a sale
    assert Position(D(2), D("220.4")).sold_tracked(D("0.5"), D("59.88")) == p


def test_selling_everything_closes_at_zero_cost():
    for sell in (Position.sold, Position.sold_tracked):
        p = sell(Position(D(3), D(100)), D(3), D(150))
        assert p == Position(D(0), D(0), D(50))
        assert p.average_cost is None


def test_selling_beyond_the_position_copy_trading_counts_all_proceeds():
    assert Position(D(1), D(100)).sold(D(2), D(300)) == Position(D(0), D(0), D(200))
    assert Position().sold(D(1), D(50)) == Position(D(0), D(0), D(50))


def test_selling_beyond_the_position_the_portfolio_counts_the_tracked_share():
    # 1 tracked of 2 sold: half the 300 received is realised against the cost of 100
    assert Position(D(1), D(100)).sold_tracked(D(2), D(300)) == Position(D(0), D(0), D(50))
    # nothing tracked: nothing realised
    assert Position().sold_tracked(D(1), D(50)) == Position(D(0), D(0), D(0))


def test_realised_pnl_accumulates_over_partial_closes():
    p = Position().bought(D(4), D("400.4"))  # 100 each, 0.4 fees
    p = p.sold_tracked(D(1), D("109.89"))  # 110 less 0.11
    assert p == Position(D(3), D("300.3"), D("9.79"))
    p = p.sold_tracked(D(2), D("179.82"))  # 90 less 0.09 each
    assert p == Position(D(1), D("100.1"), D("9.79") + D("179.82") - D("200.2"))
    assert p.realized_pnl == D("-10.59")


def test_unrealized_is_value_less_cost():
    assert Position(D("0.5"), D("50.1")).unrealized(D(80)) == D("-10.1")
    assert Position().unrealized(D(80)) == 0
