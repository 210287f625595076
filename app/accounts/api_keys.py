"""Partner API keys: create (the secret is returned once; only its SHA-256 is stored),
list, revoke, and authenticate the ``X-API-Key`` header."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.accounts import Reauthentication, check_reauthentication
from app.accounts.credential_signals import announce_credentials_changed
from app.accounts.domain import api_keys as rules
from app.accounts.domain.api_keys import Scope
from app.accounts.security_events import SecurityEventKind, record_security_event
from app.core.errors import (
    ApiKeyExpired,
    ApiKeyIpNotAllowed,
    ApiKeyRevoked,
    InvalidApiKey,
    NotAuthenticated,
    NotFound,
    ValidationFailed,
)
from app.runtime import Runtime
from db.models import ApiKey, User
from db.queries import Page, keyset_page, lock_user
from db.session import in_transaction


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    key: ApiKey
    secret: str  # shown this once only


@dataclass(frozen=True, slots=True)
class ApiKeyAuth:
    """A request authenticated by an API key: the key and its owner."""

    key: ApiKey
    user: User

    @property
    def scopes(self) -> frozenset[Scope]:
        return frozenset(Scope(s) for s in self.key.scopes)


async def create_api_key(
    *,
    rt: Runtime,
    user_id: int | None,
    proof: Reauthentication,
    name: str,
    scopes: Iterable[Scope],
    expires_at: datetime | None = None,
    allowed_ips: Iterable[str] = (),
    trusted_documents_only: bool = False,
) -> CreatedApiKey:
    """Needs the password again (and a two-factor code when two-factor is on)."""
    name = rules.normalise_name(name)
    chosen = rules.normalise_scopes(scopes)
    expires_at = rules.check_expiry(expires_at, now=rt.now())
    networks = rules.normalise_networks(allowed_ips)
    secret = rules.new_secret()

    async def work(session: AsyncSession) -> ApiKey:
        user = await _lock_signed_in(session, user_id)  # serialises the active-key count
        await check_reauthentication(rt=rt, session=session, user=user, proof=proof)
        if await _active_count(session, user.id, now=rt.now()) >= rules.MAX_ACTIVE_KEYS:
            raise ValidationFailed(
                f"You have {rules.MAX_ACTIVE_KEYS} active API keys: revoke one first"
            )
        key = ApiKey(
            user_id=user.id,
            name=name,
            prefix=secret[: rules.SHOWN_PREFIX_LENGTH],
            secret_hash=rules.hash_secret(secret),
            scopes=chosen,
            allowed_ips=networks,
            trusted_documents_only=trusted_documents_only,
            expires_at=expires_at,
        )
        session.add(key)
        await session.flush()
        await record_security_event(
            session,
            user_id=user.id,
            kind=SecurityEventKind.API_KEY_CREATED,
            details={"apiKeyId": key.id, "name": name, "scopes": chosen, "prefix": key.prefix},
        )
        await session.refresh(key)
        return key

    return CreatedApiKey(key=await in_transaction(rt.sessions, work), secret=secret)


async def revoke_api_key(*, rt: Runtime, user_id: int | None, api_key_id: int) -> ApiKey:
    """Idempotent: revoking a revoked key returns it unchanged (and records nothing)."""

    async def work(session: AsyncSession) -> ApiKey:
        user = await _lock_signed_in(session, user_id)
        key = await session.scalar(
            select(ApiKey)
            .where(ApiKey.id == api_key_id, ApiKey.user_id == user.id)
            .with_for_update()
        )
        if key is None:
            raise NotFound("No such API key", field="id")
        if key.revoked_at is None:
            key.revoked_at = rt.now()
            await record_security_event(
                session,
                user_id=user.id,
                kind=SecurityEventKind.API_KEY_REVOKED,
                details={"apiKeyId": key.id, "name": key.name, "prefix": key.prefix},
            )
        return key

    key = await in_transaction(rt.sessions, work)
    await announce_credentials_changed(rt=rt, user_id=key.user_id)
    return key


async def list_api_keys(
    session: AsyncSession, *, user_id: int, first: int, after: str | None
) -> Page[ApiKey]:
    """Newest first, revoked ones included."""
    statement = select(ApiKey).where(ApiKey.user_id == user_id)
    return await keyset_page(
        session, statement, key=ApiKey.id, first=first, after=after, descending=True
    )


async def authenticate_api_key(*, rt: Runtime, secret: str, client_ip: str | None) -> ApiKeyAuth:
    """The key and its owner, or ``InvalidApiKey`` (unknown, revoked, expired, or used
    from an address outside its allowlist). Records the last use at most once per
    ``api_key_last_used_interval_seconds`` per key, so a busy key does not write on
    every request."""
    if not rules.looks_like_secret(secret):
        raise InvalidApiKey()
    found = await _usable(rt, ApiKey.secret_hash == rules.hash_secret(secret), client_ip)
    await _note_use(rt, found.key, client_ip=client_ip, now=rt.now())
    return found


async def reauthenticate_api_key(*, rt: Runtime, key_id: int, client_ip: str | None) -> ApiKeyAuth:
    """The key ``authenticate_api_key`` accepted, as it is now (revoked? expired? its
    owner re-read): a WebSocket, which outlives that moment, calls this before each
    operation. ``InvalidApiKey`` as there."""
    return await _usable(rt, ApiKey.id == key_id, client_ip)


async def _usable(rt: Runtime, which: ColumnElement[bool], client_ip: str | None) -> ApiKeyAuth:
    async with rt.sessions() as session:
        row = (
            await session.execute(
                select(ApiKey, User).join(User, User.id == ApiKey.user_id).where(which)
            )
        ).first()
    if row is None:
        raise InvalidApiKey()
    key, user = row
    if key.revoked_at is not None:
        raise ApiKeyRevoked()
    if key.expires_at is not None and key.expires_at <= rt.now():
        raise ApiKeyExpired()
    if not rules.ip_allowed(key.allowed_ips, client_ip):
        raise ApiKeyIpNotAllowed()
    return ApiKeyAuth(key=key, user=user)


async def _note_use(rt: Runtime, key: ApiKey, *, client_ip: str | None, now: datetime) -> None:
    interval = rt.settings.api_key_last_used_interval_seconds
    marker = rt.redis_key("api-key-used", str(key.id))
    if not await rt.redis.set(marker, b"1", nx=True, ex=interval):
        return  # recorded less than ``interval`` seconds ago
    async with rt.sessions() as session, session.begin():
        await session.execute(
            update(ApiKey)
            .where(ApiKey.id == key.id)
            .values(last_used_at=now, last_used_ip=client_ip)
        )
    key.last_used_at, key.last_used_ip = now, client_ip


async def _active_count(session: AsyncSession, user_id: int, *, now: datetime) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(ApiKey)
        .where(
            ApiKey.user_id == user_id,
            ApiKey.revoked_at.is_(None),
            (ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > now),
        )
    )
    return int(count or 0)


async def _lock_signed_in(session: AsyncSession, user_id: int | None) -> User:
    if user_id is None:
        raise NotAuthenticated()
    user = await lock_user(session, user_id)
    if user is None:
        raise NotAuthenticated()
    return user
