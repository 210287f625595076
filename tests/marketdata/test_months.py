"""The calendar-month interval ``1M``, pure: its grid (the 1st 00:00 UTC), month lengths
and leap years, counting, gaps across months and candles merged from days; and file rows
whose date labels a candle's last day (``time_label="end"``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.marketdata.domain import layouts
from app.marketdata.domain.candles import INTERVALS, Candle, Gap, aggregate, gaps, problems

M1, H1, D1, W1, MONTH = (INTERVALS[n] for n in ("1m", "1h", "1d", "1w", "1M"))


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_a_month_opens_on_the_first_at_midnight_utc():
    assert MONTH.floor(at(2024, 2, 29, 23, 59)) == at(2024, 2, 1)
    assert MONTH.floor(at(2024, 3, 1)) == at(2024, 3, 1)
    assert MONTH.floor(at(1970, 1, 31)) == at(1970, 1, 1)
    assert MONTH.ceil(at(2024, 12, 1, 0, 0, 1)) == at(2025, 1, 1)
    assert MONTH.ceil(at(2024, 12, 1)) == at(2024, 12, 1)
    assert MONTH.is_aligned(at(2025, 1, 1))
    for off in (at(2025, 1, 2), at(2025, 1, 1, 0, 1), at(2024, 12, 31, 23, 59, 59)):
        assert not MONTH.is_aligned(off)
    east = timezone(timedelta(hours=2))  # 2024-02-29 23:30 UTC
    assert MONTH.floor(datetime(2024, 3, 1, 1, 30, tzinfo=east)) == at(2024, 2, 1)


def test_month_lengths_follow_the_calendar_and_leap_years():
    lengths = {m: MONTH.length(at(2024, m, 1)).days for m in range(1, 13)}
    assert lengths == {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30,
                       10: 31, 11: 30, 12: 31}  # fmt: skip
    assert MONTH.length(at(2023, 2, 1)) == timedelta(days=28)
    assert MONTH.length(at(2000, 2, 1)) == timedelta(days=29)  # divisible by 400
    assert MONTH.length(at(2100, 2, 1)) == timedelta(days=28)  # by 100, not by 400
    assert MONTH.next(at(2024, 12, 1)) == at(2025, 1, 1)
    assert MONTH.shift(at(2024, 1, 1), 14) == at(2025, 3, 1)
    assert MONTH.shift(at(2024, 1, 1), -1) == at(2023, 12, 1)
    assert D1.length(at(2024, 2, 28)) == timedelta(days=1) == D1.step  # fixed steps as before
    assert M1.next(at(2024, 1, 1)) == at(2024, 1, 1, 0, 1)


def test_counting_months():
    assert MONTH.count(at(2012, 1, 1), at(2025, 1, 1)) == 156
    assert MONTH.count(at(2024, 2, 1), at(2024, 3, 1)) == 1
    assert MONTH.count(at(2024, 1, 1), at(2024, 1, 1)) == 0
    # what a request spans: the months opening in [start, end)
    assert MONTH.periods(at(2024, 1, 1), at(2025, 1, 1)) == 12
    assert MONTH.periods(at(2024, 1, 15), at(2024, 3, 2)) == 2  # February and March
    assert MONTH.periods(at(2024, 1, 15), at(2024, 1, 20)) == 0
    assert H1.periods(at(2024, 1, 1), at(2024, 1, 1, 1, 30)) == 1.5  # fixed steps as before


def test_which_intervals_make_up_a_month():
    for finer in ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d"):
        assert INTERVALS[finer].divides(MONTH), finer
    assert MONTH.divides(MONTH)
    assert not W1.divides(MONTH)  # weeks straddle months
    for fixed in INTERVALS.values():
        if fixed is not MONTH:
            assert not MONTH.divides(fixed), fixed.name


def test_gaps_across_months_count_calendar_months():
    held = [at(2023, 11, 1), at(2024, 3, 1), at(2024, 4, 1), at(2025, 2, 1)]
    assert list(gaps(held, MONTH)) == [
        Gap(at(2023, 12, 1), at(2024, 3, 1), 3),  # December, January, February (leap)
        Gap(at(2024, 5, 1), at(2025, 2, 1), 9),
    ]
    assert list(gaps([at(2024, 1, 1), at(2024, 2, 1), at(2024, 3, 1)], MONTH)) == []


def day(d: datetime, o: str, h: str, lo: str, c: str, v: str = "1") -> Candle:
    return Candle(d, *(Decimal(x) for x in (o, h, lo, c, v)))


def test_days_merge_into_their_calendar_month():
    found = [
        day(at(2024, 1, 31), "10", "12", "9", "11"),
        day(at(2024, 2, 1), "11", "15", "10", "14"),
        day(at(2024, 2, 29), "14", "20", "13", "19", "2"),  # leap day: still February
        day(at(2024, 3, 1), "19", "19", "5", "6", "4"),
    ]
    assert list(aggregate(found, MONTH)) == [
        day(at(2024, 1, 1), "10", "12", "9", "11"),
        day(at(2024, 2, 1), "11", "20", "10", "19", "3"),
        day(at(2024, 3, 1), "19", "19", "5", "6", "4"),
    ]


days = st.lists(st.integers(0, 3 * 366), min_size=1, unique=True).map(sorted)


@given(days)
def test_months_from_days_keep_every_day_and_sit_on_the_grid(numbers):
    first = at(2023, 12, 1)
    daily = [day(first + timedelta(days=n), "10", "11", "9", "10", f"{n}") for n in numbers]
    monthly = list(aggregate(daily, MONTH))
    assert sum(c.volume for c in monthly) == sum(c.volume for c in daily)
    assert [c.open_time for c in monthly] == sorted({MONTH.floor(c.open_time) for c in daily})
    assert all(problems(c, MONTH) == [] for c in monthly)
    assert list(aggregate(aggregate(daily, D1), MONTH)) == monthly


# --- rows labelled with the candle's last day ------------------------------------------


def row(label: str) -> list[object]:
    return [label, "4.58", "7.38", "3.8", "5.55", "2012.25343589"]


def test_a_month_end_date_labels_that_month():
    found = layouts.candle(row("2012-01-31"), layouts.CCXT, MONTH, label="end")
    assert found.open_time == at(2012, 1, 1)
    feb = layouts.candle(row("2024-02-29"), layouts.CCXT, MONTH, label="end")
    assert feb.open_time == at(2024, 2, 1)
    # an inclusive close time (Binance's) is the candle's end too; so is a week's Sunday
    assert layouts.candle(row("2024-01-01T00:59:59.999Z"), layouts.CCXT, H1, label="end") == (
        layouts.candle(row("2024-01-01T00:00:00Z"), layouts.CCXT, H1)
    )
    sunday = layouts.candle(row("2024-01-07"), layouts.CCXT, W1, label="end")
    assert sunday.open_time == at(2024, 1, 1)
    assert layouts.candle(row("2012-01-31"), layouts.CCXT, D1, label="end").open_time == (
        at(2012, 1, 31)
    )


@pytest.mark.parametrize(
    ("label", "interval"),
    [
        ("2012-01-30", MONTH),  # not the month's last day
        ("2012-02-01", MONTH),  # an open-labelled file read as end-labelled
        ("2024-01-01T01:00:00Z", H1),  # an exclusive close time
        ("2024-01-06", W1),
    ],
)
def test_a_time_that_is_no_candle_s_end_is_rejected(label, interval):
    with pytest.raises(layouts.Rejected, match=f"not the end of a {interval.name} candle"):
        layouts.candle(row(label), layouts.CCXT, interval, label="end")


def test_the_open_label_stays_the_default():
    with pytest.raises(layouts.Rejected, match="not on the 1M grid"):
        layouts.candle(row("2012-01-31"), layouts.CCXT, MONTH)
    assert layouts.candle(row("2012-01-01"), layouts.CCXT, MONTH).open_time == at(2012, 1, 1)


def test_an_unnamed_first_column_is_the_time():
    """pandas writes its index so: ``,Open,High,Low,Close,Volume``."""
    names = ["", "Open", "High", "Low", "Close", "Volume"]
    assert layouts.is_header(names)
    assert layouts.from_header(names, symbol="BTC/USD") == layouts.Columns(0, 1, 2, 3, 4, 5)
    with pytest.raises(layouts.UnknownLayout, match="timestamp"):
        layouts.from_header(["Open", "", "High", "Low", "Close", "Volume"], symbol="BTC/USD")
