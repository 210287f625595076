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

from app.domain.money import CENT, CurrencySpec
from app.errors import DailyLimitExceeded, InvariantViolation

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


PAID = frozenset({DepositStatus.SUCCEEDED, DepositStatus.REFUNDED, DepositStatus.DISPUTED})


class PaymentFact(StrEnum):
    """What a provider event tells us about a card payment."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    REFUNDED = "REFUNDED"  # with the total refunded so far
    DISPUTED = "DISPUTED"  # with the disputed amount


@dataclass(frozen=True, slots=True)
class CardPayment:
    """Everything the provider has told us about one card deposit so far."""

    amount: Decimal
    paid: bool = False
    failure_reason: str | None = None
    refunded: Decimal = ZERO
    disputed: Decimal = ZERO

    @property
    def status(self) -> DepositStatus:
        if self.disputed > 0:
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
        return max(self.amount - self.refunded - self.disputed, ZERO)


def _succeeded(payment: CardPayment, amount: Decimal, reason: str | None) -> CardPayment:
    if amount != payment.amount:
        raise InvariantViolation(f"paid {amount}, the deposit is for {payment.amount}")
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


_APPLY: Mapping[PaymentFact, Callable[[CardPayment, Decimal, str | None], CardPayment]] = {
    PaymentFact.SUCCEEDED: _succeeded,
    PaymentFact.FAILED: _failed,
    PaymentFact.REFUNDED: _refunded,
    PaymentFact.DISPUTED: _disputed,
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
