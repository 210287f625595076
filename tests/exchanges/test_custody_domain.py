"""Exchange custody, pure: a reading's difference with the mirror and the legs posting
exactly it; the ledger's rules keeping the book apart from the platform's."""

from __future__ import annotations

from decimal import Decimal

import pytest

from app.core.errors import InvariantViolation
from app.exchanges.domain.accounts import Balance
from app.exchanges.domain.custody import (
    COUNTERPARTY,
    FREE,
    USED,
    Holding,
    account,
    changes,
    legs_for,
    mirrored,
    reading_of,
)
from app.exchanges.domain.errors import ExchangeRejected
from app.ledger.journal import system_account, user_account
from app.ledger.rules import (
    EXCHANGE_KINDS,
    FLOWS,
    AccountKind,
    AccountRef,
    check_balanced,
    check_entry,
    move,
)

D = Decimal
KNOWN = frozenset({"BTC", "USDT", "ETH"})


def _balance(currency: str, free: str, used: str) -> Balance:
    return Balance(currency, D(free), D(used), D(free) + D(used))


def test_a_reading_splits_known_currencies_from_unknown_ones():
    reading = reading_of([_balance("BTC", "1", "0.5"), _balance("DOGE", "10", "0")], KNOWN)
    assert reading.holdings == {"BTC": Holding(D(1), D("0.5"))}
    assert reading.unmirrored == {"DOGE": D(10)}


@pytest.mark.parametrize(
    "balance",
    [
        Balance("BTC", D(-1), D(0), D(-1)),
        Balance("BTC", D(2), D(0), D(1)),  # more free than in total
        Balance("BTC", D("1e25"), D(0), D("1e25")),
        Balance("BTC", D("NaN"), D(0), D(0)),
    ],
)
def test_a_balance_the_ledger_cannot_hold_is_refused(balance):
    with pytest.raises(ExchangeRejected):
        reading_of([balance], KNOWN)


@pytest.mark.parametrize(
    "total", ["1e12", "99999999999999999999.999999999999999999", "0.000000000000000001"]
)
def test_every_balance_the_ledger_holds_is_mirrored_exactly(total):
    """Up to NUMERIC(38, 18)'s 20 integer digits, not Decimal's default 28 significant ones
    (10^12 USDT once ended as a decimal.InvalidOperation, an internal error)."""
    reading = reading_of([Balance("USDT", D(total), D(0), D(total))], KNOWN)
    assert reading.holdings["USDT"] == Holding(D(total), D(0))


def test_the_exchange_s_total_is_authoritative_used_is_the_rest():
    reading = reading_of([Balance("BTC", D(1), D(0), D(3))], KNOWN)
    assert reading.holdings["BTC"] == Holding(D(1), D(2))


def test_the_legs_post_exactly_the_difference_and_balance():
    mirror = {"BTC": Holding(D("0.5"), D("0.25")), "USDT": Holding(D(100), D(0))}
    target = {"BTC": Holding(D("0.7"), D("0.05")), "ETH": Holding(D(2), D(0))}
    found = changes(mirror, target)
    assert [c.currency for c in found] == ["BTC", "ETH", "USDT"]
    legs = legs_for(7, found)
    check_entry("EXCHANGE_SYNC", legs)
    assert {(leg.account.currency, leg.account.kind): leg.amount for leg in legs} == {
        ("BTC", FREE): D("0.2"), ("BTC", USED): D("-0.2"),
        ("ETH", FREE): D(2), ("ETH", COUNTERPARTY): D(-2),
        ("USDT", FREE): D(-100), ("USDT", COUNTERPARTY): D(100),
    }  # fmt: skip


def test_nothing_changed_nothing_posted():
    mirror = {"BTC": Holding(D("0.5"), D("0.25"))}
    assert changes(mirror, {"BTC": Holding(D("0.500"), D("0.2500"))}) == []
    assert legs_for(7, []) == []


def test_the_mirror_is_read_back_from_its_accounts():
    balances = {
        account(7, "BTC", FREE): D(1), account(7, "BTC", USED): D(2),
        account(7, "BTC", COUNTERPARTY): D(-3), account(7, "USDT", FREE): D(0),
    }  # fmt: skip
    assert mirrored(7, balances) == {"BTC": Holding(D(1), D(2))}


def test_a_custody_account_belongs_to_a_connection_and_nobody_else():
    with pytest.raises(InvariantViolation):
        AccountRef("BTC", AccountKind.EXCHANGE_FREE)  # no connection
    with pytest.raises(InvariantViolation):
        AccountRef("BTC", AccountKind.EXCHANGE_FREE, user_id=1, exchange_account_id=7)
    with pytest.raises(InvariantViolation):
        AccountRef("BTC", AccountKind.AVAILABLE, user_id=1, exchange_account_id=7)


@pytest.mark.parametrize("kind", sorted(set(FLOWS) - {"EXCHANGE_SYNC", "EXCHANGE_CLOSE"}))
def test_no_platform_flow_takes_from_or_gives_to_exchange_custody(kind):
    assert not FLOWS[kind].sources & EXCHANGE_KINDS
    assert not FLOWS[kind].destinations & EXCHANGE_KINDS
    for legs in (
        move(D(1), user_account(1, "BTC"), account(7, "BTC", FREE)),
        move(D(1), account(7, "BTC", FREE), user_account(1, "BTC")),
        move(D(1), system_account("BTC", AccountKind.EXTERNAL), account(7, "BTC", USED)),
    ):
        with pytest.raises(InvariantViolation):
            check_entry(kind, legs)


def test_a_custody_entry_stays_in_its_connection_s_book():
    with pytest.raises(InvariantViolation, match="mixes books"):
        check_balanced(move(D(1), account(7, "BTC", COUNTERPARTY), account(8, "BTC", FREE)))
    with pytest.raises(InvariantViolation, match="mixes books"):
        check_entry("EXCHANGE_SYNC", move(D(1), user_account(1, "BTC"), account(7, "BTC", FREE)))
    check_entry(
        "EXCHANGE_SYNC", move(D(1), account(7, "BTC", COUNTERPARTY), account(7, "BTC", FREE))
    )
