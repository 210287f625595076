"""Card deposits through the payment provider (Stripe), and its webhooks.

``create_card_deposit`` runs three short steps and never holds a database transaction
open across the call to the provider:

1. one transaction: claim the idempotency key, validate, lock the user row, check the
   KYC daily limit (pending deposits count), insert the deposit PENDING and remember
   ``{"deposit_id"}`` under the key;
2. no transaction: create the PaymentIntent with an idempotency key derived from that
   deposit row, so every attempt for this deposit gets the same PaymentIntent back;
3. one transaction: attach the PaymentIntent to the deposit and remember the client
   secret under the key.

Why this order:

- A retried or concurrent request with the same key finds the key claimed (concurrent
  ones wait on its unique index until step 1 commits) and gets the same deposit id: there
  is never a second deposit row. It resumes at step 2, where the provider answers the
  same idempotency key with the same PaymentIntent: there is never a second one. After
  step 3, replays are answered from the stored response without calling the provider.
- Bad input (amount, currency, sign-in, limit) fails in step 1: nothing is written and
  nothing is sent.
- A network failure in step 2 raises ``TransientError`` and leaves the deposit PENDING
  without a PaymentIntent; retrying with the same key finishes it. The provider refusing
  the payment marks the deposit FAILED and stores the refusal under the key, so a replay
  gets the same answer without another call.
- Calling the provider inside step 1's transaction would be simpler, but would pin a
  pooled connection and the user's row lock for the provider's latency (seconds when it
  is slow), and a commit failing after the call would leave a PaymentIntent no row knows.
- The provider's idempotency key is derived from the deposit row, not forwarded from
  the client's key: it is unique across users, short (the client's key may be 255
  characters), and lives as long as the row, whereas our keys are pruned after a day
  and a reused client key must then start a new deposit, not revive an old intent.
- Nothing is credited here. Money moves only when the provider's webhook says the
  payment succeeded (``handle_payment_event``).

``handle_payment_event`` applies one verified webhook event in one transaction: it locks
the deposit row, records the event id in ``processed_webhook_events`` (a duplicate stops
there, so each event counts once, also when deliveries race), merges the event's fact
into the deposit (``app.wallets.domain.deposits``: facts merge in any order) and posts the
difference between what the user should now hold and what was credited: a credit
STRIPE_CLEARING -> AVAILABLE, or a debit back to STRIPE_CLEARING. A debit takes what is
available; if that is not enough (the money was moved on), the rest stays unrecovered
and the account is flagged (``users.flagged_at`` / ``flag_reason``) for review; what
is missing shows as ``credited_amount`` above what the user should hold, and a later
refund or dispute event for the deposit tries again.

A success for another amount or currency than the deposit's credits nothing: the
deposit is AMOUNT_MISMATCH with its ``review_reason``, the account is flagged, a
DEPOSIT_HELD_FOR_REVIEW security event and a ``deposit.review_required`` outbox event
are written, and the webhook is acknowledged; no later event moves money on it (a person
settles it with correcting entries). A won dispute (``charge.dispute.closed``, won)
credits the disputed amount back (entry kind DISPUTE_WON); a lost one leaves it debited.

Out-of-order and repeated deliveries (Stripe retries for days and does not order them):
the same event again is a no-op (its id is recorded); a refund or dispute before
``payment_intent.succeeded`` settles the deposit (nothing is credited, or only what was
not refunded) and the late success changes nothing; a success after
``payment_intent.payment_failed`` is the customer's next attempt and credits; a failure
after the success is ignored. Events for payments that are not ours are answered 2xx and
ignored, as are event types we do not handle.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.security_events import SecurityEventKind, record_security_event
from app.adapters.payments import PaymentEvent, PaymentIntent
from app.core.errors import (
    DepositMethodNotSupported,
    EmailNotVerified,
    InvariantViolation,
    NotAuthenticated,
    PaymentRejected,
)
from app.core.money import parse_amount, usd_value
from app.events import topics
from app.ledger import idempotency
from app.ledger import journal as ledger
from app.ledger.rules import AccountKind, move
from app.runtime import Runtime
from app.wallets.deposits import emit_event, lock_deposit, usd_deposited_since, usd_price
from app.wallets.domain.deposits import (
    PAID,
    CardPayment,
    DepositMethod,
    DepositStatus,
    PaymentFact,
    apply,
    check_daily_deposit_limit,
    from_minor_units,
    held_for_review,
    plain,
    start_of_utc_day,
    to_minor_units,
)
from app.wallets.wallets import get_enabled_currency, spec
from db.models import Currency, Deposit, KycLimit, ProcessedWebhookEvent, User
from db.queries import lock_user
from db.session import in_transaction

log = logging.getLogger(__name__)

OPERATION = "deposit"
CARD_CURRENCY_KIND = "FIAT"
_REVERSAL_ENTRY_KIND = {PaymentFact.REFUNDED: "REFUND", PaymentFact.DISPUTED: "DISPUTE"}


@dataclass(frozen=True, slots=True)
class CardDepositStarted:
    deposit: Deposit
    client_secret: str  # for Stripe.js to confirm the card payment in the browser


class WebhookOutcome(StrEnum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"  # an event type we do not handle, or a payment that is not ours


async def create_card_deposit(
    *,
    rt: Runtime,
    user_id: int | None,
    amount: Decimal,
    currency: str,
    idempotency_key: str,
) -> CardDepositStarted:
    if user_id is None:
        raise NotAuthenticated()
    idempotency.check_key(idempotency_key)
    params = {"currency": currency.strip().upper(), "amount": str(amount)}

    async def open_deposit(session: AsyncSession) -> dict[str, Any]:
        replay = await idempotency.claim(
            session, user_id=user_id, key=idempotency_key, operation=OPERATION, params=params
        )
        if replay is not None:
            return replay
        deposit = await _insert_pending(session, rt=rt, user_id=user_id, **params)
        response = {"deposit_id": deposit.id}
        await idempotency.remember(session, user_id=user_id, key=idempotency_key, response=response)
        return response

    response = await in_transaction(rt.sessions, open_deposit)
    if "client_secret" in response:
        return await _replay(rt, response)
    if "refused" in response:
        raise PaymentRejected(response["refused"], field=response.get("field"))
    deposit_id = response["deposit_id"]
    intent = await _payment_intent(rt, deposit_id=deposit_id, user_id=user_id, key=idempotency_key)
    return await in_transaction(
        rt.sessions,
        lambda session: _attach(session, deposit_id=deposit_id, key=idempotency_key, intent=intent),
    )


async def _insert_pending(
    session: AsyncSession, *, rt: Runtime, user_id: int, currency: str, amount: str
) -> Deposit:
    coin = await get_enabled_currency(session, currency)
    if coin.kind != CARD_CURRENCY_KIND:
        raise DepositMethodNotSupported(
            f"{coin.code} is deposited to your deposit address, not by card", field="currency"
        )
    value = parse_amount(Decimal(amount), spec(coin))
    user = await lock_user(session, user_id)  # serialises this user's limit checks
    if user is None:
        raise NotAuthenticated()
    if user.email_verified_at is None:
        raise EmailNotVerified()
    limit = await session.get(KycLimit, user.kyc_level)
    if limit is None:
        raise InvariantViolation(f"no KYC limits for level {user.kyc_level}")
    used = await usd_deposited_since(session, user_id=user_id, since=start_of_utc_day(rt.now()))
    check_daily_deposit_limit(
        used_usd=used,
        requested_usd=usd_value(value, await usd_price(session, coin.code)),
        limit_usd=limit.daily_deposit_usd,
    )
    deposit = Deposit(
        user_id=user_id,
        currency=coin.code,
        amount=value,
        method=DepositMethod.CARD.value,
        status=DepositStatus.PENDING.value,
    )
    session.add(deposit)
    await session.flush()
    await session.refresh(deposit)
    return deposit


def _provider_key(deposit: Deposit) -> str:
    return f"deposit-{deposit.id}-{deposit.created_at:%Y%m%dT%H%M%S%f}"


async def _payment_intent(rt: Runtime, *, deposit_id: int, user_id: int, key: str) -> PaymentIntent:
    """Step 2: the deposit's PaymentIntent (the same one however often this runs)."""
    async with rt.sessions() as session:
        deposit = await session.get(Deposit, deposit_id)
        currency = await session.get(Currency, deposit.currency) if deposit else None
    if deposit is None or currency is None:
        raise InvariantViolation(f"deposit {deposit_id} is gone")
    amount_minor = to_minor_units(deposit.amount, spec(currency))
    try:
        intent = await rt.payments.create_payment_intent(
            amount_minor=amount_minor,
            currency=deposit.currency,
            idempotency_key=_provider_key(deposit),
            metadata={"deposit_id": str(deposit.id), "user_id": str(user_id)},
            description=f"Deposit {deposit.id}",
        )
    except PaymentRejected as refusal:
        await _record_refusal(rt, deposit_id=deposit_id, key=key, refusal=refusal)
        raise
    if (intent.amount_minor, intent.currency) != (amount_minor, deposit.currency):
        raise InvariantViolation(f"payment intent {intent.id} is not for deposit {deposit_id}")
    return intent


async def _record_refusal(
    rt: Runtime, *, deposit_id: int, key: str, refusal: PaymentRejected
) -> None:
    """The deposit FAILED, and the refusal stored as the key's answer."""

    async def work(session: AsyncSession) -> None:
        deposit = await lock_deposit(session, deposit_id)
        assert deposit is not None
        if deposit.status == DepositStatus.PENDING.value and deposit.payment_intent_id is None:
            deposit.status = DepositStatus.FAILED.value
            deposit.failure_reason = refusal.message
        response = {"deposit_id": deposit_id, "refused": refusal.message, "field": refusal.field}
        await idempotency.remember(session, user_id=deposit.user_id, key=key, response=response)

    await in_transaction(rt.sessions, work)


async def _attach(
    session: AsyncSession, *, deposit_id: int, key: str, intent: PaymentIntent
) -> CardDepositStarted:
    deposit = await lock_deposit(session, deposit_id)
    assert deposit is not None
    if deposit.payment_intent_id is None:
        deposit.payment_intent_id = intent.id
        await session.flush()
        await session.refresh(deposit)
    elif deposit.payment_intent_id != intent.id:
        raise InvariantViolation(f"deposit {deposit_id} already has another payment intent")
    response = {
        "deposit_id": deposit_id,
        "payment_intent_id": intent.id,
        "client_secret": intent.client_secret,
    }
    await idempotency.remember(session, user_id=deposit.user_id, key=key, response=response)
    return CardDepositStarted(deposit=deposit, client_secret=intent.client_secret)


async def _replay(rt: Runtime, response: dict[str, Any]) -> CardDepositStarted:
    async with rt.sessions() as session:
        deposit = await session.get(Deposit, response["deposit_id"])
    assert deposit is not None
    return CardDepositStarted(deposit=deposit, client_secret=response["client_secret"])


# --- webhooks ----------------------------------------------------------------------------


async def handle_payment_event(*, rt: Runtime, event: PaymentEvent) -> WebhookOutcome:
    """Apply one verified provider event exactly once (see the module docstring)."""
    if event.fact is None:
        return WebhookOutcome.IGNORED

    async def work(session: AsyncSession) -> WebhookOutcome:
        deposit = await _lock_deposit_for(session, event)
        if deposit is None:
            log.warning(
                "payment event for no deposit of ours",
                extra={"event_id": event.event_id, "payment_intent": event.payment_intent_id},
            )
            return WebhookOutcome.IGNORED
        if not await _first_delivery(session, event):
            return WebhookOutcome.DUPLICATE
        await _settle(session, rt=rt, deposit=deposit, event=event)
        return WebhookOutcome.PROCESSED

    return await in_transaction(rt.sessions, work)


async def _lock_deposit_for(session: AsyncSession, event: PaymentEvent) -> Deposit | None:
    """By payment intent id; else by the deposit id we put in its metadata (an event
    that overtook step 3 of ``create_card_deposit``)."""
    if event.payment_intent_id is None:
        return None
    deposit_id = await session.scalar(
        select(Deposit.id).where(Deposit.payment_intent_id == event.payment_intent_id)
    )
    if deposit_id is None:
        hint = event.metadata.get("deposit_id", "")
        deposit_id = int(hint) if hint.isdigit() else None
    deposit = await lock_deposit(session, deposit_id) if deposit_id is not None else None
    if deposit is None or deposit.method != DepositMethod.CARD.value:
        return None
    if deposit.payment_intent_id is None:
        deposit.payment_intent_id = event.payment_intent_id
    return deposit if deposit.payment_intent_id == event.payment_intent_id else None


async def _first_delivery(session: AsyncSession, event: PaymentEvent) -> bool:
    recorded = await session.scalar(
        insert(ProcessedWebhookEvent)
        .values(event_id=event.event_id, event_type=event.type)
        .on_conflict_do_nothing()
        .returning(ProcessedWebhookEvent.event_id)
    )
    return recorded is not None


async def _settle(
    session: AsyncSession, *, rt: Runtime, deposit: Deposit, event: PaymentEvent
) -> None:
    assert event.fact is not None
    currency = await session.get(Currency, deposit.currency)
    assert currency is not None
    before = CardPayment(
        amount=deposit.amount,
        paid=DepositStatus(deposit.status) in PAID,
        failure_reason=deposit.failure_reason,
        refunded=deposit.refunded_amount,
        disputed=deposit.disputed_amount,
        dispute_won=deposit.dispute_won,
        review_reason=deposit.review_reason,
    )
    if event.currency is not None and event.currency != deposit.currency:
        after = held_for_review(
            before, f"paid in {event.currency}, the deposit is in {currency.code}"
        )
    else:
        amount = from_minor_units(event.amount_minor, spec(currency))
        after = apply(before, event.fact, amount=amount, reason=event.reason)
    if after.review_reason is not None:  # nothing moves on its own: a person settles it
        if before.review_reason is None:
            await _hold_for_review(
                session, rt=rt, deposit=deposit, event=event, why=after.review_reason
            )
    else:
        await _move_money(session, rt=rt, deposit=deposit, owed=after.owed, event=event)
    if after.status is DepositStatus.FAILED and before.status is not DepositStatus.FAILED:
        await emit_event(session, deposit, topics.DEPOSIT_FAILED, reason=after.failure_reason)
    deposit.status = after.status.value
    deposit.failure_reason = after.failure_reason
    deposit.refunded_amount = after.refunded
    deposit.disputed_amount = after.disputed
    deposit.dispute_won = after.dispute_won
    deposit.review_reason = after.review_reason


async def _move_money(
    session: AsyncSession, *, rt: Runtime, deposit: Deposit, owed: Decimal, event: PaymentEvent
) -> None:
    """Post the difference between what the user should hold and what was credited."""
    change = owed - deposit.credited_amount
    if change > 0:
        kind = "DISPUTE_WON" if event.fact is PaymentFact.DISPUTE_WON else "CARD_DEPOSIT"
        await _credit(session, deposit=deposit, amount=change, kind=kind)
    elif change < 0 and event.fact in _REVERSAL_ENTRY_KIND:
        await _take_back(session, rt=rt, deposit=deposit, amount=-change, event=event)


async def _hold_for_review(
    session: AsyncSession, *, rt: Runtime, deposit: Deposit, event: PaymentEvent, why: str
) -> None:
    """The provider reported a payment that does not match the deposit: nothing is
    credited; the account is flagged, and the security trail and the outbox say so."""
    reason = f"{event.type} on deposit {deposit.id} ({deposit.currency}): {why}; held for review"
    owner = await lock_user(session, deposit.user_id)
    assert owner is not None
    _flag(owner, rt=rt, reason=reason)
    details = {
        "depositId": deposit.id,
        "paymentIntent": event.payment_intent_id,
        "eventId": event.event_id,
        "reason": why,
    }
    await record_security_event(
        session,
        user_id=deposit.user_id,
        kind=SecurityEventKind.DEPOSIT_HELD_FOR_REVIEW,
        details=details,
    )
    await emit_event(session, deposit, topics.DEPOSIT_HELD, reason=why)


def _flag(owner: User, *, rt: Runtime, reason: str) -> None:
    owner.flagged_at = owner.flagged_at or rt.now()
    owner.flag_reason = f"{owner.flag_reason}; {reason}" if owner.flag_reason else reason
    log.warning("account flagged", extra={"user_id": owner.id, "reason": reason})


async def _credit(session: AsyncSession, *, deposit: Deposit, amount: Decimal, kind: str) -> None:
    user = ledger.user_account(deposit.user_id, deposit.currency)
    posted = await ledger.post(
        session,
        kind=kind,
        legs=move(
            amount, ledger.system_account(deposit.currency, AccountKind.STRIPE_CLEARING), user
        ),
        reference=f"deposit:{deposit.id}",
    )
    deposit.credited_amount += amount
    await emit_event(
        session,
        deposit,
        topics.DEPOSIT_CREDITED,
        amount=amount,
        balance_after=posted.balances[user],
    )


async def _take_back(
    session: AsyncSession, *, rt: Runtime, deposit: Deposit, amount: Decimal, event: PaymentEvent
) -> None:
    """Debit up to ``amount`` back to STRIPE_CLEARING; flag the user for what is missing.
    Locks: deposit (held), user, then both ledger accounts in primary-key order."""
    assert event.fact is not None
    owner = await lock_user(session, deposit.user_id)
    assert owner is not None
    available = ledger.user_account(deposit.user_id, deposit.currency)
    clearing = ledger.system_account(deposit.currency, AccountKind.STRIPE_CLEARING)
    accounts = await ledger.lock_accounts(session, [available, clearing])
    taken = min(amount, accounts[available].balance)
    if taken > 0:
        await ledger.post(
            session,
            kind=_REVERSAL_ENTRY_KIND[event.fact],
            legs=move(taken, available, clearing),
            reference=f"deposit:{deposit.id}",
            memo=event.type,
        )
        deposit.credited_amount -= taken
    missing = amount - taken
    if missing > 0:
        reason = (
            f"{event.type} on deposit {deposit.id}: {plain(missing)} {deposit.currency}"
            " could not be taken back"
        )
        _flag(owner, rt=rt, reason=reason)
    await emit_event(
        session,
        deposit,
        topics.DEPOSIT_REVERSED,
        amount=taken,
        unrecovered=missing,
        reason=event.type,
    )
