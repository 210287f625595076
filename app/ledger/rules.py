"""Double-entry rules, independent of storage.

Every account has a signed balance equal to the sum of its postings. An entry's postings
sum to zero per currency, so money only moves, it is never created or lost. User accounts
never go negative. System accounts may: a negative balance is value that came from
outside the platform through that account (the "world" convention):

    crypto deposit     HOT_WALLET -x        user AVAILABLE +x
    card deposit       STRIPE_CLEARING -x   user AVAILABLE +x
    hold (pending)     user AVAILABLE -x    user HELD +x
    hold void          user HELD -x         user AVAILABLE +x
    withdrawal sent    user HELD -(x+f)     HOT_WALLET +x, FEES +f
    sweep to cold      HOT_WALLET +y        COLD_STORAGE -y
    transfer           A AVAILABLE -x       B AVAILABLE +x

so -(HOT_WALLET + COLD_STORAGE + STRIPE_CLEARING + EXTERNAL) equals what users and the
platform's fee account hold: custody always covers the liabilities.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from app.core.errors import InvariantViolation


class AccountKind(StrEnum):
    AVAILABLE = "AVAILABLE"
    HELD = "HELD"
    STAKED = "STAKED"
    # system accounts (no user)
    STRIPE_CLEARING = "STRIPE_CLEARING"
    HOT_WALLET = "HOT_WALLET"
    COLD_STORAGE = "COLD_STORAGE"
    FEES = "FEES"
    STAKING_REWARDS = "STAKING_REWARDS"
    EXTERNAL = "EXTERNAL"


USER_ACCOUNT_KINDS = frozenset({AccountKind.AVAILABLE, AccountKind.HELD, AccountKind.STAKED})
SYSTEM_ACCOUNT_KINDS = frozenset(AccountKind) - USER_ACCOUNT_KINDS


@dataclass(frozen=True, slots=True)
class AccountRef:
    """Which ledger account: a user's (user_id set) or the platform's (user_id None)."""

    currency: str
    kind: AccountKind
    user_id: int | None = None

    def __post_init__(self) -> None:
        if (self.user_id is None) != (self.kind in SYSTEM_ACCOUNT_KINDS):
            raise InvariantViolation(f"{self.kind} account with user_id={self.user_id}")


@dataclass(frozen=True, slots=True)
class Leg:
    account: AccountRef
    amount: Decimal  # signed: positive raises the account's balance


def check_balanced(legs: Iterable[Leg]) -> None:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    count = 0
    for leg in legs:
        if leg.amount == 0:
            raise InvariantViolation("a posting of zero")
        totals[leg.account.currency] += leg.amount
        count += 1
    if count < 2:
        raise InvariantViolation("an entry needs at least two postings")
    unbalanced = {c: t for c, t in totals.items() if t != 0}
    if unbalanced:
        raise InvariantViolation(f"entry does not balance: {unbalanced}")


def move(amount: Decimal, source: AccountRef, destination: AccountRef) -> list[Leg]:
    return [Leg(source, -amount), Leg(destination, amount)]
