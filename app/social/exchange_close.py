"""Closing the positions of a follow on a connected exchange account: sold there.

A close is decided in a transaction that sets ``follows.closing_at``: an unfollow with
closePositions (``follows.unfollow_leader``) or a stop-loss that closes
(``follow_positions``). After that commit, and again at every run of the copy worker
(``copy_trading.run_once``, so a close a restart interrupted is not lost) until the close
is done, ``close_at_exchange`` looks at each of the follow's positions, outside any
database transaction for the exchange's part::

    a sell of the follow in flight there     wait: its fills are applied first
    (a SELL copy or close not ended, or
    ended with fills not yet applied)
    nothing left once fitted to the          done (dust the exchange would not take)
    exchange's lot and minimums
    this close sent already (its row), and   done: given up and logged (refused, canceled,
    ended with nothing filled                never placed); never sent again
    otherwise                                sent: ``app.exchanges.orders.place_order``, a
                                             LIMIT SELL of the position at the platform's
                                             last price less the follow's slippage
                                             tolerance (up to the exchange's tick), with
                                             the follow's FOLLOW risk scope

When every position is done, ``closing_at`` is cleared and a STOPPED follow gets its
``ended_at``: an unfollowed follow ends when its positions are sold.

Never twice: the client order id is the position's at its version
(``copying.exchange_close_client_order_id``), bumped by each fill applied to it, and
``place_order`` commits the order's row (unique per account and client order id)
PENDING_SUBMIT before sending; a second run, a second process or a restart finds that
row (or is refused it) and sends nothing. Only a close whose fills were applied, leaving
a remainder, is followed by another (the next version's).

The account DISCONNECTED or SUSPENDED, or the exchange unavailable: the close waits."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from app.core.errors import UserError
from app.exchanges import orders
from app.exchanges.domain.errors import ExchangeRateLimited, ExchangeUnavailable
from app.exchanges.domain.orders import LIVE, ExchangeOrderType
from app.runtime import Runtime
from app.social.copy_exchange import exchange_market, lots_of
from app.social.domain import copying
from app.social.domain.copying import Planned
from app.trading.domain.errors import ClientOrderIdReused
from db.raw import driver

log = logging.getLogger(__name__)

BATCH = 100
_TRANSIENT = (ExchangeUnavailable.code, ExchangeRateLimited.code)
_LIVE = sorted(s.value for s in LIVE)

# per position: the follow's sells at the exchange not yet applied to it (orders not
# ended: all of them; ended: their fills not applied) and its SELL copies not yet sent
_POSITIONS_SQL = """
    SELECT f.follower_id, f.status, f.slippage_tolerance, f.quote, f.exchange_account_id,
           x.status AS account_status, x.exchange, p.currency, p.quantity, p.version,
           coalesce(m.last_price, m.reference_price) AS price,
           coalesce((SELECT sum(CASE WHEN o.status = ANY($2::text[]) THEN o.quantity
                                     ELSE o.filled END
                                - (SELECT coalesce(sum(e.quantity), 0) FROM exchange_fills e
                                   WHERE e.order_id = o.id AND e.follow_id IS NOT NULL))
                     FROM exchange_orders o
                     WHERE o.follow_id = f.id AND o.side = 'SELL'
                       AND split_part(o.symbol, '/', 1) = p.currency), 0)
           + coalesce((SELECT sum(c.quantity) FROM copies c JOIN markets cm ON cm.id = c.market_id
                       WHERE c.follow_id = f.id AND c.status = 'PENDING' AND c.side = 'SELL'
                         AND c.exchange_account_id IS NOT NULL AND cm.base = p.currency), 0)
           AS selling
    FROM follows f
    JOIN exchange_connections x ON x.id = f.exchange_account_id
    JOIN follow_positions p ON p.follow_id = f.id
    LEFT JOIN markets m ON m.base = p.currency AND m.quote = f.quote
    WHERE f.id = $1 AND f.closing_at IS NOT NULL
    ORDER BY p.currency
"""
_EXISTING_SQL = (
    "SELECT status, filled FROM exchange_orders WHERE connection_id = $1 AND client_order_id = $2"
)
_DONE_SQL = """
    UPDATE follows SET closing_at = NULL, updated_at = now(),
           ended_at = CASE WHEN status = 'STOPPED' THEN coalesce(ended_at, now()) END
    WHERE id = $1 AND closing_at IS NOT NULL RETURNING id
"""
_CLOSING_SQL = "SELECT id FROM follows WHERE closing_at IS NOT NULL ORDER BY id LIMIT $1"


@dataclass(frozen=True, slots=True)
class _Position:
    follow_id: int
    follower_id: int
    account_id: int
    account_status: str
    exchange: str
    currency: str
    quote: str
    quantity: Decimal
    selling: Decimal
    version: int
    price: Decimal | None
    slippage_tolerance: Decimal


def _position_of(follow_id: int, r: Any) -> _Position:
    return _Position(
        follow_id=follow_id, follower_id=r["follower_id"], account_id=r["exchange_account_id"],
        account_status=r["account_status"], exchange=r["exchange"], currency=r["currency"],
        quote=r["quote"], quantity=r["quantity"], selling=r["selling"], version=r["version"],
        price=r["price"], slippage_tolerance=r["slippage_tolerance"],
    )  # fmt: skip


async def send_closes(rt: Runtime, *, limit: int = BATCH) -> int:
    """Each follow being closed at its exchange (``closing_at``), once more: the number
    of closes sent and follows done (0: nothing moved, so ``run_once`` stops)."""
    async with rt.reads() as session:
        ids = [r["id"] for r in await (await driver(session)).fetch(_CLOSING_SQL, limit)]
    return sum([await close_at_exchange(rt, follow_id=follow_id) for follow_id in ids])


async def close_at_exchange(rt: Runtime, *, follow_id: int) -> int:
    """One step of a follow's close (see the module's table): the number of closes sent,
    plus one if the close is done."""
    async with rt.reads() as session:
        rows = await (await driver(session)).fetch(_POSITIONS_SQL, follow_id, _LIVE)
    if not rows:  # not closing, or no position at all
        return await _done(rt, follow_id)
    sent = waiting = 0
    for row in rows:
        position = _position_of(follow_id, row)
        outcome = await _close_position(rt, position)
        sent += outcome == _SENT
        waiting += outcome in (_SENT, _WAIT)
    if waiting:
        return sent
    return await _done(rt, follow_id)


_SENT, _WAIT, _DONE = "sent", "wait", "done"


async def _close_position(rt: Runtime, position: _Position) -> str:
    if position.selling > 0:
        return _WAIT
    if copying.account_refusal(position.account_status) is not None:
        return _WAIT
    if position.quantity <= 0:
        return _DONE
    if position.price is None:
        log.warning("follow close: no price", extra={"follow_id": position.follow_id,
                    "currency": position.currency})  # fmt: skip
        return _DONE
    try:
        market = await exchange_market(rt, position.exchange, position.currency, position.quote)
    except UserError as error:
        return _WAIT if error.code in _TRANSIENT else _given_up(position, error.code)
    if market is None:
        return _given_up(position, "EXCHANGE_MARKET_NOT_FOUND")
    lots = lots_of(market)
    limit = copying.limit_price("SELL", position.price, position.slippage_tolerance,
                                lots.tick_size)  # fmt: skip
    fitted = copying.fit_to_market("SELL", position.quantity, limit, lots)
    if not isinstance(fitted, Planned):
        return _DONE  # dust the exchange would not take
    client_order_id = copying.exchange_close_client_order_id(
        position.follow_id, position.currency, position.version
    )
    existing = await _existing(rt, position.account_id, client_order_id)
    if existing is not None:
        return _WAIT if existing["status"] in _LIVE or existing["filled"] > 0 else (
            _given_up(position, "CLOSE_ENDED_UNFILLED"))  # fmt: skip
    return await _send(rt, position, market.symbol, fitted, client_order_id)


async def _send(
    rt: Runtime, position: _Position, symbol: str, plan: Planned, client_order_id: str
) -> str:
    request = orders.PlaceOrder(
        account_id=position.account_id,
        symbol=symbol,
        side="SELL",
        type=ExchangeOrderType.LIMIT.value,
        quantity=plan.quantity,
        price=plan.price,
        client_order_id=client_order_id,
        follow_id=position.follow_id,
    )
    try:
        await orders.place_order(rt, user_id=position.follower_id, request=request)
    except ClientOrderIdReused:  # another run recorded it first: that one sends it
        return _WAIT
    except UserError as error:
        if error.code in _TRANSIENT:  # recorded PENDING_SUBMIT, or tried again next run
            return _WAIT
        if await _existing(rt, position.account_id, client_order_id) is not None:
            return _WAIT  # recorded and refused: the next run sees it ended and gives up
        return _given_up(position, error.code)
    return _SENT


async def _existing(rt: Runtime, account_id: int, client_order_id: str) -> Any:
    async with rt.reads() as session:
        return await (await driver(session)).fetchrow(_EXISTING_SQL, account_id, client_order_id)


def _given_up(position: _Position, code: str) -> str:
    log.warning("follow close at the exchange given up", extra={
        "follow_id": position.follow_id, "currency": position.currency, "code": code})  # fmt: skip
    return _DONE


async def _done(rt: Runtime, follow_id: int) -> int:
    async with rt.sessions() as session, session.begin():
        done = await (await driver(session)).fetchval(_DONE_SQL, follow_id)
    return 1 if done is not None else 0
