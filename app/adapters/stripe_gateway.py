"""Stripe behind ``PaymentGateway``: the only module that imports the stripe SDK.

The SDK does the HTTP (``StripeClient`` over its async httpx client, pointed at
``STRIPE_API_BASE`` when set) and verifies webhook signatures. Its errors become ours
here, grouped by what the caller should do:

    stripe.CardError, stripe.InvalidRequestError     PaymentRejected: the provider refused
                                                     this payment (e.g. amount too small)
    stripe.APIConnectionError, stripe.RateLimitError,
    stripe.APIError and any other 5xx                TransientError: retry with the same
                                                     idempotency key
    stripe.AuthenticationError, PermissionError,
    IdempotencyError and anything else               InvariantViolation: our bug or our
                                                     configuration; stop and look
    stripe.SignatureVerificationError, a signature
    or event dated more than TOLERANCE_SECONDS
    ahead, a body that is not an event               InvalidWebhook

Stripe's SDK refuses a signature older than its tolerance (a replay) but not one dated
in the future, and never looks at the event's ``created``: both are checked here, against
the caller's clock. An old ``created`` is fine: Stripe retries an event for days.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import stripe
from stripe.params import PaymentIntentCreateParams

from app.adapters.payments import PaymentEvent, PaymentIntent
from app.core.errors import (
    AppError,
    InvalidWebhook,
    InvariantViolation,
    PaymentRejected,
    TransientError,
)
from app.core.settings import Settings
from app.wallets.domain.deposits import PaymentFact

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 20
MAX_NETWORK_RETRIES = 2  # safe: every create carries an idempotency key
_RETRYABLE = (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError)
_REFUSED = (stripe.CardError, stripe.InvalidRequestError)
_OUR_FIELDS = frozenset({"amount", "currency"})
TOLERANCE_SECONDS = 300  # Stripe's own for signatures, both ways here
NOT_AN_EVENT = "The body is not a Stripe event"


class _HTTPXClient(stripe.HTTPXClient):
    """stripe 16.1's httpx client passes the encoded form as ``data=``, which httpx 0.28
    deprecates with a DeprecationWarning on every request; send it as ``content=``."""

    def _get_request_args_kwargs(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any
    ) -> list[Any]:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        kwargs["content"] = kwargs.pop("data") or None
        return [args, kwargs]


class StripeGateway:
    def __init__(self, *, api_key: str, webhook_secret: str, api_base: str | None = None) -> None:
        self._http = _HTTPXClient(timeout=TIMEOUT_SECONDS)
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=self._http,
            max_network_retries=MAX_NETWORK_RETRIES,
        )
        self._webhook_secret = webhook_secret

    @classmethod
    def from_settings(cls, settings: Settings) -> StripeGateway:
        return cls(
            api_key=settings.stripe_api_key.get_secret_value(),
            webhook_secret=settings.stripe_webhook_secret.get_secret_value(),
            api_base=settings.stripe_api_base,
        )

    async def create_payment_intent(
        self,
        *,
        amount_minor: int,
        currency: str,
        idempotency_key: str,
        metadata: Mapping[str, str],
        description: str,
    ) -> PaymentIntent:
        params: PaymentIntentCreateParams = {
            "amount": amount_minor,
            "currency": currency.lower(),
            "payment_method_types": ["card"],
            "metadata": dict(metadata),
            "description": description,
        }
        try:
            intent = await self._client.v1.payment_intents.create_async(
                params, {"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as error:
            raise _converted(error) from error
        return PaymentIntent(
            id=intent.id,
            client_secret=intent.client_secret or "",
            status=intent.status,
            amount_minor=intent.amount,
            currency=intent.currency.upper(),
        )

    def parse_webhook(
        self, payload: bytes, signature: str | None, *, now: datetime
    ) -> PaymentEvent:
        try:
            text = payload.decode("utf-8")
            stripe.WebhookSignature.verify_header(
                text, signature, self._webhook_secret, TOLERANCE_SECONDS
            )
            event = json.loads(text)
        except stripe.SignatureVerificationError as error:
            raise InvalidWebhook(f"Bad Stripe-Signature: {error.user_message}") from error
        except ValueError as error:  # not UTF-8 or not JSON, after a valid signature
            raise InvalidWebhook(NOT_AN_EVENT) from error
        latest = now.timestamp() + TOLERANCE_SECONDS
        if _signed_at(signature) > latest:
            raise InvalidWebhook("Bad Stripe-Signature: its timestamp is in the future")
        parsed = _payment_event(event)
        if parsed.created > latest:
            raise InvalidWebhook("The event is dated in the future")
        return parsed

    async def aclose(self) -> None:
        await self._http.close_async()


def _converted(error: stripe.StripeError) -> AppError:
    if isinstance(error, _REFUSED):
        log.info("stripe refused", extra={"stripe_code": error.code, "param": error.param})
        field = error.param if error.param in _OUR_FIELDS else None
        return PaymentRejected(error.user_message or None, field=field)
    if isinstance(error, _RETRYABLE) or (error.http_status or 0) >= 500:
        return TransientError("The payment provider is unavailable, try again")
    return InvariantViolation(f"Stripe refused our request: {error!r}")


# --- webhook events: Stripe's shapes, reduced to PaymentEvent ------------------------------


def _succeeded(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "payment_intent_id": obj["id"],
        "amount_minor": obj["amount_received"],
        "currency": obj["currency"],
        "metadata": obj.get("metadata") or {},
    }


def _failed(obj: dict[str, Any]) -> dict[str, Any]:
    error = obj.get("last_payment_error") or {}
    return {
        "payment_intent_id": obj["id"],
        "currency": obj["currency"],
        "reason": error.get("message") or error.get("code") or "The payment failed",
        "metadata": obj.get("metadata") or {},
    }


def _refunded(charge: dict[str, Any]) -> dict[str, Any]:
    return {
        "payment_intent_id": charge.get("payment_intent"),
        "amount_minor": charge["amount_refunded"],  # the total so far, not this refund's
        "currency": charge["currency"],
        "metadata": charge.get("metadata") or {},
    }


def _disputed(dispute: dict[str, Any]) -> dict[str, Any]:
    return {
        "payment_intent_id": dispute.get("payment_intent"),
        "amount_minor": dispute["amount"],
        "currency": dispute["currency"],
        "reason": dispute.get("reason"),
    }


# a closed dispute by its status: won (or an inquiry closed) gives the money back
_DISPUTE_CLOSED = {
    "won": PaymentFact.DISPUTE_WON,
    "warning_closed": PaymentFact.DISPUTE_WON,
    "lost": PaymentFact.DISPUTED,
}


def _dispute_closed(dispute: dict[str, Any]) -> dict[str, Any]:
    return {**_disputed(dispute), "fact": _DISPUTE_CLOSED.get(dispute["status"])}


_HANDLED: Mapping[str, tuple[PaymentFact, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "payment_intent.succeeded": (PaymentFact.SUCCEEDED, _succeeded),
    "payment_intent.payment_failed": (PaymentFact.FAILED, _failed),
    "charge.refunded": (PaymentFact.REFUNDED, _refunded),
    "charge.dispute.created": (PaymentFact.DISPUTED, _disputed),
    "charge.dispute.closed": (PaymentFact.DISPUTED, _dispute_closed),  # fact by its status
}


def _signed_at(signature: str | None) -> int:
    """The ``t=`` of a Stripe-Signature header the SDK has verified."""
    stamps = [p[2:] for p in (signature or "").split(",") if p.startswith("t=")]
    return int(stamps[0]) if stamps and stamps[0].isdigit() else 0


def _payment_event(event: Any) -> PaymentEvent:
    """A verified body as a PaymentEvent, or InvalidWebhook when it is no Stripe event
    (or one whose payment object lacks what we read)."""
    if not isinstance(event, dict) or event.get("object") != "event":
        raise InvalidWebhook(f'{NOT_AN_EVENT}: no object "event"')
    event_id, event_type, created = event.get("id"), event.get("type"), event.get("created")
    if not (isinstance(event_id, str) and event_id and isinstance(event_type, str)):
        raise InvalidWebhook(f"{NOT_AN_EVENT}: no id or type")
    if not isinstance(created, int) or isinstance(created, bool):
        raise InvalidWebhook(f"{NOT_AN_EVENT}: no created time")
    handled = _HANDLED.get(event_type)
    if handled is None:
        return PaymentEvent(event_id=event_id, type=event_type, fact=None, created=created)
    fact, extract = handled
    try:
        fields = extract(event["data"]["object"])
    except (KeyError, TypeError) as error:
        raise InvalidWebhook(f"{NOT_AN_EVENT}: its {event_type} lacks {error}") from error
    fact = fields.pop("fact", fact)
    if fields.get("currency"):
        fields["currency"] = fields["currency"].upper()
    return PaymentEvent(event_id=event_id, type=event_type, fact=fact, created=created, **fields)
