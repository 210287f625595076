"""Notifications, independent of storage: what a domain event tells its owner.

``from_event`` maps one outbox event (topic, owner, payload) to at most one ``Draft``:
its type, priority, title, body (amounts as exact decimal strings) and link (the Relay
global ID of the object it is about). Events that tell the owner nothing new (an order
that opened, a withdrawal the owner just requested) map to None. The mapping is a table,
``_MAPPERS``; its keys are the topics the notification consumer reads.

Topics and the payload keys used (the social events are written by the copy trading
services; a missing optional key only makes the text plainer)::

    orders                      orderId symbol status quantity filledQuantity reason [side]
                                (FILLED, EXPIRED, REJECTED notify; the rest do not)
    deposit.credited            depositId currency amount
    withdrawal.status_changed   withdrawalId status previousStatus currency amount [txHash]
    transfer.received           transferId currency amount [memo]
    social.copy_skipped         followId reason [symbol side]
    social.follow_paused        followId reason [leaderName positionsClosed]
    social.new_follower         followId (the follower is not named: followers stay anonymous)
    social.profit_share         followId settlementId amount currency role (LEADER/FOLLOWER)

Price alerts fire on trades (``app.notifications.price_alerts``); ``price_alert_hit`` drafts
their notification.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from app.core.errors import UserError, ValidationFailed
from app.events import topics
from app.trading.domain.orders import MAX_DECIMAL, MarketSpec
from app.wallets.domain.deposits import plain

Payload = Mapping[str, Any]


class NotificationType(StrEnum):
    TRADE = "TRADE"
    RISK = "RISK"
    PRICE = "PRICE"
    WALLET = "WALLET"
    SOCIAL = "SOCIAL"
    SYSTEM = "SYSTEM"


class Priority(StrEnum):
    """In rising order of urgency."""

    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


DEFAULT_EMAIL_PRIORITIES = (Priority.HIGH, Priority.CRITICAL)


class AlertDirection(StrEnum):
    ABOVE = "ABOVE"  # fires on a trade at or above the alert price
    BELOW = "BELOW"  # fires on a trade at or below it


class AlertStatus(StrEnum):
    ACTIVE = "ACTIVE"
    TRIGGERED = "TRIGGERED"
    DELETED = "DELETED"  # by its owner; no longer listed


class TooManyPriceAlerts(UserError):
    code = "TOO_MANY_PRICE_ALERTS"
    description = "You have as many active price alerts as allowed."
    default_message = "You have reached the maximum number of active price alerts"


@dataclass(frozen=True, slots=True)
class Draft:
    """A notification before it is stored."""

    type: NotificationType
    priority: Priority
    title: str
    body: str
    link: str | None = None


def global_id(type_name: str, pk: object) -> str | None:
    """The Relay global ID of a ``type_name`` node (strawberry's encoding), None without
    a key."""
    if pk is None:
        return None
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode()


def email_priorities(chosen: Iterable[Priority]) -> list[Priority]:
    """The priorities a user wants by email, each once, least urgent first."""
    wanted = set(chosen)
    return [p for p in Priority if p in wanted]


def check_alert_price(market: MarketSpec, price: Decimal) -> None:
    """An alert price is positive and on the market's tick (``PriceOffTick``)."""
    if not price.is_finite() or price <= 0 or price >= MAX_DECIMAL:
        raise ValidationFailed("The price must be a number greater than zero", field="price")
    market.to_ticks(price)


def from_event(topic: str, user_id: int, payload: Payload) -> Draft | None:
    """The notification an event of ``topic`` gives its owner ``user_id``, if any."""
    mapper = _MAPPERS.get(topic)
    return mapper(user_id, payload) if mapper is not None else None


def price_alert_hit(
    *, alert_id: int, symbol: str, direction: AlertDirection, price: Decimal, trade_price: Decimal
) -> Draft:
    side = "at or above" if direction is AlertDirection.ABOVE else "at or below"
    return Draft(
        type=NotificationType.PRICE,
        priority=Priority.HIGH,
        title=f"{symbol} {direction.value.lower()} {plain(price)}",
        body=f"{symbol} traded at {plain(trade_price)}, {side} your alert price {plain(price)}.",
        link=global_id("PriceAlert", alert_id),
    )


# --- one mapper per topic ---------------------------------------------------------------

_ORDER_REASONS = {
    "GTD_EXPIRED": "its time in force ran out",
    "NO_LIQUIDITY": "there was nothing more to trade with",
    "PRICE_LIMIT": "the next price was beyond its limit",
    "SELF_TRADE_PREVENTED": "it would have traded with one of your own orders",
    "FOK_NOT_FILLABLE": "it could not fill completely at once (fill or kill)",
    "POST_ONLY_WOULD_TAKE": "as a post-only order it would have traded on arrival",
    "INVALID_ORDER": "its parameters did not fit the order type",
}


def _amount(value: Any) -> str:
    return plain(Decimal(str(value)))


def _words(code: str) -> str:
    """A reason code as words: "STOP_LOSS" -> "stop loss"."""
    return code.replace("_", " ").lower()


def _order(_user_id: int, p: Payload) -> Draft | None:
    status, symbol = p["status"], p["symbol"]
    base = symbol.split("/")[0]
    side = p.get("side")
    quantity, filled = _amount(p["quantity"]), _amount(p["filledQuantity"])
    link = global_id("Order", p["orderId"])
    what = f"Your {side.lower()} order" if side else "Your order"
    code = p.get("reason") or ""
    reason = _ORDER_REASONS.get(code, _words(code))
    because = f" because {reason}" if reason else ""
    if status == "FILLED":
        done = {"BUY": "bought", "SELL": "sold"}.get(side or "")
        body = (
            f"You {done} {quantity} {base} on {symbol}."
            if done
            else f"{what} for {quantity} {base} on {symbol} has filled."
        )
        return Draft(NotificationType.TRADE, Priority.MEDIUM, "Order filled", body, link)
    if status == "EXPIRED":
        body = f"{what} on {symbol} expired{because}, {filled} of {quantity} {base} filled."
        return Draft(NotificationType.TRADE, Priority.MEDIUM, "Order expired", body, link)
    if status == "REJECTED":
        body = f"{what} for {quantity} {base} on {symbol} was rejected{because}."
        return Draft(NotificationType.TRADE, Priority.HIGH, "Order rejected", body, link)
    return None


def _deposit_credited(_user_id: int, p: Payload) -> Draft:
    return Draft(
        NotificationType.WALLET,
        Priority.MEDIUM,
        "Deposit credited",
        f"{_amount(p['amount'])} {p['currency']} was credited to your wallet.",
        global_id("Deposit", p["depositId"]),
    )


# status -> (priority, title, what happened); a withdrawal's first event (the owner's own
# request) is not notified
_WITHDRAWAL_STATUS = {
    "APPROVED": (Priority.LOW, "Withdrawal approved", "was approved and will be sent shortly"),
    "SENT": (Priority.MEDIUM, "Withdrawal sent", "was sent"),
    "CANCELED": (
        Priority.LOW,
        "Withdrawal canceled",
        "was canceled; the held amount is available again",
    ),
    "REJECTED": (
        Priority.HIGH,
        "Withdrawal rejected",
        "was rejected in review; the held amount is available again",
    ),
    "FAILED": (
        Priority.HIGH,
        "Withdrawal failed",
        "could not be sent; the held amount is available again",
    ),
}


def _withdrawal(_user_id: int, p: Payload) -> Draft | None:
    if p.get("previousStatus") is None or p["status"] not in _WITHDRAWAL_STATUS:
        return None
    priority, title, happened = _WITHDRAWAL_STATUS[p["status"]]
    body = f"Your withdrawal of {_amount(p['amount'])} {p['currency']} {happened}."
    if p["status"] == "SENT" and p.get("txHash"):
        body += f" Transaction: {p['txHash']}."
    return Draft(
        NotificationType.WALLET, priority, title, body, global_id("Withdrawal", p["withdrawalId"])
    )


def _transfer_received(_user_id: int, p: Payload) -> Draft:
    body = f"You received {_amount(p['amount'])} {p['currency']}."
    if p.get("memo"):
        body += f' Memo: "{p["memo"]}".'
    return Draft(
        NotificationType.WALLET,
        Priority.MEDIUM,
        "Transfer received",
        body,
        global_id("Transfer", p["transferId"]),
    )


def _copy_skipped(_user_id: int, p: Payload) -> Draft:
    trade = " ".join(x for x in (p.get("side"), p.get("symbol")) if x)
    what = f"A {trade} trade" if trade else "A trade"
    return Draft(
        NotificationType.SOCIAL,
        Priority.LOW,
        "Copy skipped",
        f"{what} of the leader you follow was not copied: {_words(p['reason'])}.",
        global_id("Follow", p["followId"]),
    )


def _follow_paused(_user_id: int, p: Payload) -> Draft:
    leader = p.get("leaderName") or "a leader"
    body = f"Copying {leader} was paused: {_words(p['reason'])}."
    if p.get("positionsClosed"):
        body += " The positions copied from them are being closed."
    return Draft(
        NotificationType.RISK,
        Priority.HIGH,
        "Copying paused",
        body,
        global_id("Follow", p["followId"]),
    )


def _new_follower(_user_id: int, p: Payload) -> Draft:
    return Draft(
        NotificationType.SOCIAL,
        Priority.MEDIUM,
        "New follower",
        "A new follower now copies your trades.",
        global_id("Follow", p["followId"]),
    )


def _profit_share(user_id: int, p: Payload) -> Draft:
    amount = f"{_amount(p['amount'])} {p['currency']}"
    if p["role"] == "LEADER":  # the event is written once to each party, with its role
        title, body = "Profit share received", f"A follower paid you {amount} of profit share."
    else:
        title = "Profit share paid"
        body = f"{amount} of your copy trading profit went to the leader as profit share."
    return Draft(
        NotificationType.SOCIAL, Priority.MEDIUM, title, body, global_id("Follow", p["followId"])
    )


_MAPPERS: Mapping[str, Callable[[int, Payload], Draft | None]] = {
    topics.ORDERS.named(): _order,
    topics.DEPOSIT_CREDITED.named(): _deposit_credited,
    topics.WITHDRAWAL_STATUS_CHANGED.named(): _withdrawal,
    topics.TRANSFER_RECEIVED.named(): _transfer_received,
    topics.COPY_SKIPPED.named(): _copy_skipped,
    topics.FOLLOW_PAUSED.named(): _follow_paused,
    topics.NEW_FOLLOWER.named(): _new_follower,
    topics.PROFIT_SHARE.named(): _profit_share,
}
EVENT_TOPICS = tuple(_MAPPERS)
