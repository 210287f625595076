"""The GraphQL endpoint: POST, GET (queries only) and WebSocket on /graphql.

Authentication: ``Authorization: Bearer <access token>`` (a session) or ``X-API-Key``
(a partner key), over WebSocket in the ``connection_init`` payload. Every operation
passes admission first (graphql_schema/gateway/admission.py: persisted documents, allowlist,
cost, rate limit), over HTTP in ``execute_single`` and over WebSocket in the protocol
handlers below (strawberry ignores ``extensions`` and ``documentId`` there).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from contextvars import Token
from datetime import timedelta
from typing import Any

from cross_web import AsyncHTTPRequestAdapter, HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLRequestData
from strawberry.http.base import BaseRequestProtocol
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    SubscribeMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ConnectionInitMessage as ConnectionInitMessage_ws,
)
from strawberry.subscriptions.protocols.graphql_ws.types import StartMessage

from app.accounts.api_keys import ApiKeyAuth, authenticate_api_key
from app.accounts.security_events import client_ip_var, user_agent_var
from app.accounts.sessions import Authenticated, authenticate
from app.core.errors import InvalidApiKey, InvalidToken, TransientError
from app.core.logs import request_id_var
from app.core.metrics import GRAPHQL_ERRORS, WEBSOCKETS_OPEN
from app.core.outages import as_outage
from app.runtime import Runtime
from graphql_schema.gateway.admission import (
    RATE_LIMIT_HEADERS,
    Admitted,
    Gate,
    Refused,
    rate_limit_headers,
)
from graphql_schema.gateway.caching import VARY, is_persisted, public_cache_control
from graphql_schema.gateway.context import Context
from graphql_schema.gateway.input_text import MESSAGE as UNSAFE_TEXT
from graphql_schema.gateway.input_text import unsafe_variable
from graphql_schema.gateway.persisted import TrustedDocuments
from graphql_schema.gateway.shared_plans import Plan, plan_for
from graphql_schema.gateway.shared_subscriptions import SharedStreams
from graphql_schema.gateway.ws_authority import (
    ClientSockets,
    CredentialExpired,
    SocketAuthority,
    init_deadline,
)
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
NO_STORE = "private, no-store"  # every answer but a public persisted query's (caching.py)
WS_TRY_AGAIN_LATER = 1013  # RFC 6455: a dependency is down, reconnect later
WS_TOKEN_KEYS = ("authorization", "Authorization", "authToken", "token")
WS_API_KEY_KEYS = ("apiKey", "x-api-key", "X-API-Key")
API_KEY_HEADER = "x-api-key"


class AuthenticationFailed(Exception):
    """A credential was presented and is not valid: the request is refused (HTTP 401)."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "UNAUTHENTICATED",
        scheme: str = "Bearer",
        expired: bool = False,
    ):
        super().__init__(message)
        self.message = message
        self.code = code
        self.scheme = scheme
        self.expired = expired  # an access token past its exp: refresh and retry


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    extensions: dict[str, Any] | None = None,
) -> JSONResponse:
    body = {
        "errors": [
            {
                "message": message,
                "extensions": {
                    "code": code or _HTTP_CODES.get(status, "BAD_REQUEST"),
                    **(extensions or {}),
                    "requestId": request_id_var.get(),
                },
            }
        ]
    }
    return JSONResponse(body, status_code=status, headers=headers)


def unavailable_response(error: TransientError) -> JSONResponse:
    retry_after = getattr(error, "retry_after", 1)
    return error_response(
        503,
        error.message,
        code=error.code,
        headers={"Retry-After": str(retry_after)},
        extensions={"retryable": True},
    )


def bearer_token(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed("Authorization must be 'Bearer <access token>'")
    return token.strip()


@dataclasses.dataclass
class PersistedRequestData(GraphQLRequestData):
    """Strawberry's request data plus the GraphQL-over-HTTP ``documentId``."""

    document_id: Any = None


# WebSocket: admission for every operation


class TransportWSHandler(SocketAuthority, BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws: a refused operation gets an ``error`` message; a credential
    that no longer holds closes the socket (ws_authority.py)."""

    view: GraphQLView

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        await self.initialise(super().handle_connection_init(message))

    async def end_operations(self) -> None:
        for operation_id in list(self.operations):
            await self.cleanup_operation(operation_id)

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        limit = self.max_subscriptions_per_connection
        if (
            not self.connection_acknowledged
            or message["id"] in self.operations
            or (limit is not None and len(self.operations) >= limit)
        ):
            await super().handle_subscribe(message)  # closes, or answers the limit
            return
        payload = message["payload"]
        try:
            if not await self.authorised():
                return  # closed
            admitted = await _admit_ws(self.view, self.context, payload)
        except Refused as refused:
            error = refused.error(self.context.request_id)
            await self.send_message({"id": message["id"], "type": "error", "payload": [error]})
            return
        payload = _with_query(payload, admitted)
        plan = plan_for(payload, max_tokens=self.view.rt.settings.max_query_tokens)
        if plan is None:
            await super().handle_subscribe({**message, "payload": payload})
            return
        self._subscribe_shared(message["id"], plan)

    def _subscribe_shared(self, operation_id: str, plan: Plan) -> None:
        """A public market-data subscription: one execution shared by every socket of
        this process with the same document and variables (shared_subscriptions.py).
        Registered like strawberry's own operations, so ``complete``, the limit and the
        socket's end cancel its task."""
        operation = Operation(self, operation_id, plan.query, plan.variables, plan.operation_name)

        async def run_own() -> Any:  # a late subscriber's own execution, as strawberry runs it
            return await self.schema.stream(
                plan.query,
                variable_values=plan.variables,
                context_value=self.context,
                root_value=self.root_value,
                operation_name=plan.operation_name,
            )

        async def close(reason: str) -> None:
            await self.websocket.close(code=4400, reason=reason)
            self.operations.pop(operation_id, None)

        operation.task = asyncio.create_task(
            self.view.shared_streams.serve(
                plan=plan,
                operation=operation,
                context=self.context,
                run_own=run_own,
                send_text=self._send_text,
                close=close,
            )
        )
        operation.task.add_done_callback(self._task_done)
        self.operations[operation_id] = operation

    async def _send_text(self, text: str) -> None:
        """An encoded message as is (``send_message`` encodes a dict)."""
        try:
            await self.websocket.ws.send_text(text)  # type: ignore[attr-defined]
        except WebSocketDisconnect as error:
            raise WebSocketDisconnected from error


class LegacyWSHandler(SocketAuthority, BaseGraphQLWSHandler[Context, None]):
    """graphql-ws (subscriptions-transport-ws): a refused operation gets an ``error``;
    ``connection_init`` times out as in graphql-transport-ws (strawberry has no timeout
    here); a credential that no longer holds closes the socket (ws_authority.py)."""

    view: GraphQLView
    _init_received = False

    async def handle(self) -> None:
        deadline = asyncio.create_task(
            init_deadline(
                self.view.connection_init_wait_timeout.total_seconds(),
                initialised=lambda: self._init_received,
                close=self.close_for,
            )
        )
        try:
            await super().handle()
        finally:
            deadline.cancel()

    async def handle_connection_init(self, message: ConnectionInitMessage_ws) -> None:
        self._init_received = True
        await self.initialise(super().handle_connection_init(message))

    async def end_operations(self) -> None:
        await self.cleanup()

    async def handle_start(self, message: StartMessage) -> None:
        if not self.connection_acknowledged:
            await super().handle_start(message)  # closes with 4401
            return
        payload = message["payload"]
        try:
            if not await self.authorised():
                return  # closed
            admitted = await _admit_ws(self.view, self.context, payload)
        except Refused as refused:
            error = refused.error(self.context.request_id)
            await self.send_message({"type": "error", "id": message["id"], "payload": error})
            return
        await super().handle_start({**message, "payload": _with_query(payload, admitted)})


def _with_query(payload: Any, admitted: Admitted) -> Any:
    """The payload strawberry runs: with the text of a persisted document."""
    return payload if admitted.query is None else {**payload, "query": admitted.query}


async def _admit_ws(view: GraphQLView, context: Context, payload: Any) -> Admitted:
    variables = payload.get("variables")
    unsafe = unsafe_variable(variables)  # a subscription runs past OperationPolicy's check
    if unsafe is not None:
        raise Refused(UNSAFE_TEXT, code="VALIDATION_FAILED", extensions={"field": unsafe})
    return await view.gate.admit(
        context,
        query=payload.get("query"),
        variables=variables if isinstance(variables, dict) else None,
        operation_name=payload.get("operationName"),
        extensions=payload.get("extensions"),
        document_id=payload.get("documentId"),
    )


class GraphQLView(GraphQL[Context, None]):
    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler

    def __init__(
        self, *, schema: Any, rt: Runtime, trusted_documents: TrustedDocuments | None = None
    ) -> None:
        settings = rt.settings
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.is_development else None,
            allow_queries_via_get=True,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            connection_init_wait_timeout=timedelta(
                seconds=settings.ws_connection_init_timeout_seconds
            ),
            max_subscriptions_per_connection=settings.ws_max_subscriptions,
            allowed_origins=settings.ws_allowed_origins,
        )
        self.rt = rt
        self.client_sockets = ClientSockets(settings.ws_max_connections_per_client)
        if trusted_documents is None:  # loaded once, at start-up
            trusted_documents = TrustedDocuments.load(
                settings.trusted_documents_manifest, schema._schema
            )
        self.gate = Gate(rt=rt, schema=schema, trusted=trusted_documents)
        self.shared_streams = SharedStreams(schema)  # graphql-transport-ws market data

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tokens = _set_client_vars(scope)
        try:
            if scope["type"] == "websocket":
                WEBSOCKETS_OPEN.inc()
                try:
                    await super().__call__(scope, receive, send)
                except Exception as error:
                    if (outage := as_outage(error)) is None:
                        raise
                    log.warning("%s is unavailable: WebSocket closed", outage.dependency)
                    reason = "Service unavailable, try again later"
                    close = {"type": "websocket.close", "code": WS_TRY_AGAIN_LATER}
                    await send({**close, "reason": reason})
                finally:
                    WEBSOCKETS_OPEN.dec()
                return
            await self._serve_http(scope, receive, send)
        finally:
            client_ip_var.reset(tokens[0])
            user_agent_var.reset(tokens[1])

    async def _serve_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await self.run(Request(scope, receive=receive))
        except ClientDisconnect:
            return  # the client went away before sending its body: nobody to answer
        except Refused as refused:
            GRAPHQL_ERRORS.labels(refused.code).inc()
            response = error_response(
                refused.status,
                refused.message,
                code=refused.code,
                headers=refused.headers,
                extensions=refused.extensions,
            )
        except HTTPException as error:
            response = error_response(error.status_code, error.reason)
        except AuthenticationFailed as error:
            headers = {"WWW-Authenticate": f'{error.scheme} error="invalid_token"'}
            response = error_response(401, error.message, code=error.code, headers=headers)
        except Exception as error:
            # Outside GraphQL execution (get_context, authentication, admission): no
            # ErrorPolicy here. Redis or PostgreSQL down is a retryable 503, not a bug.
            if (outage := as_outage(error)) is not None:
                log.warning("%s is unavailable: answered 503", outage.dependency)
                response = unavailable_response(outage)
            else:
                log.exception("unexpected error outside GraphQL execution")
                response = error_response(500, f"Unexpected error (request {request_id_var.get()})")
        response.headers.setdefault("cache-control", NO_STORE)
        await response(scope, receive, send)

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        client_ip = request.client.host if request.client else None
        auth = api_key = None
        if isinstance(request, Request):
            auth, api_key = await self._authenticate(
                authorization=request.headers.get("authorization"),
                api_key=request.headers.get(API_KEY_HEADER),
                client_ip=client_ip,
            )
        user = auth.user if auth else api_key.user if api_key else None
        return Context(
            rt=self.rt,
            request=request,
            response=response,
            loaders=build_loaders(self.rt, signed_in=user),
            request_id=request_id_var.get() or "",
            auth=auth,
            api_key=api_key,
            client_ip=client_ip,
        )

    async def on_ws_connect(self, context: Context) -> dict[str, object] | None:
        params = context.connection_params if isinstance(context.connection_params, dict) else {}
        token = next((params[k] for k in WS_TOKEN_KEYS if isinstance(params.get(k), str)), None)
        key = next((params[k] for k in WS_API_KEY_KEYS if isinstance(params.get(k), str)), None)
        if key is None and isinstance(context.request, WebSocket):
            key = context.request.headers.get(API_KEY_HEADER)
        if token is None and key is None:
            return {"authenticated": False}
        try:
            context.auth, context.api_key = await self._authenticate(
                authorization=token if token is None or " " in token.strip() else f"Bearer {token}",
                api_key=key,
                client_ip=context.client_ip,
            )
        except AuthenticationFailed as error:
            if error.expired:
                raise CredentialExpired from error  # closed with 4440, not 4403
            refusal = {"message": error.message, "code": error.code}
            raise ConnectionRejectionError(refusal) from error
        context.loaders = build_loaders(self.rt, signed_in=context.user)
        return {"authenticated": True}

    async def _authenticate(
        self, *, authorization: str | None, api_key: str | None, client_ip: str | None
    ) -> tuple[Authenticated | None, ApiKeyAuth | None]:
        if authorization is not None and api_key is not None:
            raise AuthenticationFailed("Send either an access token or an API key, not both")
        if api_key is not None:
            try:
                key = await authenticate_api_key(rt=self.rt, secret=api_key, client_ip=client_ip)
            except InvalidApiKey as error:
                failed = AuthenticationFailed(error.message, code=error.code, scheme="ApiKey")
                raise failed from error
            return None, key
        token = bearer_token(authorization)
        if token is None:
            return None, None
        try:
            return await authenticate(rt=self.rt, access_token=token), None
        except InvalidToken as error:
            message = f"Invalid access token: {error.message}"
            raise AuthenticationFailed(message, expired=error.expired) from error

    def should_render_graphql_ide(self, request: BaseRequestProtocol) -> bool:
        """A GET carrying a persisted query (hash or documentId) is an operation."""
        params = request.query_params
        if params.get("extensions") is not None or params.get("documentId") is not None:
            return False
        return super().should_render_graphql_ide(request)

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        data = await super().parse_http_body(request)
        if isinstance(data, list):  # batching is off: strawberry refuses lists before this
            return data
        if data.operation_name is not None and not isinstance(data.operation_name, str):
            raise HTTPException(400, "operationName must be a string")
        if request.method == "GET":
            document_id = request.query_params.get("documentId")
        else:
            body = await request.get_body()  # read once by strawberry; Starlette keeps it
            document_id = self.parse_json(body).get("documentId") if b"documentId" in body else None
        return PersistedRequestData(**vars(data), document_id=document_id)

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Any,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> Any:
        admitted = await self.gate.admit(
            context,
            query=request_data.query,
            variables=request_data.variables,
            operation_name=request_data.operation_name,
            extensions=request_data.extensions,
            document_id=getattr(request_data, "document_id", None),
            http_method=request_adapter.method,
        )
        self._add_rate_limit_headers(sub_response, admitted)
        persisted = is_persisted(
            request_data.extensions, getattr(request_data, "document_id", None)
        )
        request_data = GraphQLRequestData(
            query=admitted.query,
            variables=request_data.variables,
            operation_name=request_data.operation_name,
            extensions=request_data.extensions,
            protocol=request_data.protocol,
        )
        try:
            result = await super().execute_single(
                request, request_adapter, sub_response, context, root_value, request_data
            )
        except HTTPException as error:
            if isinstance(error.__cause__, InvalidOperationTypeError):
                raise HTTPException(405, error.reason) from error
            raise
        self._add_cache_headers(request, sub_response, request_data, persisted, result)
        return result

    def _add_cache_headers(
        self,
        request: Request,
        sub_response: Any,
        data: GraphQLRequestData,
        persisted: bool,
        result: Any,
    ) -> None:
        cache_control = public_cache_control(
            settings=self.rt.settings,
            schema=self.gate.schema,
            method=request.method,
            headers=request.headers,
            persisted=persisted,
            query=data.query,
            operation_name=data.operation_name,
            errors=getattr(result, "errors", None),
        )
        if cache_control is not None:
            sub_response.headers.update({"Cache-Control": cache_control, "Vary": VARY})
            for name in RATE_LIMIT_HEADERS:  # this caller's budget, not to be shared
                if name in sub_response.headers:
                    del sub_response.headers[name]

    def _add_rate_limit_headers(self, sub_response: Any, admitted: Admitted) -> None:
        if admitted.decision is not None:
            window = self.rt.settings.rate_limit_window_seconds
            sub_response.headers.update(rate_limit_headers(admitted.decision, window))

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
        try:  # strictly: json.loads would let UTF-8-encoded surrogates through
            text = data.decode() if isinstance(data, bytes) else data
        except UnicodeDecodeError as error:
            raise HTTPException(400, "The request body is not valid UTF-8") from error
        value = json.loads(text)
        if not isinstance(value, dict | list):  # strawberry would call .get() on it
            raise HTTPException(400, "The request body must be a JSON object")
        return value

    def encode_json(self, data: object) -> str:
        return json.dumps(data, separators=(",", ":"))


def _set_client_vars(scope: Scope) -> tuple[Token[str | None], Token[str | None]]:
    client = scope.get("client")
    agent = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"user-agent"), None)
    return client_ip_var.set(client[0] if client else None), user_agent_var.set(agent)
