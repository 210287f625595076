"""Inbound webhooks: ``POST /webhooks/stripe``.

Thin: verify the signature and parse (the adapter), one service call, a status code.
Stripe retries anything but 2xx for days, so: 200 for a processed, duplicate or ignored
event, and for a payment held for review (it must stop retrying); 400 for a missing or
bad signature, a body that is not an event, or a signature or event dated more than five
minutes ahead (nothing changed); 503 when the database is busy (retry later); 500 for a
bug.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.core.errors import InvalidWebhook, TransientError
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
