"""Account and session mutations."""

from __future__ import annotations

from typing import Any

from strawberry.types import Info

from app.services import accounts, sessions
from graphql_schema.context import Context
from graphql_schema.results import (
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
from graphql_schema.types import (
    AuthPayload,
    ConfirmTwoFactorPayload,
    EnableTwoFactorPayload,
    LogoutPayload,
    RequestPasswordResetPayload,
    User,
    UserPayload,
)
from resolvers.common import attempt

Ctx = Info[Context, None]


def _user_payload(row: Any) -> UserPayload:
    return UserPayload(user=User.from_row(row))


async def register(info: Ctx, email: str, password: str, display_name: str) -> RegisterResult:
    call = accounts.register(
        rt=info.context.rt, email=email, password=password, display_name=display_name
    )
    return await attempt(call, _user_payload)


async def set_handle(info: Ctx, handle: str) -> SetHandleResult:
    """Choose the handle other users can transfer to."""
    call = accounts.set_handle(rt=info.context.rt, user_id=info.context.user_id, handle=handle)
    return await attempt(call, _user_payload)


async def verify_email(info: Ctx, token: str) -> VerifyEmailResult:
    return await attempt(accounts.verify_email(rt=info.context.rt, token=token), _user_payload)


async def resend_verification_email(info: Ctx) -> ResendVerificationEmailResult:
    call = accounts.resend_verification_email(rt=info.context.rt, user_id=info.context.user_id)
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
    call = accounts.request_password_reset(rt=info.context.rt, email=email)
    return await attempt(call, lambda _: RequestPasswordResetPayload(accepted=True))


async def reset_password(info: Ctx, token: str, new_password: str) -> ResetPasswordResult:
    call = accounts.reset_password(rt=info.context.rt, token=token, new_password=new_password)
    return await attempt(call, _user_payload)


async def enable_two_factor(info: Ctx) -> EnableTwoFactorResult:
    call = accounts.enable_two_factor(rt=info.context.rt, user_id=info.context.user_id)
    return await attempt(
        call, lambda s: EnableTwoFactorPayload(secret=s.secret, otpauth_uri=s.otpauth_uri)
    )


async def confirm_two_factor(info: Ctx, code: str) -> ConfirmTwoFactorResult:
    call = accounts.confirm_two_factor(rt=info.context.rt, user_id=info.context.user_id, code=code)
    return await attempt(
        call,
        lambda c: ConfirmTwoFactorPayload(
            recovery_codes=c.recovery_codes, user=User.from_row(c.user)
        ),
    )


async def disable_two_factor(info: Ctx, code: str) -> DisableTwoFactorResult:
    call = accounts.disable_two_factor(rt=info.context.rt, user_id=info.context.user_id, code=code)
    return await attempt(call, _user_payload)
