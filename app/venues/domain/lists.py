"""Order lists on the simulated venue, pure: the answer to ``submit_list`` and the names
the live venue gives its legs. What an OCO or a bracket is made of and how it is checked is
the live venue's own planning (``app.trading.domain.lists``: ``plan_oco``,
``plan_bracket``), so both venues refuse a bad list with the same code.

- OCO: two orders of the same side and quantity, of two different types, neither MARKET,
  sharing one hold (the larger of their needs). The first to fill (even partly), to
  trigger, or to be refused on arrival cancels the other (``OrderEnded`` CANCELED, reason
  ``OCO``); canceling one leg cancels the other the same way.
- BRACKET: an entry (LIMIT or MARKET), then a take-profit LIMIT and a stop-loss
  (STOP_MARKET, or STOP_LIMIT with ``stop_loss_limit_price``) of the other side, PENDING
  until the entry is final. Then, when it filled something, the exits are sized to what
  it filled, take a new hold they share (INSUFFICIENT_FUNDS otherwise: both CANCELED with
  that reason) and go live as an OCO; when it filled nothing they end CANCELED
  ``ENTRY_NOT_FILLED``.

Leg ``i`` of the list ``L`` has the client order id ``L:i`` (entry 0, take-profit 1,
stop-loss 2), as the live venue names them.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.venues.domain.venue import OrderAck

OCO_REASON = "OCO"  # the reason of a leg its sibling canceled
ENTRY_NOT_FILLED = "ENTRY_NOT_FILLED"  # a bracket's exits when the entry filled nothing


@dataclass(frozen=True, slots=True)
class ListAck:
    """The answer to ``submit_list``: one ``OrderAck`` per leg (none when refused), and
    the refusal's code."""

    client_list_id: str
    orders: tuple[OrderAck, ...]
    code: str | None = None

    @property
    def ok(self) -> bool:
        return self.code is None


def leg_client_id(client_list_id: str, index: int) -> str:
    return f"{client_list_id}:{index}"
