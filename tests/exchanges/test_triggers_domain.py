"""The pure rules of emulated stops and order lists on connected exchange accounts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from app.core.errors import ValidationFailed
from app.exchanges.domain.order_lists import (
    BracketExits,
    LegRequest,
    LegState,
    ListKind,
    ListRole,
    ListStatus,
    Step,
    bracket_exits,
    check_bracket,
    check_oco,
    exit_client_order_id,
    next_step,
)
from app.exchanges.domain.orders import ExchangeOrderStatus as S
from app.exchanges.domain.orders import ExchangeOrderType as T
from app.exchanges.domain.orders import OrderSubmission, advance
from app.exchanges.domain.triggers import (
    STALE_PRICES,
    Armed,
    TriggerState,
    child_of,
    judge,
    trigger_state,
)
from app.marketdata.domain.trades import Trade
from app.trading.domain.orders import Side

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
AGE = timedelta(seconds=30)


def _trade(price: str, seconds_ago: float = 1) -> Trade:
    return Trade(NOW - timedelta(seconds=seconds_ago), Decimal(price), Decimal("0.1"))


def _armed(side: Side = Side.SELL, stop: str = "100", armed_seconds_ago: float = 10) -> Armed:
    return Armed(side, Decimal(stop), NOW - timedelta(seconds=armed_seconds_ago))


@pytest.mark.parametrize(
    ("side", "prices", "fired"),
    [
        (Side.SELL, ["101", "100.01"], None),
        (Side.SELL, ["101", "100", "99"], Decimal(100)),  # the first crossing trade
        (Side.BUY, ["99", "99.99"], None),
        (Side.BUY, ["99", "100.5"], Decimal("100.5")),
    ],
)
def test_a_stop_fires_on_the_first_trade_at_or_beyond_it(side, prices, fired):
    trades = [_trade(p, seconds_ago=5 - n) for n, p in enumerate(prices)]
    assert judge(_armed(side), trades, now=NOW, max_age=AGE).price == fired


def test_trades_before_arming_fire_nothing():
    verdict = judge(_armed(armed_seconds_ago=2), [_trade("90", 5), _trade("101", 1)],
                    now=NOW, max_age=AGE)  # fmt: skip
    assert (verdict.price, verdict.note) == (None, None)


def test_stale_trades_fire_nothing_and_say_why():
    old = [_trade("90", seconds_ago=31)]
    assert judge(_armed(armed_seconds_ago=60), old, now=NOW, max_age=AGE).note == STALE_PRICES
    assert judge(_armed(), [], now=NOW, max_age=AGE).note == STALE_PRICES


def test_the_child_is_the_order_as_a_market_or_limit_order_with_its_client_id():
    stop = OrderSubmission("co1", "BTC/USDT", Side.SELL, T.STOP_LOSS, Decimal(1),
                           stop_price=Decimal(100))  # fmt: skip
    assert child_of(stop) == OrderSubmission("co1", "BTC/USDT", Side.SELL, T.MARKET, Decimal(1))
    limit = OrderSubmission("co2", "BTC/USDT", Side.BUY, T.STOP_LOSS_LIMIT, Decimal(1),
                            price=Decimal(101), stop_price=Decimal(100))  # fmt: skip
    assert (child_of(limit).type, child_of(limit).price) == (T.LIMIT, Decimal(101))


def test_an_armed_order_only_fires_or_is_disarmed():
    assert advance(S.ARMED, S.PENDING_SUBMIT) is S.PENDING_SUBMIT
    assert advance(S.ARMED, S.CANCELED) is S.CANCELED
    assert advance(S.ARMED, S.FILLED) is S.ARMED
    assert trigger_state(emulated=False, status=S.OPEN, triggered_at=None) is None
    assert trigger_state(emulated=True, status=S.ARMED, triggered_at=None) is TriggerState.ARMED
    assert trigger_state(emulated=True, status=S.CANCELED,
                         triggered_at=None) is TriggerState.DISARMED  # fmt: skip
    assert trigger_state(emulated=True, status=S.FILLED,
                         triggered_at=NOW) is TriggerState.TRIGGERED  # fmt: skip


# --- lists -------------------------------------------------------------------------------

LIMIT = LegRequest(Side.SELL, T.LIMIT, Decimal(1), price=Decimal(110))
STOP = LegRequest(Side.SELL, T.STOP_LOSS, Decimal(1), stop_price=Decimal(90))


def test_an_oco_is_a_limit_and_a_stop_of_one_side_and_quantity():
    assert check_oco([STOP, LIMIT]) == {ListRole.TAKE_PROFIT: LIMIT, ListRole.STOP_LOSS: STOP}
    bad = [
        [LIMIT], [LIMIT, LIMIT], [LIMIT, LegRequest(Side.BUY, T.STOP_LOSS, Decimal(1),
                                                    stop_price=Decimal(120))],
        [LIMIT, LegRequest(Side.SELL, T.STOP_LOSS, Decimal(2), stop_price=Decimal(90))],
        [LegRequest(Side.SELL, T.LIMIT, Decimal(1), price=Decimal(80)), STOP],
    ]  # fmt: skip
    for legs in bad:
        with pytest.raises(ValidationFailed):
            check_oco(legs)


def test_a_brackets_exits_are_the_other_side_for_what_filled():
    entry = LegRequest(Side.BUY, T.LIMIT, Decimal(1), price=Decimal(100))
    exits = BracketExits(Decimal(110), Decimal(90), Decimal("89.5"))
    check_bracket(entry, exits)
    planned = bracket_exits(Side.BUY, exits, Decimal("0.4"))
    assert planned[ListRole.TAKE_PROFIT] == LegRequest(Side.SELL, T.LIMIT, Decimal("0.4"),
                                                       price=Decimal(110))  # fmt: skip
    assert planned[ListRole.STOP_LOSS] == LegRequest(
        Side.SELL, T.STOP_LOSS_LIMIT, Decimal("0.4"), price=Decimal("89.5"),
        stop_price=Decimal(90))  # fmt: skip
    with pytest.raises(ValidationFailed):
        check_bracket(entry, BracketExits(Decimal(90), Decimal(110)))  # upside down
    with pytest.raises(ValidationFailed):
        check_bracket(STOP, exits)


def test_exit_client_order_ids_are_the_lists_and_valid_everywhere():
    ids = {exit_client_order_id(7, role) for role in (ListRole.TAKE_PROFIT, ListRole.STOP_LOSS)}
    assert len(ids) == 2 and all(len(i) == 18 and i.isalnum() and i.islower() for i in ids)
    assert exit_client_order_id(7, ListRole.STOP_LOSS) == exit_client_order_id(
        7, ListRole.STOP_LOSS
    )


def _leg(id: int, role: ListRole, status: S, filled: str = "0", triggered: bool = False):
    return LegState(id, role, status, Decimal(filled), triggered)


def test_the_first_leg_to_fill_or_fire_cancels_the_other():
    tp, sl = ListRole.TAKE_PROFIT, ListRole.STOP_LOSS
    filled = [_leg(1, tp, S.PARTIALLY_FILLED, "0.1"), _leg(2, sl, S.ARMED)]
    assert next_step(ListKind.OCO, ListStatus.ACTIVE, filled).cancel == (2,)
    fired = [_leg(1, tp, S.OPEN), _leg(2, sl, S.PENDING_SUBMIT, triggered=True)]
    assert next_step(ListKind.OCO, ListStatus.ACTIVE, fired).cancel == (1,)
    done = [_leg(1, tp, S.FILLED, "1"), _leg(2, sl, S.CANCELED)]
    assert next_step(ListKind.OCO, ListStatus.ACTIVE, done).status is ListStatus.DONE
    canceled = [_leg(1, tp, S.CANCELED), _leg(2, sl, S.ARMED)]
    step = next_step(ListKind.OCO, ListStatus.ACTIVE, canceled)
    assert (step.cancel, step.status) == ((2,), ListStatus.CANCELED)
    refused = [_leg(1, tp, S.REJECTED), _leg(2, sl, S.ARMED)]  # the stop keeps protecting
    assert next_step(ListKind.OCO, ListStatus.ACTIVE, refused) == Step()


def test_a_brackets_exits_wait_for_its_entry_to_end():
    entry = ListRole.ENTRY
    assert next_step(ListKind.BRACKET, ListStatus.ACTIVE,
                     [_leg(1, entry, S.PARTIALLY_FILLED, "0.4")]).exits_for is None  # fmt: skip
    assert next_step(ListKind.BRACKET, ListStatus.ACTIVE,
                     [_leg(1, entry, S.CANCELED, "0.4")]).exits_for == Decimal("0.4")  # fmt: skip
    assert next_step(ListKind.BRACKET, ListStatus.ACTIVE,
                     [_leg(1, entry, S.CANCELED)]).status is ListStatus.CANCELED  # fmt: skip
    live = [_leg(1, entry, S.OPEN), _leg(2, ListRole.STOP_LOSS, S.ARMED)]
    assert next_step(ListKind.BRACKET, ListStatus.CANCELED, live).cancel == (1, 2)
