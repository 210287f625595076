"""Mutation results: the success payload or one of the typed errors it can return."""

from __future__ import annotations

from typing import Annotated, TypeAlias

import strawberry

from graphql_schema.accounts.kyc import ReviewKycPayload, SubmitKycPayload
from graphql_schema.accounts.types import (
    AuthPayload,
    ChangeEmailPayload,
    ConfirmTwoFactorPayload,
    EnableTwoFactorPayload,
    LogoutPayload,
    RegisterPayload,
    RequestPasswordResetPayload,
    UserPayload,
)
from graphql_schema.errors import (
    BelowMinimumWithdrawal,
    BelowStakingMinimum,
    CurrencyDisabled,
    DailyLimitExceeded,
    DepositMethodNotSupported,
    EmailAlreadyRegistered,
    EmailAlreadyVerified,
    EmailNotVerified,
    Forbidden,
    HandleTaken,
    IdempotencyKeyReused,
    InsufficientFunds,
    InvalidAddress,
    InvalidCredentials,
    InvalidRefreshToken,
    InvalidToken,
    InvalidTwoFactorCode,
    KycAlreadyPending,
    KycNotPending,
    KycRequired,
    NotAuthenticated,
    NotFound,
    PaymentRejected,
    PenaltyNotAccepted,
    RateLimited,
    RecipientNotFound,
    RefreshTokenReused,
    StakeNotActive,
    StakingCapacityExceeded,
    StakingLimitExceeded,
    StakingProductClosed,
    TransferToSelf,
    TwoFactorAlreadyEnabled,
    TwoFactorNotEnabled,
    TwoFactorNotPending,
    TwoFactorRequired,
    TxHashConflict,
    Underage,
    UnknownCurrency,
    UnstakeExceedsStake,
    ValidationFailed,
    WeakPassword,
    WithdrawalNotSupported,
    WithdrawalStatusConflict,
)
from graphql_schema.staking.types import StakePayload, StakingProductPayload, UnstakePayload
from graphql_schema.wallets.deposits import (
    CreateDepositPayload,
    CreditCryptoDepositPayload,
    DepositAddress,
)
from graphql_schema.wallets.types import TransferPayload
from graphql_schema.wallets.withdrawals import CustodyPayload, WithdrawalPayload

# UserPayload and EmailAlreadyRegistered are never returned any more (they told whether an
# address had an account); they stay members so that existing clients' documents validate.
RegisterResult: TypeAlias = Annotated[
    RegisterPayload
    | ValidationFailed
    | WeakPassword
    | RateLimited
    | UserPayload
    | EmailAlreadyRegistered,
    strawberry.union("RegisterResult"),
]
VerifyEmailResult: TypeAlias = Annotated[
    UserPayload | InvalidToken, strawberry.union("VerifyEmailResult")
]
SetHandleResult: TypeAlias = Annotated[
    UserPayload | NotAuthenticated | ValidationFailed | HandleTaken,
    strawberry.union("SetHandleResult"),
]
ResendVerificationEmailResult: TypeAlias = Annotated[
    UserPayload | NotAuthenticated | EmailAlreadyVerified | RateLimited,
    strawberry.union("ResendVerificationEmailResult"),
]
LoginResult: TypeAlias = Annotated[
    AuthPayload | InvalidCredentials | TwoFactorRequired | InvalidTwoFactorCode | RateLimited,
    strawberry.union("LoginResult"),
]
RefreshTokenResult: TypeAlias = Annotated[
    AuthPayload | InvalidRefreshToken | RefreshTokenReused, strawberry.union("RefreshTokenResult")
]
LogoutResult: TypeAlias = Annotated[
    LogoutPayload | InvalidRefreshToken, strawberry.union("LogoutResult")
]
RequestPasswordResetResult: TypeAlias = Annotated[
    RequestPasswordResetPayload | ValidationFailed | RateLimited,
    strawberry.union("RequestPasswordResetResult"),
]
# Re-authentication (the password, plus totpCode when two-factor is on) fails with
# InvalidCredentials, TwoFactorRequired, InvalidTwoFactorCode or RateLimited.
ChangePasswordResult: TypeAlias = Annotated[
    UserPayload
    | NotAuthenticated
    | WeakPassword
    | InvalidCredentials
    | TwoFactorRequired
    | InvalidTwoFactorCode
    | RateLimited,
    strawberry.union("ChangePasswordResult"),
]
ChangeEmailResult: TypeAlias = Annotated[
    ChangeEmailPayload
    | NotAuthenticated
    | ValidationFailed
    | InvalidCredentials
    | TwoFactorRequired
    | InvalidTwoFactorCode
    | RateLimited,
    strawberry.union("ChangeEmailResult"),
]
ConfirmEmailChangeResult: TypeAlias = Annotated[
    UserPayload | InvalidToken | EmailAlreadyRegistered,
    strawberry.union("ConfirmEmailChangeResult"),
]
ResetPasswordResult: TypeAlias = Annotated[
    UserPayload | InvalidToken | WeakPassword, strawberry.union("ResetPasswordResult")
]
EnableTwoFactorResult: TypeAlias = Annotated[
    EnableTwoFactorPayload
    | NotAuthenticated
    | TwoFactorAlreadyEnabled
    | InvalidCredentials
    | RateLimited,
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
    UserPayload
    | NotAuthenticated
    | TwoFactorNotEnabled
    | InvalidCredentials
    | TwoFactorRequired
    | InvalidTwoFactorCode
    | RateLimited,
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
SubmitKycResult: TypeAlias = Annotated[
    SubmitKycPayload | ValidationFailed | NotAuthenticated | Underage | KycAlreadyPending,
    strawberry.union("SubmitKycResult"),
]
ReviewKycResult: TypeAlias = Annotated[
    ReviewKycPayload | ValidationFailed | NotAuthenticated | Forbidden | NotFound | KycNotPending,
    strawberry.union("ReviewKycResult"),
]
RequestWithdrawalResult: TypeAlias = Annotated[
    WithdrawalPayload
    | ValidationFailed
    | NotAuthenticated
    | TwoFactorNotEnabled
    | InvalidTwoFactorCode
    | EmailNotVerified
    | KycRequired
    | UnknownCurrency
    | CurrencyDisabled
    | WithdrawalNotSupported
    | BelowMinimumWithdrawal
    | InvalidAddress
    | DailyLimitExceeded
    | InsufficientFunds
    | IdempotencyKeyReused,
    strawberry.union("RequestWithdrawalResult"),
]
CancelWithdrawalResult: TypeAlias = Annotated[
    WithdrawalPayload | ValidationFailed | NotAuthenticated | NotFound | WithdrawalStatusConflict,
    strawberry.union("CancelWithdrawalResult"),
]
ReviewWithdrawalResult: TypeAlias = Annotated[
    WithdrawalPayload
    | ValidationFailed
    | NotAuthenticated
    | Forbidden
    | NotFound
    | WithdrawalStatusConflict,
    strawberry.union("ReviewWithdrawalResult"),
]
RefillHotWalletResult: TypeAlias = Annotated[
    CustodyPayload
    | ValidationFailed
    | NotAuthenticated
    | Forbidden
    | UnknownCurrency
    | CurrencyDisabled
    | WithdrawalNotSupported
    | InsufficientFunds,
    strawberry.union("RefillHotWalletResult"),
]
CreateDepositResult: TypeAlias = Annotated[
    CreateDepositPayload
    | ValidationFailed
    | NotAuthenticated
    | EmailNotVerified
    | UnknownCurrency
    | CurrencyDisabled
    | DepositMethodNotSupported
    | DailyLimitExceeded
    | PaymentRejected
    | IdempotencyKeyReused,
    strawberry.union("CreateDepositResult"),
]
CreditCryptoDepositResult: TypeAlias = Annotated[
    CreditCryptoDepositPayload
    | ValidationFailed
    | NotAuthenticated
    | Forbidden
    | UnknownCurrency
    | DepositMethodNotSupported
    | NotFound
    | TxHashConflict,
    strawberry.union("CreditCryptoDepositResult"),
]
DepositAddressResult: TypeAlias = Annotated[
    DepositAddress
    | NotAuthenticated
    | UnknownCurrency
    | CurrencyDisabled
    | DepositMethodNotSupported,
    strawberry.union("DepositAddressResult"),
]
StakeResult: TypeAlias = Annotated[
    StakePayload
    | ValidationFailed
    | NotAuthenticated
    | NotFound
    | StakingProductClosed
    | CurrencyDisabled
    | BelowStakingMinimum
    | StakingLimitExceeded
    | StakingCapacityExceeded
    | InsufficientFunds
    | IdempotencyKeyReused,
    strawberry.union("StakeResult"),
]
UnstakeResult: TypeAlias = Annotated[
    UnstakePayload
    | ValidationFailed
    | NotAuthenticated
    | NotFound
    | StakeNotActive
    | UnstakeExceedsStake
    | PenaltyNotAccepted
    | IdempotencyKeyReused,
    strawberry.union("UnstakeResult"),
]
SetStakeAutoRenewResult: TypeAlias = Annotated[
    StakePayload | ValidationFailed | NotAuthenticated | NotFound | StakeNotActive,
    strawberry.union("SetStakeAutoRenewResult"),
]
StakingProductResult: TypeAlias = Annotated[
    StakingProductPayload
    | ValidationFailed
    | NotAuthenticated
    | Forbidden
    | NotFound
    | UnknownCurrency
    | CurrencyDisabled,
    strawberry.union("StakingProductResult"),
]
