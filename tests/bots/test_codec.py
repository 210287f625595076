"""Bot states, settings and commands through JSON and back, exactly, for random values of
every field (built from the dataclasses' own annotations); what is not bot data is
refused both ways."""

from __future__ import annotations

import dataclasses
import json
import types
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from typing import Any, Union, get_args, get_origin, get_type_hints

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.bots.domain.codec import dumps, from_json, loads, to_json
from app.bots.domain.dca import DcaState
from app.bots.domain.dca_settings import DcaSettings
from app.bots.domain.grid import GridState
from app.bots.domain.grid_settings import GridSettings
from app.bots.domain.rebalance import RebalanceSettings, RebalanceState
from app.bots.domain.runtime import Decision, PlaceOrder
from app.bots.domain.signal_bot import SignalSettings, SignalState
from app.core.errors import InvariantViolation

PROPERTIES = settings(max_examples=60, derandomize=True, deadline=None)
KINDS = (
    DcaState, GridState, RebalanceState, SignalState,
    DcaSettings, GridSettings, RebalanceSettings, SignalSettings, PlaceOrder, Decision,
)  # fmt: skip


def values(kind: Any) -> st.SearchStrategy[Any]:
    """Any value of ``kind``, from its annotations (an independent walk of the types)."""
    origin = get_origin(kind)
    if origin is Union or origin is types.UnionType:
        return st.one_of(*(values(a) for a in get_args(kind)))
    if origin is tuple:
        item, *rest = get_args(kind)
        if rest == [Ellipsis]:
            return st.lists(values(item), max_size=3).map(tuple)
        return st.tuples(*(values(a) for a in get_args(kind)))
    if dataclasses.is_dataclass(kind):
        hints = get_type_hints(kind)
        fields = {f.name: values(hints[f.name]) for f in dataclasses.fields(kind) if f.init}
        return st.builds(kind, **fields)
    if isinstance(kind, type) and issubclass(kind, Enum):
        return st.sampled_from(list(kind))
    scalars: dict[Any, st.SearchStrategy[Any]] = {
        type(None): st.none(),
        bool: st.booleans(),
        int: st.integers(-(2**63), 2**63),
        str: st.text(max_size=12),
        Decimal: st.decimals(allow_nan=False, allow_infinity=False),
        datetime: st.datetimes(
            timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))])
        ),
        timedelta: st.timedeltas(),
    }
    return scalars[kind]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
def test_round_trips_exactly(kind):
    @PROPERTIES
    @given(values(kind))
    def check(value):
        text = dumps(value)
        back = loads(kind, text)
        assert back == value
        assert dumps(back) == text  # the same bytes: Decimal digits and zones kept
        assert json.loads(text) == to_json(value)

    check()


def test_decimals_are_strings_times_iso_and_spans_microseconds():
    state = SignalState(last_price=Decimal("100.10"))
    data = to_json(state)
    assert data["last_price"] == "100.10" and data["position"]["cost"] == "0"
    assert to_json(datetime(2024, 1, 1, tzinfo=UTC)) == "2024-01-01T00:00:00+00:00"
    assert to_json(timedelta(seconds=90)) == 90_000_000


@pytest.mark.parametrize(
    "data",
    [
        {**to_json(SignalState()), "last_price": 100.1},  # a float
        {**to_json(SignalState()), "seq": True},
        {**to_json(SignalState()), "status": "DANCING"},
        {k: v for k, v in to_json(SignalState()).items() if k != "seq"},
        {**to_json(SignalState()), "seen": [{"alert_id": "a", "at": "2024-01-01T00:00:00"}]},
    ],
)
def test_json_that_does_not_fit_is_refused(data):
    with pytest.raises(InvariantViolation):
        from_json(SignalState, data)


def test_what_is_not_bot_data_is_not_written():
    with pytest.raises(InvariantViolation):
        to_json(1.5)
    with pytest.raises(InvariantViolation):
        to_json(datetime(2024, 1, 1))  # naive
