"""Schema extensions: error policy (mask the unexpected, keep codes) and metrics."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError
from starlette.websockets import WebSocket
from strawberry.extensions import MaskErrors
from strawberry.relay.types import GlobalIDValueError, InvalidGlobalIDError
from strawberry.types import ExecutionContext, StreamExecutionResult
from strawberry.types.graphql import OperationType

from app.core.errors import AppError, InvariantViolation, TransientError
from app.core.logs import request_id_var
from app.core.metrics import GRAPHQL_ERRORS, GRAPHQL_LATENCY, GRAPHQL_REQUESTS, operation_label
from app.core.outages import as_outage
from graphql_schema.gateway.context import Context
from graphql_schema.gateway.input_text import UnsafeTextLiteral, unsafe_text_error, unsafe_variable
from resolvers.loaders import build_loaders

log = logging.getLogger("graphql")
UNEXPECTED_MESSAGE = "Unexpected error"


def expected_error(error: GraphQLError) -> AppError | None:
    """The domain error behind ``error`` when it is one the client may see: ours (not an
    invariant violation), or Redis / PostgreSQL unreachable (``DependencyUnavailable``)."""
    original = error.original_error
    if isinstance(original, AppError):
        return None if isinstance(original, InvariantViolation) else original
    return as_outage(original) if original is not None else None


def error_code(error: GraphQLError) -> tuple[str, bool]:
    """(stable code, whether the message may be shown to the client)."""
    original = error.original_error
    if (expected := expected_error(error)) is not None:
        return expected.code, True
    if isinstance(original, GlobalIDValueError | InvalidGlobalIDError):
        return "INVALID_ID", True
    if original is None and isinstance((error.extensions or {}).get("code"), str):
        return error.extensions["code"], True  # type: ignore[index]  # ours (e.g. a timeout)
    if error.path is None:  # the request itself is at fault: syntax, validation, variables
        if error.message.startswith("Syntax Error"):
            return "GRAPHQL_PARSE_FAILED", True
        return ("BAD_USER_INPUT" if original else "GRAPHQL_VALIDATION_FAILED"), True
    return "INTERNAL_SERVER_ERROR", False


class ErrorPolicy(MaskErrors):
    """Unexpected exceptions become "Unexpected error" plus the request id; every error
    carries ``extensions.code`` and ``extensions.requestId``."""

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        request_id = request_id_var.get()
        processed = []
        for error in errors:
            code, exposed = error_code(error)
            expected = expected_error(error)
            message = expected.message if expected is not None else error.message
            extensions = {**(error.extensions or {}), "code": code, "requestId": request_id}
            if expected is not None and expected.field:
                extensions["field"] = expected.field
            if isinstance(expected, TransientError):
                extensions["retryable"] = True
            processed.append(
                GraphQLError(
                    message if exposed else f"{UNEXPECTED_MESSAGE} (request {request_id})",
                    nodes=error.nodes,
                    source=error.source,
                    positions=error.positions,
                    path=error.path,
                    original_error=None,
                    extensions=extensions,
                )
            )
        return processed


def log_errors(errors: list[GraphQLError]) -> None:
    """Expected errors quietly; unexpected ones with their traceback."""
    for error in errors:
        code, exposed = error_code(error)
        if exposed:
            transient = isinstance(expected_error(error), TransientError)
            log.log(
                logging.WARNING if transient else logging.INFO,
                "graphql error",
                extra={"code": code, "error": error.message},
            )
            continue
        original = error.original_error
        log.error(
            "unexpected error in %s",
            ".".join(map(str, error.path or [])),
            exc_info=(type(original), original, original.__traceback__) if original else None,
        )


class OperationPolicy(ErrorPolicy):
    """The one extension every operation runs through (each extension costs hook
    overhead on every request): fresh DataLoaders per WebSocket operation (get_context
    runs once per connection, so no cache may outlive an operation) and per event of a
    subscription, the error policy, and the metrics."""

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        context = self.execution_context
        request_context = context.context
        if isinstance(request_context, Context) and isinstance(request_context.request, WebSocket):
            context.context = dataclasses.replace(
                request_context, loaders=build_loaders(request_context.rt)
            )
        context.validation_rules = (*context.validation_rules, UnsafeTextLiteral)
        yield from super().on_operation()
        _record_metrics(context, started)

    def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
        """After each result of a subscription, fresh DataLoaders for the next event:
        the context lives as long as the operation, a loader's cache must not (a field
        read through it would show the value as of the first event)."""
        context = self.execution_context
        subscription = _operation_type(context) is OperationType.SUBSCRIPTION
        if subscription and isinstance(context.context, Context):
            context.context.renew_loaders()
        yield from super().on_stream_result(result)

    def on_execute(self) -> Iterator[None]:
        """Variables with unsafe text (graphql_schema/gateway/input_text.py): not executed."""
        context = self.execution_context
        where = unsafe_variable(context.variables or {})
        if where is not None:
            context.result = GraphQLExecutionResult(None, [unsafe_text_error(where)])
        yield


def _operation_type(context: ExecutionContext) -> OperationType | None:
    try:
        return context.operation_type
    except Exception:  # the document did not parse
        return None


def _record_metrics(context: ExecutionContext, started: float) -> None:
    name = operation_label(context.operation_name)
    operation_type = _operation_type(context)
    kind = operation_type.value if operation_type is not None else "invalid"
    GRAPHQL_REQUESTS.labels(name, kind).inc()
    GRAPHQL_LATENCY.labels(name).observe(time.perf_counter() - started)
    for error in getattr(context.result, "errors", None) or ():
        GRAPHQL_ERRORS.labels((error.extensions or {}).get("code", "UNKNOWN")).inc()
