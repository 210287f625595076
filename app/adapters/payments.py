"""The card payment provider as the rest of the code sees it (no vendor SDK here).

``app.adapters.stripe_gateway.StripeGateway`` is the implementation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from app.wallets.domain.deposits import PaymentFact


@dataclass(frozen=True, slots=True)
class PaymentIntent:
    id: str
    client_secret: str
    status: str
    amount_minor: int
    currency: str  # upper case, like ours


@dataclass(frozen=True, slots=True)
class PaymentEvent:
    """One verified webhook event, reduced to what deposits need.

    ``amount_minor`` depends on ``fact``: the amount received (SUCCEEDED), the total
    refunded so far (REFUNDED), the disputed amount (DISPUTED, DISPUTE_WON); 0 otherwise.
    ``fact`` is None for event types we do not handle."""

    event_id: str
    type: str
    fact: PaymentFact | None
    created: int = 0  # Unix time the provider made the event
    payment_intent_id: str | None = None
    currency: str | None = None
    amount_minor: int = 0
    reason: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


class PaymentGateway(Protocol):
    async def create_payment_intent(
        self,
        *,
        amount_minor: int,
        currency: str,
        idempotency_key: str,
        metadata: Mapping[str, str],
        description: str,
    ) -> PaymentIntent:
        """Raises PaymentRejected (the provider refused), TransientError (retry with the
        same idempotency key) or InvariantViolation (our bug or configuration)."""
        ...

    def parse_webhook(
        self, payload: bytes, signature: str | None, *, now: datetime
    ) -> PaymentEvent:
        """Verify the signature and parse; raises InvalidWebhook (also for a signature or
        event dated in the future of ``now``)."""
        ...

    async def aclose(self) -> None: ...
