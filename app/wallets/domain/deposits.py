"""Deposit rules, independent of storage and of the payment provider's wire format.

A card deposit's truth lives at the payment provider. Its webhooks are facts about it
that arrive duplicated and in any order, so each one only *adds* a fact (the payment
was made; an attempt failed; so much was refunded so far; so much is disputed). Facts
merge monotonically, which makes the outcome independent of the delivery order; the
status and what the user should hold are derived from them:

    facts                             status      the user should hold
    none yet                          PENDING     0
    an attempt failed, nothing paid   FAILED      0
    paid                              SUCCEEDED   amount - refunded
    paid, refunded in full            REFUNDED    0
    paid, disputed                    DISPUTED    amount - refunded - disputed
    paid, dispute won                 SUCCEEDED   amount - refunded (or REFUNDED)
    another amount or currency paid   AMOUNT_MISMATCH   nothing moves until a person looks

A won dispute (``charge.dispute.closed`` with ``won``) implies the dispute, so one that
arrives before ``charge.dispute.created`` leaves the opening nothing to take. A lost one
is the dispute as it was. A success for another amount or currency than the deposit's
holds the deposit for review: no fact moves money on it any more (a person settles it
with correcting entries).

A refund or a dispute implies that the payment was made (only a paid charge can be
refunded or disputed), so one that arrives before ``payment_intent.succeeded`` settles
the deposit on its own and the late success changes nothing. A failure reported after
the payment is an earlier attempt's and changes nothing; a success after a failure is
the customer's next attempt and counts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum

from app.core.errors import DailyLimitExceeded, InvariantViolation
from app.core.money import CENT, CurrencySpec

ZERO = Decimal(0)


class DepositMethod(StrEnum):
    CARD = "CARD"
    CRYPTO = "CRYPTO"


class DepositStatus(StrEnum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    REFUNDED = "REFUNDED"
    DISPUTED = "DISPUTED"
    AMOUNT_MISMATCH = "AMOUNT_MISMATCH"  # held for review


PAID = frozenset({DepositStatus.SUCCEEDED, DepositStatus.REFUNDED, DepositStatus.DISPUTED})


class PaymentFact(StrEnum):
    """What a provider event tells us about a card payment."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    REFUNDED = "REFUNDED"  # with the total refunded so far
    DISPUTED = "DISPUTED"  # with the disputed amount
    DISPUTE_WON = "DISPUTE_WON"  # with the disputed amount, which comes back


@dataclass(frozen=True, slots=True)
class CardPayment:
    """Everything the provider has told us about one card deposit so far."""

    amount: Decimal
    paid: bool = False
    failure_reason: str | None = None
    refunded: Decimal = ZERO
    disputed: Decimal = ZERO
    dispute_won: bool = False
    review_reason: str | None = None  # held for review: nothing moves automatically

    @property
    def status(self) -> DepositStatus:
        if self.review_reason is not None:
            return DepositStatus.AMOUNT_MISMATCH
        if self.disputed > 0 and not self.dispute_won:
            return DepositStatus.DISPUTED
        if self.refunded >= self.amount:
            return DepositStatus.REFUNDED
        if self.paid:
            return DepositStatus.SUCCEEDED
        if self.failure_reason is not None:
            return DepositStatus.FAILED
        return DepositStatus.PENDING

    @property
    def owed(self) -> Decimal:
        """What the user should hold from this deposit."""
        if not self.paid:
            return ZERO
        disputed = ZERO if self.dispute_won else self.disputed
        return max(self.amount - self.refunded - disputed, ZERO)


def held_for_review(payment: CardPayment, reason: str) -> CardPayment:
    """``payment`` held for a person to look at (the first reason is kept)."""
    return payment if payment.review_reason is not None else replace(payment, review_reason=reason)


def _succeeded(payment: CardPayment, amount: Decimal, reason: str | None) -> CardPayment:
    if amount != payment.amount:
        paid, expected = plain(amount), plain(payment.amount)
        return held_for_review(payment, f"paid {paid}, the deposit is for {expected}")
    return replace(payment, paid=True, failure_reason=None)


def _failed(payment: CardPayment, amount: Decimal, reason: str | None) -> CardPayment:
    if payment.paid:
        return payment  # an earlier attempt's failure, reported late
    return replace(payment, failure_reason=reason or "The payment failed")


def _refunded(payment: CardPayment, amount: Decimal, reason: str | None) -> CardPayment:
    total = min(max(payment.refunded, amount), payment.amount)
    return replace(payment, paid=True, failure_reason=None, refunded=total)


def _disputed(payment: CardPayment, amount: Decimal, reason: str | None) -> CardPayment:
    total = min(max(payment.disputed, amount), payment.amount)
    return replace(payment, paid=True, failure_reason=None, disputed=total)


def _dispute_won(payment: CardPayment, amount: Decimal, reason: str | None) -> CardPayment:
    return replace(_disputed(payment, amount, reason), dispute_won=True)


_APPLY: Mapping[PaymentFact, Callable[[CardPayment, Decimal, str | None], CardPayment]] = {
    PaymentFact.SUCCEEDED: _succeeded,
    PaymentFact.FAILED: _failed,
    PaymentFact.REFUNDED: _refunded,
    PaymentFact.DISPUTED: _disputed,
    PaymentFact.DISPUTE_WON: _dispute_won,
}


def apply(
    payment: CardPayment, fact: PaymentFact, *, amount: Decimal = ZERO, reason: str | None = None
) -> CardPayment:
    """``payment`` with one more fact merged in (idempotent: merging it again is a no-op)."""
    return _APPLY[fact](payment, amount, reason)


# --- amounts -----------------------------------------------------------------------------


def to_minor_units(amount: Decimal, currency: CurrencySpec) -> int:
    """Cents for USD: what card networks and Stripe count in."""
    minor = amount.scaleb(currency.scale)
    if minor != minor.to_integral_value():
        raise InvariantViolation(f"{amount} has more decimals than {currency.code} allows")
    return int(minor)


def from_minor_units(value: int, currency: CurrencySpec) -> Decimal:
    return Decimal(value).scaleb(-currency.scale)


def plain(amount: Decimal) -> str:
    """For event payloads: "100", "0.5", never "100.000000000000000000" or "1E+2"."""
    return f"{amount.normalize():f}"


# --- the KYC daily deposit limit ---------------------------------------------------------


def start_of_utc_day(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def check_daily_deposit_limit(
    *, used_usd: Decimal, requested_usd: Decimal, limit_usd: Decimal
) -> None:
    if used_usd + requested_usd > limit_usd:
        left = max(limit_usd - used_usd, ZERO).quantize(CENT)
        raise DailyLimitExceeded(
            f"Your daily deposit limit is {limit_usd.normalize():f} USD; {left:f} USD left"
            " today. Verify your identity to raise it.",
            field="amount",
        )
