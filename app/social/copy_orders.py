"""What the copy worker's orders have in common: copies (``copy_placement``) and closes
(``follow_close``) are LIMIT IOC orders through the ordinary order path, both read the
``fills`` topic, and both count what a copy still has in flight."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from app.events import event_log, topics
from app.runtime import Runtime
from app.trading import placement
from app.trading.domain.orders import FINAL_STATUSES, OrderRequest, OrderType, Side, TimeInForce
from db.models import Order

TOPICS = (topics.FILLS.named(),)
FINAL = [s.value for s in FINAL_STATUSES]

# What a copy still has in flight: the quantity not yet applied to the follow's
# positions (PENDING: all of it; an order still live: what is not applied; a finished
# order: its fills not yet applied).
IN_FLIGHT = (
    "(CASE WHEN o.status = ANY($2::text[]) THEN o.filled_quantity ELSE c.quantity END"
    " - c.filled_quantity)"
)


def fills(events: Sequence[event_log.Event]) -> list[topics.Fill]:
    """The fills of ``events`` (the ``fills`` topic's, each for its owner)."""
    return [topics.FILLS.parse(e.payload) for e in events if e.user_id is not None]


async def place_ioc(
    rt: Runtime,
    *,
    user_id: int,
    symbol: str,
    side: Side,
    quantity: Decimal,
    price: Decimal,
    client_order_id: str,
) -> Order:
    """A copy or a close: a LIMIT IOC (the limit is the slippage bound) through the
    ordinary order path, idempotent on ``client_order_id``."""
    request = OrderRequest(
        side=side,
        type=OrderType.LIMIT,
        quantity=quantity,
        price=price,
        time_in_force=TimeInForce.IOC,
    )
    return await placement.place_order(
        rt, user_id=user_id, symbol=symbol, request=request, client_order_id=client_order_id
    )
