"""Sign-in sessions: login, refresh-token rotation with theft detection, logout,
and authentication of access tokens."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import rate_limits
from app.accounts.accounts import consume_second_factor
from app.accounts.credential_signals import announce_credentials_changed
from app.accounts.domain.emails import normalise_email
from app.accounts.domain.passwords import hash_password, needs_rehash, verify_password
from app.accounts.domain.tokens import AccessClaims, hash_opaque_token, new_opaque_token
from app.accounts.security_events import (
    SecurityEventKind,
    record_in_own_transaction,
    record_security_event,
)
from app.core.coalesce import Coalescer
from app.core.errors import (
    InvalidCredentials,
    InvalidRefreshToken,
    InvalidToken,
    InvalidTwoFactorCode,
    RefreshTokenReused,
    TwoFactorRequired,
    ValidationFailed,
)
from app.runtime import Runtime
from db.models import RefreshToken, User
from db.queries import get_user_by_email, lock_user, users_by_ids
from db.session import in_transaction


@dataclass(frozen=True, slots=True)
class SignedIn:
    user: User
    access_token: str
    access_token_expires_at: datetime
    refresh_token: str
    refresh_token_expires_at: datetime


@dataclass(frozen=True, slots=True)
class Authenticated:
    user: User
    claims: AccessClaims


async def login(
    *, rt: Runtime, email: str, password: str, totp_code: str | None, client_ip: str | None = None
) -> SignedIn:
    """Unknown email and wrong password give the same error after the same work.

    Attempts are rate limited per account and per client IP, with back-off after
    consecutive failures (``RateLimited``); successes and failures are security events."""
    await rate_limits.begin_login(rt, email=email, client_ip=client_ip)
    attempted = email
    try:
        email = normalise_email(email)
    except ValidationFailed:
        email = ""
    async with rt.sessions() as session:
        user = await get_user_by_email(session, email) if email else None
    password_ok = await asyncio.to_thread(
        verify_password, user.password_hash if user else None, password
    )
    if user is None or not password_ok:
        await _login_failed(rt, email=attempted, user_id=user.id if user else None)
        raise InvalidCredentials()
    rehash = (
        await asyncio.to_thread(hash_password, password)
        if needs_rehash(user.password_hash)
        else None
    )

    async def work(session: AsyncSession) -> SignedIn:
        locked = await lock_user(session, user.id)
        if locked is None:
            raise InvalidCredentials()
        if locked.totp_secret is not None:
            if not totp_code:
                raise TwoFactorRequired(field="totpCode")
            if not await consume_second_factor(rt=rt, session=session, user=locked, code=totp_code):
                raise InvalidTwoFactorCode(field="totpCode")
        if rehash:
            locked.password_hash = rehash
        await record_security_event(
            session, user_id=locked.id, kind=SecurityEventKind.LOGIN_SUCCEEDED
        )
        return await _issue(rt=rt, session=session, user=locked, family_id=uuid.uuid4())

    try:
        signed_in = await in_transaction(rt.sessions, work)
    except InvalidTwoFactorCode:
        await _login_failed(rt, email=attempted, user_id=user.id, reason="INVALID_TWO_FACTOR_CODE")
        raise
    await rate_limits.login_succeeded(rt, email=attempted)
    return signed_in


async def _login_failed(
    rt: Runtime, *, email: str, user_id: int | None, reason: str = "INVALID_CREDENTIALS"
) -> None:
    await rate_limits.login_failed(rt, email=email)
    await record_in_own_transaction(
        rt, user_id=user_id, kind=SecurityEventKind.LOGIN_FAILED, details={"reason": reason}
    )


async def refresh(*, rt: Runtime, refresh_token: str) -> SignedIn:
    """Rotate: the presented token is spent and a new one issued in the same family.
    A spent token presented again means it was copied: the whole family is revoked."""
    token_hash = hash_opaque_token(refresh_token)

    async def work(session: AsyncSession) -> SignedIn | None:
        row = await session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
        )
        now = rt.now()
        if row is None or row.revoked_at is not None or row.expires_at <= now:
            raise InvalidRefreshToken(field="refreshToken")
        if row.used_at is not None:
            await _revoke_family(session, row.family_id, now=now)
            return None  # committed, then reported as reuse
        user = await lock_user(session, row.user_id)
        if user is None:
            raise InvalidRefreshToken(field="refreshToken")
        row.used_at = now
        return await _issue(rt=rt, session=session, user=user, family_id=row.family_id)

    signed_in = await in_transaction(rt.sessions, work)
    if signed_in is None:
        raise RefreshTokenReused(field="refreshToken")
    return signed_in


async def logout(
    *,
    rt: Runtime,
    auth: Authenticated | None,
    refresh_token: str | None,
    everywhere: bool,
) -> None:
    """Revoke the presented refresh token's family and the current access token;
    with ``everywhere`` every session of the user."""
    if auth is None and refresh_token is None:
        raise InvalidRefreshToken("Give a refresh token or sign in", field="refreshToken")
    now = rt.now()

    async def work(session: AsyncSession) -> int:
        if refresh_token is not None:
            row = await session.scalar(
                select(RefreshToken).where(
                    RefreshToken.token_hash == hash_opaque_token(refresh_token)
                )
            )
            if row is None or (auth is not None and row.user_id != auth.user.id):
                raise InvalidRefreshToken(field="refreshToken")
            await _revoke_family(session, row.family_id, now=now)
        if everywhere and auth is not None:
            await session.execute(
                update(RefreshToken)
                .where(RefreshToken.user_id == auth.user.id, RefreshToken.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            await session.execute(
                update(User).where(User.id == auth.user.id).values(tokens_valid_after=now)
            )
        return auth.user.id if auth is not None else row.user_id

    user_id = await in_transaction(rt.sessions, work)
    if auth is not None:
        remaining = int((auth.claims.expires_at - now).total_seconds()) + 1
        if remaining > 0:
            await rt.redis.set(_denylist_key(rt, auth.claims.jti), b"1", ex=remaining)
    await announce_credentials_changed(rt=rt, user_id=user_id)


async def authenticate(*, rt: Runtime, access_token: str) -> Authenticated:
    """Verify signature, expiry, revocation (logout) and the user's token cut-off."""
    return await reauthenticate(rt=rt, claims=rt.signer.decode_access(access_token))


async def reauthenticate(*, rt: Runtime, claims: AccessClaims) -> Authenticated:
    """The session of verified ``claims`` as it is now: revoked (logout), cut off (logout
    everywhere, password reset), and its user re-read (role). A WebSocket, which outlives
    the moment its token was verified, calls this before each operation; expiry is the
    caller's to check against ``claims.expires_at``."""
    checks = rt.coalescer("token_checks", lambda: Coalescer(_token_checks(rt), max_batch=500))
    revoked, user = await checks.submit(claims)
    if revoked or user is None or claims.issued_at < user.tokens_valid_after:
        raise InvalidToken("The access token was revoked")
    return Authenticated(user=user, claims=claims)


def _token_checks(
    rt: Runtime,
) -> Callable[[list[AccessClaims]], Awaitable[list[tuple[bool, User | None]]]]:
    """For the tokens of the requests authenticating at the same moment: whether each is
    on the denylist (logout) and its user, in one Redis round trip and one query, run at
    the same time. A failure of either is raised as itself once the other has ended."""

    async def run(tokens: list[AccessClaims]) -> list[tuple[bool, User | None]]:
        try:
            async with asyncio.TaskGroup() as tasks:
                revoked = tasks.create_task(_denylisted(rt, tokens))
                users = tasks.create_task(_users(rt, {c.user_id for c in tokens}))
        except ExceptionGroup as failed:  # the other was cancelled and has ended
            raise failed.exceptions[0] from None  # as the caller saw it before
        by_id = {u.id: u for u in users.result() if u is not None}
        return [
            (bool(r), by_id.get(c.user_id)) for r, c in zip(revoked.result(), tokens, strict=True)
        ]

    return run


async def _denylisted(rt: Runtime, tokens: list[AccessClaims]) -> list[Any]:
    async with rt.redis.pipeline(transaction=False) as pipe:
        for claims in tokens:
            pipe.exists(_denylist_key(rt, claims.jti))
        return await pipe.execute()


async def _users(rt: Runtime, user_ids: set[int]) -> list[User | None]:
    async with rt.reads() as session:
        return await users_by_ids(session, sorted(user_ids))


async def _issue(
    *, rt: Runtime, session: AsyncSession, user: User, family_id: uuid.UUID
) -> SignedIn:
    now = rt.now()
    opaque = new_opaque_token()
    refresh_expires = now + timedelta(days=rt.settings.refresh_token_ttl_days)
    session.add(
        RefreshToken(
            user_id=user.id,
            family_id=family_id,
            token_hash=hash_opaque_token(opaque),
            expires_at=refresh_expires,
        )
    )
    access = rt.signer.issue_access(user_id=user.id, role=user.role, now=now)
    await session.flush()
    return SignedIn(
        user=user,
        access_token=access.token,
        access_token_expires_at=access.claims.expires_at,
        refresh_token=opaque,
        refresh_token_expires_at=refresh_expires,
    )


async def _revoke_family(session: AsyncSession, family_id: uuid.UUID, *, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def _denylist_key(rt: Runtime, jti: str) -> str:
    return rt.redis_key("revoked-jti", jti)
