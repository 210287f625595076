"""Staking rules, independent of storage: products, the daily reward, terms, quotes and
the early-redemption penalty.

Rates are percentages a year (``Decimal("8.5")`` is 8.5 %). The reward for one UTC day is

    principal * daily_rate(apy), rounded DOWN to the currency's scale
    daily_rate(apy) = (1 + apy/100) ^ (1/365) - 1, rounded half-even to RATE_PLACES places

Precision: the daily rate is computed here, once per product and day, in an explicit
60-digit Decimal context and then fixed to ``RATE_PLACES`` decimal places; that fixed
number *is* the rate (stored with every reward row). PostgreSQL multiplies NUMERICs
exactly and ``trunc`` rounds down exactly, so the set-based accrual SQL, given this rate,
pays to the last minor unit what ``daily_reward`` computes here. (PostgreSQL's own
``power(1.08, 1/365.0)`` is not used: its exponent ``1/365.0`` is rounded to 20 places,
which can move a large principal's reward by one minor unit.)

Every day uses the exponent 1/365, leap years included: 29 February earns a normal
day's reward, so a calendar year with a leap day earns slightly more than the APY.

Days: a stake earns for each whole UTC day it is held. The first accrual day (the value
date) is the day after the stake is made. A locked term of N days covers the value date
and the N - 1 days after it; it matures at 00:00 UTC on ``value date + N``, when the
principal returns to the available balance or, with auto-renew on an open product, a
new term starts that same day.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Context, Decimal
from enum import StrEnum

from app.core.errors import ValidationFailed

LOCK_TERMS_DAYS = (30, 60, 90, 120)
MIN_APY = Decimal(2)
MAX_APY = Decimal(18)
APY_PLACES = 4  # percent: 8.1234 %
RATE_PLACES = 30
DAYS_PER_YEAR = 365

_RATE_CONTEXT = Context(prec=60, rounding=ROUND_HALF_EVEN)
# Products of amounts (≤ 38 digits) and rates (≤ 30 places) fit exactly in 100 digits.
_EXACT = Context(prec=100)


class ProductKind(StrEnum):
    FLEXIBLE = "FLEXIBLE"  # redeem any time
    LOCKED = "LOCKED"  # a fixed term; early redemption forfeits the term's rewards


class ProductStatus(StrEnum):
    ACTIVE = "ACTIVE"  # open for new stakes
    CLOSED = "CLOSED"  # no new stakes or renewals; running stakes keep earning


class StakeStatus(StrEnum):
    ACTIVE = "ACTIVE"
    MATURED = "MATURED"  # a locked term ended and the principal went back
    REDEEMED = "REDEEMED"  # unstaked in full


# --- rates ---------------------------------------------------------------------------


def daily_rate(apy: Decimal) -> Decimal:
    """(1 + apy/100)^(1/365) - 1, to ``RATE_PLACES`` decimal places (see module doc)."""
    c = _RATE_CONTEXT
    growth = c.add(1, c.divide(apy, 100))
    factor = c.power(growth, c.divide(1, DAYS_PER_YEAR))
    return c.subtract(factor, 1).quantize(Decimal(1).scaleb(-RATE_PLACES), context=c)


def apr(apy: Decimal) -> Decimal:
    """The simple annual rate (percent) that pays the same per day: 365 * daily rate."""
    c = _EXACT
    return c.multiply(daily_rate(apy), 100 * DAYS_PER_YEAR).quantize(
        Decimal(1).scaleb(-APY_PLACES), rounding=ROUND_HALF_EVEN
    )


def daily_reward(principal: Decimal, rate: Decimal, scale: int) -> Decimal:
    """One day's reward: principal * rate, rounded down to the currency's scale."""
    return _EXACT.multiply(principal, rate).quantize(Decimal(1).scaleb(-scale), ROUND_DOWN)


def rewards(
    principal: Decimal, *, rate: Decimal, scale: int, days: int, compounding: bool
) -> Iterator[Decimal]:
    """The rewards of ``days`` consecutive days at one rate, exactly as the job pays
    them: compounding adds each day's reward to the principal of the next."""
    for _ in range(days):
        reward = daily_reward(principal, rate, scale)
        if compounding:
            principal += reward
        yield reward


@dataclass(frozen=True, slots=True)
class Quote:
    per_day: Decimal
    per_term: Decimal | None  # locked products only
    per_year: Decimal  # 365 days


def quote(
    amount: Decimal, *, apy: Decimal, scale: int, compounding: bool, lock_days: int | None
) -> Quote:
    """What ``amount`` earns at ``apy`` if the rate stays: the first day, a whole term,
    365 days (compounding included), each the sum of the rounded daily rewards."""
    rate = daily_rate(apy)
    year = list(
        rewards(amount, rate=rate, scale=scale, days=DAYS_PER_YEAR, compounding=compounding)
    )
    term = None
    if lock_days is not None:
        term = sum(
            rewards(amount, rate=rate, scale=scale, days=lock_days, compounding=compounding),
            Decimal(0),
        )
    return Quote(per_day=year[0], per_term=term, per_year=sum(year, Decimal(0)))


# --- products ------------------------------------------------------------------------


def check_apy(apy: Decimal, *, field: str = "apy") -> Decimal:
    if not apy.is_finite() or not MIN_APY <= apy <= MAX_APY:
        raise ValidationFailed(f"APY must be between {MIN_APY}% and {MAX_APY}%", field=field)
    if apy != apy.quantize(Decimal(1).scaleb(-APY_PLACES), rounding=ROUND_DOWN):
        raise ValidationFailed(f"APY has at most {APY_PLACES} decimal places", field=field)
    return apy


def check_term(kind: ProductKind, lock_days: int | None) -> int | None:
    if kind is ProductKind.FLEXIBLE:
        if lock_days is not None:
            raise ValidationFailed("Flexible products have no lock term", field="lockDays")
        return None
    if lock_days not in LOCK_TERMS_DAYS:
        terms = ", ".join(str(d) for d in LOCK_TERMS_DAYS)
        raise ValidationFailed(f"Locked products last {terms} days", field="lockDays")
    return lock_days


def check_limits(*, min_amount: Decimal, max_per_user: Decimal, capacity: Decimal) -> None:
    """Amounts already parsed (positive, at the currency's scale)."""
    if max_per_user < min_amount:
        raise ValidationFailed("maxPerUser must be at least minAmount", field="maxPerUser")
    if capacity < max_per_user:
        raise ValidationFailed("capacity must be at least maxPerUser", field="capacity")


# --- days and terms ------------------------------------------------------------------


def utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def value_date(staked_at: datetime) -> date:
    """The first accrual day: the UTC day after the stake was made."""
    return utc_day(staked_at) + timedelta(days=1)


def maturity_date(term_start: date, lock_days: int | None) -> date | None:
    return None if lock_days is None else term_start + timedelta(days=lock_days)


# --- early redemption ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Redemption:
    returned: Decimal  # to the available balance
    forfeited: Decimal  # back to the staking-rewards account
    term_rewards_released: Decimal  # the redeemed share of the current term's rewards


def redeem(
    *,
    amount: Decimal,
    principal: Decimal,
    term_rewards: Decimal,
    forfeit_share: Decimal,
    early: bool,
    scale: int,
) -> Redemption:
    """Unstake ``amount`` of ``principal``. Early (a locked stake before maturity): the
    redeemed part's share of the current term's rewards, times ``forfeit_share`` (0-1,
    a setting), is deducted from what comes back; both rounded down, in the user's
    favour. Redeeming everything releases exactly ``term_rewards``."""
    quantum = Decimal(1).scaleb(-scale)
    if amount == principal:
        released = term_rewards
    else:
        released = _EXACT.divide(_EXACT.multiply(term_rewards, amount), principal).quantize(
            quantum, ROUND_DOWN
        )
    forfeited = (
        _EXACT.multiply(released, forfeit_share).quantize(quantum, ROUND_DOWN)
        if early
        else Decimal(0)
    )
    return Redemption(
        returned=amount - forfeited, forfeited=forfeited, term_rewards_released=released
    )
