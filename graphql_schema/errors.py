"""``interface Error { code message field }`` and one typed error per domain error.

Expected failures are union members of each mutation's result; bugs are exceptions
and reach the client masked."""

from __future__ import annotations

from enum import Enum

import strawberry

from app.core import errors as domain
from app.notifications import rules as notifications
from app.social.domain import social
from app.trading.domain import errors as trading


@strawberry.interface(name="Error", description="An expected failure. Nothing was changed.")
class Error:
    code: str = strawberry.field(description="Stable machine-readable code.")
    message: str = strawberry.field(description="Human-readable explanation.")
    field: str | None = strawberry.field(
        default=None, description="Input field at fault (camelCase argument name), if any."
    )


def _error_type(domain_error: type[domain.UserError], description: str) -> type[Error]:
    """A GraphQL error type named after the domain error."""
    cls = type(domain_error.__name__, (Error,), {})
    return strawberry.type(cls, description=description)


ValidationFailed = _error_type(domain.ValidationFailed, "An input value is malformed.")
WeakPassword = _error_type(domain.WeakPassword, "The password does not meet the policy.")
EmailAlreadyRegistered = _error_type(domain.EmailAlreadyRegistered, "The email is taken.")
InvalidCredentials = _error_type(domain.InvalidCredentials, "Email or password is wrong.")
TwoFactorRequired = _error_type(domain.TwoFactorRequired, "Send totpCode as well.")
InvalidTwoFactorCode = _error_type(domain.InvalidTwoFactorCode, "Wrong or reused code.")
TwoFactorAlreadyEnabled = _error_type(domain.TwoFactorAlreadyEnabled, "Already on.")
TwoFactorNotPending = _error_type(domain.TwoFactorNotPending, "Call enableTwoFactor first.")
TwoFactorNotEnabled = _error_type(domain.TwoFactorNotEnabled, "Two-factor is off.")
InvalidToken = _error_type(domain.InvalidToken, "The token is invalid or expired.")
InvalidRefreshToken = _error_type(domain.InvalidRefreshToken, "Unknown, expired or revoked.")
RefreshTokenReused = _error_type(
    domain.RefreshTokenReused, "A rotated refresh token was presented; the session is revoked."
)
NotAuthenticated = _error_type(domain.NotAuthenticated, "Sign in first.")
Forbidden = _error_type(domain.Forbidden, "Not allowed for this account.")
EmailAlreadyVerified = _error_type(domain.EmailAlreadyVerified, "Nothing to verify.")
EmailNotVerified = _error_type(domain.EmailNotVerified, "Verify your email address first.")
UnknownCurrency = _error_type(domain.UnknownCurrency, "No such currency.")
CurrencyDisabled = _error_type(domain.CurrencyDisabled, "The currency is disabled.")
InsufficientFunds = _error_type(domain.InsufficientFunds, "Not enough available balance.")
RecipientNotFound = _error_type(domain.RecipientNotFound, "No user with that email or handle.")
TransferToSelf = _error_type(domain.TransferToSelf, "Sender and recipient are the same.")
IdempotencyKeyReused = _error_type(
    domain.IdempotencyKeyReused, "The key was used for a different request."
)
NotFound = _error_type(domain.NotFound, "Nothing with that id is visible to you.")
HandleTaken = _error_type(domain.HandleTaken, "Another account uses this handle.")
KycRequired = _error_type(domain.KycRequired, "Verify your identity (KYC level 1) first.")
KycAlreadyPending = _error_type(domain.KycAlreadyPending, "A submission is waiting for review.")
KycNotPending = _error_type(domain.KycNotPending, "No submission is waiting for review.")
Underage = _error_type(domain.Underage, "The applicant is younger than 18.")
WithdrawalNotSupported = _error_type(
    domain.WithdrawalNotSupported, "This currency cannot be withdrawn to an address."
)
BelowMinimumWithdrawal = _error_type(
    domain.BelowMinimumWithdrawal, "The amount is below the currency's minimum withdrawal."
)
InvalidAddress = _error_type(domain.InvalidAddress, "Not an address of this currency's chain.")
DailyLimitExceeded = _error_type(
    domain.DailyLimitExceeded, "Over the daily limit of your KYC level (in USD)."
)
WithdrawalStatusConflict = _error_type(
    domain.WithdrawalStatusConflict, "The withdrawal's status does not allow this."
)
DepositMethodNotSupported = _error_type(
    domain.DepositMethodNotSupported, "Fiat is deposited by card, crypto to an address."
)
PaymentRejected = _error_type(domain.PaymentRejected, "The card payment provider refused it.")
TxHashConflict = _error_type(
    domain.TxHashConflict, "The transaction was credited before with other details."
)
StakingProductClosed = _error_type(domain.StakingProductClosed, "The product takes no new stakes.")
BelowStakingMinimum = _error_type(
    domain.BelowStakingMinimum, "The amount is below the product's minimum."
)
StakingLimitExceeded = _error_type(
    domain.StakingLimitExceeded, "Over the product's maximum per user."
)
StakingCapacityExceeded = _error_type(
    domain.StakingCapacityExceeded, "Over the product's remaining capacity."
)
StakeNotActive = _error_type(domain.StakeNotActive, "The stake has matured or was redeemed.")
UnstakeExceedsStake = _error_type(domain.UnstakeExceedsStake, "More than the stake's principal.")
PenaltyNotAccepted = _error_type(
    domain.PenaltyNotAccepted,
    "Early redemption of a locked stake forfeits this term's rewards: send acceptPenalty.",
)
RateLimited = _error_type(
    domain.RateLimited, "Too many attempts: wait (HTTP: the Retry-After header) and retry."
)

_BY_DOMAIN: dict[type[domain.UserError], type[Error]] = {
    getattr(domain, cls.__name__): cls
    for cls in (
        ValidationFailed,
        WeakPassword,
        EmailAlreadyRegistered,
        InvalidCredentials,
        TwoFactorRequired,
        InvalidTwoFactorCode,
        TwoFactorAlreadyEnabled,
        TwoFactorNotPending,
        TwoFactorNotEnabled,
        InvalidToken,
        InvalidRefreshToken,
        RefreshTokenReused,
        NotAuthenticated,
        Forbidden,
        EmailAlreadyVerified,
        EmailNotVerified,
        UnknownCurrency,
        CurrencyDisabled,
        InsufficientFunds,
        RecipientNotFound,
        HandleTaken,
        TransferToSelf,
        IdempotencyKeyReused,
        NotFound,
        KycRequired,
        KycAlreadyPending,
        KycNotPending,
        Underage,
        WithdrawalNotSupported,
        BelowMinimumWithdrawal,
        InvalidAddress,
        DailyLimitExceeded,
        WithdrawalStatusConflict,
        DepositMethodNotSupported,
        PaymentRejected,
        TxHashConflict,
        StakingProductClosed,
        BelowStakingMinimum,
        StakingLimitExceeded,
        StakingCapacityExceeded,
        StakeNotActive,
        UnstakeExceedsStake,
        PenaltyNotAccepted,
        RateLimited,
    )
}


# --- trading -------------------------------------------------------------------------------
UnknownMarket = _error_type(trading.UnknownMarket, "No market with that symbol.")
MarketHalted = _error_type(trading.MarketHalted, "The market takes no new orders for now.")
InvalidOrder = _error_type(trading.InvalidOrder, "Parameters that do not fit the order type.")
PriceOffTick = _error_type(trading.PriceOffTick, "The price is not a multiple of the tick size.")
QuantityOffLotSize = _error_type(
    trading.QuantityOffLotSize, "The quantity is not a multiple of the lot size."
)
BelowMinimumNotional = _error_type(
    trading.BelowMinimumNotional, "The order is worth less than the market's minimum."
)
PriceOutsideBand = _error_type(trading.PriceOutsideBand, "Too far from the last price.")
StopPriceWrongSide = _error_type(
    trading.StopPriceWrongSide, "The trigger price is on the wrong side of the last price."
)
PostOnlyWouldTake = _error_type(trading.PostOnlyWouldTake, "A post-only order would trade.")
FokNotFillable = _error_type(
    trading.FokNotFillable, "A fill-or-kill order could not fill completely."
)
OrderNotCancellable = _error_type(trading.OrderNotCancellable, "The order is no longer open.")
OrderNotAmendable = _error_type(
    trading.OrderNotAmendable, "Only a resting LIMIT order (not in a list) can be amended."
)
InvalidAmend = _error_type(trading.InvalidAmend, "The new quantity must stay above the filled.")
TradingDisabled = _error_type(trading.TradingDisabled, "Your kill switch is on.")
TooManyOpenOrders = _error_type(trading.TooManyOpenOrders, "Too many open orders.")
OrderTooLarge = _error_type(trading.OrderTooLarge, "The order is worth more than the maximum.")
ClientOrderIdReused = _error_type(
    trading.ClientOrderIdReused, "The client id was used for a different order."
)
OrderNotFound = _error_type(trading.OrderNotFound, "You have no order with that id.")

_BY_DOMAIN.update(
    {
        getattr(trading, cls.__name__): cls
        for cls in (
            UnknownMarket,
            MarketHalted,
            InvalidOrder,
            PriceOffTick,
            QuantityOffLotSize,
            BelowMinimumNotional,
            PriceOutsideBand,
            StopPriceWrongSide,
            PostOnlyWouldTake,
            FokNotFillable,
            OrderNotCancellable,
            OrderNotAmendable,
            InvalidAmend,
            TradingDisabled,
            TooManyOpenOrders,
            OrderTooLarge,
            ClientOrderIdReused,
            OrderNotFound,
        )
    }
)


# --- social trading: leaders and following ---------------------------------------------------
AlreadyLeader = _error_type(social.AlreadyLeader, "You lead already: updateLeaderProfile.")
ProfitShareOutOfRange = _error_type(
    social.ProfitShareOutOfRange, "The profit share is a percentage from 0 to 30."
)
NotALeader = _error_type(social.NotALeader, "There is no such leader.")
LeaderNotInviteOnly = _error_type(
    social.LeaderNotInviteOnly, "Invitations are for INVITE_ONLY leaders."
)
CannotFollowSelf = _error_type(social.CannotFollowSelf, "You cannot follow yourself.")
InviteRequired = _error_type(social.InviteRequired, "The leader has not invited you.")
LeaderStopped = _error_type(social.LeaderStopped, "The leader has stopped leading.")
BelowMinimumAllocation = _error_type(
    social.BelowMinimumAllocation, "The allocation is below the leader's minimum."
)
InvalidFollowParameters = _error_type(
    social.InvalidFollowParameters, "A follow parameter is out of range (see field)."
)
AlreadyFollowing = _error_type(social.AlreadyFollowing, "You follow this leader already.")
LeaderCannotFollow = _error_type(social.LeaderCannotFollow, "Leaders may not follow anyone.")
FollowStatusConflict = _error_type(
    social.FollowStatusConflict, "The follow's status does not allow this."
)

_BY_DOMAIN.update(
    {
        getattr(social, cls.__name__): cls
        for cls in (
            AlreadyLeader,
            ProfitShareOutOfRange,
            NotALeader,
            LeaderNotInviteOnly,
            CannotFollowSelf,
            InviteRequired,
            LeaderStopped,
            BelowMinimumAllocation,
            InvalidFollowParameters,
            AlreadyFollowing,
            LeaderCannotFollow,
            FollowStatusConflict,
        )
    }
)


@strawberry.enum(description="The rules of becoming a leader, in the order they are checked.")
class LeaderEligibilityRule(Enum):
    EMAIL_VERIFIED = "EMAIL_VERIFIED"
    KYC_LEVEL = "KYC_LEVEL"
    MINIMUM_EQUITY = "MINIMUM_EQUITY"
    CLOSED_TRADES = "CLOSED_TRADES"
    NOT_FOLLOWING = "NOT_FOLLOWING"


@strawberry.type(description="A rule for leaders is not met (rule says which).")
class LeaderIneligible(Error):
    rule: LeaderEligibilityRule


# --- notifications and price alerts --------------------------------------------------------
TooManyPriceAlerts = _error_type(
    notifications.TooManyPriceAlerts, "You have as many active price alerts as allowed."
)
_BY_DOMAIN[notifications.TooManyPriceAlerts] = TooManyPriceAlerts


def to_graphql_error(error: domain.UserError) -> Error:
    if isinstance(error, social.LeaderIneligible):
        return LeaderIneligible(
            code=error.code, message=error.message, rule=LeaderEligibilityRule(error.rule.value)
        )
    cls = _BY_DOMAIN[type(error)]
    return cls(code=error.code, message=error.message, field=error.field)  # type: ignore[call-arg]
