"""Staking's topics. The daily accrual writes them in SQL (``app.staking.accrual``: its
``jsonb_build_object`` keys are these payloads' wire keys)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Self

from app.events.topics.base import Event, Topic, Wire, opt


@dataclass(frozen=True, slots=True)
class Reward:
    stake_id: int
    product_id: int
    currency: str
    amount: Decimal
    compounded: bool

    def to_wire(self) -> Wire:
        return {
            "stakeId": self.stake_id,
            "productId": self.product_id,
            "currency": self.currency,
            "amount": str(self.amount),
            "compounded": self.compounded,
        }

    @classmethod
    def from_wire(cls, w: Mapping[str, Any]) -> Self:
        return cls(
            stake_id=w["stakeId"],
            product_id=w["productId"],
            currency=w["currency"],
            amount=Decimal(w["amount"]),
            compounded=w["compounded"],
        )


@dataclass(frozen=True, slots=True)
class RewardsPaid:
    """A user's rewards of one accrual day, by stake."""

    date: date
    rewards: tuple[Reward, ...]

    def to_wire(self) -> Wire:
        return {"date": self.date.isoformat(), "rewards": [r.to_wire() for r in self.rewards]}

    @classmethod
    def from_wire(cls, w: Mapping[str, Any]) -> Self:
        return cls(
            date=date.fromisoformat(w["date"]),
            rewards=tuple(Reward.from_wire(r) for r in w["rewards"]),
        )


@dataclass(frozen=True, slots=True)
class StakeEnded:
    """A stake's term ended: renewed (``next_term_ends_on``) or matured (None)."""

    stake_id: int
    product_id: int
    currency: str
    principal: Decimal
    term_rewards: Decimal
    term_ended_on: date
    next_term_ends_on: date | None

    def to_wire(self) -> Wire:
        return {
            "stakeId": self.stake_id,
            "productId": self.product_id,
            "currency": self.currency,
            "principal": str(self.principal),
            "termRewards": str(self.term_rewards),
            "termEndedOn": self.term_ended_on.isoformat(),
            "nextTermEndsOn": opt(self.next_term_ends_on, date.isoformat),
        }

    @classmethod
    def from_wire(cls, w: Mapping[str, Any]) -> Self:
        return cls(
            stake_id=w["stakeId"],
            product_id=w["productId"],
            currency=w["currency"],
            principal=Decimal(w["principal"]),
            term_rewards=Decimal(w["termRewards"]),
            term_ended_on=date.fromisoformat(w["termEndedOn"]),
            next_term_ends_on=opt(w["nextTermEndsOn"], date.fromisoformat),
        )


REWARD_PAID = Topic("staking.reward_paid", RewardsPaid)
STAKE_RENEWED = Topic("staking.stake_renewed", StakeEnded)
STAKE_MATURED = Topic("staking.stake_matured", StakeEnded)


def reward_paid(user_id: int, payload: RewardsPaid) -> Event:
    return REWARD_PAID.event(user_id, payload)


def stake_renewed(user_id: int, payload: StakeEnded) -> Event:
    return STAKE_RENEWED.event(user_id, payload)


def stake_matured(user_id: int, payload: StakeEnded) -> Event:
    return STAKE_MATURED.event(user_id, payload)
