"""Accounts: registration, email verification, password reset and change, email change,
two-factor set-up.

No enumeration: ``register`` and ``request_password_reset`` give the same answer, do the
same work and send one mail whether or not the address has an account. Account mails
draw from a per-address budget (``rate_limits.draw_mail``). Security-sensitive changes
(two-factor on or off, a new API key, password or email change) need the password again,
plus a two-factor code when two-factor is on (``Reauthentication``)."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import rate_limits
from app.accounts.credential_signals import announce_credentials_changed
from app.accounts.domain import totp
from app.accounts.domain.emails import normalise_display_name, normalise_email
from app.accounts.domain.passwords import check_password_policy, hash_password, verify_password
from app.accounts.domain.tokens import fingerprint
from app.accounts.security_events import (
    SecurityEventKind,
    record_in_own_transaction,
    record_security_event,
)
from app.adapters.mail import (
    Mail,
    email_change_mail,
    email_change_notice_mail,
    password_reset_mail,
    password_reset_unknown_address_mail,
    registration_attempt_mail,
    verification_mail,
)
from app.core.errors import (
    EmailAlreadyRegistered,
    EmailAlreadyVerified,
    HandleTaken,
    InvalidCredentials,
    InvalidToken,
    InvalidTwoFactorCode,
    NotAuthenticated,
    TwoFactorAlreadyEnabled,
    TwoFactorNotEnabled,
    TwoFactorNotPending,
    TwoFactorRequired,
    ValidationFailed,
    WeakPassword,
)
from app.runtime import Runtime
from db.models import ApiKey, RecoveryCode, RefreshToken, User
from db.queries import get_user_by_email, lock_user
from db.session import in_transaction

log = logging.getLogger(__name__)

VERIFY_EMAIL = "verify-email"
RESET_PASSWORD = "reset-password"
CHANGE_EMAIL = "change-email"


@dataclass(frozen=True, slots=True)
class Reauthentication:
    """The password again (and the two-factor code when two-factor is on), given with a
    security-sensitive change; ``*_field`` name the inputs in errors."""

    password: str
    totp_code: str | None = None
    client_ip: str | None = None
    password_field: str = "password"
    totp_field: str = "totpCode"


@dataclass(frozen=True, slots=True)
class TwoFactorSetup:
    secret: str
    otpauth_uri: str


@dataclass(frozen=True, slots=True)
class TwoFactorConfirmed:
    user: User
    recovery_codes: list[str]  # shown this once only


async def register(*, rt: Runtime, email: str, password: str, display_name: str) -> str:
    """The normalised address. A new address gets an account and a verification link;
    an address with an account gets a notice instead (same answer, same work, one mail)."""
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
        await _send_within_budget(rt, registration_attempt_mail(to=email))
    else:
        await _send_within_budget(rt, _verification_mail(rt, user))
    return email


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
    await _send_within_budget(rt, _verification_mail(rt, user), refuse=True)
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
    """Succeeds for every well-formed address, with the same work (one lookup, a signed
    token, one security event, one mail) whether or not it has an account: an unknown
    address gets a mail saying it has no account (no enumeration)."""
    email = normalise_email(email)
    async with rt.sessions() as session:
        user = await get_user_by_email(session, email)
    minutes = rt.settings.password_reset_ttl_minutes
    token = rt.signer.sign_email_token(
        purpose=RESET_PASSWORD,
        user_id=user.id if user else 0,
        fingerprint=fingerprint(user.password_hash if user else email),
        ttl=timedelta(minutes=minutes),
        now=rt.now(),
    )
    await record_in_own_transaction(
        rt, user_id=user.id if user else None, kind=SecurityEventKind.PASSWORD_RESET_REQUESTED
    )
    if user is None:
        mail = password_reset_unknown_address_mail(to=email)
    else:
        link = f"{rt.settings.public_url}/reset-password?token={quote(token)}"
        mail = password_reset_mail(
            to=user.email, display_name=user.display_name, link=link, valid_minutes=minutes
        )
    await _send_within_budget(rt, mail)


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
        if user.email_verified_at is None:
            user.email_verified_at = now  # the link proved control of the mailbox
        await _set_password(
            session, user=user, new_hash=new_hash, now=now, kind=SecurityEventKind.PASSWORD_RESET
        )
        return user

    user = await in_transaction(rt.sessions, work)
    await announce_credentials_changed(rt=rt, user_id=user.id)
    return user


async def _set_password(
    session: AsyncSession, *, user: User, new_hash: str, now: datetime, kind: SecurityEventKind
) -> None:
    """A new password (reset or change) for ``user`` (locked): every session and API key
    is revoked and the security event recorded, in the caller's transaction."""
    user.password_hash = new_hash
    revoked_keys = await revoke_sessions_and_api_keys(session, user=user, now=now)
    await record_security_event(
        session, user_id=user.id, kind=kind, details={"apiKeysRevoked": revoked_keys}
    )


async def revoke_sessions_and_api_keys(session: AsyncSession, *, user: User, now: datetime) -> int:
    """After a new password (reset or change): every refresh token, every access token
    issued before ``now`` and every API key of ``user`` (locked) stop working. A new
    password may follow a take-over: keys the intruder made must die with the old one.
    Returns the number of API keys revoked."""
    user.tokens_valid_after = now
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    revoked_keys = await session.execute(
        update(ApiKey)
        .where(ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return revoked_keys.rowcount


async def change_password(
    *, rt: Runtime, user_id: int | None, new_password: str, proof: Reauthentication
) -> User:
    """Like a reset, every session and API key is revoked, this one's included: the
    client signs in again with the new password."""
    current = await _get_signed_in(rt=rt, user_id=user_id)
    try:
        check_password_policy(new_password, email=current.email, display_name=current.display_name)
    except WeakPassword as error:
        error.field = "newPassword"
        raise
    new_hash = await asyncio.to_thread(hash_password, new_password)

    async def work(session: AsyncSession) -> User:
        user = await _lock_signed_in(session, user_id)
        await check_reauthentication(rt=rt, session=session, user=user, proof=proof)
        await _set_password(
            session,
            user=user,
            new_hash=new_hash,
            now=rt.now(),
            kind=SecurityEventKind.PASSWORD_CHANGED,
        )
        return user

    user = await in_transaction(rt.sessions, work)
    await announce_credentials_changed(rt=rt, user_id=user.id)
    return user


async def change_email(
    *, rt: Runtime, user_id: int | None, new_email: str, proof: Reauthentication
) -> str:
    """Mails a confirmation link to the new address and a notice to the current one;
    the address changes when the link is followed (``confirm_email_change``). Returns
    the normalised new address. Whether it belongs to another account is not told."""
    try:
        new_email = normalise_email(new_email)
    except ValidationFailed as error:
        error.field = "newEmail"
        raise

    async def work(session: AsyncSession) -> User:
        user = await _lock_signed_in(session, user_id)
        await check_reauthentication(rt=rt, session=session, user=user, proof=proof)
        if new_email == user.email:
            raise ValidationFailed("This is already your email address", field="newEmail")
        await record_security_event(
            session, user_id=user.id, kind=SecurityEventKind.EMAIL_CHANGE_REQUESTED
        )
        return user

    user = await in_transaction(rt.sessions, work)
    hours = rt.settings.email_token_ttl_hours
    await _draw_mail_budget(rt, to=new_email, refuse=True)
    await rt.redis.set(_pending_email_key(rt, user.id), new_email, ex=hours * 3600)
    token = rt.signer.sign_email_token(
        purpose=CHANGE_EMAIL,
        user_id=user.id,
        fingerprint=_email_change_fingerprint(user.email, new_email),
        ttl=timedelta(hours=hours),
        now=rt.now(),
    )
    link = f"{rt.settings.public_url}/confirm-email-change?token={quote(token)}"
    await _send(
        rt,
        email_change_mail(
            to=new_email, display_name=user.display_name, link=link, valid_hours=hours
        ),
    )
    notice = email_change_notice_mail(
        to=user.email, display_name=user.display_name, new_email=new_email
    )
    await _send_within_budget(rt, notice)
    return new_email


async def confirm_email_change(*, rt: Runtime, token: str) -> User:
    """The mailed link proves control of the new address: it becomes the account's
    (verified). Only the latest requested change can be confirmed, and only once."""
    claims = rt.signer.verify_email_token(token, purpose=CHANGE_EMAIL)
    pending_key = _pending_email_key(rt, claims.user_id)
    pending = await rt.redis.get(pending_key)
    new_email = pending.decode() if pending else None

    async def work(session: AsyncSession) -> User:
        user = await lock_user(session, claims.user_id)
        if (
            user is None
            or new_email is None
            or claims.fingerprint != _email_change_fingerprint(user.email, new_email)
        ):
            raise InvalidToken(field="token")
        taken = await session.scalar(select(User.id).where(User.email == new_email))
        if taken is not None:
            raise EmailAlreadyRegistered(field="token")
        user.email = new_email
        user.email_verified_at = rt.now()
        await record_security_event(session, user_id=user.id, kind=SecurityEventKind.EMAIL_CHANGED)
        return user

    try:
        user = await in_transaction(rt.sessions, work)
    except IntegrityError as error:  # taken by a concurrent registration
        raise EmailAlreadyRegistered(field="token") from error
    await rt.redis.delete(pending_key)
    return user


async def check_reauthentication(
    *, rt: Runtime, session: AsyncSession, user: User, proof: Reauthentication
) -> None:
    """The password again, and a two-factor code (TOTP or recovery code) when two-factor
    is on, for ``user`` locked by the caller's transaction. Attempts draw from the login
    budgets and count as failed logins (back-off), so a stolen access token is no
    password oracle."""
    await rate_limits.begin_login(rt, email=user.email, client_ip=proof.client_ip)
    if not await asyncio.to_thread(verify_password, user.password_hash, proof.password):
        await rate_limits.login_failed(rt, email=user.email)
        raise InvalidCredentials("The password is incorrect", field=proof.password_field)
    if user.totp_secret is None:
        return
    if not proof.totp_code:
        raise TwoFactorRequired(field=proof.totp_field)
    if not await consume_second_factor(rt=rt, session=session, user=user, code=proof.totp_code):
        await rate_limits.login_failed(rt, email=user.email)
        raise InvalidTwoFactorCode(field=proof.totp_field)


async def enable_two_factor(
    *, rt: Runtime, user_id: int | None, proof: Reauthentication
) -> TwoFactorSetup:
    """A pending secret, shown only to a caller who gave the password again; it takes
    effect when ``confirm_two_factor`` gets a code it generated."""
    secret = totp.new_secret()

    async def work(session: AsyncSession) -> User:
        user = await _lock_signed_in(session, user_id)
        if user.totp_secret is not None:
            raise TwoFactorAlreadyEnabled()
        await check_reauthentication(rt=rt, session=session, user=user, proof=proof)
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


async def disable_two_factor(*, rt: Runtime, user_id: int | None, proof: Reauthentication) -> User:
    """Needs the password and a two-factor code (``proof.totp_code``)."""

    async def work(session: AsyncSession) -> User:
        user = await _lock_signed_in(session, user_id)
        if user.totp_secret is None:
            raise TwoFactorNotEnabled()
        await check_reauthentication(rt=rt, session=session, user=user, proof=proof)
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


def _verification_mail(rt: Runtime, user: User) -> Mail:
    hours = rt.settings.email_token_ttl_hours
    token = rt.signer.sign_email_token(
        purpose=VERIFY_EMAIL,
        user_id=user.id,
        fingerprint=fingerprint(user.email),
        ttl=timedelta(hours=hours),
        now=rt.now(),
    )
    link = f"{rt.settings.public_url}/verify-email?token={quote(token)}"
    return verification_mail(
        to=user.email, display_name=user.display_name, link=link, valid_hours=hours
    )


async def _draw_mail_budget(rt: Runtime, *, to: str, refuse: bool) -> bool:
    """Whether one more account mail to ``to`` is within the address's budget; with
    ``refuse``, ``RateLimited`` instead of False."""
    decision = await rate_limits.draw_mail(rt, to=to)
    if decision.allowed:
        return True
    if refuse:
        raise decision.refuse("Too many mails to this address: try again later")
    log.warning("account mail not sent: the address's mail budget is spent")
    return False


async def _send_within_budget(rt: Runtime, mail: Mail, *, refuse: bool = False) -> None:
    if await _draw_mail_budget(rt, to=mail.to, refuse=refuse):
        await _send(rt, mail)


async def _send(rt: Runtime, mail: Mail) -> None:
    """A mail failure is logged (never the mail itself), not raised: the answer must not
    depend on it (the user can ask again)."""
    try:
        await rt.mailer.send(mail)
    except Exception:
        log.exception("account mail not sent", extra={"subject": mail.subject})


def _pending_email_key(rt: Runtime, user_id: int) -> str:
    return rt.redis_key("email-change", str(user_id))


def _email_change_fingerprint(current: str, new: str) -> str:
    return fingerprint(f"{current}\n{new}")


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
