"""Cache-Control for GraphQL answers over HTTP.

Public market data asked the same way by everyone may be cached by browsers and CDNs for
a few seconds (``PUBLIC_QUERY_CACHE_SECONDS``): a persisted query (an APQ hash or a
trusted ``documentId``: a stable URL) over GET, by an anonymous caller (no
Authorization, X-API-Key or cookie), answered without errors, whose root fields are all
public market data (declared ``public()`` or ``requires_scope(READ_MARKET_DATA)`` in
graphql_schema/gateway/access.py). Everything else is ``private, no-store`` (the view's
default).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphql import (
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    OperationType,
    get_operation_ast,
)

from app.accounts.domain.api_keys import Scope
from app.core.errors import UserError
from app.core.settings import Settings
from graphql_schema.gateway.access import field_access
from graphql_schema.gateway.limits import parse_document

VARY = "Authorization, X-API-Key, Cookie"
_CREDENTIALS = ("authorization", "x-api-key", "cookie")
_PUBLIC_SCOPES = frozenset({None, Scope.READ_MARKET_DATA})


def public_cache_control(
    *,
    settings: Settings,
    schema: GraphQLSchema,
    method: str,
    headers: Mapping[str, str],
    persisted: bool,
    query: str | None,
    operation_name: str | None,
    errors: list[GraphQLError] | None,
) -> str | None:
    """``public, max-age=N`` when the answer may be shared, else None."""
    seconds = settings.public_query_cache_seconds
    if seconds <= 0 or method != "GET" or not persisted or errors or query is None:
        return None
    if any(headers.get(name) for name in _CREDENTIALS):
        return None
    if not _public_market_data(schema, query, operation_name, settings.max_query_tokens):
        return None
    return f"public, max-age={seconds}"


def is_persisted(extensions: Any, document_id: Any) -> bool:
    return document_id is not None or (
        isinstance(extensions, dict) and "persistedQuery" in extensions
    )


def _public_market_data(
    schema: GraphQLSchema, query: str, operation_name: str | None, max_tokens: int
) -> bool:
    """A query whose root fields (listed directly: a fragment at the root is not looked
    into, so it is not public) are all public market data."""
    try:
        document = parse_document(query, max_tokens=max_tokens)  # cached
    except (GraphQLError, UserError):
        return False
    operation = get_operation_ast(document, operation_name)
    if operation is None or operation.operation is not OperationType.QUERY:
        return False
    fields = schema.query_type.fields if schema.query_type else {}
    for selection in operation.selection_set.selections:
        if not isinstance(selection, FieldNode):
            return False
        name = selection.name.value
        if name == "__typename":
            continue
        access = field_access(fields[name]) if name in fields else None
        if access is None or access.session_only or access.scope not in _PUBLIC_SCOPES:
            return False
    return True
