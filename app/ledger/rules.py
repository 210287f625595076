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
    paper funding      PAPER_EQUITY -x      paper account PAPER_AVAILABLE +x

Paper trading has a book of its own (``app/paper``: its own tables): a paper account's
PAPER_AVAILABLE / PAPER_HELD (``paper_account_id`` set) funded from PAPER_EQUITY. An
entry is in one book: one that mixes paper and real accounts is refused
(``check_balanced``), so paper money never reaches a real balance, nor the reverse.

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
    # the paper book (app/paper): a paper account's, and its source of play money
    PAPER_AVAILABLE = "PAPER_AVAILABLE"
    PAPER_HELD = "PAPER_HELD"
    PAPER_EQUITY = "PAPER_EQUITY"


USER_ACCOUNT_KINDS = frozenset({AccountKind.AVAILABLE, AccountKind.HELD, AccountKind.STAKED})
PAPER_ACCOUNT_KINDS = frozenset({AccountKind.PAPER_AVAILABLE, AccountKind.PAPER_HELD})
PAPER_KINDS = PAPER_ACCOUNT_KINDS | {AccountKind.PAPER_EQUITY}
SYSTEM_ACCOUNT_KINDS = frozenset(AccountKind) - USER_ACCOUNT_KINDS - PAPER_KINDS


@dataclass(frozen=True, slots=True)
class AccountRef:
    """Which ledger account: a user's (user_id set) or the platform's (user_id None)."""

    currency: str
    kind: AccountKind
    user_id: int | None = None
    paper_account_id: int | None = None  # the paper book's accounts (PAPER_ACCOUNT_KINDS)

    def __post_init__(self) -> None:
        if self.kind in PAPER_KINDS:
            if self.user_id is not None or (self.paper_account_id is None) != (
                self.kind is AccountKind.PAPER_EQUITY
            ):
                raise InvariantViolation(f"{self.kind} account of {self.paper_account_id}")
        elif self.paper_account_id is not None or (self.user_id is None) != (
            self.kind in SYSTEM_ACCOUNT_KINDS
        ):
            raise InvariantViolation(f"{self.kind} account with user_id={self.user_id}")

    @property
    def paper(self) -> bool:
        return self.kind in PAPER_KINDS


@dataclass(frozen=True, slots=True)
class Leg:
    account: AccountRef
    amount: Decimal  # signed: positive raises the account's balance


def check_balanced(legs: Iterable[Leg]) -> None:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    count = 0
    books = set()
    for leg in legs:
        books.add(leg.account.paper)
        if leg.amount == 0:
            raise InvariantViolation("a posting of zero")
        totals[leg.account.currency] += leg.amount
        count += 1
    if count < 2:
        raise InvariantViolation("an entry needs at least two postings")
    if len(books) > 1:
        raise InvariantViolation("an entry mixes paper and real accounts")
    unbalanced = {c: t for c, t in totals.items() if t != 0}
    if unbalanced:
        raise InvariantViolation(f"entry does not balance: {unbalanced}")


def move(amount: Decimal, source: AccountRef, destination: AccountRef) -> list[Leg]:
    return [Leg(source, -amount), Leg(destination, amount)]
