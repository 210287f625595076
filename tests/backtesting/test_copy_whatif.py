"""The copy-trading what-if without a database: ``CopyLeader`` on hand-made candles and a
small leader history, every copy computed by hand (sizes per sizing mode, the caps, the
fees), skips with their reasons, the stop-loss, latency, and the parameters' validation
and JSON round trip."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest

from app.backtesting.domain import specs
from app.backtesting.domain.copying import CopyLeader, LeaderTrade
from app.backtesting.domain.runner import RunResult, run_backtest
from app.backtesting.domain.strategies import Submit, Tick
from app.core.errors import ValidationFailed
from app.social.domain.social import FollowMode, FollowParameters, InvalidFollowParameters
from app.trading.domain.orders import OrderRequest, OrderType, Side, TimeInForce
from app.venues.domain.paths import Candle
from app.venues.domain.simulated import SimulationSettings
from tests.support.simulation import SPEC, T0

BUY, SELL = Side.BUY, Side.SELL
NOW = SimulationSettings(volume_share=None, latency=0)  # comparable with the live copier


def candles(*ohlc: tuple[int, int, int, int]) -> list[Candle]:
    return [
        Candle(T0 + timedelta(hours=i), D(o), D(h), D(lo), D(c), D(1000))
        for i, (o, h, lo, c) in enumerate(ohlc)
    ]


# candle 0 closes at 100, 1 at 110, 2 at 120: each the price of the leader's fill in it
RISING = candles((100, 101, 99, 100), (100, 111, 99, 110), (110, 121, 109, 120))


def trade(
    id_: int, minutes: int, side: Side, quantity: str, price: str, **kw: object
) -> LeaderTrade:
    q, p = D(quantity), D(price)
    return LeaderTrade(id_, T0 + timedelta(minutes=minutes), side, p, q, q * p, **kw)  # type: ignore[arg-type]


# the leader buys 2 at 100 (candle 0) and 1 at 110 (candle 1), then sells half of its 3
# at 120 (candle 2)
HISTORY = (
    trade(11, 10, BUY, "2", "100", equity=D(1000)),
    trade(12, 90, BUY, "1", "110", equity=D(1000)),
    trade(13, 140, SELL, "1.5", "120", position_before=D(3)),
)


def follow(mode: FollowMode, allocation: str = "1000", **kw: object) -> FollowParameters:
    return FollowParameters(allocation=D(allocation), mode=mode, **kw)  # type: ignore[arg-type]


def run(
    params: FollowParameters,
    history: tuple[LeaderTrade, ...] = HISTORY,
    series: list[Candle] = RISING,
    settings: SimulationSettings = NOW,
    cash: str = "10000",
) -> tuple[RunResult, CopyLeader]:
    strategy = CopyLeader(SPEC, follow=params, history=history)
    result = run_backtest(
        strategy, series, market=SPEC, balances={"USDT": D(cash)}, settings=settings
    )
    return result, strategy


def fills(result: RunResult) -> list[tuple[str, Side, D, D, D]]:
    return [(f.client_order_id, f.side, f.quantity, f.price, f.fee) for f in result.fills]


def test_fixed_ratio_copies_are_the_ratio_of_the_leader_and_a_sell_mirrors_its_share():
    # one candle more: the strategy learns of the last fill at the next close
    series = candles((100, 101, 99, 100), (100, 111, 99, 110), (110, 121, 109, 120), (120,) * 4)
    result, strategy = run(follow(FollowMode.FIXED_RATIO, ratio=D("0.5")), series=series)
    # each copy is the live copier's order: a LIMIT IOC at the leader's price +- 1 %
    assert [
        (d.candle, d.client_order_id, d.side, d.type, d.quantity, d.price, d.outcome)
        for d in result.decisions
    ] == [
        (0, "copy:11", BUY, OrderType.LIMIT, D("1"), D("101"), "OK"),
        (1, "copy:12", BUY, OrderType.LIMIT, D("0.5"), D("111.1"), "OK"),
        (2, "copy:13", SELL, OrderType.LIMIT, D("0.75"), D("118.8"), "OK"),
    ]
    assert result.decisions[0].reason == "leader BUY 2 at 100 (FIXED_RATIO)"
    # latency 0: each trades at its candle's close, as a taker (0.2 %)
    assert fills(result) == [
        ("copy:11", BUY, D("1.000"), D("100.00"), D("0.200000")),  # 0.5 x 2
        ("copy:12", BUY, D("0.500"), D("110.00"), D("0.110000")),  # 0.5 x 1
        ("copy:13", SELL, D("0.750"), D("120.00"), D("0.180000")),  # half of 1.5
    ]
    assert strategy.position.quantity == D("0.75")
    # cost 100.2 + 55.11 = 155.31; half sold: 77.655 released, 89.82 received
    assert strategy.position.cost == D("77.655")
    assert strategy.position.realized_pnl == D("89.82") - D("77.655")
    assert strategy.skipped == []
    assert result.equity[-1].cash == D(10000) - D("100.2") - D("55.11") + D("89.82")


def test_fixed_amount_with_a_maximum_order_notional():
    result, _ = run(follow(FollowMode.FIXED_AMOUNT, fixed_amount=D(50), max_order_notional=D(40)))
    assert fills(result) == [
        ("copy:11", BUY, D("0.400"), D("100.00"), D("0.080000")),  # 50 capped at 40: 40/100
        ("copy:12", BUY, D("0.363"), D("110.00"), D("0.079860")),  # 40/110, down to the lot
        ("copy:13", SELL, D("0.381"), D("120.00"), D("0.091440")),  # half of 0.763, down
    ]


def test_equity_proportional_with_a_maximum_position():
    result, strategy = run(follow(FollowMode.EQUITY_PROPORTIONAL, max_position_per_asset=D(300)))
    assert fills(result)[:2] == [
        # 200 of the leader's 1000: a fifth of the 1000 allocation, at 100
        ("copy:11", BUY, D("2.000"), D("100.00"), D("0.400000")),
        # 110 / 1000 x 1000 = 110, but 2 held at 110 = 220 leaves 80 under 300: 80/110
        ("copy:12", BUY, D("0.727"), D("110.00"), D("0.159940")),
    ]
    assert strategy.skipped == []


def test_the_allocation_clips_then_skips_and_a_sell_without_a_position_is_skipped():
    clipped, _ = run(follow(FollowMode.FIXED_AMOUNT, allocation="150", fixed_amount=D(100)))
    # 100.2 used (fee included): 49.8 left, 49.8/110 = 0.4527.. down to 0.452
    assert [f[2] for f in fills(clipped)][:2] == [D("1.000"), D("0.452")]
    exhausted, strategy = run(
        follow(FollowMode.FIXED_AMOUNT, allocation="100", fixed_amount=D(100)),
        history=HISTORY[:2],
    )
    assert [f[0] for f in fills(exhausted)] == ["copy:11"]
    assert strategy.skipped == [(12, "ALLOCATION_EXHAUSTED")]
    _, seller = run(follow(FollowMode.FIXED_RATIO, ratio=D(1)), history=HISTORY[2:])
    assert seller.skipped == [(13, "NOTHING_TO_CLOSE")]


def test_allowed_symbols_and_a_copy_below_one_lot():
    _, other = run(follow(FollowMode.FIXED_RATIO, ratio=D(1), allowed_symbols=("ETH/USDT",)))
    assert other.skipped[:2] == [(11, "SYMBOL_NOT_ALLOWED"), (12, "SYMBOL_NOT_ALLOWED")]
    _, tiny = run(follow(FollowMode.FIXED_RATIO, ratio=D("0.0001")), history=HISTORY[:1])
    assert tiny.skipped == [(11, "BELOW_MINIMUM")]  # 0.0002 is below the 0.001 lot


def test_a_copy_in_flight_counts_against_the_allocation():
    # two leader buys in one candle: the second is sized while the first is in flight
    history = (trade(1, 10, BUY, "1", "100"), trade(2, 20, BUY, "1", "100"))
    result, strategy = run(
        follow(FollowMode.FIXED_AMOUNT, allocation="150", fixed_amount=D(100)),
        history=history,
        series=RISING[:1],
    )
    # in flight: 1 at its limit 101; 150 - 101 = 49 left, 0.49 at 100
    assert [f[2] for f in fills(result)] == [D("1.000"), D("0.490")]
    assert strategy.skipped == []


def test_latency_delays_a_copy_to_a_later_open_and_the_ioc_limit_can_refuse_it():
    result, _ = run(
        follow(FollowMode.FIXED_RATIO, ratio=D("0.5")),
        settings=SimulationSettings(volume_share=None, latency=1),
    )
    # the BUY copied at candle 0's close arrives at candle 1's open (100, within 101);
    # the one of candle 1 at candle 2's open (110 <= 111.1); the SELL's would be at a
    # candle 3 there is not
    assert fills(result) == [
        ("copy:11", BUY, D("1.000"), D("100.00"), D("0.200000")),
        ("copy:12", BUY, D("0.500"), D("110.00"), D("0.110000")),
    ]
    gap = candles((100, 101, 99, 100), (105, 106, 104, 105))
    refused, strategy = run(
        follow(FollowMode.FIXED_RATIO, ratio=D("0.5")),
        history=HISTORY[:1],
        series=gap,
        settings=SimulationSettings(volume_share=None, latency=1),
    )
    assert refused.fills == ()  # the open 105 is above the IOC's 101: it expired
    assert strategy.position.quantity == 0


def test_an_expired_copy_no_longer_counts_against_the_allocation():
    gap = candles((100, 101, 99, 100), (105, 106, 104, 105))
    history = (trade(1, 10, BUY, "1", "100"), trade(2, 90, BUY, "1", "105"))
    result, _ = run(
        follow(FollowMode.FIXED_AMOUNT, allocation="150", fixed_amount=D(100)),
        history=history,
        series=gap,
        settings=SimulationSettings(volume_share=None, latency=1),
    )
    # the first copy (1 at 101) expired at candle 1's open; the second is sized with the
    # whole allocation free: 100/105 = 0.952 (not (150 - 101)/105 = 0.466)
    assert [(d.client_order_id, d.quantity) for d in result.decisions] == [
        ("copy:1", D("1")),
        ("copy:2", D("0.952")),
    ]


def test_the_stop_loss_stops_copying_and_closes_the_position():
    falling = candles((100, 101, 99, 100), (100, 100, 80, 80), (80, 81, 79, 80))
    history = (trade(1, 10, BUY, "1", "100"), trade(2, 150, BUY, "1", "80"))
    params = follow(
        FollowMode.FIXED_RATIO,
        allocation="1000",
        ratio=D(1),
        stop_loss_percent=D(2),
        close_positions_on_stop_loss=True,
    )
    result, strategy = run(params, history=history, series=falling)
    # at candle 1's close: 1 BTC worth 80 cost 100.2, a loss of 20.2 >= 2 % of 1000
    assert [
        (d.candle, d.client_order_id, d.side, d.quantity, d.price) for d in result.decisions
    ] == [
        (0, "copy:1", BUY, D("1"), D("101")),
        (1, "close:1", SELL, D("1"), D("79.2")),
    ]
    assert strategy.stopped and strategy.skipped == [(2, "STOP_LOSS")]
    assert strategy.position.quantity == 0


def test_the_copy_order_is_the_live_copiers_limit_ioc():
    strategy = CopyLeader(
        SPEC, follow=follow(FollowMode.FIXED_RATIO, ratio=D(1)), history=HISTORY[:1]
    )
    (intent,) = strategy.decide(Tick(0, RISING[0], (), D(10000), D(0)))
    assert isinstance(intent, Submit) and intent.client_order_id == "copy:11"
    assert intent.request == OrderRequest(
        BUY, OrderType.LIMIT, D(2), price=D(101), time_in_force=TimeInForce.IOC
    )


def test_copy_parameters_validate_like_a_follow_and_round_trip_through_json():
    params = specs.CopyLeaderParameters(
        7,
        FollowParameters(
            allocation=D(500),
            mode=FollowMode.FIXED_AMOUNT,
            fixed_amount=D(50),
            allowed_symbols=(" btc/usdt", "BTC/USDT"),
            stop_loss_percent=D(10),
        ),
        history=HISTORY,
    )
    assert params.follow.allowed_symbols == ("BTC/USDT",)
    stored = params.as_json()
    assert stored["leaderId"] == 7 and stored["mode"] == "FIXED_AMOUNT"
    again = specs.parameters_from_json("COPY", stored)
    assert again == params and again.history == ()
    with pytest.raises(InvalidFollowParameters) as refused:
        specs.CopyLeaderParameters(7, follow(FollowMode.FIXED_AMOUNT))
    assert refused.value.field == "fixedAmount"
    with pytest.raises(InvalidFollowParameters) as refused:
        specs.CopyLeaderParameters(7, follow(FollowMode.FIXED_RATIO, allocation="0", ratio=D(1)))
    assert refused.value.field == "allocation"
    with pytest.raises(ValidationFailed) as bad:
        specs.CopyLeaderParameters(0, follow(FollowMode.FIXED_RATIO, ratio=D(1)))
    assert bad.value.field == "leaderId"
