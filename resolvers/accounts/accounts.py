"""Account and session mutations."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from strawberry.types import Info

from app.accounts import accounts, sessions
from app.accounts.accounts import Reauthentication
from graphql_schema.accounts.types import (
    AuthPayload,
    ChangeEmailPayload,
    ConfirmTwoFactorPayload,
    EnableTwoFactorPayload,
    LogoutPayload,
    RegisterPayload,
    RequestPasswordResetPayload,
    User,
    UserPayload,
)
from graphql_schema.gateway.context import Context
from graphql_schema.results import (
    ChangeEmailResult,
    ChangePasswordResult,
    ConfirmEmailChangeResult,
    ConfirmTwoFactorResult,
    DisableTwoFactorResult,
    EnableTwoFactorResult,
    LoginResult,
    LogoutResult,
    RefreshTokenResult,
    RegisterResult,
    RequestPasswordResetResult,
    ResendVerificationEmailResult,
    ResetPasswordResult,
    SetHandleResult,
    VerifyEmailResult,
)
from resolvers.common import attempt

Ctx = Info[Context, None]
T = TypeVar("T")


def _user_payload(row: Any) -> UserPayload:
    return UserPayload(user=User.from_row(row))


async def _mail_sending(ctx: Context, call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, unless another mail-sending field ran in this request (``RateLimited``)."""
    ctx.claim_mail_field()
    return await call()


def _proof(ctx: Context, password: str, totp_code: str | None, **fields: str) -> Reauthentication:
    return Reauthentication(
        password=password, totp_code=totp_code, client_ip=ctx.client_ip, **fields
    )


async def register(info: Ctx, email: str, password: str, display_name: str) -> RegisterResult:
    """The same answer whether or not the address has an account (check your email)."""
    ctx = info.context
    return await attempt(
        _mail_sending(
            ctx,
            lambda: accounts.register(
                rt=ctx.rt, email=email, password=password, display_name=display_name
            ),
        ),
        lambda e: RegisterPayload(accepted=True, email=e),
    )


async def set_handle(info: Ctx, handle: str) -> SetHandleResult:
    """Choose the handle other users can transfer to."""
    call = accounts.set_handle(rt=info.context.rt, user_id=info.context.user_id, handle=handle)
    return await attempt(call, _user_payload)


async def verify_email(info: Ctx, token: str) -> VerifyEmailResult:
    return await attempt(accounts.verify_email(rt=info.context.rt, token=token), _user_payload)


async def resend_verification_email(info: Ctx) -> ResendVerificationEmailResult:
    ctx = info.context
    call = _mail_sending(
        ctx, lambda: accounts.resend_verification_email(rt=ctx.rt, user_id=ctx.user_id)
    )
    return await attempt(call, _user_payload)


async def login(info: Ctx, email: str, password: str, totp_code: str | None = None) -> LoginResult:
    ctx = info.context
    call = sessions.login(
        rt=ctx.rt, email=email, password=password, totp_code=totp_code, client_ip=ctx.client_ip
    )
    return await attempt(ctx.rate_limited(call), AuthPayload.from_signed_in)


async def refresh_token(info: Ctx, refresh_token: str) -> RefreshTokenResult:
    call = sessions.refresh(rt=info.context.rt, refresh_token=refresh_token)
    return await attempt(call, AuthPayload.from_signed_in)


async def logout(
    info: Ctx, refresh_token: str | None = None, everywhere: bool = False
) -> LogoutResult:
    ctx = info.context
    call = sessions.logout(
        rt=ctx.rt, auth=ctx.auth, refresh_token=refresh_token, everywhere=everywhere
    )
    return await attempt(call, lambda _: LogoutPayload(revoked=True))


async def request_password_reset(info: Ctx, email: str) -> RequestPasswordResetResult:
    ctx = info.context
    call = _mail_sending(ctx, lambda: accounts.request_password_reset(rt=ctx.rt, email=email))
    return await attempt(call, lambda _: RequestPasswordResetPayload(accepted=True))


async def reset_password(info: Ctx, token: str, new_password: str) -> ResetPasswordResult:
    call = accounts.reset_password(rt=info.context.rt, token=token, new_password=new_password)
    return await attempt(call, _user_payload)


async def change_password(
    info: Ctx, current_password: str, new_password: str, totp_code: str | None = None
) -> ChangePasswordResult:
    """Needs the current password (and totpCode when two-factor is on). Signs out every
    session, this one included, and revokes every API key, as a reset does."""
    ctx = info.context
    proof = _proof(ctx, current_password, totp_code, password_field="currentPassword")
    call = accounts.change_password(
        rt=ctx.rt, user_id=ctx.user_id, new_password=new_password, proof=proof
    )
    return await attempt(ctx.rate_limited(call), _user_payload)


async def change_email(
    info: Ctx, new_email: str, password: str, totp_code: str | None = None
) -> ChangeEmailResult:
    """Needs the password (and totpCode when two-factor is on). Mails a confirmation link
    to the new address and a notice to the current one."""
    ctx = info.context
    proof = _proof(ctx, password, totp_code)

    def call() -> Awaitable[str]:
        change = accounts.change_email(
            rt=ctx.rt, user_id=ctx.user_id, new_email=new_email, proof=proof
        )
        return ctx.rate_limited(change)

    return await attempt(
        _mail_sending(ctx, call), lambda e: ChangeEmailPayload(accepted=True, new_email=e)
    )


async def confirm_email_change(info: Ctx, token: str) -> ConfirmEmailChangeResult:
    """The token from the link mailed to the new address."""
    call = accounts.confirm_email_change(rt=info.context.rt, token=token)
    return await attempt(call, _user_payload)


async def enable_two_factor(info: Ctx, password: str) -> EnableTwoFactorResult:
    """Needs the password again."""
    ctx = info.context
    call = accounts.enable_two_factor(
        rt=ctx.rt, user_id=ctx.user_id, proof=_proof(ctx, password, None)
    )
    return await attempt(
        ctx.rate_limited(call),
        lambda s: EnableTwoFactorPayload(secret=s.secret, otpauth_uri=s.otpauth_uri),
    )


async def confirm_two_factor(info: Ctx, code: str) -> ConfirmTwoFactorResult:
    call = accounts.confirm_two_factor(rt=info.context.rt, user_id=info.context.user_id, code=code)
    return await attempt(
        call,
        lambda c: ConfirmTwoFactorPayload(
            recovery_codes=c.recovery_codes, user=User.from_row(c.user)
        ),
    )


async def disable_two_factor(info: Ctx, code: str, password: str) -> DisableTwoFactorResult:
    """Needs the password and a two-factor ``code`` (TOTP or recovery code)."""
    ctx = info.context
    proof = _proof(ctx, password, code, totp_field="code")
    call = accounts.disable_two_factor(rt=ctx.rt, user_id=ctx.user_id, proof=proof)
    return await attempt(ctx.rate_limited(call), _user_payload)
