"""Leaderboard statistics of one trader, exact (Decimal), independent of storage.

Inputs
    * daily closes: the trader's equity (USD) at the last snapshot of each UTC day;
    * external flows: money that entered (+) or left (-) the trader's accounts without
      being earned or lost by trading: deposits, withdrawals (fee included), transfers,
      profit-share payments, corrections; valued in USD;
    * fills, in the order they happened.

Daily returns are time-weighted: the flows between two closes are removed, so a deposit
is not profit. A flow is treated as arriving at the start of the interval it falls in
(a Modified Dietz return with full weight)::

    r = (E_close - E_previous - flows) / (E_previous + flows)

This needs no intraday equity, handles a first deposit into an empty account (E_previous
= 0) and a withdrawal of everything (denominator 0: the day has no capital at risk and
its return is 0). When days have no snapshot, the return runs from the last close before
them (one return for the gap). Flows after the last close belong to the next interval.

Statistics over a period (the last N UTC days including today, or ALL):

    ROI           prod(1 + r) - 1 (compounded daily returns)
    PnL           E_last - E_baseline - flows in between (sum of the daily gains)
    max drawdown  the largest fall from a peak of the wealth curve prod(1 + r), as a
                  fraction of that peak (0.25 = -25 %)
    Sharpe        mean(r) / sample stdev(r) x sqrt(365); None with < 2 returns or no
                  deviation (risk-free rate 0)
    Sortino       mean(r) / downside deviation x sqrt(365), the downside deviation being
                  sqrt(sum(min(r, 0)^2) / n) over all n days; None when no day lost
    win rate      winning closing trades / closing trades (None without any)
    trades        fills in the period

The baseline of a period is the last close before its first day (so a 7-day period has
up to 7 returns). A trader's history starts from nothing just before the first flow when
that came before the first close (a first deposit): the first close's return is measured
against the money that came in, so a loss on the first day shows in PnL, ROI and
drawdown. A trader with no close before the period and no flow before the first close
starts from the first close inside it.

Win rate: the trader's fills are replayed in order with an average cost per market (in
the market's quote currency). A BUY adds its quantity, and its quote amount plus its fee
to the cost. A SELL of a market where the trader holds a bought quantity is a closing
trade; it wins when its net proceeds per unit, (quote amount - fee) / quantity, beat the
average cost per unit at that moment, so fees on both sides count. A SELL with nothing
bought on record (coins deposited, not bought) is not a closing trade. Fills before the
period still build the average cost; only closing trades inside the period count.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from enum import StrEnum
from itertools import pairwise

# Rates and ratios: 50 significant digits (stored rounded to 18 places). Quantities and
# amounts have at most 38 digits: their sums and products of two are exact in 100.
CONTEXT = Context(prec=50, rounding=ROUND_HALF_EVEN)
_EXACT = Context(prec=100, rounding=ROUND_HALF_EVEN)
DAYS_PER_YEAR = 365
_ANNUALISE = Decimal(DAYS_PER_YEAR).sqrt(CONTEXT)
_ZERO = Decimal(0)
_ONE = Decimal(1)
_INSTANT = timedelta(microseconds=1)


class Period(StrEnum):
    D7 = "D7"
    D30 = "D30"
    D90 = "D90"
    ALL = "ALL"

    @property
    def days(self) -> int | None:
        return None if self is Period.ALL else int(self.value[1:])


@dataclass(frozen=True, slots=True)
class Close:
    """The equity (USD) at the last snapshot of one UTC day."""

    at: datetime
    equity: Decimal

    @property
    def day(self) -> date:
        return self.at.astimezone(UTC).date()


@dataclass(frozen=True, slots=True)
class Flow:
    """Money in (+) or out (-) of the trader's accounts that trading did not make (USD)."""

    at: datetime
    amount: Decimal


@dataclass(frozen=True, slots=True)
class TradeFill:
    at: datetime
    market: int
    side: str  # BUY or SELL
    quantity: Decimal
    quote_amount: Decimal  # price x quantity, in the quote currency
    fee: Decimal  # in the quote currency


@dataclass(frozen=True, slots=True)
class DailyReturn:
    at: datetime  # the close that ends the interval
    rate: Decimal
    gain: Decimal  # USD: equity change minus flows


@dataclass(frozen=True, slots=True)
class PeriodStats:
    period: Period
    roi: Decimal | None
    pnl: Decimal
    win_rate: Decimal | None
    max_drawdown: Decimal | None
    sharpe: Decimal | None
    sortino: Decimal | None
    trades: int


def daily_closes(snapshots: Iterable[tuple[datetime, Decimal]]) -> list[Close]:
    """The last snapshot of each UTC day, oldest first."""
    last: dict[date, tuple[datetime, Decimal]] = {}
    for at, equity in sorted(snapshots):
        last[at.astimezone(UTC).date()] = (at, equity)
    return [Close(at, equity) for at, equity in last.values()]


def daily_returns(closes: Sequence[Close], flows: Iterable[Flow]) -> list[DailyReturn]:
    """One return per close after the first, with the flows of its interval removed.
    Money that came in before the first close is measured from nothing: the first
    interval starts at equity 0 just before the first flow, so a first day's loss shows."""
    pending = sorted(flows, key=lambda f: f.at)
    if closes and pending and pending[0].at <= closes[0].at:
        closes = [Close(pending[0].at - _INSTANT, _ZERO), *closes]
    returns = []
    i = 0
    with localcontext(CONTEXT):
        for previous, current in pairwise(closes):
            flow = _ZERO
            while i < len(pending) and pending[i].at <= current.at:
                flow += pending[i].amount
                i += 1
            gain = current.equity - previous.equity - flow
            base = previous.equity + flow
            returns.append(DailyReturn(current.at, gain / base if base > 0 else _ZERO, gain))
    return returns


def roi(rates: Sequence[Decimal]) -> Decimal | None:
    if not rates:
        return None
    with localcontext(CONTEXT):
        wealth = _ONE
        for r in rates:
            wealth *= _ONE + r
        return wealth - _ONE


def max_drawdown(rates: Sequence[Decimal]) -> Decimal | None:
    if not rates:
        return None
    with localcontext(CONTEXT):
        wealth = peak = _ONE
        worst = _ZERO
        for r in rates:
            wealth *= _ONE + r
            if wealth > peak:
                peak = wealth
            elif peak > 0:
                worst = max(worst, (peak - wealth) / peak)
        return worst


def sharpe(rates: Sequence[Decimal]) -> Decimal | None:
    """Annualised, risk-free rate 0, sample standard deviation (n - 1)."""
    if len(rates) < 2:
        return None
    with localcontext(CONTEXT):
        mean = sum(rates, _ZERO) / len(rates)
        squares = sum(((r - mean) * (r - mean) for r in rates), _ZERO)
        deviation = (squares / (len(rates) - 1)).sqrt()
        return mean / deviation * _ANNUALISE if deviation != 0 else None


def sortino(rates: Sequence[Decimal]) -> Decimal | None:
    """Annualised; downside deviation over all days (gains count as 0)."""
    if not rates:
        return None
    with localcontext(CONTEXT):
        squares = sum((r * r for r in rates if r < 0), _ZERO)
        if squares == 0:
            return None
        mean = sum(rates, _ZERO) / len(rates)
        return mean / (squares / len(rates)).sqrt() * _ANNUALISE


@dataclass(slots=True)
class _Holding:
    quantity: Decimal = _ZERO
    cost: Decimal = _ZERO  # quote, fees included


def closing_trades(fills: Iterable[TradeFill]) -> list[tuple[datetime, bool]]:
    """Every closing trade (a SELL of something bought on record): when, and whether it
    beat the average cost."""
    holdings: dict[int, _Holding] = {}
    closing = []
    with localcontext(_EXACT):
        for fill in fills:
            held = holdings.setdefault(fill.market, _Holding())
            if fill.side == "BUY":
                held.quantity += fill.quantity
                held.cost += fill.quote_amount + fill.fee
                continue
            if held.quantity <= 0:
                continue  # nothing bought on record: not a closing trade
            # (quote - fee) / quantity > cost / held, multiplied out to stay exact
            won = (fill.quote_amount - fill.fee) * held.quantity > held.cost * fill.quantity
            closing.append((fill.at, won))
            remaining = held.quantity - min(fill.quantity, held.quantity)
            held.cost = held.cost * remaining / held.quantity if remaining > 0 else _ZERO
            held.quantity = remaining
    return closing


def win_rate(closing: Sequence[tuple[datetime, bool]], *, since: datetime | None) -> Decimal | None:
    counted = [won for at, won in closing if since is None or at >= since]
    if not counted:
        return None
    return CONTEXT.divide(Decimal(sum(counted)), Decimal(len(counted)))


def period_start(period: Period, now: datetime) -> datetime | None:
    """Midnight (UTC) of the period's first day: today and the N - 1 days before."""
    if period.days is None:
        return None
    first_day = now.astimezone(UTC).date() - timedelta(days=period.days - 1)
    return datetime.combine(first_day, time(0), tzinfo=UTC)


def _stats(
    period: Period,
    start: datetime | None,
    returns: Sequence[DailyReturn],
    closing: Sequence[tuple[datetime, bool]],
    fills: Sequence[TradeFill],
) -> PeriodStats:
    # The returns of the period are those ending inside it: the first one runs from the
    # baseline (the last close before the period), or there is none before the period.
    inside = [r for r in returns if start is None or r.at >= start]
    rates = [r.rate for r in inside]
    with localcontext(_EXACT):
        pnl = sum((r.gain for r in inside), _ZERO)
    return PeriodStats(
        period=period,
        roi=roi(rates),
        pnl=pnl,
        win_rate=win_rate(closing, since=start),
        max_drawdown=max_drawdown(rates),
        sharpe=sharpe(rates),
        sortino=sortino(rates),
        trades=sum(1 for f in fills if start is None or f.at >= start),
    )


def all_periods(
    *,
    now: datetime,
    closes: Sequence[Close],
    flows: Sequence[Flow],
    fills: Sequence[TradeFill],
) -> list[PeriodStats]:
    """Statistics for every period ending ``now``; inputs oldest first, none after now."""
    returns = daily_returns(closes, flows)
    closing = closing_trades(fills)
    return [_stats(p, period_start(p, now), returns, closing, fills) for p in Period]


def period_stats(
    period: Period,
    *,
    now: datetime,
    closes: Sequence[Close],
    flows: Sequence[Flow],
    fills: Sequence[TradeFill],
) -> PeriodStats:
    returns = daily_returns(closes, flows)
    return _stats(period, period_start(period, now), returns, closing_trades(fills), fills)
