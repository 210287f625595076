"""API keys and the security event trail."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from app.accounts import api_keys
from app.accounts.accounts import Reauthentication
from app.accounts.domain.api_keys import Scope
from app.accounts.security_events import list_security_events
from app.core.errors import Forbidden
from db.models import ApiKey as ApiKeyRow
from graphql_schema.accounts.partner import (
    API_KEY_NODE,
    ApiKey,
    ApiKeyConnection,
    ApiKeyEdge,
    ApiKeyPayload,
    ApiKeyScope,
    CreateApiKeyPayload,
    CreateApiKeyResult,
    RevokeApiKeyResult,
    SecurityEvent,
    SecurityEventConnection,
    SecurityEventEdge,
)
from graphql_schema.gateway.context import Context
from graphql_schema.ids import node_pk
from graphql_schema.paging import page_info
from resolvers.common import attempt

Ctx = Info[Context, None]


async def create_api_key(
    info: Ctx,
    name: str,
    scopes: list[ApiKeyScope],  # type: ignore[valid-type]
    password: str,
    expires_at: datetime | None = None,
    allowed_ips: list[str] | None = None,
    trusted_documents_only: bool = False,
    totp_code: str | None = None,
) -> CreateApiKeyResult:
    """A key for server-to-server access with the given scopes. The secret is in the
    answer only: store it now. ``allowedIps``: addresses or CIDR networks (default any).
    Needs your ``password`` again (and ``totpCode`` when two-factor is on)."""
    ctx = info.context
    proof = Reauthentication(password=password, totp_code=totp_code, client_ip=ctx.client_ip)
    call = api_keys.create_api_key(
        rt=ctx.rt,
        user_id=ctx.user_id,
        proof=proof,
        name=name,
        scopes=[Scope(s.value) for s in scopes],
        expires_at=expires_at,
        allowed_ips=allowed_ips or (),
        trusted_documents_only=trusted_documents_only,
    )
    return await attempt(
        ctx.rate_limited(call),
        lambda c: CreateApiKeyPayload(api_key=ApiKey.from_row(c.key), secret=c.secret),
    )


async def revoke_api_key(info: Ctx, id: strawberry.ID) -> RevokeApiKeyResult:
    """The key stops working at once."""

    async def call() -> ApiKeyRow:
        return await api_keys.revoke_api_key(
            rt=info.context.rt,
            user_id=info.context.user_id,
            api_key_id=node_pk(id, API_KEY_NODE, field="id"),
        )

    return await attempt(call(), lambda row: ApiKeyPayload(api_key=ApiKey.from_row(row)))


async def my_api_keys(info: Ctx, first: int = 20, after: str | None = None) -> ApiKeyConnection:
    """Your API keys, newest first (revoked ones included)."""
    ctx = info.context
    user = ctx.require_user()
    async with ctx.rt.sessions() as session:
        page = await api_keys.list_api_keys(session, user_id=user.id, first=first, after=after)
    edges = [ApiKeyEdge(cursor=c, node=ApiKey.from_row(r)) for c, r in page.items]
    return ApiKeyConnection(edges=edges, page_info=page_info(page))


async def security_events(
    info: Ctx, first: int = 20, after: str | None = None, user_id: strawberry.ID | None = None
) -> SecurityEventConnection:
    """Your security events, newest first. Admins see everyone's, or one user's."""
    ctx = info.context
    user = ctx.require_user()
    whose = node_pk(user_id, "User", field="userId") if user_id is not None else None
    if not ctx.is_admin:
        if whose not in (None, user.id):
            raise Forbidden()
        whose = user.id
    async with ctx.rt.sessions() as session:
        page = await list_security_events(session, user_id=whose, first=first, after=after)
    edges = [SecurityEventEdge(cursor=c, node=SecurityEvent.from_row(r)) for c, r in page.items]
    return SecurityEventConnection(edges=edges, page_info=page_info(page))
