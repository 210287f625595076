"""The ``copy-positions`` consumer: follower fills become follow positions, and a
follow whose loss reaches its stop-loss pauses.

Each fill of a copy order (or of a close order, ``close-{follow}-{currency}-{version}``)
is applied to ``follow_positions`` (quantity, cost in quote fees included, realized
profit at average cost) in the same transaction as the checkpoint, so exactly once.

A follow on a connected exchange account gets its position the same way from the
``exchange-fills`` events of its orders there (``exchange_orders.follow_id``: a copy's,
or a close's): each such fill is marked with the follow (``exchange_fills.follow_id``)
by the statement that selects it, only while unmarked, in the transaction that applies
it, so a fill is applied once by its id even when its event is read again (a lost
checkpoint); the fill itself is recorded once (unique on the exchange's trade id) by
``app.exchanges.following``, whose transaction writes the event, so none is missed. A
fee in the base is less bought (``copying.exchange_fill_change``). Then
the portfolio stop-loss of the follows holding an asset whose market traded: realized
plus unrealized profit at the market's last price; at ``-stop_loss_percent`` of the
allocation the follow is PAUSED (``pause_reason`` STOP_LOSS, outbox
``social.follow_paused``) and, with ``close_on_stop_loss``, its positions are sold
(``follow_close.close_follow_positions``; an exchange follow is marked ``closing_at``
in the same transaction and its sells are sent after it, ``exchange_close``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.events import event_log, outbox, topics
from app.runtime import Runtime
from app.social import copy_orders
from app.social.copy_orders import TOPICS
from app.social.domain import copying
from app.social.follow_close import close_follow_positions
from app.trading.domain.positions import Position
from db.raw import driver
from db.session import in_transaction

POSITIONS_CONSUMER = "copy-positions"
POSITIONS_TOPICS = (*TOPICS, topics.EXCHANGE_FILLS.named())
STOP_LOSS = "STOP_LOSS"


@dataclass(frozen=True, slots=True)
class _FollowerFill:
    follow_id: int
    copy_id: int | None
    currency: str
    side: str
    quantity: Decimal
    quote: Decimal  # paid (BUY, fee included) or received (SELL, fee deducted)
    copy_filled: Decimal | None = None  # at an exchange: what the fill filled of its order


# An exchange fill of a follow's order, marked applied as it is selected (once by id).
_EXCHANGE_FILLS_SQL = """
    WITH applied AS (
        UPDATE exchange_fills f SET follow_id = o.follow_id
        FROM exchange_orders o JOIN follows fo ON fo.id = o.follow_id
        WHERE f.id = ANY($1::bigint[]) AND f.follow_id IS NULL AND o.id = f.order_id
          AND fo.follower_id = o.user_id AND split_part(o.symbol, '/', 2) = fo.quote
        RETURNING f.id, f.order_id, f.quantity, f.price, f.fee, f.fee_currency, o.side,
                  o.symbol, o.follow_id
    )
    SELECT a.*, c.id AS copy_id FROM applied a
    LEFT JOIN copies c ON c.follow_id = a.follow_id AND c.exchange_order_id = a.order_id
    ORDER BY a.id
"""


async def _exchange_follower_fills(
    connection: Any, events: Sequence[event_log.Event]
) -> list[_FollowerFill]:
    ids = [topics.EXCHANGE_FILLS.parse(e.payload).id for e in events
           if e.topic == topics.EXCHANGE_FILLS.name]  # fmt: skip
    if not ids:
        return []
    out = []
    for r in await connection.fetch(_EXCHANGE_FILLS_SQL, ids):
        base, quote = r["symbol"].split("/", 1)
        change = copying.exchange_fill_change(
            r["side"], r["quantity"], r["price"], r["fee"], r["fee_currency"],
            base=base, quote=quote,
        )  # fmt: skip
        out.append(
            _FollowerFill(
                follow_id=r["follow_id"],
                copy_id=r["copy_id"],
                currency=base,
                side=r["side"],
                quantity=change.quantity,
                quote=change.quote,
                copy_filled=r["quantity"],
            )
        )
    return out


_FOLLOW_ORDERS_SQL = """
    SELECT o.id, o.user_id, o.client_order_id FROM orders o
    WHERE o.id = ANY($1::bigint[])
      AND (o.client_order_id LIKE 'copy-%' OR o.client_order_id LIKE 'close-%')
"""


async def _follower_fills(
    connection: Any, events: Sequence[event_log.Event]
) -> list[_FollowerFill]:
    fills = copy_orders.fills(events)
    if not fills:
        return []
    orders = {
        r["id"]: r
        for r in await connection.fetch(_FOLLOW_ORDERS_SQL, sorted({f.order_id for f in fills}))
    }
    if not orders:
        return []
    parsed = {i: copying.parse_client_order_id(r["client_order_id"]) for i, r in orders.items()}
    follow_ids = sorted({p[1] for p in parsed.values() if p is not None})
    follows = {
        r["id"]: r
        for r in await connection.fetch(
            "SELECT f.id, f.follower_id, f.quote FROM follows f WHERE f.id = ANY($1::bigint[])",
            follow_ids,
        )
    }
    copies = {
        r["client_order_id"]: r["id"]
        for r in await connection.fetch(
            "SELECT id, client_order_id FROM copies WHERE follow_id = ANY($1::bigint[])"
            " AND client_order_id = ANY($2::text[])",
            follow_ids,
            [r["client_order_id"] for r in orders.values()],
        )
    }
    markets = {
        r["symbol"]: r for r in await connection.fetch("SELECT symbol, base, quote FROM markets")
    }
    out = []
    for fill in fills:
        order = orders.get(fill.order_id)
        kind_follow = parsed.get(fill.order_id)
        if order is None or kind_follow is None:
            continue
        kind, follow_id = kind_follow
        follow, market = follows.get(follow_id), markets[fill.symbol]
        copy_id = copies.get(order["client_order_id"])
        if (
            follow is None
            or follow["follower_id"] != order["user_id"]
            or market["quote"] != follow["quote"]
            or (kind == "copy" and copy_id is None)
        ):
            continue  # not an order the copy worker or a close placed
        value, fee = fill.quote_amount, fill.fee
        out.append(
            _FollowerFill(
                follow_id=follow_id,
                copy_id=copy_id if kind == "copy" else None,
                currency=market["base"],
                side=fill.side,
                quantity=fill.quantity,
                quote=value + fee if fill.side == "BUY" else value - fee,
            )
        )
    return out


async def _apply_positions(connection: Any, fills: list[_FollowerFill]) -> None:
    keys = sorted({(f.follow_id, f.currency) for f in fills})
    follow_ids, currencies = [k[0] for k in keys], [k[1] for k in keys]
    await connection.execute(
        "INSERT INTO follow_positions (follow_id, currency)"
        " SELECT * FROM unnest($1::bigint[], $2::text[]) ON CONFLICT DO NOTHING",
        follow_ids,
        currencies,
    )
    rows = await connection.fetch(
        "SELECT follow_id, currency, quantity, cost, realized_pnl, version FROM follow_positions"
        " WHERE (follow_id, currency) IN (SELECT * FROM unnest($1::bigint[], $2::text[]))"
        " ORDER BY follow_id, currency FOR UPDATE",
        follow_ids,
        currencies,
    )
    state = {
        (r["follow_id"], r["currency"]): Position(r["quantity"], r["cost"], r["realized_pnl"])
        for r in rows
    }
    versions = {(r["follow_id"], r["currency"]): r["version"] for r in rows}
    applied: dict[int, Decimal] = defaultdict(Decimal)
    for fill in fills:
        key = (fill.follow_id, fill.currency)
        position = state[key]
        if fill.side == "BUY":
            state[key] = position.bought(fill.quantity, fill.quote)
        else:
            state[key] = position.sold(fill.quantity, fill.quote)
        versions[key] += 1
        if fill.copy_id is not None:
            applied[fill.copy_id] += fill.quantity if fill.copy_filled is None else fill.copy_filled
    await connection.executemany(
        "UPDATE follow_positions SET quantity = $3, cost = round($4, 18),"
        " realized_pnl = round($5, 18), version = $6, updated_at = now()"
        " WHERE follow_id = $1 AND currency = $2",
        [(k[0], k[1], s.quantity, s.cost, s.realized_pnl, versions[k]) for k, s in state.items()],
    )
    if applied:
        await connection.execute(
            "UPDATE copies c SET filled_quantity = c.filled_quantity + v.quantity,"
            " updated_at = now() FROM unnest($1::bigint[], $2::numeric[]) AS v(id, quantity)"
            " WHERE c.id = v.id",
            list(applied),
            list(applied.values()),
        )


_STOP_LOSS_SQL = """
    SELECT f.id, f.follower_id, f.allocation, f.stop_loss_percent, f.close_on_stop_loss,
           l.display_name AS leader_name, p.quantity, p.cost, p.realized_pnl,
           coalesce(m.last_price, m.reference_price) AS price
    FROM follows f
    JOIN follow_positions p ON p.follow_id = f.id
    LEFT JOIN leaders l ON l.user_id = f.leader_id
    LEFT JOIN markets m ON m.base = p.currency AND m.quote = f.quote
    WHERE f.status = 'ACTIVE' AND f.stop_loss_percent IS NOT NULL
      AND f.id IN (SELECT follow_id FROM follow_positions
                   WHERE follow_id = ANY($1::bigint[]) OR (currency = ANY($2::text[])
                                                           AND quantity > 0))
    ORDER BY f.id
"""


async def _check_stop_losses(
    session: AsyncSession, follow_ids: list[int], currencies: list[str]
) -> list[int]:
    """Pause the follows whose loss reached their stop-loss; those to close."""
    connection = await driver(session)
    rows = await connection.fetch(_STOP_LOSS_SQL, follow_ids, currencies)
    grouped: dict[int, list[Any]] = defaultdict(list)
    for r in rows:
        grouped[r["id"]].append(r)
    to_close = []
    for follow_id, positions in grouped.items():
        first = positions[0]
        pnl = copying.follow_pnl(
            (Position(r["quantity"], r["cost"], r["realized_pnl"]), r["price"]) for r in positions
        )
        if not copying.stop_loss_hit(pnl, first["allocation"], first["stop_loss_percent"]):
            continue
        paused = await connection.fetchval(
            "UPDATE follows SET status = 'PAUSED', pause_reason = $2, updated_at = now(),"
            " closing_at = CASE WHEN close_on_stop_loss AND exchange_account_id IS NOT NULL"
            " THEN now() ELSE closing_at END"
            " WHERE id = $1 AND status = 'ACTIVE' RETURNING id",
            follow_id,
            STOP_LOSS,
        )
        if paused is None:
            continue
        paused_event = topics.FollowPaused(
            follow_id=follow_id,
            reason=STOP_LOSS,
            leader_name=first["leader_name"],
            positions_closed=first["close_on_stop_loss"],
        )
        await outbox.write(session, topics.follow_paused(first["follower_id"], paused_event))
        if first["close_on_stop_loss"]:
            to_close.append(follow_id)
    return to_close


async def apply_follower_fills(rt: Runtime, *, limit: int = 1000) -> int:
    """One batch of the ``copy-positions`` consumer; the number of events it handled."""

    async def work(session: AsyncSession) -> tuple[int, list[int]]:
        events = await event_log.read(
            session, POSITIONS_CONSUMER, topics=POSITIONS_TOPICS, limit=limit
        )
        if not events:
            await event_log.advance(session, POSITIONS_CONSUMER, events)
            return 0, []
        connection = await driver(session)
        fills = await _follower_fills(connection, events)
        fills += await _exchange_follower_fills(connection, events)
        if fills:
            await _apply_positions(connection, fills)
        symbols = sorted({f.symbol for f in copy_orders.fills(events)})
        bases = sorted({s.split("/")[0] for s in symbols})
        to_close = await _check_stop_losses(session, sorted({f.follow_id for f in fills}), bases)
        await event_log.advance(session, POSITIONS_CONSUMER, events)
        return len(events), to_close

    handled, to_close = await in_transaction(rt.sessions, work)
    for follow_id in to_close:
        await close_follow_positions(rt, follow_id=follow_id)
    return handled
