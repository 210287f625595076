"""Admission: what every GraphQL operation passes before it runs, over HTTP (the view's
``execute_single``) and over WebSocket (each ``subscribe`` / ``start`` message):

1. the document: plain text, an APQ hash, or a trusted ``documentId``; in allowlist mode
   (``TRUSTED_DOCUMENTS_ONLY``, or an API key created with ``trustedDocumentsOnly``)
   nothing but trusted documents;
2. parsing (shared cache, token limit) and the operation type (no mutation over GET);
3. for an API key, the scopes its root fields need (graphql_schema/gateway/access.py);
4. what validation's field merging would compare (``MAX_QUERY_FIELDS``,
   ``MAX_MERGE_COMPARISONS``), then the query cost against ``MAX_QUERY_COST``;
5. the rate limit: the cost is drawn from the caller's budget, order placements from
   their order budget; an APQ registration adds ``REGISTRATION_COST``, and a request
   refused at step 1 (an unknown hash, a bad hash, a document too large to register)
   still draws 1;
6. APQ registration: a new hash + query pair is stored once the document validates and
   while the caller's registration budget (``PERSISTED_QUERY_REGISTRATIONS`` an hour)
   lasts; past it the query still runs, and is not stored.

A refusal is a ``Refused`` (HTTP status, code, message, headers); nothing has run.
Every step before execution is linear in the document (graphql_schema/gateway/limits.py).
Depth, aliases and introspection are validation rules, the timeout an extension
(graphql_schema/gateway/limits.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    get_operation_ast,
    specified_rules,
)
from strawberry.schema.schema import validate_document

from app.accounts import rate_limits
from app.accounts.rate_limits import Decision
from app.core.errors import InsufficientScope, RateLimited
from app.runtime import Runtime
from graphql_schema.gateway.access import denial, field_access
from graphql_schema.gateway.context import Context
from graphql_schema.gateway.limits import (
    CostCache,
    InvalidOperationName,
    QueryTooComplex,
    QueryTooLarge,
    check_merging,
    parse_document,
    rules_for,
)
from graphql_schema.gateway.persisted import (
    AutomaticPersistedQueries,
    Document,
    PersistedQueryError,
    TrustedDocuments,
    resolve_document,
)

# Root mutation fields that place orders draw from the order budget too (trading adds them).
ORDER_PLACEMENT_FIELDS = frozenset({"placeOrder", "placeOrderList"})
REGISTRATION_COST = 10  # an APQ registration, drawn on top of the query's cost
REFUSED_DOCUMENT_COST = 1  # a persisted-document request that cannot be served


class Refused(Exception):
    """An operation refused before it ran."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.headers = dict(headers or {})
        self.extensions = dict(extensions or {})

    def error(self, request_id: str | None) -> dict[str, Any]:
        """The GraphQL error object (as in an ``errors`` list)."""
        extensions = {"code": self.code, **self.extensions}
        if request_id:
            extensions["requestId"] = request_id
        return {"message": self.message, "extensions": extensions}


@dataclass(frozen=True, slots=True)
class Admitted:
    query: str | None
    cost: int
    decision: Decision | None  # the rate-limit budget after this request


RATE_LIMIT_HEADERS = (
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
)  # rate_limit_headers's names


def rate_limit_headers(decision: Decision, window: float) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(math.ceil(decision.reset_after)),
        "RateLimit-Policy": f"{decision.limit};w={window:g}",
    }


class Gate:
    """One per server process (built with the view)."""

    def __init__(self, *, rt: Runtime, schema: Any, trusted: TrustedDocuments) -> None:
        self.rt = rt
        self.schema = schema._schema  # graphql-core's
        self.trusted = trusted
        self.apq = AutomaticPersistedQueries(rt)
        self.costs = CostCache()

    async def admit(
        self,
        ctx: Context,
        *,
        query: str | None,
        variables: Mapping[str, Any] | None,
        operation_name: str | None,
        extensions: Mapping[str, Any] | None,
        document_id: Any = None,
        http_method: str | None = None,
    ) -> Admitted:
        try:
            document = await self._resolve(ctx, query, extensions, document_id)
        except Refused:
            await self._draw(ctx, REFUSED_DOCUMENT_COST)
            raise
        if document.query is None:
            return Admitted(None, 0, None)  # strawberry answers "no query" (400)
        parsed = self._parse(document.query)
        cost, orders = 1, 0  # a document that does not parse still costs 1
        if parsed is not None:
            self._check_merging(parsed)
            orders = self._inspect(ctx, parsed, operation_name, http_method)
            cost = self._cost(document.query, parsed, operation_name, variables)
        if document.register_as:
            cost += REGISTRATION_COST
        decision = await self._draw(ctx, cost, orders)
        if document.register_as and parsed is not None and self._validates(parsed):
            await self._register(ctx, document.register_as, document.query)
        return Admitted(document.query, cost, decision)

    async def _draw(self, ctx: Context, cost: int, orders: int = 0) -> Decision:
        decision = await rate_limits.draw_request(
            self.rt, caller=ctx.caller, cost=cost, orders=orders
        )
        if not decision.allowed:
            raise self._too_many(decision, cost)
        return decision

    async def _register(self, ctx: Context, sha256: str, query: str) -> None:
        """Store an APQ document while the caller's registration budget lasts."""
        decision = await rate_limits.draw_registration(self.rt, caller=ctx.caller)
        if decision.allowed:
            await self.apq.put(sha256, query)

    async def _resolve(
        self, ctx: Context, query: str | None, extensions: Any, document_id: Any
    ) -> Document:
        allowlist = self.rt.settings.trusted_documents_only or bool(
            ctx.api_key and ctx.api_key.key.trusted_documents_only
        )
        try:
            return await resolve_document(
                query=query,
                extensions=extensions if isinstance(extensions, dict) else None,
                document_id=document_id,
                trusted=self.trusted,
                apq=self.apq,
                allowlist=allowlist,
                max_register_bytes=self.rt.settings.persisted_query_max_bytes,
            )
        except PersistedQueryError as error:
            raise Refused(error.message, code=error.code, status=error.status) from error

    def _parse(self, query: str) -> DocumentNode | None:
        """The document, or None for a syntax error (strawberry reports it)."""
        try:
            return parse_document(query, max_tokens=self.rt.settings.max_query_tokens)
        except QueryTooLarge as error:
            raise Refused(error.message, code=error.code) from error
        except GraphQLError:
            return None

    def _check_merging(self, document: DocumentNode) -> None:
        settings = self.rt.settings
        try:
            check_merging(
                document,
                max_fields=settings.max_query_fields,
                max_comparisons=settings.max_merge_comparisons,
            )
        except QueryTooComplex as error:
            raise Refused(error.message, code=error.code) from error

    def _inspect(
        self,
        ctx: Context,
        document: DocumentNode,
        operation_name: str | None,
        http_method: str | None,
    ) -> int:
        """Refuse a mutation over GET and root fields out of an API key's scopes; return
        the number of order placements."""
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            return 0  # strawberry reports it
        kind = operation.operation
        if http_method is not None and kind is OperationType.SUBSCRIPTION:
            raise Refused(
                "Subscriptions are not served over HTTP: use WebSocket (graphql-transport-ws)",
                code="METHOD_NOT_ALLOWED",
                status=405,
            )
        if http_method == "GET" and kind is not OperationType.QUERY:
            raise Refused(
                f"{kind.value}s are not allowed over GET: use POST",
                code="METHOD_NOT_ALLOWED",
                status=405,
            )
        roots = list(_root_fields(operation, document))
        self._check_scopes(ctx, kind, roots)
        if kind is not OperationType.MUTATION:
            return 0
        return sum(1 for name in roots if name in ORDER_PLACEMENT_FIELDS)

    def _cost(
        self,
        query: str,
        document: DocumentNode,
        operation_name: str | None,
        variables: Mapping[str, Any] | None,
    ) -> int:
        try:
            cost = self.costs.cost(self.schema, query, document, operation_name, variables)
        except InvalidOperationName as error:
            raise Refused(error.message, code=error.code, status=400) from error
        limit = self.rt.settings.max_query_cost
        if cost > limit:
            raise Refused(
                f"The query would cost {cost}; the limit is {limit}",
                code="QUERY_TOO_COMPLEX",
                extensions={"cost": cost, "maxCost": limit},
            )
        return cost

    def _too_many(self, decision: Decision, cost: int) -> Refused:
        seconds = max(1, math.ceil(decision.retry_after))
        window = self.rt.settings.rate_limit_window_seconds
        message = "Too many orders, slow down" if decision.budget == "orders" else None
        return Refused(
            message or RateLimited.default_message,
            code=RateLimited.code,
            status=429,
            headers={"Retry-After": str(seconds), **rate_limit_headers(decision, window)},
            extensions={"retryAfter": seconds, "cost": cost},
        )

    def _check_scopes(self, ctx: Context, kind: OperationType, roots: list[str]) -> None:
        if ctx.api_key is None:
            return
        root_type = self.schema.get_root_type(kind)
        fields = root_type.fields if root_type is not None else {}
        for name in roots:
            field = fields.get(name)
            if field is None:
                continue  # not in the schema: validation refuses it
            reason = denial(ctx.api_key, field_access(field), name)
            if reason is not None:
                raise Refused(reason, code=InsufficientScope.code, status=403)

    def _validates(self, document: DocumentNode) -> bool:
        rules = (*specified_rules, *rules_for(self.rt.settings))
        return not validate_document(self.schema, document, rules)


def _root_fields(operation: OperationDefinitionNode, document: DocumentNode) -> Iterator[str]:
    """Names of the operation's root fields, through fragments (introspection excluded)."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    pending, seen = [operation.selection_set], set()
    while pending:
        for selection in pending.pop().selections:
            if isinstance(selection, FieldNode):
                if not selection.name.value.startswith("__"):
                    yield selection.name.value
            elif isinstance(selection, InlineFragmentNode):
                pending.append(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = fragments.get(selection.name.value)
                if fragment is not None and fragment.name.value not in seen:
                    seen.add(fragment.name.value)
                    pending.append(fragment.selection_set)
