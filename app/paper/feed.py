"""A paper step's events for its account's owner (the catalogue's ``PAPER_FILLS`` and
``PAPER_ORDERS``): each fill and each order the step placed or changed, as the step wrote
its row (``state.record`` passes the rows its statements returned), in the order of the
account's venue events (a fill before the order update it caused)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from app.events import topics
from db.models import PaperAccount

# a row as a statement returned it: ``state.ORDER_COLUMNS`` / ``FILL_COLUMNS``, the
# payloads' fields of the same names
Row = Mapping[str, Any]
FILL, ORDER = 0, 1  # at one event number, the fill goes first


def step_events(
    *,
    account: PaperAccount,
    symbol: str,
    fee_currency: str,
    fills: Iterable[Row],
    orders: Mapping[int, Row],
    sequences: Mapping[int, int],
    last: int,
) -> list[topics.Event]:
    """The step's events. ``orders``: the rows of the orders it placed or changed, by
    venue order id; ``sequences``: the number of each changed order's last event;
    ``last``: the venue's last event number (for an order placed without an event, a
    bracket's PENDING exit)."""
    made: list[tuple[tuple[int, int, int], topics.Event]] = []
    for row in fills:
        event = _fill(account, symbol, fee_currency, row)
        made.append(((row["number"], FILL, row["number"]), event))
    for order_id, row in orders.items():
        sequence = sequences.get(order_id, last)
        made.append(((sequence, ORDER, order_id), _order(account, symbol, sequence, row)))
    return [event for _, event in sorted(made, key=lambda m: m[0])]


def _fill(account: PaperAccount, symbol: str, fee_currency: str, row: Row) -> topics.Event:
    return topics.paper_filled(
        account.user_id,
        topics.PaperFilled(
            paper_account_id=account.id, resets=account.generation, symbol=symbol,
            fee_currency=fee_currency, **row,
        ),
    )  # fmt: skip


def _order(account: PaperAccount, symbol: str, sequence: int, row: Row) -> topics.Event:
    return topics.paper_order_updated(
        account.user_id,
        topics.PaperOrderUpdated(
            paper_account_id=account.id, resets=account.generation, symbol=symbol,
            sequence=sequence, **row,
        ),
    )  # fmt: skip
