"""Price alerts: a user's "tell me when BTC/USDT trades at or above 100 000", fired once.

``fire_price_alerts`` (a background job, consumer ``price-alerts``) reads the markets'
trades from the outbox as an event log and, in one transaction per batch, flips every
ACTIVE alert a trade reaches to TRIGGERED (``UPDATE ... WHERE status = 'ACTIVE'``: an
alert fires once, whatever runs twice), creates its PRICE notification and advances the
checkpoint. A trade committed before an alert was created does not fire it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotAuthenticated, NotFound
from app.events import event_log
from app.events.topics import TRADES
from app.notifications import rules
from app.notifications.notifications import NewNotification, create_notifications
from app.notifications.rules import AlertDirection, AlertStatus, TooManyPriceAlerts
from app.runtime import Runtime
from app.trading.markets import MarketRow, market_by_symbol
from db.models import PriceAlert
from db.queries import Page, keyset_page, lock_user
from db.raw import driver
from db.session import in_transaction

CONSUMER = "price-alerts"
EVENT_BATCH = 500


@dataclass(frozen=True, slots=True)
class CreatedAlert:
    alert: PriceAlert
    market: MarketRow


async def create_price_alert(
    rt: Runtime,
    *,
    user_id: int | None,
    symbol: str,
    direction: AlertDirection,
    price: Decimal,
) -> CreatedAlert:
    """A new ACTIVE alert; at most PRICE_ALERTS_MAX_ACTIVE per user."""
    if user_id is None:
        raise NotAuthenticated()
    limit = rt.settings.price_alerts_max_active

    async def work(session: AsyncSession) -> CreatedAlert:
        market = await market_by_symbol(session, symbol)
        rules.check_alert_price(market.spec, price)
        await lock_user(session, user_id)  # one user's creations take turns: the count holds
        connection = await driver(session)
        active = await connection.fetchval(
            "SELECT count(*) FROM price_alerts WHERE user_id = $1 AND status = 'ACTIVE'", user_id
        )
        if active >= limit:
            raise TooManyPriceAlerts(f"You can have at most {limit} active price alerts")
        row = await connection.fetchrow(
            "INSERT INTO price_alerts (user_id, market_id, direction, price)"
            " VALUES ($1, $2, $3, $4) RETURNING *",
            user_id,
            market.id,
            direction.value,
            price,
        )
        return CreatedAlert(alert=PriceAlert(**dict(row)), market=market)

    return await in_transaction(rt.sessions, work)


async def delete_price_alert(rt: Runtime, *, user_id: int | None, alert_id: int) -> int:
    """The user's alert (active or triggered) is deleted: it no longer fires or lists."""
    if user_id is None:
        raise NotAuthenticated()

    async def work(session: AsyncSession) -> int:
        connection = await driver(session)
        deleted = await connection.fetchval(
            "UPDATE price_alerts SET status = 'DELETED'"
            " WHERE id = $1 AND user_id = $2 AND status <> 'DELETED' RETURNING id",
            alert_id,
            user_id,
        )
        if deleted is None:
            raise NotFound("You have no price alert with this id", field="id")
        return int(deleted)

    return await in_transaction(rt.sessions, work)


async def list_price_alerts(
    session: AsyncSession,
    *,
    user_id: int,
    status: AlertStatus | None,
    first: int,
    after: str | None,
) -> Page[PriceAlert]:
    """The user's alerts (not the deleted ones), newest first."""
    statement = select(PriceAlert).where(PriceAlert.user_id == user_id)
    if status is None:
        statement = statement.where(PriceAlert.status != AlertStatus.DELETED.value)
    else:
        statement = statement.where(PriceAlert.status == status.value)
    return await keyset_page(
        session, statement, key=PriceAlert.id, first=first, after=after, descending=True
    )


# --- firing -----------------------------------------------------------------------------

# The first trade of the batch (in log order) that reaches each ACTIVE alert of its
# market, among the alerts created before that trade's transaction.
_FIRE = """
WITH trades AS (
    SELECT t.ord, m.id AS market_id, t.price, t.at
    FROM unnest($1::text[], $2::numeric[], $3::timestamptz[]) WITH ORDINALITY
         AS t(symbol, price, at, ord)
    JOIN markets m ON m.symbol = t.symbol
), hits AS (
    SELECT DISTINCT ON (a.id) a.id, t.price AS trade_price
    FROM trades t
    JOIN price_alerts a ON a.market_id = t.market_id AND a.status = 'ACTIVE'
     AND a.created_at <= t.at
     AND CASE a.direction WHEN 'ABOVE' THEN t.price >= a.price ELSE t.price <= a.price END
    ORDER BY a.id, t.ord
)
UPDATE price_alerts a SET status = 'TRIGGERED', triggered_at = now()
FROM hits h, markets m
WHERE a.id = h.id AND a.status = 'ACTIVE' AND m.id = a.market_id
RETURNING a.id, a.user_id, a.direction, a.price, h.trade_price, m.symbol
"""


async def fire_price_alerts(rt: Runtime) -> int:
    """Background job: fire the alerts the trades after the checkpoint reach, batch
    after batch; the number fired."""
    return await event_log.drain(rt.sessions, _fire_batch, size=EVENT_BATCH)


async def _fire_batch(session: AsyncSession) -> tuple[int, int]:
    connection = await driver(session)
    symbols = [r["symbol"] for r in await connection.fetch("SELECT symbol FROM markets")]
    events = await event_log.read(
        session, CONSUMER, topics=[TRADES.named(s) for s in symbols], limit=EVENT_BATCH
    )
    hits = []
    if events:
        trades = [TRADES.parse(e.payload) for e in events]
        hits = await connection.fetch(
            _FIRE,
            [t.symbol for t in trades],
            [t.price for t in trades],
            [e.created_at for e in events],
        )
    await create_notifications(
        session,
        [
            NewNotification(
                user_id=hit["user_id"],
                source=f"price-alert:{hit['id']}",
                draft=rules.price_alert_hit(
                    alert_id=hit["id"],
                    symbol=hit["symbol"],
                    direction=AlertDirection(hit["direction"]),
                    price=hit["price"],
                    trade_price=hit["trade_price"],
                ),
            )
            for hit in hits
        ],
    )
    await event_log.advance(session, CONSUMER, events)
    return len(events), len(hits)
