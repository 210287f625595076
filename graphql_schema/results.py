"""Mutation results: the success payload or one of the typed errors it can return."""

from __future__ import annotations

from typing import Annotated, TypeAlias

import strawberry

from graphql_schema.errors import (
    CurrencyDisabled,
    EmailAlreadyRegistered,
    EmailAlreadyVerified,
    EmailNotVerified,
    IdempotencyKeyReused,
    InsufficientFunds,
    InvalidCredentials,
    InvalidRefreshToken,
    InvalidToken,
    InvalidTwoFactorCode,
    NotAuthenticated,
    RecipientNotFound,
    RefreshTokenReused,
    TransferToSelf,
    TwoFactorAlreadyEnabled,
    TwoFactorNotEnabled,
    TwoFactorNotPending,
    TwoFactorRequired,
    UnknownCurrency,
    ValidationFailed,
    WeakPassword,
)
from graphql_schema.money import TransferPayload
from graphql_schema.types import (
    AuthPayload,
    ConfirmTwoFactorPayload,
    EnableTwoFactorPayload,
    LogoutPayload,
    RequestPasswordResetPayload,
    UserPayload,
)

RegisterResult: TypeAlias = Annotated[
    UserPayload | ValidationFailed | WeakPassword | EmailAlreadyRegistered,
    strawberry.union("RegisterResult"),
]
VerifyEmailResult: TypeAlias = Annotated[
    UserPayload | InvalidToken, strawberry.union("VerifyEmailResult")
]
ResendVerificationEmailResult: TypeAlias = Annotated[
    UserPayload | NotAuthenticated | EmailAlreadyVerified,
    strawberry.union("ResendVerificationEmailResult"),
]
LoginResult: TypeAlias = Annotated[
    AuthPayload | InvalidCredentials | TwoFactorRequired | InvalidTwoFactorCode,
    strawberry.union("LoginResult"),
]
RefreshTokenResult: TypeAlias = Annotated[
    AuthPayload | InvalidRefreshToken | RefreshTokenReused, strawberry.union("RefreshTokenResult")
]
LogoutResult: TypeAlias = Annotated[
    LogoutPayload | InvalidRefreshToken, strawberry.union("LogoutResult")
]
RequestPasswordResetResult: TypeAlias = Annotated[
    RequestPasswordResetPayload | ValidationFailed, strawberry.union("RequestPasswordResetResult")
]
ResetPasswordResult: TypeAlias = Annotated[
    UserPayload | InvalidToken | WeakPassword, strawberry.union("ResetPasswordResult")
]
EnableTwoFactorResult: TypeAlias = Annotated[
    EnableTwoFactorPayload | NotAuthenticated | TwoFactorAlreadyEnabled,
    strawberry.union("EnableTwoFactorResult"),
]
ConfirmTwoFactorResult: TypeAlias = Annotated[
    ConfirmTwoFactorPayload
    | NotAuthenticated
    | TwoFactorAlreadyEnabled
    | TwoFactorNotPending
    | InvalidTwoFactorCode,
    strawberry.union("ConfirmTwoFactorResult"),
]
DisableTwoFactorResult: TypeAlias = Annotated[
    UserPayload | NotAuthenticated | TwoFactorNotEnabled | InvalidTwoFactorCode,
    strawberry.union("DisableTwoFactorResult"),
]
TransferResult: TypeAlias = Annotated[
    TransferPayload
    | ValidationFailed
    | NotAuthenticated
    | EmailNotVerified
    | UnknownCurrency
    | CurrencyDisabled
    | InsufficientFunds
    | RecipientNotFound
    | TransferToSelf
    | IdempotencyKeyReused,
    strawberry.union("TransferResult"),
]
