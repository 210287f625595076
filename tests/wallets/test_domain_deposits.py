"""Deposit rules without a database: card payment facts in any order, minor units, the
daily limit, address and transaction-hash formats."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from app.core.errors import (
    DailyLimitExceeded,
    DepositMethodNotSupported,
    InvariantViolation,
    ValidationFailed,
)
from app.core.money import CurrencySpec
from app.wallets.domain.deposit_addresses import (
    base58,
    bech32_segwit_v0,
    derive_address,
    normalise_tx_hash,
)
from app.wallets.domain.deposits import (
    CardPayment,
    DepositStatus,
    PaymentFact,
    apply,
    check_daily_deposit_limit,
    from_minor_units,
    plain,
    start_of_utc_day,
    to_minor_units,
)

USD = CurrencySpec(code="USD", scale=2)
HUNDRED = Decimal(100)


def payment(**overrides) -> CardPayment:
    return CardPayment(**{"amount": HUNDRED, **overrides})


def merged(facts) -> CardPayment:
    state = payment()
    for fact, amount, reason in facts:
        state = apply(state, fact, amount=amount, reason=reason)
    return state


SUCCEEDED = (PaymentFact.SUCCEEDED, HUNDRED, None)
FAILED = (PaymentFact.FAILED, Decimal(0), "declined")
REFUNDED_30 = (PaymentFact.REFUNDED, Decimal(30), None)
REFUNDED_ALL = (PaymentFact.REFUNDED, HUNDRED, None)
DISPUTED = (PaymentFact.DISPUTED, Decimal(70), "fraudulent")
DISPUTE_WON = (PaymentFact.DISPUTE_WON, Decimal(70), "fraudulent")


@pytest.mark.parametrize(
    ("facts", "status", "owed"),
    [
        ([], DepositStatus.PENDING, 0),
        ([FAILED], DepositStatus.FAILED, 0),
        ([SUCCEEDED], DepositStatus.SUCCEEDED, 100),
        ([SUCCEEDED, FAILED], DepositStatus.SUCCEEDED, 100),
        ([SUCCEEDED, REFUNDED_30], DepositStatus.SUCCEEDED, 70),
        ([SUCCEEDED, REFUNDED_ALL], DepositStatus.REFUNDED, 0),
        ([SUCCEEDED, REFUNDED_30, REFUNDED_ALL], DepositStatus.REFUNDED, 0),
        ([SUCCEEDED, REFUNDED_30, DISPUTED], DepositStatus.DISPUTED, 0),
        ([FAILED, SUCCEEDED, REFUNDED_30, REFUNDED_ALL, DISPUTED], DepositStatus.DISPUTED, 0),
        ([SUCCEEDED, DISPUTED, DISPUTE_WON], DepositStatus.SUCCEEDED, 100),
        ([SUCCEEDED, REFUNDED_30, DISPUTED, DISPUTE_WON], DepositStatus.SUCCEEDED, 70),
        ([DISPUTE_WON], DepositStatus.SUCCEEDED, 100),
    ],
)
def test_the_outcome_does_not_depend_on_the_delivery_order_or_repeats(facts, status, owed):
    outcomes = {
        merged(order)
        for order in itertools.permutations(facts + facts[:1])  # one repeated
    }
    assert {(o.status, o.owed) for o in outcomes} == {(status, Decimal(owed))}


def test_a_refund_before_the_success_means_it_was_paid():
    state = merged([REFUNDED_30])
    assert (state.paid, state.status, state.owed) == (True, DepositStatus.SUCCEEDED, 70)


def test_success_clears_an_earlier_attempts_failure():
    assert merged([FAILED, SUCCEEDED]).failure_reason is None
    assert merged([SUCCEEDED, FAILED]).failure_reason is None


def test_a_success_for_another_amount_holds_the_deposit_for_review_in_any_order():
    other = (PaymentFact.SUCCEEDED, Decimal(99), None)
    for facts in itertools.permutations([other, SUCCEEDED, REFUNDED_30, DISPUTED, other]):
        state = merged(facts)
        assert state.status is DepositStatus.AMOUNT_MISMATCH
        assert state.review_reason == "paid 99, the deposit is for 100"


def test_reversals_never_exceed_the_amount():
    state = merged([SUCCEEDED, (PaymentFact.REFUNDED, Decimal(500), None)])
    assert (state.refunded, state.owed) == (HUNDRED, 0)


def test_minor_units():
    assert to_minor_units(Decimal("100.00"), USD) == 10000
    assert to_minor_units(Decimal("0.5"), USD) == 50
    assert from_minor_units(1999, USD) == Decimal("19.99")
    with pytest.raises(InvariantViolation):
        to_minor_units(Decimal("0.001"), USD)
    assert plain(Decimal("100.000000000000000000")) == "100"
    assert plain(Decimal("0.500")) == "0.5"


def test_daily_limit():
    check_daily_deposit_limit(
        used_usd=Decimal(1500), requested_usd=Decimal(500), limit_usd=Decimal(2000)
    )
    with pytest.raises(DailyLimitExceeded) as refused:
        check_daily_deposit_limit(
            used_usd=Decimal(1500), requested_usd=Decimal("500.01"), limit_usd=Decimal(2000)
        )
    assert refused.value.field == "amount"
    assert "500.00 USD left" in refused.value.message


def test_the_day_is_the_utc_calendar_day():
    late_in_new_york = datetime(2026, 3, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert start_of_utc_day(late_in_new_york) == datetime(2026, 3, 2, tzinfo=UTC)


def test_bech32_matches_the_bip173_vector():
    program = bytes.fromhex("751e76e8199196d454941c45d1b3a323f1433bd6")
    assert bech32_segwit_v0("bc", program) == "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"


def test_base58_keeps_leading_zero_bytes():
    assert base58(b"\0\0\x01") == "112"
    assert base58(bytes.fromhex("0000287fb4cd")) == "11233QC4"


def test_derived_addresses_are_deterministic_and_keyed():
    one = derive_address(key=b"k1", user_id=7, currency="BTC")
    assert one == derive_address(key=b"k1", user_id=7, currency="BTC")
    assert one != derive_address(key=b"k2", user_id=7, currency="BTC")
    assert one != derive_address(key=b"k1", user_id=8, currency="BTC")
    with pytest.raises(DepositMethodNotSupported):
        derive_address(key=b"k1", user_id=7, currency="USD")


def test_transaction_hashes_are_normalised_per_chain():
    assert normalise_tx_hash("BTC", " " + "AB" * 32 + " ") == "ab" * 32
    assert normalise_tx_hash("ETH", "0x" + "CD" * 32) == "0x" + "cd" * 32
    signature = "3" * 87
    assert normalise_tx_hash("SOL", signature) == signature  # base58 is case-sensitive
    for currency, bad in (("BTC", "0x" + "ab" * 32), ("ETH", "ab" * 32), ("SOL", "0OIl" * 20)):
        with pytest.raises(ValidationFailed):
            normalise_tx_hash(currency, bad)
