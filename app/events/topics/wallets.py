"""The wallets' topics: transfers received, deposits, withdrawals (each for its owner)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Self

from app.events.topics.base import Event, Topic, Wire, plain


@dataclass(frozen=True, slots=True)
class TransferReceived:
    transfer_id: int
    currency: str
    amount: Decimal
    sender_id: int
    memo: str | None

    def to_wire(self) -> Wire:
        return {
            "transferId": self.transfer_id,
            "currency": self.currency,
            "amount": str(self.amount),
            "senderId": self.sender_id,
            "memo": self.memo,
        }

    @classmethod
    def from_wire(cls, w: Mapping[str, Any]) -> Self:
        return cls(
            transfer_id=w["transferId"],
            currency=w["currency"],
            amount=Decimal(w["amount"]),
            sender_id=w["senderId"],
            memo=w.get("memo"),
        )


@dataclass(frozen=True, slots=True)
class _Deposit:
    """What every deposit event says first: which deposit."""

    deposit_id: int
    method: str
    currency: str

    def _head(self) -> Wire:
        return {"depositId": self.deposit_id, "method": self.method, "currency": self.currency}

    @staticmethod
    def _head_of(w: Mapping[str, Any]) -> dict[str, Any]:
        return {"deposit_id": w["depositId"], "method": w["method"], "currency": w["currency"]}


@dataclass(frozen=True, slots=True)
class DepositCredited(_Deposit):
    amount: Decimal
    balance_after: Decimal
    tx_hash: str | None = None  # a crypto deposit's (a card deposit's event has no key)

    def to_wire(self) -> Wire:
        wire = {**self._head(), "amount": plain(self.amount)}
        wire["balanceAfter"] = plain(self.balance_after)
        if self.tx_hash is not None:
            wire["txHash"] = self.tx_hash
        return wire

    @classmethod
    def from_wire(cls, w: Mapping[str, Any]) -> Self:
        return cls(
            **cls._head_of(w),
            amount=Decimal(w["amount"]),
            balance_after=Decimal(w["balanceAfter"]),
            tx_hash=w.get("txHash"),
        )


@dataclass(frozen=True, slots=True)
class DepositHalted(_Deposit):
    """The deposit failed (``reason``: the provider's, if any), or the provider reported
    a payment that does not match and it is held for review (``reason``: why)."""

    reason: str | None

    def to_wire(self) -> Wire:
        return {**self._head(), "reason": self.reason}

    @classmethod
    def from_wire(cls, w: Mapping[str, Any]) -> Self:
        return cls(**cls._head_of(w), reason=w["reason"])


@dataclass(frozen=True, slots=True)
class DepositReversed(_Deposit):
    amount: Decimal  # taken back
    unrecovered: Decimal  # could not be
    reason: str  # the provider's event type

    def to_wire(self) -> Wire:
        return {
            **self._head(),
            "amount": plain(self.amount),
            "unrecovered": plain(self.unrecovered),
            "reason": self.reason,
        }

    @classmethod
    def from_wire(cls, w: Mapping[str, Any]) -> Self:
        return cls(
            **cls._head_of(w),
            amount=Decimal(w["amount"]),
            unrecovered=Decimal(w["unrecovered"]),
            reason=w["reason"],
        )


@dataclass(frozen=True, slots=True)
class WithdrawalStatusChanged:
    withdrawal_id: int
    status: str
    previous_status: str | None  # None: the request itself
    currency: str
    amount: Decimal
    tx_hash: str | None

    def to_wire(self) -> Wire:
        return {
            "withdrawalId": self.withdrawal_id,
            "status": self.status,
            "previousStatus": self.previous_status,
            "currency": self.currency,
            "amount": plain(self.amount),
            "txHash": self.tx_hash,
        }

    @classmethod
    def from_wire(cls, w: Mapping[str, Any]) -> Self:
        return cls(
            withdrawal_id=w["withdrawalId"],
            status=w["status"],
            previous_status=w.get("previousStatus"),
            currency=w["currency"],
            amount=Decimal(w["amount"]),
            tx_hash=w.get("txHash"),
        )


TRANSFER_RECEIVED = Topic("transfer.received", TransferReceived)
DEPOSIT_CREDITED = Topic("deposit.credited", DepositCredited)
DEPOSIT_FAILED = Topic("deposit.failed", DepositHalted)
DEPOSIT_HELD = Topic("deposit.review_required", DepositHalted)
DEPOSIT_REVERSED = Topic("deposit.reversed", DepositReversed)
WITHDRAWAL_STATUS_CHANGED = Topic("withdrawal.status_changed", WithdrawalStatusChanged)


def transfer_received(user_id: int, payload: TransferReceived) -> Event:
    return TRANSFER_RECEIVED.event(user_id, payload)


def deposit_credited(user_id: int, payload: DepositCredited) -> Event:
    return DEPOSIT_CREDITED.event(user_id, payload)


def deposit_failed(user_id: int, payload: DepositHalted) -> Event:
    return DEPOSIT_FAILED.event(user_id, payload)


def deposit_held(user_id: int, payload: DepositHalted) -> Event:
    return DEPOSIT_HELD.event(user_id, payload)


def deposit_reversed(user_id: int, payload: DepositReversed) -> Event:
    return DEPOSIT_REVERSED.event(user_id, payload)


def withdrawal_status_changed(user_id: int, payload: WithdrawalStatusChanged) -> Event:
    return WITHDRAWAL_STATUS_CHANGED.event(user_id, payload)
