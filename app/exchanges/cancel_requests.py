"""Cancels asked of orders at the exchanges by a kill switch or a risk action, as the
platform's own orders are canceled by commands stored in that change's transaction and
applied after it.

    ask         in the caller's transaction (the kill switch's, the risk trigger's): the
                live orders concerned are marked (``forced_cancel_at``):
                ``ask_for_bots`` a user's exchange bots' orders (the kill switch: its
                bots are paused), ``ask_for_user`` every live order of the user's at the
                exchanges, their bots' and their own (a USER scope's CANCEL_ORDERS,
                REDUCE_TO_FLAT or COOL_DOWN)
    send        after the commit (``send_asked``): each asked order still live is
                claimed (``forced_cancel_sent_at``, committed) and canceled once through
                ``app.exchanges.triggers.cancel_order`` (an armed stop disarmed here,
                any other canceled at the exchange by ``orders.cancel_order``), outside
                any database transaction
    again       the ``exchange-cancels`` job sends those still live once ``RETRY_AFTER``
                has passed since their claim: an exchange that was down, an order not
                yet placed (PENDING_SUBMIT) when it was asked, a process that died

A claim is a conditional update, so two senders at once (the caller and the job) send
one cancel. An order that ends meanwhile (filled, canceled) is no longer read.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import Text

from app.core.errors import AppError
from app.exchanges import triggers
from app.exchanges.domain.orders import WORKING
from app.exchanges.venue import exchange_client_id_sql
from app.runtime import Runtime
from db.session import in_transaction

log = logging.getLogger(__name__)

RETRY_AFTER = timedelta(seconds=30)  # a claimed cancel still live is sent again after this
_LIVE = sorted(s.value for s in WORKING)
_STATUSES = bindparam("live", _LIVE, type_=ARRAY(Text))

# the user's exchange bots' live orders (those their PLACE commands named: the digest of
# the client order id is the exchange's, ``app.exchanges.venue.exchange_client_id``)
_SENT_ID = exchange_client_id_sql("k.client_order_id")
_ASK_FOR_BOTS = text(f"""
    UPDATE exchange_orders o SET forced_cancel_at = :now
    FROM bots b JOIN bot_commands k ON k.bot_id = b.id AND k.kind = 'PLACE'
    WHERE b.user_id = :user_id AND b.exchange_account_id IS NOT NULL
      AND o.connection_id = b.exchange_account_id
      AND o.client_order_id = {_SENT_ID}
      AND o.status = ANY(:live) AND o.forced_cancel_at IS NULL
""").bindparams(_STATUSES)  # noqa: S608 (our constant)
_ASK_FOR_USER = text("""
    UPDATE exchange_orders SET forced_cancel_at = :now
    WHERE user_id = :user_id AND status = ANY(:live) AND forced_cancel_at IS NULL
""").bindparams(_STATUSES)
# claim the asked orders still live (of one user, or every one) not claimed since $due
_CLAIM = text("""
    UPDATE exchange_orders SET forced_cancel_sent_at = :now
    WHERE forced_cancel_at IS NOT NULL AND status = ANY(:live)
      AND (CAST(:user_id AS bigint) IS NULL OR user_id = :user_id)
      AND (forced_cancel_sent_at IS NULL OR forced_cancel_sent_at <= :due)
    RETURNING id, user_id
""").bindparams(_STATUSES)


async def ask_for_bots(session: AsyncSession, *, user_id: int, now: datetime) -> int:
    """Mark the live orders of ``user_id``'s exchange bots to be canceled (in the
    caller's transaction); how many."""
    result = await session.execute(_ASK_FOR_BOTS, {"user_id": user_id, "now": now})
    return int(result.rowcount)  # type: ignore[attr-defined]


async def ask_for_user(session: AsyncSession, *, user_id: int, now: datetime) -> int:
    """Mark every live order of ``user_id``'s at the exchanges to be canceled."""
    result = await session.execute(_ASK_FOR_USER, {"user_id": user_id, "now": now})
    return int(result.rowcount)  # type: ignore[attr-defined]


async def send_asked(rt: Runtime, *, user_id: int | None = None) -> int:
    """Cancel the asked orders still live (``user_id``'s, or everyone's) not claimed in
    the last ``RETRY_AFTER``, each once; how many were canceled. A cancel the exchange
    does not take now (down, not placed yet) is logged and left for the job."""
    now = rt.now()

    async def claim(session: AsyncSession) -> list[tuple[int, int]]:
        rows = await session.execute(
            _CLAIM, {"now": now, "due": now - RETRY_AFTER, "user_id": user_id}
        )
        return [(r.id, r.user_id) for r in rows]

    canceled = 0
    for order_id, owner in await in_transaction(rt.sessions, claim):
        try:
            await triggers.cancel_order(rt, user_id=owner, order_id=order_id)
        except AppError as error:
            where = {"order": order_id, "code": error.code}
            log.warning("exchange cancel not taken; retried later", extra=where)
            continue
        canceled += 1
    return canceled


async def run_once(rt: Runtime) -> int:
    """The ``exchange-cancels`` job: every asked cancel due again."""
    return await send_asked(rt)
