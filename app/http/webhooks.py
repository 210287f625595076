"""Inbound webhooks: ``POST /webhooks/stripe`` and ``POST /hooks/bots/{token}``.

Thin: verify the signature and parse (the adapter), one service call, a status code.

Stripe. Stripe retries anything but 2xx for days, so: 200 for a processed, duplicate or ignored
event, and for a payment held for review (it must stop retrying); 400 for a missing or
bad signature, a body that is not an event, or a signature or event dated more than five
minutes ahead (nothing changed); 503 when the database is busy (retry later); 500 for a
bug.

Bots' signal webhook (``app.bots.webhook``): 202 ``{"status": "queued", "alertId"}``;
200 for a duplicate or a stale alert, and for a dry run (``?dryRun=true``: what would
happen, nothing stored); a refusal is ``{"error": {"code", "message", "field"}}`` with
400, 401, 403, 404, 409 or 429 (``REFUSALS``); 413 above ``alerts.MAX_BODY_BYTES``
(``SizeLimits``); 503 when PostgreSQL or Redis is unreachable. TradingView retries
nothing, so every answer is final.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.bots.domain.errors import BotPaused, BotStopped, WebhookIpNotAllowed, WebhookSecretInvalid
from app.bots.webhook import Outcome, Receipt, receive_alert
from app.core.errors import InvalidWebhook, NotFound, RateLimited, TransientError, UserError
from app.core.outages import as_outage
from app.runtime import Runtime
from app.wallets.card_deposits import handle_payment_event

MAX_BODY_BYTES = 256 * 1024  # Stripe events are a few kB


async def stripe_webhook(request: Request) -> Response:
    rt: Runtime = request.app.state.rt
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return JSONResponse({"error": "body too large"}, status_code=413)
    payload = await request.body()
    if len(payload) > MAX_BODY_BYTES:
        return JSONResponse({"error": "body too large"}, status_code=413)
    try:
        signature = request.headers.get("stripe-signature")
        event = rt.payments.parse_webhook(payload, signature, now=rt.now())
    except InvalidWebhook as error:
        return JSONResponse({"error": error.message}, status_code=400)
    try:
        outcome = await handle_payment_event(rt=rt, event=event)
    except TransientError as error:
        return JSONResponse({"error": error.message}, status_code=503)
    return JSONResponse({"received": True, "outcome": outcome.value})


BOT_HOOKS = "/hooks/bots/"  # + the bot's webhook token
REFUSALS: dict[type[UserError], int] = {
    InvalidWebhook: 400,
    WebhookSecretInvalid: 401,
    WebhookIpNotAllowed: 403,
    NotFound: 404,
    BotStopped: 409,
    BotPaused: 409,
    RateLimited: 429,
}
_DRY_RUN = {"": False, "false": False, "0": False, "true": True, "1": True}


async def bot_alert_webhook(request: Request) -> Response:
    rt: Runtime = request.app.state.rt
    try:
        dry_run = _DRY_RUN.get(request.query_params.get("dryRun", "").lower())
        if dry_run is None:
            raise InvalidWebhook("dryRun is true or false", field="dryRun")
        receipt = await receive_alert(
            rt=rt,
            token=request.path_params["token"],
            body=await request.body(),  # at most alerts.MAX_BODY_BYTES (SizeLimits)
            content_type=request.headers.get("content-type", ""),
            client_ip=request.client.host if request.client else None,
            dry_run=dry_run,
        )
    except UserError as error:
        return _refusal(error)
    except Exception as error:
        outage = as_outage(error)
        if outage is None:
            raise
        body = {"error": {"code": outage.code, "message": outage.message, "field": None}}
        return JSONResponse(body, 503, headers={"Retry-After": str(outage.retry_after)})
    return _answer(receipt)


def _refusal(error: UserError) -> Response:
    status = next((s for kind, s in REFUSALS.items() if isinstance(error, kind)), 400)
    headers = {}
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    body = {"error": {"code": error.code, "message": error.message, "field": error.field}}
    return JSONResponse(body, status, headers=headers)


def _answer(receipt: Receipt) -> Response:
    alert = receipt.alert
    body: dict[str, Any] = {"status": receipt.outcome.value, "alertId": alert.alert_id}
    if receipt.reason is not None:
        body["reason"] = receipt.reason
    if receipt.dry_run:
        body = {
            "status": "dryRun",
            "wouldBe": receipt.outcome.value,
            **{k: v for k, v in body.items() if k != "status"},
            "namesMarket": receipt.names_market,
            "alert": {
                "action": alert.action.value,
                "symbol": alert.symbol,
                "quantity": _text(alert.quantity),
                "amount": _text(alert.amount),
                "price": _text(alert.price),
                "time": None if alert.time is None else alert.time.isoformat(),
            },
        }
    queued = receipt.outcome is Outcome.QUEUED and not receipt.dry_run
    return JSONResponse(body, 202 if queued else 200)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")
