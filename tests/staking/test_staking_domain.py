"""Staking arithmetic without a database, against values computed by hand with bc(1).

rate(apy) = e(l(1 + apy/100) / 365) - 1     at scale=60, then rounded to 30 places
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.errors import ValidationFailed
from app.staking import rules
from app.staking.rules import ProductKind

# bc -l <<< "scale=60; e(l(1.08)/365)-1"
#   .000210874398376959924795200002308903011819094133848967914172
BC_RATES = {
    "4": "0.000107459782027902551934834476",  # ...239449584240021783120307967958
    "5": "0.000133680617113440350508479773",  # ...806130450974934385078524846663 (up)
    "6": "0.000159653587452947441715500980",  # ...354752597783917746601541386256
    "7": "0.000185383341570504758436531905",  # ...668360350309418494173302281658 (up)
    "8": "0.000210874398376959924795200002",  # ...308903011819094133848967914172
    "9": "0.000236131151945255336718538458",  # ...295573953208470978392922554452
}


@pytest.mark.parametrize(("apy", "expected"), BC_RATES.items())
def test_daily_rate_matches_bc_to_30_places(apy, expected):
    assert rules.daily_rate(Decimal(apy)) == Decimal(expected)


def test_daily_reward_rounds_down_to_the_currency_scale():
    rate = Decimal(BC_RATES["4"])
    assert rules.daily_reward(Decimal(1000), rate, 6) == Decimal("0.107459")  # 0.1074597820...
    assert rules.daily_reward(Decimal(1000), rate, 2) == Decimal("0.10")
    assert rules.daily_reward(Decimal("0.005"), rate, 6) == Decimal(0)  # 0.00000053729...
    # 123456789.123456 * rate6 = 19710.319278981773...: exact product, then rounded down
    assert rules.daily_reward(Decimal("123456789.123456"), Decimal(BC_RATES["6"]), 6) == Decimal(
        "19710.319278"
    )


def test_apr_is_365_daily_rates_in_percent():
    assert rules.apr(Decimal(8)) == Decimal("7.6969")  # 365 * 0.000210874398... * 100
    assert rules.apr(Decimal(18)) < Decimal(18)


def test_compounding_adds_each_reward_to_the_next_principal():
    # 10 SOL at 5 %, scale 9:  10 * r5 = 0.0013368061711..., then on 10.001336806, ...
    got = list(
        rules.rewards(Decimal(10), rate=Decimal(BC_RATES["5"]), scale=9, days=3, compounding=True)
    )
    assert got == [Decimal("0.001336806"), Decimal("0.001336984"), Decimal("0.001337163")]
    simple = list(
        rules.rewards(Decimal(10), rate=Decimal(BC_RATES["5"]), scale=9, days=3, compounding=False)
    )
    assert simple == [Decimal("0.001336806")] * 3


def test_quote_sums_the_daily_rewards_exactly_as_paid():
    q = rules.quote(Decimal(1000), apy=Decimal(6), scale=6, compounding=False, lock_days=30)
    assert q.per_day == Decimal("0.159653")
    assert q.per_term == 30 * Decimal("0.159653")
    assert q.per_year == 365 * Decimal("0.159653")
    flexible = rules.quote(Decimal(1000), apy=Decimal(4), scale=6, compounding=True, lock_days=None)
    assert flexible.per_term is None
    # daily compounding at APY 4 % gives just under 4 % a year (each day rounded down)
    assert Decimal("39.99") < flexible.per_year < Decimal("40.00")


def test_terms_and_days():
    staked = datetime(2028, 2, 27, 23, 59, tzinfo=UTC)
    assert rules.value_date(staked) == date(2028, 2, 28)
    assert rules.maturity_date(date(2028, 2, 28), 30) == date(2028, 3, 29)  # leap day inside
    assert rules.maturity_date(date(2027, 2, 28), 30) == date(2027, 3, 30)
    assert rules.maturity_date(date(2028, 2, 28), None) is None
    assert rules.midnight(date(2028, 3, 29)) == datetime(2028, 3, 29, tzinfo=UTC)


def test_early_redemption_forfeits_the_terms_rewards():
    full = rules.redeem(
        amount=Decimal(1000),
        principal=Decimal(1000),
        term_rewards=Decimal("0.798265"),
        forfeit_share=Decimal(1),
        early=True,
        scale=6,
    )
    assert (full.returned, full.forfeited) == (Decimal("999.201735"), Decimal("0.798265"))
    part = rules.redeem(
        amount=Decimal(400),
        principal=Decimal(1000),
        term_rewards=Decimal("0.798265"),
        forfeit_share=Decimal("0.5"),
        early=True,
        scale=6,
    )
    # 0.798265 * 400 / 1000 = 0.319306; half of it, rounded down: 0.159653
    assert part.term_rewards_released == Decimal("0.319306")
    assert (part.returned, part.forfeited) == (Decimal("399.840347"), Decimal("0.159653"))
    on_time = rules.redeem(
        amount=Decimal(1000),
        principal=Decimal(1000),
        term_rewards=Decimal(5),
        forfeit_share=Decimal(1),
        early=False,
        scale=6,
    )
    assert (on_time.returned, on_time.forfeited) == (Decimal(1000), Decimal(0))


@given(
    principal=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1e12"), places=6),
    taken=st.decimals(min_value=Decimal("0.000001"), max_value=Decimal(1), places=6),
    rewards=st.decimals(min_value=Decimal(0), max_value=Decimal("0.06"), places=6),
)
def test_redeeming_in_parts_never_forfeits_more_than_the_terms_rewards(principal, taken, rewards):
    amount = max(min((principal * taken).quantize(Decimal("0.000001")), principal), Decimal("1e-6"))
    term_rewards = (principal * rewards).quantize(Decimal("0.000001"))
    first = rules.redeem(
        amount=amount,
        principal=principal,
        term_rewards=term_rewards,
        forfeit_share=Decimal(1),
        early=True,
        scale=6,
    )
    rest = principal - amount
    assert 0 <= first.forfeited <= term_rewards
    assert first.returned > 0
    if rest > 0:
        second = rules.redeem(
            amount=rest,
            principal=rest,
            term_rewards=term_rewards - first.term_rewards_released,
            forfeit_share=Decimal(1),
            early=True,
            scale=6,
        )
        assert first.forfeited + second.forfeited == term_rewards


@pytest.mark.parametrize("apy", ["1.99", "18.0001", "-5", "NaN", "7.12345"])
def test_apy_outside_2_to_18_or_too_precise_is_refused(apy):
    with pytest.raises(ValidationFailed) as caught:
        rules.check_apy(Decimal(apy))
    assert caught.value.field == "apy"


@pytest.mark.parametrize(
    ("kind", "days", "ok"),
    [
        (ProductKind.FLEXIBLE, None, True),
        (ProductKind.FLEXIBLE, 30, False),
        (ProductKind.LOCKED, 30, True),
        (ProductKind.LOCKED, 120, True),
        (ProductKind.LOCKED, 45, False),
        (ProductKind.LOCKED, None, False),
    ],
)
def test_lock_terms(kind, days, ok):
    if ok:
        assert rules.check_term(kind, days) == days
    else:
        with pytest.raises(ValidationFailed):
            rules.check_term(kind, days)


def test_migration_0003_seeds_the_catalogue_the_tests_restore():
    import importlib.util
    from pathlib import Path

    from app.staking import catalogue as staking_catalogue

    path = Path(__file__).resolve().parents[2] / "migrations/versions/0003_staking.py"
    spec = importlib.util.spec_from_file_location("migration_0003", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    assert migration.CATALOGUE == staking_catalogue.CATALOGUE
    assert migration.RATES_EFFECTIVE_FROM == staking_catalogue.RATES_EFFECTIVE_FROM
    assets = {row[0] for row in staking_catalogue.CATALOGUE}
    assert assets == {"USDT", "BTC", "ETH", "SOL"}
    for _, kind, days, apy, *_ in staking_catalogue.CATALOGUE:
        assert rules.check_term(ProductKind(kind), days) == days
        assert rules.check_apy(Decimal(apy))
