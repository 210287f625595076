"""The GraphQL endpoint: POST, GET (queries only) and WebSocket on /graphql."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from cross_web import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL

from app.errors import InvalidToken
from app.logs import request_id_var
from app.metrics import WEBSOCKETS_OPEN
from app.runtime import Runtime
from app.services.sessions import authenticate
from graphql_schema.context import Context
from resolvers.loaders import build_loaders

log = logging.getLogger(__name__)
_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    500: "INTERNAL_SERVER_ERROR",
}
WS_TOKEN_KEYS = ("authorization", "Authorization", "authToken", "token")


class AuthenticationFailed(Exception):
    """A credential was presented and is not valid: the request is refused (HTTP 401)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def error_response(status: int, message: str, *, code: str | None = None) -> JSONResponse:
    body = {
        "errors": [
            {
                "message": message,
                "extensions": {
                    "code": code or _HTTP_CODES.get(status, "BAD_REQUEST"),
                    "requestId": request_id_var.get(),
                },
            }
        ]
    }
    headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def bearer_token(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed("Authorization must be 'Bearer <access token>'")
    return token.strip()


class GraphQLView(GraphQL[Context, None]):
    def __init__(self, *, schema: Any, rt: Runtime) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if rt.settings.is_development else None,
            allow_queries_via_get=True,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            connection_init_wait_timeout=timedelta(seconds=10),
            max_subscriptions_per_connection=100,
        )
        self.rt = rt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            WEBSOCKETS_OPEN.inc()
            try:
                await super().__call__(scope, receive, send)
            finally:
                WEBSOCKETS_OPEN.dec()
            return
        try:
            response = await self.run(Request(scope, receive=receive))
        except ClientDisconnect:
            return  # the client went away before sending its body: nobody to answer
        except HTTPException as error:
            response = error_response(error.status_code, error.reason)
        except AuthenticationFailed as error:
            response = error_response(401, error.message)
        except Exception:
            # Outside GraphQL execution (get_context, authentication): no ErrorPolicy here.
            log.exception("unexpected error outside GraphQL execution")
            response = error_response(500, f"Unexpected error (request {request_id_var.get()})")
        await response(scope, receive, send)

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        auth = None
        if isinstance(request, Request):
            token = bearer_token(request.headers.get("authorization"))
            if token is not None:
                auth = await self._authenticate(token)
        return Context(
            rt=self.rt,
            request=request,
            response=response,
            loaders=build_loaders(self.rt, signed_in=auth.user if auth else None),
            request_id=request_id_var.get() or "",
            auth=auth,
        )

    async def on_ws_connect(self, context: Context) -> dict[str, object] | None:
        params = context.connection_params if isinstance(context.connection_params, dict) else {}
        raw = next((params[k] for k in WS_TOKEN_KEYS if isinstance(params.get(k), str)), None)
        if raw is None:
            return {"authenticated": False}
        try:
            token = raw if " " not in raw.strip() else bearer_token(raw)
            context.auth = await self._authenticate(token or "")
        except AuthenticationFailed as error:
            raise ConnectionRejectionError({"message": error.message}) from error
        context.loaders = build_loaders(self.rt, signed_in=context.auth.user)
        return {"authenticated": True}

    async def execute_single(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_single(*args, **kwargs)
        except HTTPException as error:
            if isinstance(error.__cause__, InvalidOperationTypeError):
                raise HTTPException(405, error.reason) from error
            raise

    async def _authenticate(self, token: str) -> Any:
        try:
            return await authenticate(rt=self.rt, access_token=token)
        except InvalidToken as error:
            raise AuthenticationFailed(f"Invalid access token: {error.message}") from error

    async def process_result(self, request: Request, result: Any) -> Any:
        """Errors raised before execution can bypass the schema extensions (a syntax
        error from the parser cache does): give them a code and the request id too."""
        data = await super().process_result(request, result)
        for error in data.get("errors") or ():
            extensions = error.setdefault("extensions", {})
            if "code" not in extensions:
                syntax = str(error.get("message", "")).startswith("Syntax Error")
                extensions["code"] = "GRAPHQL_PARSE_FAILED" if syntax else "BAD_REQUEST"
            extensions.setdefault("requestId", request_id_var.get())
        return data

    def decode_json(self, data: str | bytes) -> object:
        value = json.loads(data)
        if not isinstance(value, dict | list):  # strawberry would call .get() on it
            raise HTTPException(400, "The request body must be a JSON object")
        return value

    def encode_json(self, data: object) -> str:
        return json.dumps(data, separators=(",", ":"))
