"""Conditional orders waiting for their price, pure: stop, take-profit and trailing stop.

A small piece of orchestration written so the live engine can adopt it: it holds armed
orders by id, and ``observe`` takes the price moving along a straight segment
``previous → price`` (as a trade tape does between two trades, or the simulated venue's
path inside a candle) and answers which orders fire, in id order, and at what price:

- a STOP / TAKE_PROFIT order fires when ``orders.is_triggered`` holds at ``price``;
- a TRAILING stop follows ``orders.observe_trailing`` (its best price moves first, then
  the stop is tested);
- the fire price is the order's trigger level when it lies on the segment (the price
  crossed it on the way), else ``price`` (a gap: ``previous`` is None, or the segment
  started beyond the level, as at a candle's open).

What fires is removed; the caller places it on the book (``matching.place_command``).
OCO groups and bracket children are not handled here (yet).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.trading.domain.orders import (
    TrailingState,
    Trigger,
    ValidOrder,
    is_triggered,
    observe_trailing,
    start_trailing,
    trailing_stop_price,
)


@dataclass(frozen=True, slots=True)
class Fired:
    order_id: int
    price: int  # ticks: where it fired


class TriggerSet:
    def __init__(self) -> None:
        self._armed: dict[int, ValidOrder] = {}
        self._trailing: dict[int, TrailingState] = {}

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._armed

    def __len__(self) -> int:
        return len(self._armed)

    def arm(self, order_id: int, order: ValidOrder) -> None:
        assert order.trigger is not None, "only conditional orders are armed"
        self._armed[order_id] = order
        if order.trailing is not None:
            self._trailing[order_id] = start_trailing(order.trailing)

    def disarm(self, order_id: int) -> bool:
        self._trailing.pop(order_id, None)
        return self._armed.pop(order_id, None) is not None

    def trailing_state(self, order_id: int) -> TrailingState | None:
        return self._trailing.get(order_id)

    def observe(self, previous: int | None, price: int) -> list[Fired]:
        fired: list[Fired] = []
        for order_id in sorted(self._armed):
            level = self._fires(order_id, self._armed[order_id], price)
            if level is None:
                continue
            on_segment = previous is not None and min(previous, price) <= level <= max(
                previous, price
            )
            fired.append(Fired(order_id, level if on_segment else price))
        for f in fired:
            self.disarm(f.order_id)
        return fired

    def _fires(self, order_id: int, order: ValidOrder, price: int) -> int | None:
        """The trigger level if ``order`` fires at ``price``, else None."""
        if order.trigger is Trigger.TRAILING:
            assert order.trailing is not None
            state, fired = observe_trailing(
                order.side, order.trailing, self._trailing[order_id], price
            )
            self._trailing[order_id] = state
            if not fired:
                return None
            assert state.extreme is not None
            return trailing_stop_price(order.side, order.trailing, state.extreme)
        if not is_triggered(order, price):
            return None
        assert order.stop_price is not None
        return order.stop_price
