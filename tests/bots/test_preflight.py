"""Pre-flight figures by hand: a DCA deal's ladder (each order, the average entry and the
breakeven with fees after it, the take-profit), its worst-case capital, and a grid's
profit per level net of fees. Market BTC/USDT: tick 0.01, lot 0.001, maker 0.1 %, taker
0.2 %."""

from __future__ import annotations

from decimal import Decimal as D

from app.bots.domain.grid_settings import GridSettings
from app.bots.domain.preflight import dca_preflight, grid_preflight
from tests.support.bots import dca_settings
from tests.support.simulation import SPEC

SETTINGS = dca_settings(max_active_deals=2)


def test_dca_ladder_at_100():
    rows = dca_preflight(SETTINGS, SPEC, D(100)).rows
    assert [(r.order, r.deviation, r.price, r.quantity, r.fee) for r in rows] == [
        (0, D(0), D(100), D("0.990"), D("0.198")),  # 100 / 101.00 (worst), taker fee
        (1, D("0.02"), D("98.00"), D("1.020"), D("0.09996")),  # 100 / 98, maker fee
        (2, D("0.06"), D("94.00"), D("1.595"), D("0.14993")),  # 150 / 94
        (3, D("0.14"), D("86.00"), D("2.616"), D("0.224976")),  # 225 / 86
    ]
    assert [(r.position, r.cost) for r in rows] == [
        (D("0.990"), D("99.198")),
        (D("2.010"), D("199.25796")),
        (D("3.605"), D("349.33789")),
        (D("6.221"), D("574.538866")),
    ]
    assert [r.average_entry for r in rows] == [
        D(100),
        D("198.96") / D("2.010"),
        D("348.89") / D("3.605"),
        D("573.866") / D("6.221"),
    ]
    # breakeven: what it cost with fees / (held x (1 - the maker fee of the take-profit))
    assert rows[0].breakeven == D("99.198") / D("0.98901")
    assert rows[3].breakeven == D("574.538866") / (D("6.221") * D("0.999"))
    # the take-profit 1 % over the average, up to the tick: 98.985 x 1.01 = 99.975 -> 99.98
    assert [r.take_profit for r in rows] == [D("101.00"), D("99.98"), D("97.75"), D("93.17")]


def test_dca_worst_case_capital_fills_everything_and_the_base_at_its_worst_price():
    preflight = dca_preflight(SETTINGS, SPEC, D(100))
    # base 0.990 x 101.00 = 99.99 + 0.19998; safety 99.96 + 0.09996, 149.93 + 0.14993,
    # 224.976 + 0.224976
    assert preflight.worst_case_capital == D("575.530846")
    assert preflight.all_deals_capital == 2 * D("575.530846")


def test_grid_profit_per_level_net_of_fees_for_its_quantity():
    preflight = grid_preflight(
        GridSettings(lower=D(90), upper=D(110), levels=5, investment=D(1000)), SPEC, D(100)
    )
    assert preflight.lines == (D(90), D(95), D(100), D(105), D(110))
    assert preflight.quantity == D("2.578")
    assert [p.profit for p in preflight.per_unit] == [
        D("4.815"), D("4.805"), D("4.795"), D("4.785"),
    ]  # fmt: skip
    # 2.578 x 5 = 12.89 less the maker fees 0.23202 (at 90) and 0.24491 (at 95)
    assert preflight.round_trips[0] == D("12.41307")
    assert preflight.round_trips[-1] == D("12.89") - D("0.27069") - D("0.28358")
    assert preflight.problem is None


def test_grid_preflight_says_why_it_would_not_start():
    preflight = grid_preflight(
        GridSettings(lower=D(90), upper=D(110), levels=5, investment=D("0.3")), SPEC, D(100)
    )
    assert preflight.quantity == 0
    assert preflight.problem == (
        "an investment of 0.3 USDT buys less than one lot or the minimum order value per level"
    )
