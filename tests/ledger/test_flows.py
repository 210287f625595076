"""The ledger's flow table (pure): each kind of entry moves money only between the kinds
of account its flow names; the journal refuses anything else before it records it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from app.core.errors import InvariantViolation
from app.ledger.journal import JournalBatch, system_account, user_account
from app.ledger.rules import EXCHANGE_KINDS, FLOWS, AccountKind, check_entry, move

D = Decimal
AVAILABLE, HELD, FEES = AccountKind.AVAILABLE, AccountKind.HELD, AccountKind.FEES


def test_a_trade_takes_from_holds_and_pays_users_and_fees():
    legs = [
        *move(D(10), user_account(1, "USDT", HELD), user_account(2, "USDT")),
        *move(D(1), user_account(1, "USDT", HELD), system_account("USDT", FEES)),
        *move(D(2), user_account(2, "BTC", HELD), user_account(1, "BTC")),
    ]
    check_entry("TRADE", legs)


@pytest.mark.parametrize(
    ("kind", "legs", "problem"),
    [
        # a trade never takes from what is available: funds are held first
        ("TRADE", move(D(1), user_account(1, "USDT"), user_account(2, "USDT")), "from AVAILABLE"),
        (
            "TRADE",
            move(D(1), user_account(1, "USDT", HELD), user_account(2, "USDT", HELD)),
            "to HELD",
        ),
        ("HOLD", move(D(1), user_account(1, "USDT", HELD), user_account(1, "USDT")), "from HELD"),
        (
            "TRANSFER",
            move(D(1), system_account("USDT", FEES), user_account(1, "USDT")),
            "from FEES",
        ),
        ("MINT", move(D(1), user_account(1, "USDT"), user_account(2, "USDT")), "unknown"),
    ],
)
def test_an_entry_off_its_flow_is_refused_before_it_is_recorded(kind, legs, problem):
    journal = JournalBatch()
    with pytest.raises(InvariantViolation, match=problem):
        journal.defer(kind=kind, legs=legs)
    assert journal.unlocked() == set()  # nothing recorded


def test_a_correction_may_move_anything_but_exchange_custody():
    assert FLOWS["CORRECTION"].sources == frozenset(AccountKind) - EXCHANGE_KINDS
    assert FLOWS["CORRECTION"].destinations == frozenset(AccountKind) - EXCHANGE_KINDS
    check_entry("CORRECTION", move(D(1), system_account("USDT", FEES), user_account(1, "USDT")))


def test_an_unbalanced_entry_is_still_refused():
    legs = move(D(1), user_account(1, "USDT", HELD), user_account(2, "USDT"))[:1] * 2
    with pytest.raises(InvariantViolation, match="does not balance"):
        check_entry("TRADE", legs)
