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
    │   ├── RecipientNotFound / TransferToSelf / HandleTaken
    │   ├── IdempotencyKeyReused
    │   ├── KycRequired / KycAlreadyPending / KycNotPending / Underage
    │   ├── WithdrawalNotSupported / BelowMinimumWithdrawal / InvalidAddress
    │   ├── DailyLimitExceeded / WithdrawalStatusConflict
    │   ├── DepositMethodNotSupported / PaymentRejected / TxHashConflict
    │   ├── InvalidWebhook   (inbound webhooks only: answered with HTTP 400)
    │   ├── RateLimited      (also HTTP 429 + Retry-After) / InsufficientScope
    │   ├── InvalidApiKey / ApiKeyRevoked / ApiKeyExpired / ApiKeyIpNotAllowed (HTTP 401)
    │   ├── StakingProductClosed / BelowStakingMinimum / StakingLimitExceeded
    │   ├── StakingCapacityExceeded / StakeNotActive / UnstakeExceedsStake
    │   ├── PenaltyNotAccepted
    │   └── NotFound
    ├── PayoutRejected       a payout network refused for good: fail the withdrawal
    ├── TransientError       retry later (serialization failure exhausted, a dependency down)
    │   └── DependencyUnavailable   Redis or PostgreSQL unreachable (HTTP 503 + Retry-After)
    └── InvariantViolation   stop: a bug or broken invariant; never shown, always logged

Codes are part of the public API: never rename one. Each error is declared once, here or
in its domain (app/trading/domain/errors.py, app/social/domain/social.py,
app/notifications/rules.py): its ``description`` is its GraphQL type's.
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
    """An expected failure. A class that declares its own one-line ``description`` is a
    typed GraphQL error of the same name, with that description (graphql_schema/errors.py
    derives one from the other); one without (this base, ``OrderStatusConflict``, the
    refusals answered before any resolver runs: webhooks, API keys, scopes) has none."""

    code = "BAD_USER_INPUT"
    default_message = "The request is invalid"
    description: str | None = None


class TransientError(AppError):
    code = "TRY_AGAIN"
    default_message = "Temporarily unavailable, try again"


class DependencyUnavailable(TransientError):
    """Redis or PostgreSQL cannot be reached (app/core/outages.py says which exceptions mean
    that): nothing was done; retry after ``retry_after`` seconds. Over HTTP a 503 with
    ``Retry-After``; the client never learns which service is down (/readyz says)."""

    default_message = "A service this request needs is unavailable, try again shortly"

    def __init__(self, dependency: str, *, retry_after: int = 5) -> None:
        super().__init__()
        self.dependency = dependency
        self.retry_after = retry_after


class InvariantViolation(AppError):
    code = "INVARIANT_VIOLATION"


class ValidationFailed(UserError):
    code = "VALIDATION_FAILED"
    description = "An input value is malformed."


class WeakPassword(UserError):
    code = "WEAK_PASSWORD"
    description = "The password does not meet the policy."
    default_message = "Password is too weak"


class EmailAlreadyRegistered(UserError):
    code = "EMAIL_ALREADY_REGISTERED"
    description = "The email is taken."
    default_message = "An account with this email already exists"


class InvalidCredentials(UserError):
    code = "INVALID_CREDENTIALS"
    description = "Email or password is wrong."
    default_message = "Email or password is incorrect"


class TwoFactorRequired(UserError):
    code = "TWO_FACTOR_REQUIRED"
    description = "Send totpCode as well."
    default_message = "A two-factor code is required"


class InvalidTwoFactorCode(UserError):
    code = "INVALID_TWO_FACTOR_CODE"
    description = "Wrong or reused code."
    default_message = "The two-factor code is incorrect or was already used"


class TwoFactorAlreadyEnabled(UserError):
    code = "TWO_FACTOR_ALREADY_ENABLED"
    description = "Already on."
    default_message = "Two-factor authentication is already enabled"


class TwoFactorNotPending(UserError):
    code = "TWO_FACTOR_NOT_PENDING"
    description = "Call enableTwoFactor first."
    default_message = "Call enableTwoFactor first"


class TwoFactorNotEnabled(UserError):
    code = "TWO_FACTOR_NOT_ENABLED"
    description = "Two-factor is off."
    default_message = "Two-factor authentication is not enabled"


class InvalidToken(UserError):
    code = "INVALID_TOKEN"
    description = "The token is invalid or expired."
    default_message = "The token is invalid or has expired"
    # set on a token that was genuine but reached its exp: refresh, rather than sign in again
    expired = False


class InvalidRefreshToken(UserError):
    code = "INVALID_REFRESH_TOKEN"
    description = "Unknown, expired or revoked."
    default_message = "The refresh token is invalid or has expired"


class RefreshTokenReused(UserError):
    code = "REFRESH_TOKEN_REUSED"
    description = "A rotated refresh token was presented; the session is revoked."
    default_message = "The refresh token was already used; the session has been revoked"


class NotAuthenticated(UserError):
    code = "UNAUTHENTICATED"
    description = "Sign in first."
    default_message = "Authentication required"


class Forbidden(UserError):
    code = "FORBIDDEN"
    description = "Not allowed for this account."
    default_message = "You are not allowed to do this"


class EmailAlreadyVerified(UserError):
    code = "EMAIL_ALREADY_VERIFIED"
    description = "Nothing to verify."
    default_message = "The email address is already verified"


class UnknownCurrency(UserError):
    code = "UNKNOWN_CURRENCY"
    description = "No such currency."
    default_message = "Unknown currency"


class CurrencyDisabled(UserError):
    code = "CURRENCY_DISABLED"
    description = "The currency is disabled."
    default_message = "This currency is currently disabled"


class InsufficientFunds(UserError):
    code = "INSUFFICIENT_FUNDS"
    description = "Not enough available balance."
    default_message = "Insufficient available balance"


class RecipientNotFound(UserError):
    code = "RECIPIENT_NOT_FOUND"
    description = "No user with that email or handle."
    default_message = "No user with that email or handle"


class TransferToSelf(UserError):
    code = "TRANSFER_TO_SELF"
    description = "Sender and recipient are the same."
    default_message = "You cannot transfer to yourself"


class IdempotencyKeyReused(UserError):
    code = "IDEMPOTENCY_KEY_REUSED"
    description = "The key was used for a different request."
    default_message = "This idempotency key was already used for a different request"


class EmailNotVerified(UserError):
    code = "EMAIL_NOT_VERIFIED"
    description = "Verify your email address first."
    default_message = "Verify your email address first"


class HandleTaken(UserError):
    code = "HANDLE_TAKEN"
    description = "Another account uses this handle."
    default_message = "This handle is already taken"


class NotFound(UserError):
    code = "NOT_FOUND"
    description = "Nothing with that id is visible to you."
    default_message = "Not found"


class KycRequired(UserError):
    code = "KYC_REQUIRED"
    description = "Verify your identity (KYC level 1) first."
    default_message = "Verify your identity (KYC level 1) first"


class KycAlreadyPending(UserError):
    code = "KYC_ALREADY_PENDING"
    description = "A submission is waiting for review."
    default_message = "Your identity verification is already waiting for review"


class KycNotPending(UserError):
    code = "KYC_NOT_PENDING"
    description = "No submission is waiting for review."
    default_message = "This user has no identity verification waiting for review"


class Underage(UserError):
    code = "UNDERAGE"
    description = "The applicant is younger than 18."
    default_message = "You must be at least 18 years old"


class WithdrawalNotSupported(UserError):
    code = "WITHDRAWAL_NOT_SUPPORTED"
    description = "This currency cannot be withdrawn to an address."
    default_message = "This currency cannot be withdrawn"


class BelowMinimumWithdrawal(UserError):
    code = "BELOW_MINIMUM_WITHDRAWAL"
    description = "The amount is below the currency's minimum withdrawal."
    default_message = "The amount is below the minimum withdrawal"


class InvalidAddress(UserError):
    code = "INVALID_ADDRESS"
    description = "Not an address of this currency's chain."
    default_message = "The destination address is not valid for this currency"


class DailyLimitExceeded(UserError):
    code = "DAILY_LIMIT_EXCEEDED"
    description = "Over the daily limit of your KYC level (in USD)."
    default_message = "This would exceed your daily limit"


class WithdrawalStatusConflict(UserError):
    code = "WITHDRAWAL_STATUS_CONFLICT"
    description = "The withdrawal's status does not allow this."
    default_message = "The withdrawal is not in a state that allows this"


class PayoutRejected(AppError):
    """The network refused a payout for good (not a transient failure): the withdrawal
    fails and its hold is released."""

    code = "PAYOUT_REJECTED"


class DepositMethodNotSupported(UserError):
    code = "DEPOSIT_METHOD_NOT_SUPPORTED"
    description = "Fiat is deposited by card, crypto to an address."
    default_message = "This currency cannot be deposited this way"


class PaymentRejected(UserError):
    """The payment provider refused to set up this payment (e.g. below its minimum)."""

    code = "PAYMENT_REJECTED"
    description = "The card payment provider refused it."
    default_message = "The payment provider refused this payment"


class TxHashConflict(UserError):
    code = "TX_HASH_CONFLICT"
    description = "The transaction was credited before with other details."
    default_message = "This transaction hash was already credited with different details"


class InvalidWebhook(UserError):
    """A webhook whose signature is missing, wrong or expired, or whose body is not an
    event: refused with HTTP 400, nothing changed."""

    code = "INVALID_WEBHOOK"
    default_message = "The webhook is not a validly signed event"


class RateLimited(UserError):
    """Over a rate-limit budget: nothing was done; try again after ``retry_after`` seconds."""

    code = "RATE_LIMITED"
    description = "Too many attempts: wait (HTTP: the Retry-After header) and retry."
    default_message = "Too many requests, slow down"

    def __init__(
        self, message: str | None = None, *, retry_after: float, field: str | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after


class InsufficientScope(UserError):
    """An API key without the scope a field needs, or a field only a signed-in session
    may use (account security, money movement, administration)."""

    code = "INSUFFICIENT_SCOPE"
    default_message = "This API key is not allowed to do this"


class InvalidApiKey(UserError):
    code = "INVALID_API_KEY"
    default_message = "The API key is not valid"


class ApiKeyRevoked(InvalidApiKey):
    code = "API_KEY_REVOKED"
    default_message = "The API key was revoked"


class ApiKeyExpired(InvalidApiKey):
    code = "API_KEY_EXPIRED"
    default_message = "The API key has expired"


class ApiKeyIpNotAllowed(InvalidApiKey):
    code = "API_KEY_IP_NOT_ALLOWED"
    default_message = "The API key may not be used from this address"


class StakingProductClosed(UserError):
    code = "STAKING_PRODUCT_CLOSED"
    description = "The product takes no new stakes."
    default_message = "This staking product is closed to new stakes"


class BelowStakingMinimum(UserError):
    code = "BELOW_STAKING_MINIMUM"
    description = "The amount is below the product's minimum."
    default_message = "The amount is below the product's minimum stake"


class StakingLimitExceeded(UserError):
    code = "STAKING_LIMIT_EXCEEDED"
    description = "Over the product's maximum per user."
    default_message = "This would exceed the product's maximum per user"


class StakingCapacityExceeded(UserError):
    code = "STAKING_CAPACITY_EXCEEDED"
    description = "Over the product's remaining capacity."
    default_message = "The product does not have that much capacity left"


class StakeNotActive(UserError):
    code = "STAKE_NOT_ACTIVE"
    description = "The stake has matured or was redeemed."
    default_message = "This stake has ended"


class UnstakeExceedsStake(UserError):
    code = "UNSTAKE_EXCEEDS_STAKE"
    description = "More than the stake's principal."
    default_message = "You cannot unstake more than is staked"


class PenaltyNotAccepted(UserError):
    """A locked stake redeemed before maturity forfeits the current term's rewards:
    the caller must say so with ``acceptPenalty: true``."""

    code = "PENALTY_NOT_ACCEPTED"
    description = (
        "Early redemption of a locked stake forfeits this term's rewards: send acceptPenalty."
    )
    default_message = "Redeeming a locked stake early forfeits this term's rewards"
