"""Order lists, pure: their kinds, the roles of their legs, and a bracket's request. Used by
the live venue (``app.trading.order_lists``, the engine) and the simulated venue
(``app.venues.domain.lists``), so both name and treat legs the same way."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from app.trading.domain.orders import OrderRequest


class ListKind:
    OCO = "OCO"
    BRACKET = "BRACKET"


class ListRole:
    LEG = "LEG"  # an OCO leg
    ENTRY = "ENTRY"
    TAKE_PROFIT = "TAKE_PROFIT"
    STOP_LOSS = "STOP_LOSS"


# The roles whose first fill or trigger cancels the others of their list.
OCO_ROLES = frozenset({ListRole.LEG, ListRole.TAKE_PROFIT, ListRole.STOP_LOSS})


@dataclass(frozen=True, slots=True)
class Bracket:
    """An entry, then (once it has filled) a take-profit LIMIT and a stop-loss, as OCO."""

    entry: OrderRequest
    take_profit_price: Decimal
    stop_loss_price: Decimal
    stop_loss_limit_price: Decimal | None = None  # STOP_LIMIT instead of STOP_MARKET
