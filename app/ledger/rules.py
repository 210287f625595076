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
    bot funding        owner AVAILABLE -x   bot sub-account AVAILABLE +x (and back: release)
    trade              buyer HELD quote -(v+bf), seller HELD base -q
                       seller AVAILABLE quote +(v-sf), buyer AVAILABLE base +q, FEES +(bf+sf)
    paper funding      PAPER_EQUITY -x      paper account PAPER_AVAILABLE +x

so -(HOT_WALLET + COLD_STORAGE + STRIPE_CLEARING + EXTERNAL) equals what users and the
platform's fee account hold: custody always covers the liabilities.

Exchange custody is a book of its own per connected exchange account (``app.exchanges``:
what a user holds at an exchange, mirrored, never the platform's): its EXCHANGE_FREE and
EXCHANGE_USED accounts per currency (``exchange_account_id`` set) against the
connection's EXCHANGE_COUNTERPARTY (the exchange, by the "world" convention):

    exchange sync      EXCHANGE_COUNTERPARTY -x   EXCHANGE_FREE / EXCHANGE_USED +x (or back)

An entry is in one book (the platform's, the paper book, or one connection's exchange
custody): ``check_balanced`` refuses one that mixes them, and no flow but EXCHANGE_SYNC
and EXCHANGE_CLOSE takes or gives an exchange kind, so platform money never moves into
or out of a mirror account.

Paper trading has a book of its own (``app/paper``: its own tables): a paper account's
PAPER_AVAILABLE / PAPER_HELD (``paper_account_id`` set) funded from PAPER_EQUITY. An
entry is in one book: one that mixes paper and real accounts is refused
(``check_balanced``), so paper money never reaches a real balance, nor the reverse.

Each kind of entry is a flow (``FLOWS``): the kinds of account it may take from and the
kinds it may give to. ``check_entry`` refuses an entry whose legs go anywhere else.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
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
    # exchange custody (app/exchanges): a connection's mirror of its balances at the
    # exchange, and the exchange as its counterparty
    EXCHANGE_FREE = "EXCHANGE_FREE"
    EXCHANGE_USED = "EXCHANGE_USED"
    EXCHANGE_COUNTERPARTY = "EXCHANGE_COUNTERPARTY"


USER_ACCOUNT_KINDS = frozenset({AccountKind.AVAILABLE, AccountKind.HELD, AccountKind.STAKED})
PAPER_ACCOUNT_KINDS = frozenset({AccountKind.PAPER_AVAILABLE, AccountKind.PAPER_HELD})
PAPER_KINDS = PAPER_ACCOUNT_KINDS | {AccountKind.PAPER_EQUITY}
EXCHANGE_MIRROR_KINDS = frozenset({AccountKind.EXCHANGE_FREE, AccountKind.EXCHANGE_USED})
EXCHANGE_KINDS = EXCHANGE_MIRROR_KINDS | {AccountKind.EXCHANGE_COUNTERPARTY}
SYSTEM_ACCOUNT_KINDS = frozenset(AccountKind) - USER_ACCOUNT_KINDS - PAPER_KINDS - EXCHANGE_KINDS


@dataclass(frozen=True, slots=True)
class AccountRef:
    """Which ledger account: a user's (user_id set) or the platform's (user_id None); a
    paper account's; or a connected exchange account's (``exchange_account_id`` set)."""

    currency: str
    kind: AccountKind
    user_id: int | None = None
    paper_account_id: int | None = None  # the paper book's accounts (PAPER_ACCOUNT_KINDS)
    exchange_account_id: int | None = None  # exchange custody (EXCHANGE_KINDS)

    def __post_init__(self) -> None:
        if (self.exchange_account_id is not None) != (self.kind in EXCHANGE_KINDS):
            raise InvariantViolation(f"{self.kind} account of {self.exchange_account_id}")
        if self.kind in EXCHANGE_KINDS:
            if self.user_id is not None or self.paper_account_id is not None:
                raise InvariantViolation(f"{self.kind} account with an owner")
        elif self.kind in PAPER_KINDS:
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

    @property
    def book(self) -> str:
        """The book the account is in: ``platform``, ``paper`` or ``exchange:<id>``."""
        if self.exchange_account_id is not None:
            return f"exchange:{self.exchange_account_id}"
        return "paper" if self.paper else "platform"


@dataclass(frozen=True, slots=True)
class Leg:
    account: AccountRef
    amount: Decimal  # signed: positive raises the account's balance


def check_balanced(legs: Iterable[Leg]) -> None:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    count = 0
    books = set()
    for leg in legs:
        books.add(leg.account.book)
        if leg.amount == 0:
            raise InvariantViolation("a posting of zero")
        totals[leg.account.currency] += leg.amount
        count += 1
    if count < 2:
        raise InvariantViolation("an entry needs at least two postings")
    if len(books) > 1:
        if "paper" in books:
            raise InvariantViolation("an entry mixes paper and real accounts")
        raise InvariantViolation(f"an entry mixes books: {sorted(books)}")
    unbalanced = {c: t for c, t in totals.items() if t != 0}
    if unbalanced:
        raise InvariantViolation(f"entry does not balance: {unbalanced}")


@dataclass(frozen=True, slots=True)
class Flow:
    """What an entry of one kind may do: lower the balances of ``sources`` (its negative
    legs) and raise those of ``destinations`` (its positive legs)."""

    sources: frozenset[AccountKind]
    destinations: frozenset[AccountKind]


def _flow(sources: Iterable[AccountKind], destinations: Iterable[AccountKind]) -> Flow:
    return Flow(frozenset(sources), frozenset(destinations))


_K = AccountKind
ANY_ACCOUNT = frozenset(AccountKind)
# Every kind of journal entry the platform writes (the staking accrual writes its
# STAKING_REWARD and maturity UNSTAKE entries in SQL of its own; they are here all the same).
FLOWS: dict[str, Flow] = {
    "HOLD": _flow([_K.AVAILABLE], [_K.HELD]),
    "HOLD_VOID": _flow([_K.HELD], [_K.AVAILABLE]),
    # a fill: each side's hold pays the other side, the fees go to FEES
    "TRADE": _flow([_K.HELD], [_K.AVAILABLE, _K.FEES]),
    # a hold spent: amount to the hot wallet, fee to FEES, the rest released
    "WITHDRAWAL": _flow([_K.HELD], [_K.HOT_WALLET, _K.FEES, _K.AVAILABLE]),
    "TRANSFER": _flow([_K.AVAILABLE], [_K.AVAILABLE]),
    # a bot's budget into its sub-account, and what it has back out when it stops
    "BOT_FUNDING": _flow([_K.AVAILABLE], [_K.AVAILABLE]),
    "BOT_RELEASE": _flow([_K.AVAILABLE], [_K.AVAILABLE]),
    "PROFIT_SHARE": _flow([_K.AVAILABLE], [_K.AVAILABLE]),
    "CRYPTO_DEPOSIT": _flow([_K.HOT_WALLET], [_K.AVAILABLE]),
    "CARD_DEPOSIT": _flow([_K.STRIPE_CLEARING], [_K.AVAILABLE]),
    "DISPUTE_WON": _flow([_K.STRIPE_CLEARING], [_K.AVAILABLE]),
    "REFUND": _flow([_K.AVAILABLE], [_K.STRIPE_CLEARING]),
    "DISPUTE": _flow([_K.AVAILABLE], [_K.STRIPE_CLEARING]),
    # by the legs' signs: a custody account's balance is minus what it holds
    "COLD_TO_HOT": _flow([_K.HOT_WALLET], [_K.COLD_STORAGE]),
    "HOT_TO_COLD": _flow([_K.COLD_STORAGE], [_K.HOT_WALLET]),
    "STAKE": _flow([_K.AVAILABLE], [_K.STAKED]),
    "UNSTAKE": _flow([_K.STAKED], [_K.AVAILABLE, _K.STAKING_REWARDS]),
    "STAKING_REWARD": _flow([_K.STAKING_REWARDS], [_K.STAKED]),
    "MARKET_MAKER_FUNDING": _flow([_K.EXTERNAL], [_K.AVAILABLE]),
    # an operator's correcting entry (and test / bench funding): any account to any, but
    # exchange custody (corrected by syncing it again, never by hand)
    "CORRECTION": _flow(ANY_ACCOUNT - EXCHANGE_KINDS, ANY_ACCOUNT - EXCHANGE_KINDS),
    # exchange custody follows the exchange: a sync posts the difference of each balance
    # against the connection's counterparty; disconnecting closes it to zero
    "EXCHANGE_SYNC": _flow(EXCHANGE_KINDS, EXCHANGE_KINDS),
    "EXCHANGE_CLOSE": _flow(EXCHANGE_KINDS, EXCHANGE_KINDS),
}


def check_flow(kind: str, legs: Iterable[Leg]) -> None:
    """Every leg of an entry of ``kind`` takes from one of its flow's sources or gives to
    one of its destinations (``FLOWS``); an unknown kind is refused."""
    flow = FLOWS.get(kind)
    if flow is None:
        raise InvariantViolation(f"unknown journal entry kind {kind!r}")
    for leg in legs:
        allowed = flow.sources if leg.amount < 0 else flow.destinations
        if leg.account.kind not in allowed:
            direction = "from" if leg.amount < 0 else "to"
            raise InvariantViolation(f"a {kind} entry moves {direction} {leg.account.kind}")


def check_entry(kind: str, legs: Sequence[Leg]) -> None:
    """An entry the ledger may write: balanced per currency, along its kind's flow."""
    check_balanced(legs)
    check_flow(kind, legs)


def move(amount: Decimal, source: AccountRef, destination: AccountRef) -> list[Leg]:
    return [Leg(source, -amount), Leg(destination, amount)]
