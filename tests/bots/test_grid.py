"""The grid bot, step by step on hand-made events: its lines (arithmetic, geometric), the
refusal of a spacing the fees eat, the start (quantity per level from the investment,
the opening buy), levels going round (their states, their profit), trailing up and
stopping at the bounds. Market BTC/USDT: tick 0.01, lot 0.001, maker 0.1 %, taker 0.2 %."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

import pytest

from app.bots.domain.errors import GridSpacingBelowFees
from app.bots.domain.grid import GridBot, LevelStatus, move
from app.bots.domain.grid_settings import (
    AtBounds,
    GridSettings,
    Spacing,
    level_profits,
    line_price,
    validate_grid,
)
from app.bots.domain.runtime import Action, BotStatus, StopBot
from app.core.errors import InvariantViolation, ValidationFailed
from app.trading.domain.orders import OrderRequest, OrderStatus, OrderType, Side
from tests.support.bots import at, ended, fill, fold, then, tick
from tests.support.simulation import SPEC

BUY, SELL = Side.BUY, Side.SELL
W = LevelStatus


def grid_settings(**kw: object) -> GridSettings:
    base = GridSettings(lower=D(90), upper=D(110), levels=5, investment=D(1000))
    return validate_grid(replace(base, **kw), SPEC)  # type: ignore[arg-type]


def grid(**kw: object) -> GridBot:
    return GridBot(bot_id=1, market=SPEC, settings=grid_settings(**kw))


def orders(run) -> list[tuple[str, Side, OrderType, D | None, D]]:
    return [
        (p.client_order_id, p.request.side, p.request.type, p.request.price, p.request.quantity)
        for p in run.placed
    ]


def test_lines_arithmetic_and_geometric_on_the_tick():
    arithmetic = grid_settings()
    assert [line_price(arithmetic, SPEC, i) for i in range(6)] == [
        D(90), D(95), D(100), D(105), D(110), D("115.00"),
    ]  # fmt: skip
    geometric = grid_settings(lower=D(100), upper=D(400), levels=3, spacing=Spacing.GEOMETRIC)
    assert [line_price(geometric, SPEC, i) for i in range(4)] == [
        D(100), D("200.00"), D(400), D("800.00"),
    ]  # fmt: skip
    thirds = grid_settings(lower=D(100), upper=D(200), levels=4)
    assert line_price(thirds, SPEC, 1) == D("133.33")  # 133.333... to the nearest tick


def test_profit_per_level_is_net_of_both_maker_fees():
    (first, *_, last) = level_profits(grid_settings(), SPEC)
    assert (first.buy, first.sell) == (D(90), D(95))
    assert first.profit == D(95) * D("0.999") - D(90) * D("1.001")  # 4.815 per BTC
    assert last.profit == D(110) * D("0.999") - D(105) * D("1.001")  # 4.785
    assert last.fraction == last.profit / D(105)


def test_a_spacing_the_fees_eat_is_refused():
    # 100 -> 100.10: 100.1 x 0.999 - 100 x 1.001 = -0.0001 per BTC
    with pytest.raises(GridSpacingBelowFees) as refused:
        grid_settings(lower=D(100), upper=D("101"), levels=11)
    assert refused.value.code == "GRID_SPACING_BELOW_FEES" and refused.value.field == "levels"
    grid_settings(lower=D(100), upper=D("101"), levels=5)  # 0.25 apart: 0.04975 per BTC


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"lower": D(0)}, "lower"),
        ({"lower": D("90.001")}, "lower"),
        ({"upper": D(90)}, "upper"),
        ({"levels": 1}, "levels"),
        ({"levels": 201}, "levels"),
        ({"lower": D(100), "upper": D("100.03"), "levels": 5}, "levels"),  # under the tick
        ({"investment": D(0)}, "investment"),
        ({"max_slippage_bps": -1}, "maxSlippageBps"),
    ],
)
def test_settings_out_of_range_are_refused_naming_the_field(change, field):
    with pytest.raises(ValidationFailed) as refused:
        grid_settings(**change)
    assert refused.value.field == field


def started():
    bot = grid()
    return bot, fold(bot, [tick("100")])


def test_start_buys_below_the_price_and_gets_the_base_for_the_levels_above():
    _, run = started()
    # lines 90 95 100 105 110; levels buy at 90 and 95, those at 100 and 105 need base.
    # q = (1000 / 1.002 - 3 x 0.000001) / (90 + 95 + 2 x 101.00) = 2.5788... -> 2.578
    assert orders(run) == [
        ("bot:1:0:1", BUY, OrderType.LIMIT, D(90), D("2.578")),
        ("bot:1:1:2", BUY, OrderType.LIMIT, D(95), D("2.578")),
        ("bot:1:spare:3", BUY, OrderType.MARKET, None, D("5.156")),
    ]
    assert run.placed[2].request.worst_price == D("101.00")
    assert [lv.status for lv in run.state.levels] == [W.BUYING, W.BUYING, W.WAITING, W.WAITING]
    # what it may spend: 2.578 x (90 + 95 + 202) = 997.686, fees at most 0.2 %: 999.682
    assert run.reasons(Action.GRID_STARTED) == [
        "4 levels of 2.578 BTC from 90 to 110 at 100: 2 buying, 2 to sell"
    ]


def test_levels_go_round_and_keep_their_profit():
    bot, run = started()
    run = then(bot, run, fill("bot:1:spare:3", BUY, "100.00", "5.156", "1.031200"))
    # each waiting level takes 2.578 at half the cost (515.6 + 1.0312) / 2 = 258.3156
    assert orders(run) == [
        ("bot:1:2:4", SELL, OrderType.LIMIT, D(105), D("2.578")),
        ("bot:1:3:5", SELL, OrderType.LIMIT, D(110), D("2.578")),
    ]
    assert run.state.levels[2].position.cost == D("258.3156")
    assert run.state.base_held == D("5.156") and run.state.spare.quantity == 0

    run = then(bot, run, fill("bot:1:2:4", SELL, "105", "2.578", "0.270690"))
    assert orders(run) == [("bot:1:2:6", BUY, OrderType.LIMIT, D(100), D("2.578"))]
    level = run.state.levels[2]
    assert (level.status, level.cycles) == (W.BUYING, 1)
    # 270.69 - 0.27069 - 258.3156
    assert level.position.realized_pnl == D("12.103710") and run.state.profit == D("12.103710")

    run = then(bot, run, fill("bot:1:2:6", BUY, "100", "2.5", "0.25", remaining="0.078"))
    assert run.placed == [] and run.state.levels[2].status is W.BUYING
    run = then(bot, run, fill("bot:1:2:6", BUY, "100", "0.078", "0.0078"))
    assert orders(run) == [("bot:1:2:7", SELL, OrderType.LIMIT, D(105), D("2.578"))]
    assert run.state.base_held == D("5.156")


def test_an_opening_buy_that_gets_too_little_leaves_the_last_level_idle():
    bot, run = started()
    run = then(
        bot,
        run,
        fill("bot:1:spare:3", BUY, "100.00", "3", "0.6", remaining="2.156"),
        ended("bot:1:spare:3", status=OrderStatus.EXPIRED),
    )
    assert [lv.status for lv in run.state.levels] == [W.BUYING, W.BUYING, W.SELLING, W.IDLE]
    assert run.state.spare.quantity == D("0.422")  # 3 - 2.578
    assert run.state.base_held == D(3)


def test_a_refused_level_order_leaves_it_idle():
    bot, run = started()
    run = then(bot, run, ended("bot:1:0:1", status=OrderStatus.REJECTED))
    assert run.state.levels[0].status is W.IDLE
    assert run.reasons(Action.ORDER_ENDED) == ["LEVEL order REJECTED: X"]


def test_level_states_move_only_as_the_table_says():
    _, run = started()
    with pytest.raises(InvariantViolation):
        move(run.state.levels[0], W.BUYING)
    with pytest.raises(InvariantViolation):
        move(move(run.state.levels[0], W.IDLE), W.BUYING)


def test_trailing_up_moves_the_lowest_level_to_the_top():
    bot = grid(lower=D(90), upper=D(110), levels=3, at_bounds=AtBounds.TRAIL_UP)
    run = fold(bot, [tick("105")])
    # both levels buy (90, 100): q = (1000 / 1.002 - 0.000002) / 190 = 5.2526... -> 5.252
    assert orders(run) == [
        ("bot:1:0:1", BUY, OrderType.LIMIT, D(90), D("5.252")),
        ("bot:1:1:2", BUY, OrderType.LIMIT, D(100), D("5.252")),
    ]
    run = then(bot, run, tick("110", 1))
    assert run.commands == []  # at the top line, not above it
    run = then(bot, run, tick("111", 2))
    assert run.canceled == ["bot:1:0:1"] and run.placed == []
    assert run.state.bottom == 1 and [lv.line for lv in run.state.levels] == [1, 2]
    assert run.state.levels[1].status is W.MOVING
    assert run.reasons(Action.GRID_MOVED) == ["level 0 (90) moves to 2 (110)"]
    # once the cancel has ended, what it freed, 5.252 x 90, buys floor(472.68 / 110) =
    # 4.297 at the old top line, to sell at 120
    run = then(bot, run, ended("bot:1:0:1", 2))
    assert orders(run) == [("bot:1:2:3", BUY, OrderType.LIMIT, D(110), D("4.297"))]
    run = then(bot, run, fill("bot:1:2:3", BUY, "110", "4.297", "0.4727"))
    assert orders(run) == [("bot:1:2:4", SELL, OrderType.LIMIT, D("120.00"), D("4.297"))]


def test_a_moving_level_buys_with_what_its_canceled_buy_left():
    bot = grid(lower=D(90), upper=D(110), levels=3, at_bounds=AtBounds.TRAIL_UP)
    run = fold(bot, [tick("105"), tick("111", 1)])
    # the canceled buy filled 2 of 5.252 before its cancel: that base is spare, and the
    # 3.252 left x 90 / 110 = 2.6607... buys 2.660
    run = then(
        bot,
        run,
        fill("bot:1:0:1", BUY, "90", "2", "0.18", remaining="3.252", hours=1),
        ended("bot:1:0:1", 1),
    )
    assert orders(run) == [("bot:1:2:3", BUY, OrderType.LIMIT, D(110), D("2.660"))]
    assert run.state.spare.quantity == D(2) and run.state.base_held == D(2)


def test_trailing_up_does_not_move_a_level_that_holds_base():
    bot = grid(lower=D(90), upper=D(110), levels=3, at_bounds=AtBounds.TRAIL_UP)
    run = fold(bot, [tick("105"), fill("bot:1:0:1", BUY, "90", "1", "0.09", remaining="4.252")])
    run = then(bot, run, tick("111", 1))
    assert run.commands == []


@pytest.mark.parametrize("price", ["110.01", "89.99"])
def test_stop_at_the_bounds(price):
    bot = grid(at_bounds=AtBounds.STOP)
    bot_run = fold(bot, [tick("100"), fill("bot:1:spare:3", BUY, "100", "5.156", "1.0312")])
    run = then(bot, bot_run, tick(price, 1))
    assert run.canceled == ["bot:1:0:1", "bot:1:1:2", "bot:1:2:4", "bot:1:3:5"]
    assert run.state.status is BotStatus.STOPPING and run.placed == []
    run = then(bot, run, *(ended(c, 1) for c in run.canceled))
    assert run.state.status is BotStatus.STOPPED and run.state.base_held == D("5.156")


def test_stop_with_close_position_sells_what_the_levels_hold():
    bot = grid()
    run = fold(bot, [tick("100"), fill("bot:1:spare:3", BUY, "100", "5.156", "1.0312")])
    run = then(bot, run, StopBot(at(1), close_position=True))
    assert run.canceled == ["bot:1:0:1", "bot:1:1:2", "bot:1:2:4", "bot:1:3:5"]
    assert run.placed == []  # its sells may still trade until their ends
    run = then(bot, run, *(ended(c, 1) for c in run.canceled))
    assert orders(run) == [("bot:1:spare:6", SELL, OrderType.MARKET, None, D("5.156"))]
    assert run.placed[0].request == OrderRequest(
        SELL, OrderType.MARKET, D("5.156"), worst_price=D(99)
    )
    assert run.state.spare.quantity == D("5.156") and run.state.base_held == D("5.156")


def test_an_investment_too_small_for_a_lot_per_level_does_not_start():
    bot = grid(investment=D("0.3"))  # 0.3 / 387 per level: under one lot
    run = fold(bot, [tick("100")])
    assert run.placed == [] and run.state.status is BotStatus.STOPPED
    assert "less than one lot" in run.state.stop_reason
