"""Withdrawal rules, independent of storage: the status machine, destination address
formats per chain, USD valuation, the daily limit and the hot-wallet sweep.

Lifecycle (``TRANSITIONS`` is the whole truth; ``apply`` refuses anything else)::

    request ──► PENDING_REVIEW ──approve──► APPROVED ──send──► SENT
                   │     │                     │  │
                reject  cancel              cancel fail
                   ▼     ▼                     ▼  ▼
               REJECTED CANCELED          CANCELED FAILED

A request at or below the review threshold starts APPROVED (unless the account is
flagged). Every way out other than
SENT releases the hold; SENT spends it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum

from app.core.errors import (
    DailyLimitExceeded,
    InvalidAddress,
    WithdrawalNotSupported,
    WithdrawalStatusConflict,
)
from app.core.money import CENT

ADDRESS_FIELD = "destinationAddress"


class WithdrawalStatus(StrEnum):
    PENDING_REVIEW = "PENDING_REVIEW"
    APPROVED = "APPROVED"
    SENT = "SENT"
    REJECTED = "REJECTED"
    CANCELED = "CANCELED"
    FAILED = "FAILED"


class WithdrawalEvent(StrEnum):
    APPROVE = "APPROVE"
    REJECT = "REJECT"
    CANCEL = "CANCEL"
    SEND = "SEND"
    FAIL = "FAIL"


_S, _E = WithdrawalStatus, WithdrawalEvent
TRANSITIONS: Mapping[tuple[WithdrawalStatus, WithdrawalEvent], WithdrawalStatus] = {
    (_S.PENDING_REVIEW, _E.APPROVE): _S.APPROVED,
    (_S.PENDING_REVIEW, _E.REJECT): _S.REJECTED,
    (_S.PENDING_REVIEW, _E.CANCEL): _S.CANCELED,
    (_S.APPROVED, _E.SEND): _S.SENT,
    (_S.APPROVED, _E.FAIL): _S.FAILED,
    (_S.APPROVED, _E.CANCEL): _S.CANCELED,
}
RELEASES_HOLD = frozenset({_E.REJECT, _E.CANCEL, _E.FAIL})
# Counted against the daily limit: everything that was not given back.
COUNTS_AGAINST_LIMIT = frozenset({_S.PENDING_REVIEW, _S.APPROVED, _S.SENT})

_VERB = {
    _E.APPROVE: "approved",
    _E.REJECT: "rejected",
    _E.CANCEL: "canceled",
    _E.SEND: "sent",
    _E.FAIL: "failed",
}


def apply(status: WithdrawalStatus | str, event: WithdrawalEvent) -> WithdrawalStatus:
    """The status after ``event``; ``WithdrawalStatusConflict`` when the table has no
    such transition."""
    current = WithdrawalStatus(status)
    try:
        return TRANSITIONS[(current, event)]
    except KeyError:
        raise WithdrawalStatusConflict(
            f"A {current.value} withdrawal cannot be {_VERB[event]}"
        ) from None


def initial_status(
    usd_value: Decimal, *, review_above_usd: Decimal, flagged: bool = False
) -> WithdrawalStatus:
    """Large withdrawals wait for an admin (they are paid from cold storage), and so does
    every withdrawal of a flagged account (a refund or dispute found money missing)."""
    if flagged or usd_value > review_above_usd:
        return WithdrawalStatus.PENDING_REVIEW
    return WithdrawalStatus.APPROVED


# --- destination addresses: sanity checks per chain (data, not branches) -----------------

_BASE58 = "1-9A-HJ-NP-Za-km-z"
_EVM = re.compile(r"0x[0-9a-fA-F]{40}")
ADDRESS_FORMATS: Mapping[str, tuple[re.Pattern[str], ...]] = {
    "BTC": (
        re.compile(r"bc1[02-9ac-hj-np-z]{11,71}"),  # bech32 / bech32m, lower case
        re.compile(r"BC1[02-9AC-HJ-NP-Z]{11,71}"),  # bech32 may be all upper case
        re.compile(rf"[13][{_BASE58}]{{25,34}}"),  # P2PKH / P2SH
    ),
    "ETH": (_EVM,),
    "USDT": (_EVM,),  # paid out as ERC-20
    "SOL": (re.compile(rf"[{_BASE58}]{{32,44}}"),),
}


def check_address(currency: str, address: str) -> str:
    """The trimmed address when it looks like one of ``currency``'s chain."""
    formats = ADDRESS_FORMATS.get(currency)
    if formats is None:
        raise WithdrawalNotSupported(f"{currency} cannot be withdrawn to an address")
    cleaned = address.strip()
    if not any(pattern.fullmatch(cleaned) for pattern in formats):
        raise InvalidAddress(f"This is not a valid {currency} address", field=ADDRESS_FIELD)
    return cleaned


# --- limits ------------------------------------------------------------------------------


def utc_day(now: datetime) -> tuple[datetime, datetime]:
    """[midnight, next midnight) of ``now``'s UTC calendar day."""
    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def check_daily_limit(*, used_usd: Decimal, requested_usd: Decimal, limit_usd: Decimal) -> None:
    if used_usd + requested_usd > limit_usd:
        left = max(limit_usd - used_usd, Decimal(0)).quantize(CENT, rounding=ROUND_DOWN)
        raise DailyLimitExceeded(
            f"Your daily withdrawal limit is {limit_usd.normalize():f} USD;"
            f" {left:f} USD left today",
            field="amount",
        )


# --- hot wallet --------------------------------------------------------------------------


def sweep_amount(
    *, holdings: Decimal, cap: Decimal, reserved: Decimal, quantum: Decimal
) -> Decimal:
    """What the hot wallet should send to cold storage: everything above the larger of
    its cap and what approved payouts are waiting for (rounded down to the currency's
    minor unit; zero when there is nothing to sweep)."""
    keep = max(cap, reserved)
    excess = (holdings - keep).quantize(quantum, rounding=ROUND_DOWN)
    return excess if excess > 0 else Decimal(0)
