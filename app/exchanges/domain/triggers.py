"""Emulated stops on connected exchange accounts, pure: when the exchange's trades fire
one, and what is sent when it fires.

A stop the exchange has no native order for (``OrderTypeSupport.emulated``) is held by
the platform ARMED. It fires on the first trade at or beyond its stop price (the
direction is the platform's own rule, ``fires_rising``) among the trades made since it
was armed and no older than the freshness limit: trades older than that are stale and
fire nothing (a platform that was down, or an exchange that stopped publishing, must not
fire a stop at a price long gone). Fired, its child is sent with the order's own client
order id: a STOP_LOSS as a MARKET order, a STOP_LOSS_LIMIT as a LIMIT order at its
price. A stop whose account is suspended or disconnected can never fire: it is disarmed
in the status change's transaction, its note ACCOUNT_SUSPENDED or ACCOUNT_DISCONNECTED
(``app.exchanges.protections``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from app.exchanges.domain.orders import ExchangeOrderStatus, ExchangeOrderType, OrderSubmission
from app.marketdata.domain.trades import Trade
from app.trading.domain.orders import Side, Trigger, fires_rising

STALE_PRICES = "STALE_PRICES"  # the note of an armed order checked without fresh trades
# the notes of stops disarmed (and lists ended) by their account's status change
ACCOUNT_SUSPENDED = "ACCOUNT_SUSPENDED"  # the key check failed (app/exchanges/accounts.py)
ACCOUNT_DISCONNECTED = "ACCOUNT_DISCONNECTED"  # its owner disconnected it
CHILD_TYPES = {
    ExchangeOrderType.STOP_LOSS: ExchangeOrderType.MARKET,
    ExchangeOrderType.STOP_LOSS_LIMIT: ExchangeOrderType.LIMIT,
}


class TriggerState(StrEnum):
    ARMED = "ARMED"  # held by the platform, watching the exchange's trades
    TRIGGERED = "TRIGGERED"  # fired: its child was (or is being) sent
    DISARMED = "DISARMED"  # canceled before it fired


def trigger_state(
    *, emulated: bool, status: ExchangeOrderStatus, triggered_at: datetime | None
) -> TriggerState | None:
    """An emulated order's trigger state (None for a native order)."""
    if not emulated:
        return None
    if status is ExchangeOrderStatus.ARMED:
        return TriggerState.ARMED
    return TriggerState.DISARMED if triggered_at is None else TriggerState.TRIGGERED


def stop_crossed(side: Side, stop: Decimal, price: Decimal) -> bool:
    """Whether a trade at ``price`` fires a stop order on ``side`` at ``stop``: a SELL's
    stop when the price falls to it, a BUY's when it rises to it."""
    return price >= stop if fires_rising(Trigger.STOP, side) else price <= stop


@dataclass(frozen=True, slots=True)
class Armed:
    """What the trigger rule needs of an armed order."""

    side: Side
    stop: Decimal
    armed_at: datetime


@dataclass(frozen=True, slots=True)
class Verdict:
    """Fired at ``price``; else not (``note``: why nothing could be decided, e.g. STALE_PRICES)."""

    price: Decimal | None = None
    note: str | None = None


def judge(order: Armed, trades: Sequence[Trade], *, now: datetime, max_age: timedelta) -> Verdict:
    """The first trade (oldest first) since the order was armed and within ``max_age``
    of ``now`` that crosses its stop; STALE_PRICES when no trade is that fresh."""
    fresh = [t for t in trades if t.time >= now - max_age]
    if not fresh:
        return Verdict(note=STALE_PRICES)
    for trade in sorted(fresh, key=lambda t: t.time):
        if trade.time >= order.armed_at and stop_crossed(order.side, order.stop, trade.price):
            return Verdict(price=trade.price)
    return Verdict()


def child_of(submission: OrderSubmission) -> OrderSubmission:
    """What is sent when the stop fires: the order itself, as a market or limit order
    (same client order id, side, quantity; a limit keeps its price)."""
    return replace(submission, type=CHILD_TYPES[submission.type], stop_price=None)
