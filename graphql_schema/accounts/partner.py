"""Partner access types: API keys and the security event trail."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, TypeAlias

import strawberry
from strawberry import relay
from strawberry.scalars import JSON
from strawberry.types import Info

from app.accounts.domain.api_keys import Scope
from app.accounts.security_events import SecurityEventKind as DomainEventKind
from db.models import ApiKey as ApiKeyRow
from db.models import SecurityEvent as SecurityEventRow
from graphql_schema.accounts.types import User
from graphql_schema.enums import derived_enum
from graphql_schema.errors import (
    InvalidCredentials,
    InvalidTwoFactorCode,
    NotAuthenticated,
    NotFound,
    RateLimited,
    TwoFactorRequired,
    ValidationFailed,
)

API_KEY_NODE = "ApiKey"

ApiKeyScope = derived_enum(
    Scope,
    name="ApiKeyScope",
    description="What an API key may do. Account security, money movement and "
    "administration are never possible with a key.",
)
SecurityEventKind = derived_enum(DomainEventKind, name="SecurityEventKind")


@strawberry.type
class ApiKey:
    """A key for server-to-server access; send it as the ``X-API-Key`` header."""

    id: strawberry.ID
    name: str
    prefix: str = strawberry.field(description="The secret's first characters.")
    scopes: list[ApiKeyScope]  # type: ignore[valid-type]
    allowed_ips: list[str] = strawberry.field(
        description="Addresses or CIDR networks it may be used from; empty: any."
    )
    trusted_documents_only: bool = strawberry.field(
        description="Only documents of the trusted-documents manifest run with it."
    )
    expires_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None = strawberry.field(description="Recorded at most once a minute.")
    last_used_ip: str | None
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: ApiKeyRow) -> ApiKey:
        return cls(
            id=strawberry.ID(relay.to_base64(API_KEY_NODE, row.id)),
            name=row.name,
            prefix=row.prefix,
            scopes=[ApiKeyScope(s) for s in row.scopes],
            allowed_ips=list(row.allowed_ips),
            trusted_documents_only=row.trusted_documents_only,
            expires_at=row.expires_at,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            last_used_ip=row.last_used_ip,
            revoked_at=row.revoked_at,
        )


@strawberry.type
class ApiKeyEdge:
    cursor: str
    node: ApiKey


@strawberry.type
class ApiKeyConnection:
    edges: list[ApiKeyEdge]
    page_info: relay.PageInfo


@strawberry.type
class CreateApiKeyPayload:
    api_key: ApiKey
    secret: str = strawberry.field(
        description="Send it as X-API-Key. Shown this once: only its hash is stored."
    )


@strawberry.type
class ApiKeyPayload:
    api_key: ApiKey


@strawberry.type
class SecurityEvent:
    """Something security-relevant that happened to an account."""

    id: strawberry.ID
    kind: SecurityEventKind  # type: ignore[valid-type]
    ip_address: str | None
    user_agent: str | None
    details: JSON
    created_at: datetime
    user_id: strawberry.Private[int | None]

    @strawberry.field(description="Null for a failed login on an unknown address.")
    async def user(self, info: Info) -> User | None:
        if self.user_id is None:
            return None
        row = await info.context.loaders.user_by_id.load(self.user_id)
        return User.from_row(row) if row is not None and info.context.can_see_user(row.id) else None

    @classmethod
    def from_row(cls, row: SecurityEventRow) -> SecurityEvent:
        details: Any = row.details
        return cls(
            id=strawberry.ID(str(row.id)),
            kind=SecurityEventKind(row.kind),
            ip_address=row.ip_address,
            user_agent=row.user_agent,
            details=details,
            created_at=row.created_at,
            user_id=row.user_id,
        )


@strawberry.type
class SecurityEventEdge:
    cursor: str
    node: SecurityEvent


@strawberry.type
class SecurityEventConnection:
    edges: list[SecurityEventEdge]
    page_info: relay.PageInfo


CreateApiKeyResult: TypeAlias = Annotated[
    CreateApiKeyPayload
    | ValidationFailed
    | NotAuthenticated
    | InvalidCredentials
    | TwoFactorRequired
    | InvalidTwoFactorCode
    | RateLimited,
    strawberry.union("CreateApiKeyResult"),
]
RevokeApiKeyResult: TypeAlias = Annotated[
    ApiKeyPayload | ValidationFailed | NotAuthenticated | NotFound,
    strawberry.union("RevokeApiKeyResult"),
]
