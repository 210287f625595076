"""The trigger engine's rule, pure: whether trade prices fire a conditional order."""

from __future__ import annotations

from app.trading.domain import orders as rules
from app.trading.domain.orders import Trigger
from app.trading.engine.state import LiveOrder


def fires(order: LiveOrder, prices: list[int]) -> tuple[bool, bool]:
    """Whether ``prices`` (trades, in order) fire ``order`` (a stop, take-profit or
    trailing order), and whether its trailing state moved (kept on ``order``)."""
    if order.trigger is Trigger.TRAILING:
        assert order.trailing is not None
        state = order.trailing_state or rules.start_trailing(order.trailing)
        fired = False
        for price in prices:
            state, fired = rules.observe_trailing(order.side, order.trailing, state, price)
            if fired:
                break
        moved = state != order.trailing_state
        if moved:
            order.trailing_state = state
        return fired, moved
    valid = rules.ValidOrder(
        side=order.side,
        type=order.type,
        quantity=order.quantity,
        price=order.price,
        time_in_force=order.tif,
        stop_price=order.stop,
    )
    return any(rules.is_triggered(valid, price) for price in prices), False
