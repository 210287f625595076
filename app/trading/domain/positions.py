"""A position at average cost, independent of storage: the one implementation behind the
portfolio (the engine keeps each user's positions in USD as it settles fills; the
portfolio reads them) and copy trading (a follower's position from one follow, in the
follow's quote currency).

A buy adds its quantity and what it cost, fees included. A sale takes away the sold share
of the cost (average cost: ``cost x sold / quantity``) and realises the proceeds, fee
deducted, less that share. Selling more than the position holds is read two ways:

``sold``          copy trading: the part beyond the position carries no cost, all the
                  proceeds count (the follow's books are what it bought and sold).
``sold_tracked``  the portfolio: only what was bought through trading is tracked (coins
                  deposited are not), so only the tracked share of the proceeds counts and
                  the position closes.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Position:
    quantity: Decimal = ZERO
    cost: Decimal = ZERO  # what the quantity cost, fees included
    realized_pnl: Decimal = ZERO

    def bought(self, quantity: Decimal, spent: Decimal) -> Position:
        """``spent``: what was paid, fee included."""
        return Position(self.quantity + quantity, self.cost + spent, self.realized_pnl)

    def sold(self, quantity: Decimal, received: Decimal) -> Position:
        """``received``: what was received, fee deducted. What is sold beyond the position
        carries no cost; all of ``received`` is realised."""
        if self.quantity <= 0:
            return Position(self.quantity, self.cost, self.realized_pnl + received)
        part = min(quantity, self.quantity)
        released = self.cost * part / self.quantity
        return Position(
            self.quantity - part,
            self.cost - released,
            self.realized_pnl + received - released,
        )

    def sold_tracked(self, quantity: Decimal, received: Decimal) -> Position:
        """As ``sold``, except that beyond the position only its share of ``received``
        (``received x quantity held / quantity sold``) is realised, and the position
        closes (quantity and cost zero)."""
        held, cost = self.quantity, self.cost
        if held >= quantity:
            released = (cost * quantity / held) if held else ZERO
            return Position(
                held - quantity, cost - released, self.realized_pnl + (received - released)
            )
        tracked = received * held / quantity if quantity else ZERO
        return Position(ZERO, ZERO, self.realized_pnl + (tracked - cost))

    @property
    def average_cost(self) -> Decimal | None:
        """Cost per unit held; None when nothing is held."""
        if not self.quantity:
            return None
        return self.cost / self.quantity

    def unrealized(self, price: Decimal) -> Decimal:
        """What the position is worth at ``price`` less what it cost."""
        return self.quantity * price - self.cost
