"""Card deposits through Stripe: createDeposit, the webhook, refunds and disputes,
idempotency, limits. The real stripe SDK talks to a local stand-in of the Stripe API
(tests/support/stripe_standin.py); webhooks are signed with Stripe's scheme."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy import func, select, update

from app.core.settings import Settings
from app.runtime import build_runtime
from db.models import (
    Currency,
    Deposit,
    JournalEntry,
    OutboxEvent,
    ProcessedWebhookEvent,
    SecurityEvent,
    User,
)
from tests.support.money import TRANSFER, balances, user_id, verified_user
from tests.support.stripe_standin import API_KEY, WEBHOOK_SECRET, StripeStandIn, event, sign

ROOT = Path(__file__).resolve().parents[2]

CREATE = (
    "mutation($amount: Decimal!, $cur: String!, $key: String!) {"
    " createDeposit(amount: $amount, currency: $cur, idempotencyKey: $key) { __typename"
    " ... on CreateDepositPayload { clientSecret deposit { id amount currency method status"
    " creditedAmount } }"
    " ... on Error { code message } ... on ValidationFailed { field }"
    " ... on DailyLimitExceeded { field } ... on PaymentRejected { field }"
    " ... on UnknownCurrency { field } ... on DepositMethodNotSupported { field }"
    " ... on IdempotencyKeyReused { field } } }"
)
DEPOSIT = (
    "query($id: ID!) { deposit(id: $id) { id status amount creditedAmount refundedAmount"
    " disputedAmount failureReason method } }"
)
DEPOSITS = (
    "query($first: Int!, $after: String) { deposits(first: $first, after: $after) {"
    " edges { cursor node { id amount status } } pageInfo { hasNextPage endCursor } } }"
)
NODE = "query($id: ID!) { node(id: $id) { __typename ... on Deposit { amount status } } }"
HISTORY = "{ transactions(first: 10) { edges { node { kind currency amount balanceAfter } } } }"


@pytest.fixture(scope="module")
def standin():
    server = StripeStandIn().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def rt(settings, standin):
    """The suite's runtime, with Stripe pointed at the stand-in (overrides conftest's)."""
    configured = settings.model_copy(
        update={
            "stripe_api_base": standin.url,
            "stripe_api_key": SecretStr(API_KEY),
            "stripe_webhook_secret": SecretStr(WEBHOOK_SECRET),
        }
    )
    runtime = build_runtime(
        configured, database_url=configured.database_url, redis_url=configured.redis_url
    )
    yield runtime
    await runtime.aclose()


@pytest.fixture(autouse=True)
def _fresh_standin(standin):
    standin.reset()


@pytest.fixture
async def carol(gql, rt):
    auth = await verified_user(gql, rt, "carol@example.com", handle="carol")
    return auth["accessToken"], await user_id(rt, "carol@example.com")


def _vars(**overrides):
    return {"amount": "100", "cur": "USD", "key": "dep-1", **overrides}


async def _create(gql, token, **overrides) -> dict:
    data = await gql.data(CREATE, _vars(**overrides), token=token)
    return data["createDeposit"]


async def _started(gql, token, standin, **overrides) -> tuple[dict, str]:
    """createDeposit that succeeded; returns the payload and the PaymentIntent id."""
    payload = await _create(gql, token, **overrides)
    assert payload["__typename"] == "CreateDepositPayload", payload
    (intent,) = [
        i for i in standin.intents.values() if i["client_secret"] == payload["clientSecret"]
    ]
    return payload, intent["id"]


async def _deliver(client, payload: bytes, *, signature: str | None = "sign") -> tuple[int, dict]:
    headers = {"content-type": "application/json"}
    if signature == "sign":
        signature = sign(payload)
    if signature is not None:
        headers["stripe-signature"] = signature
    response = await client.post("/webhooks/stripe", content=payload, headers=headers)
    return response.status_code, response.json()


async def _deposit(gql, token, deposit_id) -> dict:
    return (await gql.data(DEPOSIT, {"id": deposit_id}, token=token))["deposit"]


async def _usd(rt, uid) -> Decimal:
    return (await balances(rt, uid))["USD"][0]


async def _rows(rt, model):
    async with rt.sessions() as session:
        key = model.__mapper__.primary_key[0]
        return (await session.scalars(select(model).order_by(key))).all()


async def _topics(rt) -> list[str]:
    return [e.topic for e in await _rows(rt, OutboxEvent)]


async def _entry_kinds(rt) -> list[str]:
    return [e.kind for e in await _rows(rt, JournalEntry)]


# --- the happy path ----------------------------------------------------------------------


async def test_card_deposit_is_credited_when_stripe_reports_success(
    gql, client, rt, standin, carol
):
    token, uid = carol
    payload, intent_id = await _started(gql, token, standin)
    deposit = payload["deposit"]
    assert (deposit["amount"], deposit["currency"], deposit["method"]) == ("100.00", "USD", "CARD")
    assert (deposit["status"], deposit["creditedAmount"]) == ("PENDING", "0.00")
    assert payload["clientSecret"].startswith(f"{intent_id}_secret_")
    assert await _usd(rt, uid) == 0  # nothing is credited before Stripe says so

    # the real SDK did the talking
    (request,) = standin.requests
    assert (request.method, request.path) == ("POST", "/v1/payment_intents")
    assert request.headers["user-agent"].startswith("Stripe/v1 PythonBindings/16.")
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["idempotency-key"].startswith("deposit-")
    assert "stripe-version" in request.headers
    assert request.form["amount"] == "10000"  # cents
    assert request.form["currency"] == "usd"
    assert request.form["payment_method_types[0]"] == "card"
    deposit_pk = base64.b64decode(deposit["id"]).decode().split(":")[1]
    assert request.form["metadata[deposit_id]"] == deposit_pk

    status, body = await _deliver(client, standin.succeeded(intent_id))
    assert (status, body) == (200, {"received": True, "outcome": "processed"})
    assert await _usd(rt, uid) == Decimal(100)
    after = await _deposit(gql, token, deposit["id"])
    assert (after["status"], after["creditedAmount"]) == ("SUCCEEDED", "100.00")
    history = (await gql.data(HISTORY, token=token))["transactions"]["edges"]
    assert [(e["node"]["kind"], e["node"]["amount"]) for e in history] == [("DEPOSIT", "100.00")]
    (credited,) = [e for e in await _rows(rt, OutboxEvent) if e.topic == "deposit.credited"]
    assert credited.user_id == uid
    assert credited.payload["amount"] == "100"
    assert credited.payload["depositId"] == int(deposit_pk)
    node = (await gql.data(NODE, {"id": deposit["id"]}, token=token))["node"]
    assert node == {"__typename": "Deposit", "amount": "100.00", "status": "SUCCEEDED"}


# --- webhooks: duplicates, order, signatures ---------------------------------------------


async def test_duplicated_concurrent_out_of_order_and_tampered_webhooks_credit_once(
    gql, client, rt, standin, carol
):
    token, uid = carol
    payload, intent_id = await _started(gql, token, standin)
    succeeded = standin.succeeded(intent_id, event_id="evt_success")
    late_failure = standin.payment_failed(intent_id)  # an earlier attempt, delivered late
    tampered_body = succeeded.replace(b'"amount_received": 10000', b'"amount_received": 99999')
    assert tampered_body != succeeded
    tampered_signature = sign(succeeded)  # signed, then modified
    results = await asyncio.gather(
        _deliver(client, succeeded),
        _deliver(client, late_failure),
        _deliver(client, succeeded),
        _deliver(client, tampered_body, signature=tampered_signature),
        _deliver(client, succeeded),
    )
    statuses = [status for status, _ in results]
    assert statuses == [200, 200, 200, 400, 200]
    outcomes = sorted(body["outcome"] for status, body in results if status == 200)
    assert outcomes == ["duplicate", "duplicate", "processed", "processed"]
    assert await _usd(rt, uid) == Decimal(100)
    assert _entry_kinds_count(await _entry_kinds(rt), "CARD_DEPOSIT") == 1
    assert (await _topics(rt)).count("deposit.credited") == 1
    after = await _deposit(gql, token, payload["deposit"]["id"])
    assert (after["status"], after["failureReason"]) == ("SUCCEEDED", None)

    status, body = await _deliver(client, succeeded)  # Stripe retries days later
    assert (status, body["outcome"]) == (200, "duplicate")
    assert await _usd(rt, uid) == Decimal(100)


def _entry_kinds_count(kinds: list[str], kind: str) -> int:
    return sum(k == kind for k in kinds)


@pytest.mark.parametrize(
    "signature",
    [
        None,  # missing
        "",
        "garbage",
        "t=1,v1=deadbeef",
        "wrong secret",
        "expired",
    ],
)
async def test_webhooks_without_a_valid_signature_are_refused_and_change_nothing(
    gql, client, rt, standin, carol, signature
):
    token, uid = carol
    payload, intent_id = await _started(gql, token, standin)
    body = standin.succeeded(intent_id)
    if signature == "wrong secret":
        signature = sign(body, secret="whsec_not_ours")
    elif signature == "expired":
        signature = sign(body, timestamp=int(time.time()) - 3600)
    status, answer = await _deliver(client, body, signature=signature)
    assert status == 400
    assert "error" in answer
    assert await _usd(rt, uid) == 0
    assert await _rows(rt, ProcessedWebhookEvent) == []
    assert (await _deposit(gql, token, payload["deposit"]["id"]))["status"] == "PENDING"


async def test_a_signed_body_that_is_not_json_is_refused(client):
    body = b"not json"
    status, _ = await _deliver(client, body)
    assert status == 400


async def test_unknown_event_types_and_foreign_payments_are_acknowledged_and_ignored(
    client, rt, standin, carol
):
    other = event("customer.created", {"id": "cus_123", "object": "customer"})
    assert await _deliver(client, other) == (200, {"received": True, "outcome": "ignored"})
    foreign = event(
        "payment_intent.succeeded",
        {"id": "pi_not_ours", "amount": 500, "amount_received": 500, "currency": "usd"},
    )
    assert await _deliver(client, foreign) == (200, {"received": True, "outcome": "ignored"})
    assert await _rows(rt, ProcessedWebhookEvent) == []
    assert await _entry_kinds(rt) == []


async def test_an_event_that_overtakes_the_attach_step_finds_the_deposit_by_metadata(
    gql, client, rt, standin, carol
):
    token, uid = carol
    payload, intent_id = await _started(gql, token, standin)
    async with rt.sessions() as session, session.begin():  # as if step 3 had not committed
        await session.execute(update(Deposit).values(payment_intent_id=None))
    assert (await _deliver(client, standin.succeeded(intent_id)))[1]["outcome"] == "processed"
    (row,) = await _rows(rt, Deposit)
    assert (row.status, row.payment_intent_id) == ("SUCCEEDED", intent_id)
    assert await _usd(rt, uid) == Decimal(100)
    assert (await _create(gql, token))["clientSecret"] == payload["clientSecret"]


# --- failures, refunds, disputes ---------------------------------------------------------


async def test_payment_failed_then_a_successful_retry(gql, client, rt, standin, carol):
    token, uid = carol
    payload, intent_id = await _started(gql, token, standin)
    status, _ = await _deliver(client, standin.payment_failed(intent_id))
    assert status == 200
    failed = await _deposit(gql, token, payload["deposit"]["id"])
    assert (failed["status"], failed["failureReason"]) == ("FAILED", "Your card was declined.")
    assert await _usd(rt, uid) == 0
    assert await _topics(rt) == ["deposit.failed"]

    await _deliver(client, standin.succeeded(intent_id))  # the customer tried another card
    assert (await _deposit(gql, token, payload["deposit"]["id"]))["status"] == "SUCCEEDED"
    assert await _usd(rt, uid) == Decimal(100)


async def test_refund_after_credit_takes_the_money_back(gql, client, rt, standin, carol):
    token, uid = carol
    payload, intent_id = await _started(gql, token, standin)
    await _deliver(client, standin.succeeded(intent_id))
    status, body = await _deliver(client, standin.refunded(intent_id))
    assert (status, body["outcome"]) == (200, "processed")
    assert await _usd(rt, uid) == 0
    after = await _deposit(gql, token, payload["deposit"]["id"])
    assert (after["status"], after["creditedAmount"], after["refundedAmount"]) == (
        "REFUNDED",
        "0.00",
        "100.00",
    )
    history = (await gql.data(HISTORY, token=token))["transactions"]["edges"]
    assert [(e["node"]["kind"], e["node"]["amount"]) for e in history] == [
        ("REFUND", "-100.00"),
        ("DEPOSIT", "100.00"),
    ]
    assert await _topics(rt) == ["deposit.credited", "deposit.reversed"]
    async with rt.sessions() as session:
        assert (await session.get(User, uid)).flagged_at is None


async def test_refund_delivered_before_the_success_credits_nothing(gql, client, rt, standin, carol):
    token, uid = carol
    payload, intent_id = await _started(gql, token, standin)
    refund = standin.refunded(intent_id)
    success = standin.succeeded(intent_id)
    assert (await _deliver(client, refund))[0] == 200
    assert (await _deliver(client, success))[0] == 200
    after = await _deposit(gql, token, payload["deposit"]["id"])
    assert (after["status"], after["creditedAmount"]) == ("REFUNDED", "0.00")
    assert await _usd(rt, uid) == 0
    assert await _entry_kinds(rt) == []


async def test_partial_refunds_take_back_only_what_was_refunded(gql, client, rt, standin, carol):
    token, uid = carol
    payload, intent_id = await _started(gql, token, standin)
    await _deliver(client, standin.succeeded(intent_id))
    await _deliver(client, standin.refunded(intent_id, amount_refunded=3000))
    after = await _deposit(gql, token, payload["deposit"]["id"])
    assert (after["status"], after["creditedAmount"], after["refundedAmount"]) == (
        "SUCCEEDED",
        "70.00",
        "30.00",
    )
    assert await _usd(rt, uid) == Decimal(70)
    await _deliver(client, standin.refunded(intent_id, amount_refunded=10000))
    assert (await _deposit(gql, token, payload["deposit"]["id"]))["status"] == "REFUNDED"
    assert await _usd(rt, uid) == 0


async def test_refund_after_the_money_was_transferred_away_takes_what_is_left_and_flags(
    gql, client, rt, standin, carol
):
    token, uid = carol
    await verified_user(gql, rt, "bob@example.com", handle="bob")
    payload, intent_id = await _started(gql, token, standin)
    await _deliver(client, standin.succeeded(intent_id))
    sent = await gql.data(
        TRANSFER, {"to": "bob", "cur": "USD", "amount": "70", "key": "t-1"}, token=token
    )
    assert sent["transfer"]["__typename"] == "TransferPayload"

    status, body = await _deliver(client, standin.refunded(intent_id))
    assert (status, body["outcome"]) == (200, "processed")
    assert await _usd(rt, uid) == 0  # the 30 that was left
    assert await _usd(rt, await user_id(rt, "bob@example.com")) == Decimal(70)
    after = await _deposit(gql, token, payload["deposit"]["id"])
    assert (after["status"], after["creditedAmount"]) == ("REFUNDED", "70.00")  # unrecovered
    async with rt.sessions() as session:
        user = await session.get(User, uid)
    assert user.flagged_at is not None
    assert "charge.refunded" in user.flag_reason and "70 USD" in user.flag_reason
    (reversed_event,) = [e for e in await _rows(rt, OutboxEvent) if e.topic == "deposit.reversed"]
    assert reversed_event.payload["amount"] == "30"
    assert reversed_event.payload["unrecovered"] == "70"


async def test_dispute_takes_the_money_back(gql, client, rt, standin, carol):
    token, uid = carol
    payload, intent_id = await _started(gql, token, standin)
    await _deliver(client, standin.succeeded(intent_id))
    status, body = await _deliver(client, standin.disputed(intent_id))
    assert (status, body["outcome"]) == (200, "processed")
    after = await _deposit(gql, token, payload["deposit"]["id"])
    assert (after["status"], after["creditedAmount"], after["disputedAmount"]) == (
        "DISPUTED",
        "0.00",
        "100.00",
    )
    assert await _usd(rt, uid) == 0
    assert await _entry_kinds(rt) == ["CARD_DEPOSIT", "DISPUTE"]
    history = (await gql.data(HISTORY, token=token))["transactions"]["edges"]
    assert history[0]["node"]["kind"] == "REFUND"


async def test_a_won_dispute_credits_the_money_back_once(gql, client, rt, standin, carol):
    token, uid = carol
    payload, intent_id = await _started(gql, token, standin)
    await _deliver(client, standin.succeeded(intent_id))
    await _deliver(client, standin.disputed(intent_id))
    assert await _usd(rt, uid) == 0
    won = standin.dispute_closed(intent_id, status="won")
    results = await asyncio.gather(*(_deliver(client, won) for _ in range(3)))
    assert sorted(body["outcome"] for _, body in results) == ["duplicate", "duplicate", "processed"]
    assert await _usd(rt, uid) == Decimal(100)
    assert await _entry_kinds(rt) == ["CARD_DEPOSIT", "DISPUTE", "DISPUTE_WON"]
    after = await _deposit(gql, token, payload["deposit"]["id"])
    assert (after["status"], after["creditedAmount"]) == ("SUCCEEDED", "100.00")
    history = (await gql.data(HISTORY, token=token))["transactions"]["edges"]
    assert [(e["node"]["kind"], e["node"]["amount"]) for e in history] == [
        ("DEPOSIT", "100.00"),
        ("REFUND", "-100.00"),
        ("DEPOSIT", "100.00"),
    ]
    await _deliver(client, standin.disputed(intent_id))  # the opening, redelivered late
    assert (await _deliver(client, won))[1]["outcome"] == "duplicate"
    assert await _usd(rt, uid) == Decimal(100)
    assert len(await _entry_kinds(rt)) == 3


async def test_a_won_dispute_delivered_before_its_opening_moves_nothing(
    gql, client, rt, standin, carol
):
    token, uid = carol
    payload, intent_id = await _started(gql, token, standin)
    await _deliver(client, standin.succeeded(intent_id))
    assert (await _deliver(client, standin.dispute_closed(intent_id, status="won")))[0] == 200
    assert (await _deliver(client, standin.disputed(intent_id)))[0] == 200
    assert await _usd(rt, uid) == Decimal(100)
    assert await _entry_kinds(rt) == ["CARD_DEPOSIT"]
    assert (await _deposit(gql, token, payload["deposit"]["id"]))["status"] == "SUCCEEDED"


async def test_a_lost_dispute_stays_debited(gql, client, rt, standin, carol):
    token, uid = carol
    payload, intent_id = await _started(gql, token, standin)
    await _deliver(client, standin.succeeded(intent_id))
    await _deliver(client, standin.disputed(intent_id))
    status, body = await _deliver(client, standin.dispute_closed(intent_id, status="lost"))
    assert (status, body["outcome"]) == (200, "processed")
    assert await _usd(rt, uid) == 0
    assert await _entry_kinds(rt) == ["CARD_DEPOSIT", "DISPUTE"]
    after = await _deposit(gql, token, payload["deposit"]["id"])
    assert (after["status"], after["creditedAmount"]) == ("DISPUTED", "0.00")


# --- webhooks that need a person ---------------------------------------------------------


@pytest.mark.parametrize(
    ("received", "currency", "why"),
    [
        (5000, None, "paid 50, the deposit is for 100"),
        (10001, None, "paid 100.01, the deposit is for 100"),
        (None, "eur", "paid in EUR, the deposit is in USD"),
    ],
)
async def test_a_success_for_another_amount_is_held_for_review_and_acknowledged(
    gql, client, rt, standin, carol, received, currency, why
):
    token, uid = carol
    payload, intent_id = await _started(gql, token, standin)
    mismatch = standin.succeeded(intent_id, amount_received=received, currency=currency)
    status, body = await _deliver(client, mismatch)
    assert (status, body["outcome"]) == (200, "processed")  # Stripe must stop retrying
    assert await _usd(rt, uid) == 0
    assert await _entry_kinds(rt) == []
    after = await _deposit(gql, token, payload["deposit"]["id"])
    assert (after["status"], after["creditedAmount"]) == ("AMOUNT_MISMATCH", "0.00")
    (row,) = await _rows(rt, Deposit)
    assert row.review_reason == why
    (event_row,) = await _held_for_review(rt, uid)
    assert event_row.details["paymentIntent"] == intent_id
    async with rt.sessions() as session:
        user = await session.get(User, uid)
    assert user.flagged_at is not None and "review" in user.flag_reason
    assert "deposit.review_required" in await _topics(rt)

    assert (await _deliver(client, mismatch))[1]["outcome"] == "duplicate"
    # nothing moves on its own until a person looks: not a refund, not a dispute
    await _deliver(client, standin.refunded(intent_id, amount_refunded=2500))
    await _deliver(client, standin.disputed(intent_id))
    await _deliver(client, standin.succeeded(intent_id))
    assert await _usd(rt, uid) == 0
    assert await _entry_kinds(rt) == []
    assert (await _deposit(gql, token, payload["deposit"]["id"]))["status"] == "AMOUNT_MISMATCH"
    assert len(await _held_for_review(rt, uid)) == 1


async def _held_for_review(rt, uid) -> list[SecurityEvent]:
    rows = await _rows(rt, SecurityEvent)
    return [e for e in rows if (e.user_id, e.kind) == (uid, "DEPOSIT_HELD_FOR_REVIEW")]


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b"[]",
        b'"evt_1"',
        b"42",
        b'{"id": "cus_1", "object": "customer", "type": "customer.created"}',
        b'{"id": "evt_1", "object": "event"}',
        b'{"object": "event", "type": "payment_intent.succeeded"}',
        b'{"id": 7, "object": "event", "type": "payment_intent.succeeded"}',
        b'{"id": "evt_1", "object": "event", "type": "payment_intent.succeeded"}',
        b'{"id": "evt_1", "object": "event", "type": "payment_intent.succeeded",'
        b' "data": {"object": {"id": "pi_1"}}}',
    ],
)
async def test_a_signed_json_body_that_is_not_an_event_is_a_clear_400(client, rt, body):
    status, answer = await _deliver(client, body)
    assert status == 400, answer
    assert "not a Stripe event" in answer["error"]
    assert await _rows(rt, ProcessedWebhookEvent) == []


async def test_events_dated_in_the_future_are_refused(gql, client, rt, standin, carol):
    token, uid = carol
    _, intent_id = await _started(gql, token, standin)
    intent = {**standin.intents[intent_id], "status": "succeeded"}
    intent["amount_received"] = intent["amount"]
    future = int(time.time()) + 3600
    dated_ahead = event("payment_intent.succeeded", intent, created=future)
    status, answer = await _deliver(client, dated_ahead)
    assert status == 400 and "future" in answer["error"]
    signed_ahead = standin.succeeded(intent_id)
    status, answer = await _deliver(
        client, signed_ahead, signature=sign(signed_ahead, timestamp=future)
    )
    assert status == 400 and "error" in answer
    assert await _usd(rt, uid) == 0
    assert await _rows(rt, ProcessedWebhookEvent) == []
    # within the tolerance (clocks drift) and old events (Stripe retries for days) are fine
    slightly_ahead = event("payment_intent.succeeded", intent, created=int(time.time()) + 60)
    assert (await _deliver(client, slightly_ahead))[1]["outcome"] == "processed"
    assert await _usd(rt, uid) == Decimal(100)
    old = event("charge.refunded", {**_charge(intent)}, created=int(time.time()) - 2 * 86400)
    assert (await _deliver(client, old))[1]["outcome"] == "processed"
    assert await _usd(rt, uid) == 0


def _charge(intent: dict) -> dict:
    return {
        "id": "ch_1",
        "object": "charge",
        "amount": intent["amount"],
        "amount_refunded": intent["amount"],
        "currency": intent["currency"],
        "payment_intent": intent["id"],
    }


# --- createDeposit: bad input, limits, idempotency ---------------------------------------


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"amount": "0"}, "VALIDATION_FAILED", "amount"),
        ({"amount": "-1"}, "VALIDATION_FAILED", "amount"),
        ({"amount": "10.001"}, "VALIDATION_FAILED", "amount"),  # USD has 2 decimals
        ({"cur": "XYZ"}, "UNKNOWN_CURRENCY", "currency"),
        ({"cur": "BTC"}, "DEPOSIT_METHOD_NOT_SUPPORTED", "currency"),  # crypto by card
        ({"amount": "2000.01"}, "DAILY_LIMIT_EXCEEDED", "amount"),  # KYC level 0: 2,000 USD
        ({"key": ""}, "VALIDATION_FAILED", "idempotencyKey"),
        ({"key": "k" * 256}, "VALIDATION_FAILED", "idempotencyKey"),
    ],
)
async def test_bad_deposits_change_nothing_and_never_reach_stripe(
    gql, rt, standin, carol, overrides, code, field
):
    token, _ = carol
    payload = await _create(gql, token, **overrides)
    assert (payload["code"], payload.get("field")) == (code, field), payload
    assert await _rows(rt, Deposit) == []
    assert standin.requests == []


async def test_disabled_currency_unverified_and_anonymous_are_refused(gql, rt, standin, carol):
    token, _ = carol
    async with rt.sessions() as session, session.begin():
        await session.execute(update(Currency).where(Currency.code == "USD").values(enabled=False))
    assert (await _create(gql, token))["code"] == "CURRENCY_DISABLED"
    async with rt.sessions() as session, session.begin():
        await session.execute(update(Currency).where(Currency.code == "USD").values(enabled=True))
    from tests.support.documents import signed_in

    eve = await signed_in(gql, "eve@example.com")
    assert (await _create(gql, eve["accessToken"]))["code"] == "EMAIL_NOT_VERIFIED"
    assert (await _create(gql, None))["code"] == "UNAUTHENTICATED"
    assert await _rows(rt, Deposit) == []
    assert standin.requests == []


async def test_float_amounts_are_refused_by_the_schema(gql, carol):
    token, _ = carol
    body = await gql(CREATE, _vars(amount=100.5), token=token)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_daily_limit_counts_todays_unfailed_deposits(gql, client, rt, standin, carol):
    token, uid = carol
    first, intent_id = await _started(gql, token, standin, amount="1500", key="a")
    over = await _create(gql, token, amount="600", key="b")  # the pending 1,500 counts
    assert over["code"] == "DAILY_LIMIT_EXCEEDED"
    assert "500.00 USD left" in over["message"]
    await _deliver(client, standin.payment_failed(intent_id))  # failed ones do not
    assert (await _create(gql, token, amount="600", key="b"))["__typename"] == (
        "CreateDepositPayload"
    )
    assert (await _create(gql, token, amount="1500", key="c"))["code"] == "DAILY_LIMIT_EXCEEDED"
    async with rt.sessions() as session, session.begin():  # yesterday's do not either
        await session.execute(
            update(Deposit).values(created_at=Deposit.created_at - timedelta(days=1))
        )
    assert (await _create(gql, token, amount="1500", key="c"))["__typename"] == (
        "CreateDepositPayload"
    )
    async with rt.sessions() as session, session.begin():
        await session.execute(update(User).where(User.id == uid).values(kyc_level=1))
    third = await _create(gql, token, amount="15000", key="d")  # level 1: 20,000 USD
    assert third["__typename"] == "CreateDepositPayload", third
    assert first["deposit"]["id"] != third["deposit"]["id"]


async def test_crypto_deposits_count_against_the_card_limit(gql, rt, standin, carol):
    token, uid = carol
    async with rt.sessions() as session, session.begin():
        session.add(
            Deposit(
                user_id=uid,
                currency="BTC",
                amount=Decimal("0.02"),  # 1,800 USD at the reference price
                method="CRYPTO",
                status="SUCCEEDED",
                tx_hash="ab" * 32,
            )
        )
    assert (await _create(gql, token, amount="200"))["__typename"] == "CreateDepositPayload"
    assert (await _create(gql, token, amount="0.01", key="x"))["code"] == "DAILY_LIMIT_EXCEEDED"


async def test_five_concurrent_requests_with_one_key_make_one_deposit_and_one_intent(
    gql, rt, standin, carol
):
    token, _ = carol
    answers = await asyncio.gather(*(_create(gql, token) for _ in range(5)))
    assert all(answer == answers[0] for answer in answers), answers
    assert answers[0]["__typename"] == "CreateDepositPayload"
    assert len(await _rows(rt, Deposit)) == 1
    assert len(standin.intents) == 1
    keys = {r.headers["idempotency-key"] for r in standin.requests}
    assert len(keys) == 1  # every attempt asked Stripe with the same idempotency key

    calls = len(standin.requests)
    again = await _create(gql, token)  # a replay is answered from the stored response
    assert again == answers[0]
    assert len(standin.requests) == calls


async def test_same_key_with_other_parameters_is_refused(gql, rt, standin, carol):
    token, _ = carol
    await _started(gql, token, standin)
    other = await _create(gql, token, amount="99")
    assert (other["code"], other["field"]) == ("IDEMPOTENCY_KEY_REUSED", "idempotencyKey")
    assert len(await _rows(rt, Deposit)) == 1
    assert len(standin.intents) == 1


async def test_stripe_refusing_the_payment_is_a_typed_error_and_replays_the_same(
    gql, rt, standin, carol
):
    token, _ = carol
    refused = await _create(gql, token, amount="0.10")  # below Stripe's minimum
    assert (refused["code"], refused["field"]) == ("PAYMENT_REJECTED", "amount")
    assert "at least $0.50" in refused["message"]
    (row,) = await _rows(rt, Deposit)
    assert (row.status, row.payment_intent_id) == ("FAILED", None)
    calls = len(standin.requests)
    assert await _create(gql, token, amount="0.10") == refused
    assert len(standin.requests) == calls


async def test_stripe_unavailable_is_retryable_and_the_retry_finishes_the_same_deposit(
    gql, rt, standin, carol
):
    token, _ = carol
    standin.fail_next(503)
    body = await gql(CREATE, _vars(), token=token)
    assert body["errors"][0]["extensions"]["code"] == "TRY_AGAIN"
    (pending,) = await _rows(rt, Deposit)
    assert (pending.status, pending.payment_intent_id) == ("PENDING", None)

    retried = await _create(gql, token)
    assert retried["__typename"] == "CreateDepositPayload"
    (row,) = await _rows(rt, Deposit)
    assert row.id == pending.id
    assert row.payment_intent_id == next(iter(standin.intents))
    assert len(standin.intents) == 1


# --- reads -------------------------------------------------------------------------------


async def test_deposits_are_listed_newest_first_and_private(gql, rt, standin, carol):
    token, _ = carol
    ids = [(await _started(gql, token, standin, key=f"k{i}"))[0]["deposit"]["id"] for i in range(3)]
    page = (await gql.data(DEPOSITS, {"first": 2}, token=token))["deposits"]
    assert [e["node"]["id"] for e in page["edges"]] == [ids[2], ids[1]]
    assert page["pageInfo"]["hasNextPage"] is True
    rest = await gql.data(
        DEPOSITS, {"first": 2, "after": page["pageInfo"]["endCursor"]}, token=token
    )
    assert [e["node"]["id"] for e in rest["deposits"]["edges"]] == [ids[0]]

    dave = await verified_user(gql, rt, "dave@example.com")
    assert (await gql.data(DEPOSIT, {"id": ids[0]}, token=dave["accessToken"]))["deposit"] is None
    assert (await gql.data(NODE, {"id": ids[0]}, token=dave["accessToken"]))["node"] is None
    assert (await gql.data(DEPOSIT, {"id": ids[0]}))["deposit"] is None
    mine = (await gql.data(DEPOSITS, {"first": 5}, token=dave["accessToken"]))["deposits"]
    assert mine["edges"] == []
    not_a_deposit = base64.b64encode(b"Transfer:1").decode()
    assert (await gql.data(DEPOSIT, {"id": not_a_deposit}, token=token))["deposit"] is None


async def test_deposits_need_sign_in(gql):
    body = await gql(DEPOSITS, {"first": 5})
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_many_deposits_by_id_are_one_batched_load(gql, rt, standin, carol, sql_statements):
    token, _ = carol
    ids = [(await _started(gql, token, standin, key=f"k{i}"))[0]["deposit"]["id"] for i in range(4)]
    query = (
        "{ " + " ".join(f'd{i}: deposit(id: "{g}") {{ amount }}' for i, g in enumerate(ids)) + " }"
    )
    sql_statements.reset()
    data = await gql.data(query, token=token)
    assert all(data[f"d{i}"]["amount"] == "100.00" for i in range(4))
    assert sql_statements.count == 2  # authenticate + one batched load


# --- configuration and boundaries --------------------------------------------------------


def _production(**overrides) -> Settings:
    base = {
        "env": "production",
        "jwt_secret": "j" * 40,
        "secret_key": "s" * 40,
        "database_url": "postgresql://db/x",
        "redis_url": "redis://r:6379/0",
        "seed_demo_data": False,
        "stripe_api_key": "sk_live_" + "a" * 24,
        "stripe_webhook_secret": "whsec_" + "b" * 32,
        "smtp_url": "smtps://mail.example.com:465",
        "exchange_master_keys": "k1:a2V5LWJ5dGVzLTAxMjM0NTY3ODlhYmNkZWZnaGlqa2w=",
    }
    return Settings(**{**base, **overrides})


@pytest.mark.parametrize(
    "overrides",
    [
        {"stripe_api_key": "sk_test_placeholder"},
        {"stripe_api_key": ""},
        {"stripe_api_key": "pk_live_publishable"},
        {"stripe_webhook_secret": "whsec_placeholder"},
        {"stripe_webhook_secret": ""},
        {"stripe_api_base": "http://127.0.0.1:12111"},
    ],
)
def test_production_refuses_placeholder_stripe_settings(overrides):
    with pytest.raises(ValidationError):
        _production(**overrides)


def test_production_accepts_real_stripe_secrets():
    settings = _production()
    assert "whsec_" + "b" * 32 not in repr(settings)
    assert settings.stripe_api_base is None  # Stripe's own


def test_only_the_adapter_imports_stripe():
    importing = sorted(
        str(path.relative_to(ROOT))
        for package in ("app", "db", "graphql_schema", "resolvers")
        for path in (ROOT / package).rglob("*.py")
        if re.search(r"^\s*(import stripe|from stripe)", path.read_text(), re.MULTILINE)
    )
    assert importing == ["app/adapters/stripe_gateway.py"]


async def test_outbox_and_ledger_are_untouched_by_a_pending_deposit(gql, rt, standin, carol):
    token, _ = carol
    await _started(gql, token, standin)
    assert await _entry_kinds(rt) == []
    assert await _topics(rt) == []
    async with rt.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Deposit)) == 1
