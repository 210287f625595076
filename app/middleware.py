"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs throughput and breaks streaming)."""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.logs import request_id_var
from app.metrics import HTTP_REQUESTS

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_KNOWN_PATHS = {
    "/graphql",
    "/livez",
    "/readyz",
    "/startupz",
    "/metrics",
    "/verify-email",
    "/reset-password",
    "/webhooks/stripe",
}

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}
# GraphiQL (development only) loads its scripts from a CDN, so its HTML page is exempt.
STRICT_CSP = (
    "default-src 'none'; frame-ancestors 'none'; form-action 'self'; style-src 'unsafe-inline'"
)


class RequestIdMiddleware:
    """Accept a sane ``X-Request-ID`` or generate one; echo it; expose it to logs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), ""
        )
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        path = scope["path"] if scope["path"] in _KNOWN_PATHS else "other"

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("x-request-id", request_id)
                HTTP_REQUESTS.labels(path, str(message["status"])).inc()
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if (
                    not headers.get("content-type", "").startswith("text/html")
                    or scope["path"] != "/graphql"
                ):
                    headers.setdefault("content-security-policy", STRICT_CSP)
                if self.hsts:
                    headers.setdefault("strict-transport-security", "max-age=63072000")
            await send(message)

        await self.app(scope, receive, send_with_headers)
