"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs throughput and breaks streaming)."""

from __future__ import annotations

import re
import uuid

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


_SECURITY_HEADERS_RAW = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
_CSP = (b"content-security-policy", STRICT_CSP.encode())
_HSTS = (b"strict-transport-security", b"max-age=63072000")


class EdgeMiddleware:
    """Every request: accept a sane ``X-Request-ID`` or generate one, expose it to logs
    and echo it; count the response; add the security headers. One pure ASGI layer that
    appends raw header pairs (this runs on every request, so it stays cheap)."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

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
        id_header = (b"x-request-id", request_id.encode())

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.append(id_header)
                headers += [h for h in _SECURITY_HEADERS_RAW if h[0] not in present]
                html = any(
                    n.lower() == b"content-type" and v.startswith(b"text/html") for n, v in headers
                )
                if b"content-security-policy" not in present and not (
                    html and scope["path"] == "/graphql"
                ):
                    headers.append(_CSP)
                if self.hsts and b"strict-transport-security" not in present:
                    headers.append(_HSTS)
                message["headers"] = headers
                HTTP_REQUESTS.labels(path, str(message["status"])).inc()
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            request_id_var.reset(token)
