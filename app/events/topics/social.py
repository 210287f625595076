"""Copy trading's topics: skipped copies, paused follows, new followers, profit shares."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Self

from app.events.topics.base import Event, Topic, Wire


@dataclass(frozen=True, slots=True)
class CopySkipped:
    """For the follower: a leader's fill was not copied."""

    follow_id: int
    leader_fill_id: int
    symbol: str
    reason: str
    side: str | None = None  # the leader's (BUY / SELL); None in events written before it

    def to_wire(self) -> Wire:
        return {
            "followId": self.follow_id,
            "leaderFillId": self.leader_fill_id,
            "symbol": self.symbol,
            "side": self.side,
            "reason": self.reason,
        }

    @classmethod
    def from_wire(cls, w: Mapping[str, Any]) -> Self:
        return cls(
            follow_id=w["followId"],
            leader_fill_id=w["leaderFillId"],
            symbol=w["symbol"],
            reason=w["reason"],
            side=w.get("side"),
        )


@dataclass(frozen=True, slots=True)
class FollowPaused:
    """For the follower. ``positions_closed``: the positions copied from the leader are
    being sold (the follow's close-on-stop-loss setting). Events written before the two
    last fields read as (None, False)."""

    follow_id: int
    reason: str
    leader_name: str | None = None
    positions_closed: bool = False

    def to_wire(self) -> Wire:
        return {
            "followId": self.follow_id,
            "reason": self.reason,
            "leaderName": self.leader_name,
            "positionsClosed": self.positions_closed,
        }

    @classmethod
    def from_wire(cls, w: Mapping[str, Any]) -> Self:
        return cls(
            follow_id=w["followId"],
            reason=w["reason"],
            leader_name=w.get("leaderName"),
            positions_closed=bool(w.get("positionsClosed", False)),
        )


@dataclass(frozen=True, slots=True)
class NewFollower:
    """For the leader."""

    follow_id: int
    follower_id: int

    def to_wire(self) -> Wire:
        return {"followId": self.follow_id, "followerId": self.follower_id}

    @classmethod
    def from_wire(cls, w: Mapping[str, Any]) -> Self:
        return cls(follow_id=w["followId"], follower_id=w["followerId"])


@dataclass(frozen=True, slots=True)
class ProfitShared:
    """For the leader and for the follower (``role``: LEADER or FOLLOWER)."""

    follow_id: int
    settlement_id: int
    amount: Decimal
    currency: str
    role: str

    def to_wire(self) -> Wire:
        return {
            "followId": self.follow_id,
            "settlementId": self.settlement_id,
            "amount": str(self.amount.normalize()),
            "currency": self.currency,
            "role": self.role,
        }

    @classmethod
    def from_wire(cls, w: Mapping[str, Any]) -> Self:
        return cls(
            follow_id=w["followId"],
            settlement_id=w["settlementId"],
            amount=Decimal(w["amount"]),
            currency=w["currency"],
            role=w["role"],
        )


COPY_SKIPPED = Topic("social.copy_skipped", CopySkipped)
FOLLOW_PAUSED = Topic("social.follow_paused", FollowPaused)
NEW_FOLLOWER = Topic("social.new_follower", NewFollower)
PROFIT_SHARE = Topic("social.profit_share", ProfitShared)


def copy_skipped(user_id: int, payload: CopySkipped) -> Event:
    return COPY_SKIPPED.event(user_id, payload)


def follow_paused(user_id: int, payload: FollowPaused) -> Event:
    return FOLLOW_PAUSED.event(user_id, payload)


def new_follower(user_id: int, payload: NewFollower) -> Event:
    return NEW_FOLLOWER.event(user_id, payload)


def profit_shared(user_id: int, payload: ProfitShared) -> Event:
    return PROFIT_SHARE.event(user_id, payload)
