"""Accounts: registration, email verification, password reset, two-factor set-up."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain import totp
from app.domain.emails import normalise_display_name, normalise_email
from app.domain.passwords import check_password_policy, hash_password
from app.domain.tokens import fingerprint
from app.errors import (
    EmailAlreadyRegistered,
    EmailAlreadyVerified,
    HandleTaken,
    InvalidToken,
    InvalidTwoFactorCode,
    NotAuthenticated,
    TwoFactorAlreadyEnabled,
    TwoFactorNotEnabled,
    TwoFactorNotPending,
    ValidationFailed,
)
from app.runtime import Runtime
from app.services.credential_signals import announce_credentials_changed
from app.services.mail import password_reset_mail, verification_mail
from app.services.security_events import (
    SecurityEventKind,
    record_in_own_transaction,
    record_security_event,
)
from db.models import ApiKey, RecoveryCode, RefreshToken, User
from db.queries import get_user_by_email, lock_user
from db.session import in_transaction

log = logging.getLogger(__name__)

VERIFY_EMAIL = "verify-email"
RESET_PASSWORD = "reset-password"


@dataclass(frozen=True, slots=True)
class TwoFactorSetup:
    secret: str
    otpauth_uri: str


@dataclass(frozen=True, slots=True)
class TwoFactorConfirmed:
    user: User
    recovery_codes: list[str]  # shown this once only


async def register(*, rt: Runtime, email: str, password: str, display_name: str) -> User:
    email = normalise_email(email)
    display_name = normalise_display_name(display_name)
    check_password_policy(password, email=email, display_name=display_name)
    password_hash = await asyncio.to_thread(hash_password, password)

    async def work(session: AsyncSession) -> User | None:
        statement = (
            pg_insert(User)
            .values(email=email, display_name=display_name, password_hash=password_hash)
            .on_conflict_do_nothing(index_elements=[User.email])
            .returning(User)
        )
        return await session.scalar(statement)

    user = await in_transaction(rt.sessions, work)
    if user is None:
        raise EmailAlreadyRegistered(field="email")
    await _send_verification(rt=rt, user=user)
    return user


HANDLE_PATTERN = re.compile(r"^[a-z0-9_]{3,30}$")


async def set_handle(*, rt: Runtime, user_id: int | None, handle: str) -> User:
    """The public name others can send money to (``@handle``); lower case, unique."""
    handle = handle.strip().lower().removeprefix("@")
    if not HANDLE_PATTERN.match(handle):
        raise ValidationFailed("A handle is 3 to 30 characters: a-z, 0-9 and _", field="handle")

    async def work(session: AsyncSession) -> User:
        user = await _lock_signed_in(session, user_id)
        taken = await session.scalar(
            select(User.id).where(User.handle == handle, User.id != user.id)
        )
        if taken is not None:
            raise HandleTaken(field="handle")
        user.handle = handle
        return user

    try:
        return await in_transaction(rt.sessions, work)
    except IntegrityError as error:  # a concurrent request took it first
        raise HandleTaken(field="handle") from error


async def resend_verification_email(*, rt: Runtime, user_id: int | None) -> User:
    user = await _get_signed_in(rt=rt, user_id=user_id)
    if user.email_verified_at is not None:
        raise EmailAlreadyVerified()
    await _send_verification(rt=rt, user=user)
    return user


async def verify_email(*, rt: Runtime, token: str) -> User:
    claims = rt.signer.verify_email_token(token, purpose=VERIFY_EMAIL)

    async def work(session: AsyncSession) -> User:
        user = await lock_user(session, claims.user_id)
        if user is None or claims.fingerprint != fingerprint(user.email):
            raise InvalidToken(field="token")
        if user.email_verified_at is None:
            user.email_verified_at = rt.now()
        return user

    return await in_transaction(rt.sessions, work)


async def request_password_reset(*, rt: Runtime, email: str) -> None:
    """Succeeds for every well-formed address, whether or not it has an account
    (no enumeration)."""
    email = normalise_email(email)
    async with rt.sessions() as session:
        user = await get_user_by_email(session, email)
    if user is None:
        log.info("password reset requested for unknown address")
        return
    ttl = timedelta(minutes=rt.settings.password_reset_ttl_minutes)
    token = rt.signer.sign_email_token(
        purpose=RESET_PASSWORD,
        user_id=user.id,
        fingerprint=fingerprint(user.password_hash),
        ttl=ttl,
        now=rt.now(),
    )
    link = f"{rt.settings.public_url}/reset-password?token={quote(token)}"
    await record_in_own_transaction(
        rt, user_id=user.id, kind=SecurityEventKind.PASSWORD_RESET_REQUESTED
    )
    await rt.mailer.send(
        password_reset_mail(
            to=user.email,
            display_name=user.display_name,
            link=link,
            valid_minutes=rt.settings.password_reset_ttl_minutes,
        )
    )


async def reset_password(*, rt: Runtime, token: str, new_password: str) -> User:
    """Sets the password, revokes every refresh token and every access token issued
    before now. The token is bound to the old password hash, so it works once."""
    claims = rt.signer.verify_email_token(token, purpose=RESET_PASSWORD)

    async with rt.sessions() as session:
        current = await session.get(User, claims.user_id)
    if current is None or claims.fingerprint != fingerprint(current.password_hash):
        raise InvalidToken(field="token")
    check_password_policy(new_password, email=current.email, display_name=current.display_name)
    new_hash = await asyncio.to_thread(hash_password, new_password)

    async def work(session: AsyncSession) -> User:
        user = await lock_user(session, claims.user_id)
        if user is None or claims.fingerprint != fingerprint(user.password_hash):
            raise InvalidToken(field="token")  # used concurrently by another request
        now = rt.now()
        user.password_hash = new_hash
        user.tokens_valid_after = now
        if user.email_verified_at is None:
            user.email_verified_at = now  # the link proved control of the mailbox
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        # A reset may follow a take-over: keys the intruder made must die with the password.
        revoked_keys = await session.execute(
            update(ApiKey)
            .where(ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        await record_security_event(
            session,
            user_id=user.id,
            kind=SecurityEventKind.PASSWORD_RESET,
            details={"apiKeysRevoked": revoked_keys.rowcount},
        )
        return user

    user = await in_transaction(rt.sessions, work)
    await announce_credentials_changed(rt=rt, user_id=user.id)
    return user


async def enable_two_factor(*, rt: Runtime, user_id: int | None) -> TwoFactorSetup:
    secret = totp.new_secret()

    async def work(session: AsyncSession) -> User:
        user = await _lock_signed_in(session, user_id)
        if user.totp_secret is not None:
            raise TwoFactorAlreadyEnabled()
        user.totp_pending_secret = secret
        return user

    user = await in_transaction(rt.sessions, work)
    uri = totp.provisioning_uri(secret, account=user.email, issuer=rt.settings.totp_issuer)
    return TwoFactorSetup(secret=secret, otpauth_uri=uri)


async def confirm_two_factor(*, rt: Runtime, user_id: int | None, code: str) -> TwoFactorConfirmed:
    """Turns two-factor on and issues fresh recovery codes."""
    codes = totp.new_recovery_codes()

    async def work(session: AsyncSession) -> User:
        user = await _lock_signed_in(session, user_id)
        if user.totp_secret is not None:
            raise TwoFactorAlreadyEnabled()
        if user.totp_pending_secret is None:
            raise TwoFactorNotPending()
        step = totp.matching_step(user.totp_pending_secret, code, now=rt.now(), last_step=None)
        if step is None:
            raise InvalidTwoFactorCode(field="code")
        user.totp_secret, user.totp_pending_secret, user.totp_last_step = (
            user.totp_pending_secret,
            None,
            step,
        )
        await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        await session.execute(
            insert(RecoveryCode),
            [{"user_id": user.id, "code_hash": rt.signer.keyed_hash(c)} for c in codes],
        )
        await record_security_event(
            session, user_id=user.id, kind=SecurityEventKind.TWO_FACTOR_ENABLED
        )
        return user

    user = await in_transaction(rt.sessions, work)
    return TwoFactorConfirmed(user=user, recovery_codes=codes)


async def disable_two_factor(*, rt: Runtime, user_id: int | None, code: str) -> User:
    async def work(session: AsyncSession) -> User:
        user = await _lock_signed_in(session, user_id)
        if user.totp_secret is None:
            raise TwoFactorNotEnabled()
        if not await consume_second_factor(rt=rt, session=session, user=user, code=code):
            raise InvalidTwoFactorCode(field="code")
        user.totp_secret = user.totp_pending_secret = user.totp_last_step = None
        await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        await record_security_event(
            session, user_id=user.id, kind=SecurityEventKind.TWO_FACTOR_DISABLED
        )
        return user

    return await in_transaction(rt.sessions, work)


async def consume_second_factor(
    *, rt: Runtime, session: AsyncSession, user: User, code: str
) -> bool:
    """Accept a fresh TOTP code or an unused recovery code; either works once.

    ``user`` must be locked by the caller's transaction."""
    assert user.totp_secret is not None
    if totp.looks_like_recovery_code(code):
        used = await session.scalar(
            update(RecoveryCode)
            .where(
                RecoveryCode.user_id == user.id,
                RecoveryCode.code_hash == rt.signer.keyed_hash(totp.normalise_recovery_code(code)),
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=rt.now())
            .returning(RecoveryCode.id)
        )
        return used is not None
    step = totp.matching_step(user.totp_secret, code, now=rt.now(), last_step=user.totp_last_step)
    if step is None:
        return False
    user.totp_last_step = step
    return True


async def _send_verification(*, rt: Runtime, user: User) -> None:
    hours = rt.settings.email_token_ttl_hours
    token = rt.signer.sign_email_token(
        purpose=VERIFY_EMAIL,
        user_id=user.id,
        fingerprint=fingerprint(user.email),
        ttl=timedelta(hours=hours),
        now=rt.now(),
    )
    link = f"{rt.settings.public_url}/verify-email?token={quote(token)}"
    try:
        await rt.mailer.send(
            verification_mail(
                to=user.email, display_name=user.display_name, link=link, valid_hours=hours
            )
        )
    except Exception:
        # The account exists either way; the user can ask for the mail again.
        log.exception("verification mail not sent", extra={"user_id": user.id})


async def _get_signed_in(*, rt: Runtime, user_id: int | None) -> User:
    if user_id is None:
        raise NotAuthenticated()
    async with rt.sessions() as session:
        user = await session.scalar(select(User).where(User.id == user_id))
    if user is None:
        raise NotAuthenticated()
    return user


async def _lock_signed_in(session: AsyncSession, user_id: int | None) -> User:
    if user_id is None:
        raise NotAuthenticated()
    user = await lock_user(session, user_id)
    if user is None:
        raise NotAuthenticated()
    return user
