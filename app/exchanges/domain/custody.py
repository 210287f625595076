"""Exchange custody, pure: what a reading of an exchange account's balances changes in its
mirror, and the ledger legs that post exactly that difference.

A connection's mirror holds, per currency, what is free and what is used (in open
orders) at the exchange, each against the connection's counterparty (the exchange): a
currency whose free balance went up by x posts COUNTERPARTY -x, FREE +x; an order placed
at the exchange moves FREE to USED and leaves the counterparty alone. A currency the
reading no longer names is zero. Nothing changed, nothing posted."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Context, Decimal

from app.exchanges.domain.accounts import Balance
from app.exchanges.domain.errors import ExchangeRejected
from app.ledger.rules import AccountKind, AccountRef, Leg

FREE, USED, COUNTERPARTY = (
    AccountKind.EXCHANGE_FREE,
    AccountKind.EXCHANGE_USED,
    AccountKind.EXCHANGE_COUNTERPARTY,
)
QUANTUM = Decimal("1e-18")  # the ledger's NUMERIC(38, 18)
LARGEST = Decimal("1e20")  # what that column holds
_DIGITS = Context(prec=38)  # its 38 digits (Decimal's default context has 28)


@dataclass(frozen=True, slots=True)
class Holding:
    """One currency at the exchange: free and used (in orders)."""

    free: Decimal = Decimal(0)
    used: Decimal = Decimal(0)

    @property
    def total(self) -> Decimal:
        return self.free + self.used


ZERO = Holding()


@dataclass(frozen=True, slots=True)
class Change:
    """One currency's difference between the mirror and the reading."""

    currency: str
    before: Holding
    after: Holding

    @property
    def free(self) -> Decimal:
        return self.after.free - self.before.free

    @property
    def used(self) -> Decimal:
        return self.after.used - self.before.used

    @property
    def total(self) -> Decimal:
        return self.after.total - self.before.total

    def to_json(self) -> dict[str, str]:
        return {"currency": self.currency, "free": _text(self.free), "used": _text(self.used),
                "total": _text(self.total), "totalAfter": _text(self.after.total)}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Reading:
    """What the exchange holds, split into the currencies the platform knows (mirrored)
    and the ones it does not (recorded with the sync, not mirrored: no ledger currency)."""

    holdings: dict[str, Holding]
    unmirrored: dict[str, Decimal]


def _text(amount: Decimal) -> str:
    return format(amount.normalize(), "f")


def _amount(value: Decimal) -> Decimal:
    if not value.is_finite() or value < 0 or value >= LARGEST:
        raise ExchangeRejected("The exchange reported a balance the ledger cannot hold")
    return value.quantize(QUANTUM, context=_DIGITS)


def holding_of(balance: Balance) -> Holding:
    """The exchange's total is authoritative: used is what of it is not free."""
    free, total = _amount(balance.free), _amount(balance.total)
    if free > total:
        raise ExchangeRejected("The exchange reported more free than in total")
    return Holding(free=free, used=total - free)


def reading_of(balances: Iterable[Balance], known: frozenset[str]) -> Reading:
    """The reading, every amount checked (``ExchangeRejected``: nothing is mirrored)."""
    holdings: dict[str, Holding] = {}
    unmirrored: dict[str, Decimal] = {}
    for balance in balances:
        holding = holding_of(balance)
        if balance.currency in known:
            holdings[balance.currency] = holding
        elif holding.total:
            unmirrored[balance.currency] = holding.total
    return Reading(holdings, unmirrored)


def mirrored(connection_id: int, balances: Mapping[AccountRef, Decimal]) -> dict[str, Holding]:
    """The mirror as the ledger holds it, per currency (zero ones left out)."""
    found: dict[str, Holding] = {}
    for ref, amount in balances.items():
        if ref.exchange_account_id != connection_id or ref.kind is COUNTERPARTY:
            continue
        was = found.get(ref.currency, ZERO)
        found[ref.currency] = (
            Holding(amount, was.used) if ref.kind is FREE else Holding(was.free, amount)
        )
    return {c: h for c, h in found.items() if h.total or h.free}


def changes(mirror: Mapping[str, Holding], target: Mapping[str, Holding]) -> list[Change]:
    """Every currency whose free or used differs, by code."""
    found = []
    for currency in sorted(set(mirror) | set(target)):
        before, after = mirror.get(currency, ZERO), target.get(currency, ZERO)
        if before != after:
            found.append(Change(currency, before, after))
    return found


def account(connection_id: int, currency: str, kind: AccountKind) -> AccountRef:
    return AccountRef(currency, kind, exchange_account_id=connection_id)


def legs_for(connection_id: int, found: Iterable[Change]) -> list[Leg]:
    """The legs posting exactly these changes (none of zero)."""
    legs = []
    for change in found:
        for kind, amount in ((FREE, change.free), (USED, change.used),
                             (COUNTERPARTY, -change.total)):  # fmt: skip
            if amount:
                legs.append(Leg(account(connection_id, change.currency, kind), amount))
    return legs


def accounts_for(connection_id: int, found: Iterable[Change]) -> set[AccountRef]:
    """The accounts a sync of these changes may post to (made where missing)."""
    return {
        account(connection_id, change.currency, kind)
        for change in found
        for kind in (FREE, USED, COUNTERPARTY)
    }
