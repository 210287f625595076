"""Helpers for the partner-access tests: API keys, clients with other settings,
persisted-query request bodies, a manifest of trusted documents."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import strawberry

from app.accounts.domain.api_keys import Scope
from app.asgi import create_app
from app.runtime import Runtime
from graphql_schema.gateway.access import public, requires_scope
from graphql_schema.gateway.extensions import ErrorPolicy
from graphql_schema.gateway.limits import DocumentParser, QueryLimits
from graphql_schema.gateway.view import GraphQLView
from tests.support import GraphQLClient
from tests.support.documents import ERROR_FIELDS, PASSWORD

CREATE_API_KEY = (
    "mutation($name: String!, $scopes: [ApiKeyScope!]!, $expiresAt: DateTime,"
    " $allowedIps: [String!], $trusted: Boolean! = false,"
    f' $password: String! = "{PASSWORD}", $totp: String) {{'
    " createApiKey(name: $name, scopes: $scopes, expiresAt: $expiresAt,"
    " allowedIps: $allowedIps, trustedDocumentsOnly: $trusted,"
    " password: $password, totpCode: $totp) {"
    " __typename ... on CreateApiKeyPayload { secret apiKey { id name prefix scopes allowedIps"
    " trustedDocumentsOnly expiresAt lastUsedAt revokedAt } }"
    f" {ERROR_FIELDS} ... on ValidationFailed {{ field }} }} }}"
)
REVOKE_API_KEY = (
    "mutation($id: ID!) { revokeApiKey(id: $id) { __typename"
    f" ... on ApiKeyPayload {{ apiKey {{ id revokedAt }} }} {ERROR_FIELDS} }} }}"
)
API_KEYS = (
    "query($first: Int! = 20, $after: String) { apiKeys(first: $first, after: $after) {"
    " edges { cursor node { id name prefix scopes lastUsedAt lastUsedIp revokedAt } }"
    " pageInfo { hasNextPage endCursor } } }"
)
SECURITY_EVENTS = (
    "query($first: Int! = 20, $after: String, $userId: ID) {"
    " securityEvents(first: $first, after: $after, userId: $userId) {"
    " edges { cursor node { id kind ipAddress userAgent details createdAt user { email } } }"
    " pageInfo { hasNextPage endCursor } } }"
)
ME_EMAIL = "{ me { email } }"
CURRENCIES = "{ currencies { code } }"


async def create_key(
    gql: GraphQLClient, token: str, scopes: list[str], **options: Any
) -> tuple[str, dict[str, Any]]:
    """(secret, apiKey) of a new key of the user signed in with ``token``."""
    variables = {"name": options.pop("name", "partner"), "scopes": scopes, **options}
    data = await gql.data(CREATE_API_KEY, variables, token=token)
    created = data["createApiKey"]
    assert created["__typename"] == "CreateApiKeyPayload", created
    return created["secret"], created["apiKey"]


def key_header(secret: str) -> dict[str, str]:
    return {"x-api-key": secret}


def with_settings(rt: Runtime, **overrides: Any) -> Runtime:
    """The test runtime (same database, Redis and pools) with other settings."""
    return dataclasses.replace(rt, settings=rt.settings.model_copy(update=overrides))


@contextlib.asynccontextmanager
async def client_with(rt: Runtime, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for an app built on ``rt`` with other settings."""
    app = create_app(runtime=with_settings(rt, **overrides))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def apq_extensions(query: str, *, version: int = 1) -> dict[str, Any]:
    return {"persistedQuery": {"version": version, "sha256Hash": sha256(query)}}


def write_manifest(path: Path, operations: dict[str, str]) -> Path:
    """An Apollo persisted-query manifest of ``{name: body}`` (ids: SHA-256 of the body)."""
    manifest = {
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": [
            {"id": sha256(body), "name": name, "type": _kind(body), "body": body}
            for name, body in operations.items()
        ],
    }
    path.write_text(json.dumps(manifest), encoding="utf-8")
    return path


def _kind(body: str) -> str:
    head = body.lstrip().split(None, 1)[0] if body.strip() else "query"
    return head if head in ("mutation", "subscription") else "query"


# A small schema served by the real view: the trading fields to come (TRADE scope, the
# order budget), a field without an access declaration, and a slow query (timeouts).


@strawberry.type
class _TradingQuery:
    server_time: str = strawberry.field(resolver=lambda: "now", extensions=public())
    undeclared: str = strawberry.field(resolver=lambda: "open to sessions only")

    @strawberry.field(extensions=public())
    async def slow(self, seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds


@strawberry.type
class _TradingMutation:
    @strawberry.mutation(extensions=requires_scope(Scope.TRADE))
    def place_order(self) -> str:
        return "placed"


trading_schema = strawberry.Schema(
    query=_TradingQuery,
    mutation=_TradingMutation,
    extensions=[ErrorPolicy, DocumentParser, QueryLimits],
)


@contextlib.asynccontextmanager
async def trading_client(rt: Runtime, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    view = GraphQLView(schema=trading_schema, rt=with_settings(rt, **overrides))
    transport = httpx.ASGITransport(app=view)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
