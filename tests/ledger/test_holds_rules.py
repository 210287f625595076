"""The holds' one transition table (pure): what ``apply`` allows and what it refuses."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.errors import InvariantViolation
from app.ledger.holds import TRANSITIONS, HoldEvent, HoldStatus, apply, next_status

PENDING, POSTED, VOIDED = HoldStatus.PENDING, HoldStatus.POSTED, HoldStatus.VOIDED


@dataclass
class H:
    status: str = "PENDING"
    amount: int = 100
    remaining: int = 100


def test_a_hold_is_placed_pending():
    assert next_status(None, HoldEvent.PLACE) is PENDING


@pytest.mark.parametrize("status", [None, *HoldStatus])
@pytest.mark.parametrize("event", list(HoldEvent))
def test_only_the_table_s_transitions_are_allowed(status, event):
    if (status, event) in TRANSITIONS:
        assert next_status(status, event) is TRANSITIONS[(status, event)]
    else:
        with pytest.raises(InvariantViolation):
            next_status(status, event)


def test_an_unknown_status_is_refused():
    with pytest.raises(InvariantViolation):
        next_status("SPENT", HoldEvent.VOID)


def test_draws_and_releases_shrink_what_is_left_top_ups_grow_both():
    hold = H()
    assert apply(hold, HoldEvent.DRAW, 30) == 70
    assert apply(hold, HoldEvent.RELEASE, 20) == 50
    assert apply(hold, HoldEvent.TOP_UP, 25) == 75
    assert (hold.status, hold.amount, hold.remaining) == ("PENDING", 125, 75)


def test_ending_a_hold_returns_what_was_left_and_leaves_nothing():
    hold = H(remaining=Decimal("12.5"), amount=Decimal(20))
    assert apply(hold, HoldEvent.POST) == Decimal("12.5")
    assert (hold.status, hold.remaining) == ("POSTED", 0)
    with pytest.raises(InvariantViolation, match="POSTED hold cannot VOID"):
        apply(hold, HoldEvent.VOID)


@pytest.mark.parametrize(
    ("event", "amount"),
    [(HoldEvent.DRAW, 101), (HoldEvent.RELEASE, 101), (HoldEvent.DRAW, 0), (HoldEvent.TOP_UP, -1)],
)
def test_an_overdraw_or_a_non_positive_amount_is_refused_and_changes_nothing(event, amount):
    hold = H()
    with pytest.raises(InvariantViolation):
        apply(hold, event, amount)
    assert hold == H()


def test_an_ended_hold_cannot_be_drawn_on():
    hold = H(status="VOIDED", remaining=0)
    with pytest.raises(InvariantViolation, match="VOIDED hold cannot DRAW"):
        apply(hold, HoldEvent.DRAW, 1)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(list(HoldEvent)), st.integers(min_value=-5, max_value=80)),
        max_size=20,
    )
)
def test_whatever_is_applied_the_amounts_stay_within_the_table_s_check(steps):
    hold = H()
    for event, amount in steps:
        before = H(hold.status, hold.amount, hold.remaining)
        try:
            apply(hold, event, amount)
        except InvariantViolation:
            assert hold == before
        assert 0 <= hold.remaining <= hold.amount  # the holds table's CHECK
        if before.status != "PENDING":
            assert hold == before  # POSTED and VOIDED are final
