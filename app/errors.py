"""Domain errors and their stable codes, grouped by what the caller should do.

    AppError
    ├── UserError            fix the input and try again; shown to the client as a typed
    │   │                    union member with a stable ``code`` (and ``field`` when one
    │   │                    input field is at fault). Nothing was changed.
    │   ├── ValidationFailed
    │   ├── WeakPassword
    │   ├── EmailAlreadyRegistered
    │   ├── InvalidCredentials
    │   ├── TwoFactorRequired / InvalidTwoFactorCode
    │   ├── TwoFactorAlreadyEnabled / TwoFactorNotPending / TwoFactorNotEnabled
    │   ├── InvalidToken
    │   ├── InvalidRefreshToken / RefreshTokenReused
    │   ├── NotAuthenticated / Forbidden
    │   ├── EmailAlreadyVerified / EmailNotVerified
    │   ├── UnknownCurrency / CurrencyDisabled / InsufficientFunds
    │   ├── RecipientNotFound / TransferToSelf
    │   ├── IdempotencyKeyReused
    │   └── NotFound
    ├── TransientError       retry later (serialization failure exhausted, a dependency down)
    └── InvariantViolation   stop: a bug or broken invariant; never shown, always logged

Codes are part of the public API: never rename one.
"""

from __future__ import annotations


class AppError(Exception):
    code = "INTERNAL"
    default_message = "Internal error"

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        self.message = message or self.default_message
        self.field = field
        super().__init__(self.message)


class UserError(AppError):
    code = "BAD_USER_INPUT"
    default_message = "The request is invalid"


class TransientError(AppError):
    code = "TRY_AGAIN"
    default_message = "Temporarily unavailable, try again"


class InvariantViolation(AppError):
    code = "INVARIANT_VIOLATION"


class ValidationFailed(UserError):
    code = "VALIDATION_FAILED"


class WeakPassword(UserError):
    code = "WEAK_PASSWORD"
    default_message = "Password is too weak"


class EmailAlreadyRegistered(UserError):
    code = "EMAIL_ALREADY_REGISTERED"
    default_message = "An account with this email already exists"


class InvalidCredentials(UserError):
    code = "INVALID_CREDENTIALS"
    default_message = "Email or password is incorrect"


class TwoFactorRequired(UserError):
    code = "TWO_FACTOR_REQUIRED"
    default_message = "A two-factor code is required"


class InvalidTwoFactorCode(UserError):
    code = "INVALID_TWO_FACTOR_CODE"
    default_message = "The two-factor code is incorrect or was already used"


class TwoFactorAlreadyEnabled(UserError):
    code = "TWO_FACTOR_ALREADY_ENABLED"
    default_message = "Two-factor authentication is already enabled"


class TwoFactorNotPending(UserError):
    code = "TWO_FACTOR_NOT_PENDING"
    default_message = "Call enableTwoFactor first"


class TwoFactorNotEnabled(UserError):
    code = "TWO_FACTOR_NOT_ENABLED"
    default_message = "Two-factor authentication is not enabled"


class InvalidToken(UserError):
    code = "INVALID_TOKEN"
    default_message = "The token is invalid or has expired"


class InvalidRefreshToken(UserError):
    code = "INVALID_REFRESH_TOKEN"
    default_message = "The refresh token is invalid or has expired"


class RefreshTokenReused(UserError):
    code = "REFRESH_TOKEN_REUSED"
    default_message = "The refresh token was already used; the session has been revoked"


class NotAuthenticated(UserError):
    code = "UNAUTHENTICATED"
    default_message = "Authentication required"


class Forbidden(UserError):
    code = "FORBIDDEN"
    default_message = "You are not allowed to do this"


class EmailAlreadyVerified(UserError):
    code = "EMAIL_ALREADY_VERIFIED"
    default_message = "The email address is already verified"


class UnknownCurrency(UserError):
    code = "UNKNOWN_CURRENCY"
    default_message = "Unknown currency"


class CurrencyDisabled(UserError):
    code = "CURRENCY_DISABLED"
    default_message = "This currency is currently disabled"


class InsufficientFunds(UserError):
    code = "INSUFFICIENT_FUNDS"
    default_message = "Insufficient available balance"


class RecipientNotFound(UserError):
    code = "RECIPIENT_NOT_FOUND"
    default_message = "No user with that email or handle"


class TransferToSelf(UserError):
    code = "TRANSFER_TO_SELF"
    default_message = "You cannot transfer to yourself"


class IdempotencyKeyReused(UserError):
    code = "IDEMPOTENCY_KEY_REUSED"
    default_message = "This idempotency key was already used for a different request"


class EmailNotVerified(UserError):
    code = "EMAIL_NOT_VERIFIED"
    default_message = "Verify your email address first"


class NotFound(UserError):
    code = "NOT_FOUND"
    default_message = "Not found"
