"""Social trading rules (issue 5): who may lead, what a follow's parameters may be, the
follow's status machine, and the statistics maths. Pure: no database, no GraphQL.

Errors and their stable codes, next to the tree in ``app.core.errors``:

    UserError                    fix the input and try again; nothing was changed
    ├── LeaderIneligible         an eligibility rule failed (``rule`` says which)
    ├── AlreadyLeader            becomeLeader while ACTIVE
    ├── ProfitShareOutOfRange    profitSharePercent outside 0..30
    ├── NotALeader               no (such) leader profile
    ├── LeaderNotInviteOnly      inviteFollower by a PUBLIC leader
    ├── CannotFollowSelf
    ├── InviteRequired           an INVITE_ONLY leader who has not invited you
    ├── LeaderStopped            the leader stopped leading: no new or resumed follows
    ├── BelowMinimumAllocation   allocation under the leader's minimumAllocation
    ├── InvalidFollowParameters  a follow parameter out of range (``field`` says which)
    ├── AlreadyFollowing         a live follow of this leader exists
    ├── LeaderCannotFollow       an ACTIVE leader may not follow anyone
    └── FollowStatusConflict     the follow's status does not allow this

Codes are part of the public API: never rename one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum

from app.core.errors import UserError, ValidationFailed
from app.trading.domain.positions import Position

FOLLOW_QUOTE = "USDT"  # the currency of allocations, fixed amounts and caps
MAX_PROFIT_SHARE = Decimal(30)
MAX_SLIPPAGE = Decimal("0.1")  # 10 % from the leader's fill price
DEFAULT_SLIPPAGE = Decimal("0.01")
MAX_DISPLAY_NAME = 64
MAX_BIO = 1000
RATIO_PLACES = Decimal("1e-8")  # roi and fidelity


class Visibility(StrEnum):
    PUBLIC = "PUBLIC"
    INVITE_ONLY = "INVITE_ONLY"


class LeaderStatus(StrEnum):
    ACTIVE = "ACTIVE"
    STOPPED = "STOPPED"


class FollowMode(StrEnum):
    FIXED_AMOUNT = "FIXED_AMOUNT"  # this much quote per copied order
    FIXED_RATIO = "FIXED_RATIO"  # a multiple of the leader's quantity
    EQUITY_PROPORTIONAL = "EQUITY_PROPORTIONAL"  # the leader's fraction of equity


class FollowStatus(StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    STOPPED = "STOPPED"


class PauseReason(StrEnum):
    USER = "USER"  # pauseFollow
    STOP_LOSS = "STOP_LOSS"  # the copy worker, when the portfolio stop-loss is hit


class EligibilityRule(StrEnum):
    """The rules of becoming a leader, in the order they are checked."""

    EMAIL_VERIFIED = "EMAIL_VERIFIED"
    KYC_LEVEL = "KYC_LEVEL"
    MINIMUM_EQUITY = "MINIMUM_EQUITY"
    CLOSED_TRADES = "CLOSED_TRADES"
    NOT_FOLLOWING = "NOT_FOLLOWING"


# --- errors -------------------------------------------------------------------------------


class LeaderIneligible(UserError):
    code = "LEADER_INELIGIBLE"
    description = "A rule for leaders is not met (rule says which)."
    default_message = "You do not meet the rules for leaders yet"

    def __init__(self, rule: EligibilityRule, message: str) -> None:
        super().__init__(message)
        self.rule = rule


class AlreadyLeader(UserError):
    code = "ALREADY_LEADER"
    description = "You lead already: updateLeaderProfile."
    default_message = "You are already leading: use updateLeaderProfile"


class ProfitShareOutOfRange(UserError):
    code = "PROFIT_SHARE_OUT_OF_RANGE"
    description = "The profit share is a percentage from 0 to 30."
    default_message = f"The profit share is a percentage from 0 to {MAX_PROFIT_SHARE}"


class NotALeader(UserError):
    code = "NOT_A_LEADER"
    description = "There is no such leader."
    default_message = "There is no such leader"


class LeaderNotInviteOnly(UserError):
    code = "LEADER_NOT_INVITE_ONLY"
    description = "Invitations are for INVITE_ONLY leaders."
    default_message = "Anyone may follow a PUBLIC leader: invitations are for INVITE_ONLY"


class CannotFollowSelf(UserError):
    code = "CANNOT_FOLLOW_SELF"
    description = "You cannot follow yourself."
    default_message = "You cannot follow yourself"


class InviteRequired(UserError):
    code = "INVITE_REQUIRED"
    description = "The leader has not invited you."
    default_message = "This leader takes followers by invitation only"


class LeaderStopped(UserError):
    code = "LEADER_STOPPED"
    description = "The leader has stopped leading."
    default_message = "This leader has stopped leading"


class BelowMinimumAllocation(UserError):
    code = "BELOW_MINIMUM_ALLOCATION"
    description = "The allocation is below the leader's minimum."
    default_message = "The allocation is below the leader's minimum"


class InvalidFollowParameters(UserError):
    code = "INVALID_FOLLOW_PARAMETERS"
    description = "A follow parameter is out of range (see field)."
    default_message = "A follow parameter is out of range"


class AlreadyFollowing(UserError):
    code = "ALREADY_FOLLOWING"
    description = "You follow this leader already."
    default_message = "You already follow this leader"


class LeaderCannotFollow(UserError):
    code = "LEADER_CANNOT_FOLLOW"
    description = "Leaders may not follow anyone."
    default_message = "Leaders may not follow anyone: stop leading first"


class FollowStatusConflict(UserError):
    code = "FOLLOW_STATUS_CONFLICT"
    description = "The follow's status does not allow this."
    default_message = "The follow's status does not allow this"


# --- eligibility --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EligibilityRules:
    min_kyc_level: int = 1
    min_equity_usd: Decimal = Decimal(100)
    min_closed_trades: int = 5


@dataclass(frozen=True, slots=True)
class EligibilityFacts:
    """What the rules look at. A closed trade is one SELL fill of the user."""

    email_verified: bool
    kyc_level: int
    equity_usd: Decimal
    closed_trades: int
    live_follows: int  # ACTIVE or PAUSED follows of other leaders


def check_eligibility(facts: EligibilityFacts, rules: EligibilityRules) -> None:
    """Raise ``LeaderIneligible`` naming the first rule (in ``EligibilityRule`` order)
    that ``facts`` fail."""
    if not facts.email_verified:
        raise LeaderIneligible(EligibilityRule.EMAIL_VERIFIED, "Verify your email address first")
    if facts.kyc_level < rules.min_kyc_level:
        raise LeaderIneligible(
            EligibilityRule.KYC_LEVEL, f"Leaders need KYC level {rules.min_kyc_level}"
        )
    if facts.equity_usd < rules.min_equity_usd:
        raise LeaderIneligible(
            EligibilityRule.MINIMUM_EQUITY,
            f"Leaders need an equity of at least {rules.min_equity_usd.normalize():f} USD",
        )
    if facts.closed_trades < rules.min_closed_trades:
        raise LeaderIneligible(
            EligibilityRule.CLOSED_TRADES,
            f"Leaders need at least {rules.min_closed_trades} closed trades (sell fills)",
        )
    if facts.live_follows:
        raise LeaderIneligible(
            EligibilityRule.NOT_FOLLOWING, "Unfollow every leader you follow first"
        )


# --- the leader's profile -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeaderProfile:
    display_name: str
    bio: str
    profit_share_percent: Decimal
    minimum_allocation: Decimal
    visibility: Visibility


def validate_profile(profile: LeaderProfile) -> LeaderProfile:
    """The profile with its text trimmed; typed errors for values out of range."""
    name = profile.display_name.strip()
    if not name or len(name) > MAX_DISPLAY_NAME or not name.isprintable():
        raise ValidationFailed(f"1 to {MAX_DISPLAY_NAME} printable characters", field="displayName")
    bio = profile.bio.strip()
    if len(bio) > MAX_BIO:
        raise ValidationFailed(f"At most {MAX_BIO} characters", field="bio")
    share = profile.profit_share_percent
    if not share.is_finite() or not Decimal(0) <= share <= MAX_PROFIT_SHARE:
        raise ProfitShareOutOfRange(field="profitSharePercent")
    if share != share.quantize(Decimal("0.01")):
        raise ProfitShareOutOfRange("At most two decimal places", field="profitSharePercent")
    minimum = profile.minimum_allocation
    if not minimum.is_finite() or minimum < 0:
        raise ValidationFailed("Zero or more", field="minimumAllocation")
    return replace(profile, display_name=name, bio=bio)


# --- follow parameters --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FollowParameters:
    """A follow's sizing and caps, amounts in ``FOLLOW_QUOTE``. Only the sizing parameter
    of ``mode`` is set (``fixed_amount`` for FIXED_AMOUNT, ``ratio`` for FIXED_RATIO)."""

    allocation: Decimal
    mode: FollowMode
    fixed_amount: Decimal | None = None
    ratio: Decimal | None = None
    max_order_notional: Decimal | None = None
    max_position_per_asset: Decimal | None = None
    allowed_symbols: tuple[str, ...] | None = None  # None: every market
    slippage_tolerance: Decimal = DEFAULT_SLIPPAGE
    stop_loss_percent: Decimal | None = None  # of the allocation
    close_positions_on_stop_loss: bool = False


def _positive(value: Decimal | None, field: str, *, required: bool = False) -> None:
    if value is None:
        if required:
            raise InvalidFollowParameters(f"{field} is required by this mode", field=field)
        return
    if not value.is_finite() or value <= 0:
        raise InvalidFollowParameters(f"{field} must be greater than 0", field=field)


def _symbols(symbols: Iterable[str] | None) -> tuple[str, ...] | None:
    if symbols is None:
        return None
    cleaned = tuple(dict.fromkeys(s.strip().upper() for s in symbols))
    if not cleaned or "" in cleaned:
        raise InvalidFollowParameters(
            "List at least one symbol (or leave it out to copy every market)",
            field="allowedSymbols",
        )
    return cleaned


def validate_follow(params: FollowParameters) -> FollowParameters:
    """``params`` normalised (symbols upper-case without duplicates); a typed error for
    the first parameter out of range. Symbols are checked against the markets by the
    service (``unknown_symbols``)."""
    _positive(params.allocation, "allocation", required=True)
    _positive(params.fixed_amount, "fixedAmount", required=params.mode is FollowMode.FIXED_AMOUNT)
    _positive(params.ratio, "ratio", required=params.mode is FollowMode.FIXED_RATIO)
    if params.mode is not FollowMode.FIXED_AMOUNT and params.fixed_amount is not None:
        raise InvalidFollowParameters("fixedAmount is for FIXED_AMOUNT only", field="fixedAmount")
    if params.mode is not FollowMode.FIXED_RATIO and params.ratio is not None:
        raise InvalidFollowParameters("ratio is for FIXED_RATIO only", field="ratio")
    _positive(params.max_order_notional, "maxOrderNotional")
    _positive(params.max_position_per_asset, "maxPositionPerAsset")
    slippage = params.slippage_tolerance
    if not slippage.is_finite() or not Decimal(0) <= slippage <= MAX_SLIPPAGE:
        raise InvalidFollowParameters(
            f"slippageTolerance is a fraction from 0 to {MAX_SLIPPAGE}", field="slippageTolerance"
        )
    stop = params.stop_loss_percent
    if stop is not None and (not stop.is_finite() or not Decimal(0) < stop <= 100):
        raise InvalidFollowParameters(
            "stopLossPercent is a percentage above 0, at most 100", field="stopLossPercent"
        )
    return replace(params, allowed_symbols=_symbols(params.allowed_symbols))


def unknown_symbols(params: FollowParameters, known: Iterable[str]) -> list[str]:
    return sorted(set(params.allowed_symbols or ()) - set(known))


# --- the follow's status ------------------------------------------------------------------


class FollowAction(StrEnum):
    PAUSE = "PAUSE"
    RESUME = "RESUME"
    UPDATE = "UPDATE"
    UNFOLLOW = "UNFOLLOW"


FOLLOW_TRANSITIONS: dict[tuple[FollowStatus, FollowAction], FollowStatus] = {
    (FollowStatus.ACTIVE, FollowAction.PAUSE): FollowStatus.PAUSED,
    (FollowStatus.PAUSED, FollowAction.RESUME): FollowStatus.ACTIVE,
    (FollowStatus.ACTIVE, FollowAction.UPDATE): FollowStatus.ACTIVE,
    (FollowStatus.PAUSED, FollowAction.UPDATE): FollowStatus.PAUSED,
    (FollowStatus.ACTIVE, FollowAction.UNFOLLOW): FollowStatus.STOPPED,
    (FollowStatus.PAUSED, FollowAction.UNFOLLOW): FollowStatus.STOPPED,
}


def follow_transition(status: FollowStatus, action: FollowAction) -> FollowStatus:
    """The status ``action`` leads to; ``FollowStatusConflict`` when it is not allowed."""
    try:
        return FOLLOW_TRANSITIONS[(status, action)]
    except KeyError:
        raise FollowStatusConflict(
            f"A {status.value} follow cannot {action.value.lower()}", field="id"
        ) from None


# --- statistics ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeldPosition:
    """What a follow holds of one asset, its cost, and the asset's last price in the
    follow's quote (None before the market's first trade)."""

    quantity: Decimal
    cost: Decimal
    last_price: Decimal | None


def unrealized_pnl(positions: Iterable[HeldPosition]) -> Decimal:
    """Market value less cost of what is held; an asset without a price counts at cost."""
    return sum(
        (
            Position(p.quantity, p.cost).unrealized(p.last_price)
            for p in positions
            if p.quantity > 0 and p.last_price is not None
        ),
        Decimal(0),
    )


def ratio(numerator: Decimal, denominator: Decimal | None) -> Decimal | None:
    """numerator / denominator to ``RATIO_PLACES``; None when it cannot be computed."""
    if denominator is None or denominator == 0:
        return None
    return (numerator / denominator).quantize(RATIO_PLACES)


def leader_return(start_equity: Decimal | None, end_equity: Decimal | None) -> Decimal | None:
    """The leader's return between two equity snapshots; None without both or from 0."""
    if start_equity is None or end_equity is None or start_equity <= 0:
        return None
    return (end_equity - start_equity) / start_equity


def fidelity(follower_return: Decimal, leader_ret: Decimal | None) -> Decimal | None:
    """The follower's return divided by the leader's over the same period; None when the
    leader's return is unknown or zero."""
    return ratio(follower_return, leader_ret)
