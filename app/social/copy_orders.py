"""What the copy worker's orders have in common: copies (``copy_placement``) and closes
(``follow_close``) are LIMIT IOC orders on the follower's live venue (``LiveVenue``, the
venue interface over the ordinary order path), both read the
``fills`` topic, and both count what a copy still has in flight."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from app.events import event_log, topics
from app.runtime import Runtime
from app.social.domain import copying
from app.trading.domain.orders import FINAL_STATUSES, Side
from app.venues.domain.venue import OrderAck
from app.venues.live import LiveVenue

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
    return [
        topics.FILLS.parse(e.payload)
        for e in events
        if e.user_id is not None and e.topic == topics.FILLS.name
    ]


async def place_ioc(
    rt: Runtime,
    *,
    user_id: int,
    symbol: str,
    side: Side,
    quantity: Decimal,
    price: Decimal,
    client_order_id: str,
) -> OrderAck:
    """A copy or a close (``copying.ioc_request``) on the follower's live venue, the
    ordinary order path: the same checks, holds and refusal codes as a user's order,
    idempotent on ``client_order_id``."""
    venue = LiveVenue(rt, user_id=user_id)
    request = copying.ioc_request(side, quantity, price)
    return await venue.submit(symbol=symbol, client_order_id=client_order_id, request=request)
