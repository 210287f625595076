"""A local stand-in for the Stripe API at its HTTP boundary, and signed webhook events.

The real stripe SDK talks to it (``STRIPE_API_BASE=http://127.0.0.1:<port>``). It serves
``POST /v1/payment_intents`` (form-encoded, honouring ``Idempotency-Key`` like Stripe:
the same key and parameters give the same response, other parameters an
``idempotency_error``) and ``GET /v1/payment_intents/{id}``, checks the API key, refuses
amounts below 50 cents, and can be told to fail the next requests. Webhook payloads are
signed with Stripe's scheme: ``t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<payload>")>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

API_KEY = "sk_test_standin_0123456789"
WEBHOOK_SECRET = "whsec_standin_0123456789abcdef"
MIN_AMOUNT = 50  # Stripe's minimum charge for USD, in cents


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class _State:
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_key: dict[str, tuple[dict[str, str], int, dict[str, Any]]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)  # statuses for the next requests


class StripeStandIn:
    def __init__(self, *, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.lock = threading.Lock()
        self.state = _State()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StripeStandIn:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self.lock:
            self.state = _State()

    def fail_next(self, *statuses: int) -> None:
        with self.lock:
            self.state.failures.extend(statuses)

    @property
    def intents(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return dict(self.state.intents)

    @property
    def requests(self) -> list[Recorded]:
        with self.lock:
            return list(self.state.requests)

    # --- the API ------------------------------------------------------------------------

    def handle(self, request: Recorded) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self.lock:  # one request at a time: same-key races resolve like Stripe's
            self.state.requests.append(request)
            if request.headers.get("authorization") != f"Bearer {self.api_key}":
                return 401, _error("invalid_request_error", "Invalid API Key provided"), {}
            if self.state.failures:
                status = self.state.failures.pop(0)
                headers = {"Stripe-Should-Retry": "false"}
                return status, _error("api_error", "Something went wrong"), headers
            if request.method == "GET" and request.path.startswith("/v1/payment_intents/"):
                intent = self.state.intents.get(request.path.rsplit("/", 1)[1])
                if intent is None:
                    return 404, _error("invalid_request_error", "No such payment_intent"), {}
                return 200, intent, {}
            if request.method == "POST" and request.path == "/v1/payment_intents":
                return self._create_intent(request)
            return 404, _error("invalid_request_error", "Unrecognized request URL"), {}

    def _create_intent(self, request: Recorded) -> tuple[int, dict[str, Any], dict[str, str]]:
        key = request.headers.get("idempotency-key")
        if key in self.state.by_key:
            form, status, body = self.state.by_key[key]
            if form != request.form:
                message = "Keys for idempotent requests can only be used with the same parameters"
                return 400, _error("idempotency_error", message), {}
            return status, body, {"Idempotent-Replayed": "true"}
        status, body = self._new_intent(request.form)
        if key:
            self.state.by_key[key] = (request.form, status, body)
        return status, body, {}

    def _new_intent(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        amount = int(form.get("amount", "0"))
        if amount < MIN_AMOUNT:
            message = "Amount must be at least $0.50 usd"
            error = _error(
                "invalid_request_error", message, code="amount_too_small", param="amount"
            )
            return 400, error
        intent_id = "pi_" + secrets.token_hex(12)
        intent = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_received": 0,
            "currency": form["currency"],
            "client_secret": f"{intent_id}_secret_{secrets.token_hex(12)}",
            "created": int(time.time()),
            "description": form.get("description"),
            "livemode": False,
            "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
            "payment_method_types": [v for k, v in form.items() if k.startswith("payment_method")],
            "status": "requires_payment_method",
        }
        self.state.intents[intent_id] = intent
        return 200, intent

    # --- webhook events, as Stripe would send them ----------------------------------------

    def succeeded(
        self,
        intent_id: str,
        *,
        event_id: str | None = None,
        amount_received: int | None = None,
        currency: str | None = None,
    ) -> bytes:
        intent = {**self.intents[intent_id], "status": "succeeded"}
        intent["amount_received"] = amount_received or intent["amount"]
        intent["currency"] = currency or intent["currency"]
        return event("payment_intent.succeeded", intent, event_id=event_id)

    def payment_failed(self, intent_id: str, *, message: str = "Your card was declined.") -> bytes:
        intent = {
            **self.intents[intent_id],
            "status": "requires_payment_method",
            "last_payment_error": {"code": "card_declined", "message": message},
        }
        return event("payment_intent.payment_failed", intent)

    def refunded(self, intent_id: str, *, amount_refunded: int | None = None) -> bytes:
        intent = self.intents[intent_id]
        refunded = intent["amount"] if amount_refunded is None else amount_refunded
        charge = {
            "id": "ch_" + secrets.token_hex(12),
            "object": "charge",
            "amount": intent["amount"],
            "amount_refunded": refunded,
            "currency": intent["currency"],
            "paid": True,
            "payment_intent": intent_id,
            "refunded": refunded == intent["amount"],
            "status": "succeeded",
        }
        return event("charge.refunded", charge)

    def disputed(self, intent_id: str) -> bytes:
        return event("charge.dispute.created", self._dispute(intent_id, "needs_response"))

    def dispute_closed(self, intent_id: str, *, status: str = "won") -> bytes:
        """``charge.dispute.closed``: ``won`` (the money comes back), ``lost``, or
        ``warning_closed`` (an inquiry that never became a dispute)."""
        return event("charge.dispute.closed", self._dispute(intent_id, status))

    def _dispute(self, intent_id: str, status: str) -> dict[str, Any]:
        intent = self.intents[intent_id]
        return {
            "id": "dp_" + intent_id[3:],  # one dispute per payment, as in these tests
            "object": "dispute",
            "amount": intent["amount"],
            "charge": "ch_" + intent_id[3:],
            "currency": intent["currency"],
            "payment_intent": intent_id,
            "reason": "fraudulent",
            "status": status,
        }


def event(
    event_type: str,
    obj: dict[str, Any],
    *,
    event_id: str | None = None,
    created: int | None = None,
) -> bytes:
    body = {
        "id": event_id or "evt_" + secrets.token_hex(12),
        "object": "event",
        "api_version": "2025-01-27.acacia",
        "created": int(time.time()) if created is None else created,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
    return json.dumps(body).encode()


def sign(payload: bytes, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header Stripe would send for ``payload``."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256)
    return f"t={t},v1={mac.hexdigest()}"


def _error(
    kind: str, message: str, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message, "code": code, "param": param}}


def _handler(standin: StripeStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            request = Recorded(
                method=self.command,
                path=self.path.split("?", 1)[0],
                headers={k.lower(): v for k, v in self.headers.items()},
                form=dict(parse_qsl(body, keep_blank_values=True)),
            )
            status, payload, headers = standin.handle(request)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("request-id", "req_" + secrets.token_hex(8))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
