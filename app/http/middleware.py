"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs throughput and breaks streaming)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.logs import request_id_var
from app.core.metrics import HTTP_REQUESTS

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
_KNOWN_PREFIXES = ("/hooks/bots/",)  # a credential follows: counted under the prefix

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
        path = _metric_path(scope["path"])
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


def _metric_path(path: str) -> str:
    if path in _KNOWN_PATHS:
        return path
    return next((p + "{token}" for p in _KNOWN_PREFIXES if path.startswith(p)), "other")


# close code of a WebSocket message over the limit (RFC 6455: message too big)
WS_MESSAGE_TOO_BIG = 1009


class SizeLimits:
    """Bounds what one request may make the server read: an HTTP body of more than
    ``max_request_bytes`` is answered 413 (``PAYLOAD_TOO_LARGE``) as soon as its
    Content-Length says so or the bytes received pass the limit, without reading the
    rest; a WebSocket message of more than ``max_ws_message_bytes`` closes the socket
    with 1009. Enforced here, whatever the ASGI server's own limits. A path in
    ``path_limits`` has its own bound (one whose bodies are not ours to size), and so
    has every path under a prefix in ``prefix_limits`` (a bot's webhook: a small one)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_request_bytes: int,
        max_ws_message_bytes: int,
        path_limits: Mapping[str, int] | None = None,
        prefix_limits: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_request_bytes = max_request_bytes
        self.max_ws_message_bytes = max_ws_message_bytes
        self.path_limits = dict(path_limits or {})
        self.prefix_limits = dict(prefix_limits or {})

    def _limit(self, path: str) -> int:
        if path in self.path_limits:
            return self.path_limits[path]
        under = (limit for prefix, limit in self.prefix_limits.items() if path.startswith(prefix))
        return next(under, self.max_request_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self._limit(scope["path"])
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), b"")
        if declared.isdigit() and int(declared) > limit:
            await self._too_large(send, limit)
            return
        received, over, started = 0, False, False

        async def counted_receive() -> Message:
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True  # the app sees a client that went away
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over and not started:
                return  # the app's answer to a cut body: the 413 replaces it
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not over:
                raise  # (over: the app failed on the cut body, answered below)
        if over and not started:
            await self._too_large(send, limit)

    async def _too_large(self, send: Send, limit: int) -> None:
        message = f"The request body is larger than {limit} bytes"
        extensions = {"code": "PAYLOAD_TOO_LARGE", "requestId": request_id_var.get()}
        error = {"message": message, "extensions": extensions}
        body = json.dumps({"errors": [error]}, separators=(",", ":")).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit, closed = self.max_ws_message_bytes, False

        async def checked_receive() -> Message:
            nonlocal closed
            if closed:
                return {"type": "websocket.disconnect", "code": WS_MESSAGE_TOO_BIG}
            message = await receive()
            if message["type"] == "websocket.receive" and _ws_size(message, limit) > limit:
                closed = True
                await send({"type": "websocket.close", "code": WS_MESSAGE_TOO_BIG})
                return {"type": "websocket.disconnect", "code": WS_MESSAGE_TOO_BIG}
            return message

        async def guarded_send(message: Message) -> None:
            if not closed:
                await send(message)

        await self.app(scope, checked_receive, guarded_send)


def _ws_size(message: Message, limit: int) -> int:
    """The message's size in bytes (text is encoded only when its length leaves a doubt)."""
    if (data := message.get("bytes")) is not None:
        return len(data)
    text = message.get("text") or ""
    return len(text) if len(text) * 4 <= limit or len(text) > limit else len(text.encode())
