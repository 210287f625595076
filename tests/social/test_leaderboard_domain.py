"""Leaderboard statistics against hand-computed fixtures (app/social/domain/leaderboard.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from app.social.domain.leaderboard import (
    Close,
    Flow,
    Period,
    TradeFill,
    closing_trades,
    daily_closes,
    daily_returns,
    max_drawdown,
    period_stats,
    roi,
    sharpe,
    sortino,
    win_rate,
)

D = Decimal
DAY0 = datetime(2026, 3, 1, 23, 0, tzinfo=UTC)
Q18 = D("1e-18")


def at(day: int, hour: int = 23) -> datetime:
    return DAY0.replace(hour=hour) + timedelta(days=day)


def closes(*equities: str, first_day: int = 0) -> list[Close]:
    return [Close(at(first_day + i), D(e)) for i, e in enumerate(equities)]


def fill(side: str, quantity: str, quote: str, fee: str = "0", market: int = 1, day: int = 0):
    return TradeFill(at(day, 12), market, side, D(quantity), D(quote), D(fee))


def q(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(Q18)


# 1000 -> 1100 -> 990 -> 1089: returns +10 %, -10 %, +10 %
SERIES = closes("1000", "1100", "990", "1089")
RATES = [D("0.1"), D("-0.1"), D("0.1")]


def test_daily_returns_are_equity_changes_over_the_previous_close():
    returns = daily_returns(SERIES, [])
    assert [r.rate for r in returns] == RATES
    assert [r.gain for r in returns] == [D(100), D(-110), D(99)]


def test_roi_compounds_the_daily_returns():
    # 1.1 x 0.9 x 1.1 - 1 = 1.089 - 1
    assert roi(RATES) == D("0.089")
    assert roi([]) is None


def test_max_drawdown_is_the_largest_fall_from_a_peak_as_a_fraction():
    # wealth 1.1 (peak), 0.99, 1.089: (1.1 - 0.99) / 1.1 = 0.1
    assert max_drawdown(RATES) == D("0.1")
    # 1 -> 1.2 (peak) -> 0.9 -> 0.45 -> 0.9: (1.2 - 0.45) / 1.2 = 0.625
    assert max_drawdown([D("0.2"), D("-0.25"), D("-0.5"), D(1)]) == D("0.625")
    assert max_drawdown([D("0.1"), D("0.1")]) == 0  # only gains: no drawdown
    assert max_drawdown([]) is None


def test_sharpe_is_mean_over_sample_deviation_annualised():
    # mean = 0.1 / 3 = 1/30; sample variance = ((1/15)^2 + (2/15)^2 + (1/15)^2) / 2 = 1/75
    # sd = 1/(5 sqrt 3); mean / sd = sqrt(3)/6; x sqrt(365) = sqrt(1095)/6 = 5.5151307025914...
    assert q(sharpe(RATES)) == D("5.515130702591432390")
    assert sharpe([D("0.1")]) is None  # fewer than two returns
    assert sharpe([D("0.01"), D("0.01"), D("0.01")]) is None  # no deviation


def test_sortino_uses_the_downside_deviation_over_all_days():
    # downside = sqrt((0 + 0.01 + 0) / 3) = 1/(10 sqrt 3); mean / downside = sqrt(3)/3
    # x sqrt(365) = sqrt(1095)/3 = 11.030261405182864780
    assert q(sortino(RATES)) == D("11.030261405182864780")
    assert sortino([D("0.1"), D("0.2")]) is None  # no losing day


def test_a_deposit_is_not_profit():
    # 1000, then +1000 deposited during day 1, close 2100: gain 2100 - 1000 - 1000 = 100
    # on capital 1000 + 1000 (start-of-day convention): r = 100 / 2000 = 0.05
    series = closes("1000", "2100")
    deposit = [Flow(at(1, 9), D(1000))]
    returns = daily_returns(series, deposit)
    assert [(r.rate, r.gain) for r in returns] == [(D("0.05"), D(100))]
    stats = period_stats(Period.ALL, now=at(1), closes=series, flows=deposit, fills=[])
    assert (stats.roi, stats.pnl) == (D("0.05"), D(100))


def test_a_withdrawal_is_not_a_loss_and_emptying_the_account_is_no_return():
    # 1000, withdraw 400 (fee included) during day 1, close 660: gain 660 - 1000 + 400 = 60
    # on 1000 - 400 = 600: r = 0.1; then everything withdrawn: capital 0, r = 0
    series = closes("1000", "660", "0")
    flows = [Flow(at(1, 8), D(-400)), Flow(at(2, 8), D(-660))]
    assert [r.rate for r in daily_returns(series, flows)] == [D("0.1"), D(0)]


def test_a_deposit_before_the_first_close_is_the_capital_of_the_first_day():
    # the deposit at day 0, 09:00 is before the first close (day 0, 23:00): day 0 is
    # measured from nothing, so its loss counts: (900 - 0 - 1000) / 1000 = -0.1
    series = closes("900", "990")
    returns = daily_returns(series, [Flow(at(0, 9), D(1000))])
    assert [(r.rate, r.gain) for r in returns] == [(D("-0.1"), D(-100)), (D("0.1"), D(90))]
    first_day = period_stats(
        Period.D7, now=at(0), closes=series[:1], flows=[Flow(at(0, 9), D(1000))], fills=[]
    )
    assert (first_day.roi, first_day.pnl, first_day.max_drawdown) == (
        D("-0.1"),
        D(-100),
        D("0.1"),
    )


def test_flows_before_a_period_baseline_are_already_in_its_equity():
    # deposit on day 0, closes days 0..8; D7 (days 2..8) starts from the close of day 1
    series = closes("1000", "1100", "1100", "1100", "1100", "1100", "1100", "1100", "1210")
    d7 = period_stats(
        Period.D7, now=at(8), closes=series, flows=[Flow(at(0, 9), D(1000))], fills=[]
    )
    assert (d7.roi, d7.pnl) == (D("0.1"), D(110))


def test_the_close_of_a_day_is_its_last_snapshot():
    snapshots = [(at(0, 8), D(5)), (at(0, 22), D(7)), (at(1, 1), D(9)), (at(0, 3), D(1))]
    assert daily_closes(snapshots) == [Close(at(0, 22), D(7)), Close(at(1, 1), D(9))]


def test_win_rate_replays_fills_with_average_cost_and_fees():
    fills = [
        # cost 100 + 0.1 fee; then 110 + 0.11: 2 units for 210.21, average 105.105
        fill("BUY", "1", "100", "0.1"),
        fill("BUY", "1", "110", "0.11"),
        # 1 @ 105.2 less 0.1052 fee = 105.0948 < 105.105: a loss because of the fees
        fill("SELL", "1", "105.2", "0.1052"),
        # 0.5 @ 120 = 60 less 0.06 = 59.94, 119.88 per unit > 105.105: a win
        fill("SELL", "0.5", "60", "0.06"),
        # nothing bought on market 2 (deposited coins): not a closing trade
        fill("SELL", "1", "50", market=2),
    ]
    assert [won for _, won in closing_trades(fills)] == [False, True]
    assert win_rate(closing_trades(fills), since=None) == D("0.5")


def test_average_cost_survives_partial_sells():
    # 2 @ 100 = 200; sell 1 @ 90 (loss) leaves 1 costing 100; sell 1 @ 101: a win
    fills = [fill("BUY", "2", "200"), fill("SELL", "1", "90"), fill("SELL", "1", "101")]
    assert [won for _, won in closing_trades(fills)] == [False, True]


def test_periods_count_the_last_n_days_with_a_baseline_before_them():
    # ten daily closes: 100 for days 0-4, then +10 a day to 150 on day 9
    series = closes("100", "100", "100", "100", "100", "110", "120", "130", "140", "150")
    now = at(9, 23)
    fills = [
        fill("BUY", "1", "10", day=1),  # before D7 (days 3-9): builds the average cost
        fill("SELL", "1", "20", day=5),  # closing win inside
        fill("BUY", "1", "10", day=6),
        fill("SELL", "1", "5", day=7),  # closing loss inside
    ]
    d7 = period_stats(Period.D7, now=now, closes=series, flows=[], fills=fills)
    # baseline: day 2 (100); returns for days 3..9; ROI = 150/100 - 1 = 0.5; PnL 50
    assert (q(d7.roi), d7.pnl, d7.trades, d7.win_rate) == (D("0.5"), D(50), 3, D("0.5"))
    assert d7.max_drawdown == 0
    all_time = period_stats(Period.ALL, now=now, closes=series, flows=[], fills=fills)
    assert (q(all_time.roi), all_time.trades) == (D("0.5"), 4)
    # a trader whose history starts inside the period: baseline is the first close
    young = period_stats(Period.D30, now=now, closes=series[8:], flows=[], fills=[])
    # 150 / 140 - 1 = 1/14
    assert young.roi is not None and q(young.roi) == D("0.071428571428571429")
    assert young.win_rate is None and young.trades == 0


def test_no_history_gives_empty_statistics():
    stats = period_stats(Period.D30, now=at(0), closes=closes("100"), flows=[], fills=[])
    assert (stats.roi, stats.pnl, stats.max_drawdown, stats.sharpe, stats.sortino) == (
        None,
        D(0),
        None,
        None,
        None,
    )
