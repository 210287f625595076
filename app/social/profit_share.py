"""Profit sharing: once per follow and UTC day, the leader's share of the follower's
realized profit above the follow's high-water mark moves from follower to leader.

Per follow, one transaction: lock the follow row, lock both ledger accounts (the
follow's quote currency, AVAILABLE), compute the share (``app.social.domain.copying.
profit_share``), post it as one journal entry (kind PROFIT_SHARE), insert the
settlement (UNIQUE (follow_id, period): a second run the same day changes nothing),
raise the high-water mark, and emit ``social.profit_share`` to both sides.

Realized profit is the sum of ``follow_positions.realized_pnl`` (in the follow's quote,
fees included). When the follower's available balance does not cover the share, what is
available is paid and the mark rises only by the profit that payment covers: the rest is
charged at the next settlement, never forgiven and never charged twice. A day with a
share due and nothing available still records its settlement (amount 0), so the day is
settled once.

A follow on a connected exchange account (``follows.exchange_account_id``) is never
charged: its profit is realized at the exchange, in the follower's account there, which
the platform cannot debit, while the share would be taken from the follower's platform
wallet, which that profit never reached (an empty wallet would leave the share owed for
ever, a funded one would pay it out of unrelated money). Such follows are left out of
the settlement (``_DUE_SQL``, and ``settle_follow`` refuses them), their mark untouched.
"""

from __future__ import annotations

import logging
from datetime import date
from decimal import Decimal

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.events import outbox, topics
from app.ledger import journal as ledger
from app.ledger.rules import move
from app.runtime import Runtime
from app.social.domain import copying
from db.models import ProfitShareSettlement
from db.queries import Page, keyset_page
from db.raw import driver
from db.session import in_transaction

log = logging.getLogger(__name__)

_DUE_SQL = """
    SELECT f.id FROM follows f
    JOIN leaders l ON l.user_id = f.leader_id
    JOIN (SELECT follow_id, sum(realized_pnl) AS realized FROM follow_positions
          GROUP BY follow_id) p ON p.follow_id = f.id
    WHERE p.realized > f.high_water_mark AND l.profit_share_percent > 0
      AND f.exchange_account_id IS NULL
      AND NOT EXISTS (SELECT 1 FROM profit_share_settlements s
                      WHERE s.follow_id = f.id AND s.period = $1)
    ORDER BY f.id
"""

_FOLLOW_SQL = """
    SELECT f.id, f.follower_id, f.leader_id, f.quote, f.high_water_mark,
           f.exchange_account_id, l.profit_share_percent, c.scale,
           (SELECT coalesce(sum(realized_pnl), 0) FROM follow_positions
            WHERE follow_id = f.id) AS realized,
           EXISTS (SELECT 1 FROM profit_share_settlements s
                   WHERE s.follow_id = f.id AND s.period = $2) AS settled
    FROM follows f
    JOIN leaders l ON l.user_id = f.leader_id
    JOIN currencies c ON c.code = f.quote
    WHERE f.id = $1
    FOR UPDATE OF f
"""


async def settle_follow(
    session: AsyncSession, *, follow_id: int, period: date
) -> ProfitShareSettlement | None:
    """Settle one follow for ``period`` (in the caller's transaction); None when there
    is nothing to settle, the period is settled already or the follow is on an exchange
    account (never charged)."""
    connection = await driver(session)
    row = await connection.fetchrow(_FOLLOW_SQL, follow_id, period)
    if row is None or row["settled"] or row["exchange_account_id"] is not None:
        return None
    follower, leader, quote = row["follower_id"], row["leader_id"], row["quote"]
    payer = ledger.user_account(follower, quote)
    payee = ledger.user_account(leader, quote)
    accounts = await ledger.lock_accounts(session, [payer, payee])
    share = copying.profit_share(
        realized=row["realized"],
        high_water_mark=row["high_water_mark"],
        percent=row["profit_share_percent"],
        available=accounts[payer].balance,
        unit=Decimal(1).scaleb(-row["scale"]),
    )
    if share.due <= 0:
        return None
    entry_id = None
    if share.paid > 0:
        posted = await ledger.post(
            session,
            kind="PROFIT_SHARE",
            legs=move(share.paid, payer, payee),
            reference=f"profit-share:{follow_id}:{period.isoformat()}",
            memo="profit share",
        )
        entry_id = posted.entry_id
    settlement = ProfitShareSettlement(
        follow_id=follow_id,
        leader_id=leader,
        follower_id=follower,
        period=period,
        realized_pnl=row["realized"],
        high_water_mark_before=row["high_water_mark"],
        high_water_mark_after=share.high_water_mark,
        amount=share.paid,
        currency=quote,
        entry_id=entry_id,
    )
    session.add(settlement)
    await connection.execute(
        "UPDATE follows SET high_water_mark = round($2, 18) WHERE id = $1",
        follow_id,
        share.high_water_mark,
    )
    await session.flush()
    if share.paid > 0:
        for user_id, role in ((leader, "LEADER"), (follower, "FOLLOWER")):
            shared = topics.ProfitShared(
                follow_id=follow_id,
                settlement_id=settlement.id,
                amount=share.paid,
                currency=quote,
                role=role,
            )
            await outbox.write(session, topics.profit_shared(user_id, shared))
    return settlement


async def settle_profit_shares(rt: Runtime, *, period: date | None = None) -> int:
    """Settle every follow with realized profit above its mark, for ``period`` (default:
    today, UTC); the number of settlements written. The daily job (it runs every
    PROFIT_SHARE_INTERVAL_SECONDS; each follow settles once per day)."""
    period = period or rt.now().date()
    async with rt.sessions() as session:
        connection = await driver(session)
        due = [r["id"] for r in await connection.fetch(_DUE_SQL, period)]
    written = 0
    for follow_id in due:

        async def work(session: AsyncSession, follow_id: int = follow_id) -> bool:
            return await settle_follow(session, follow_id=follow_id, period=period) is not None

        try:
            written += await in_transaction(rt.sessions, work)
        except Exception:
            log.exception("profit share failed", extra={"follow_id": follow_id})
    return written


# --- reads ---------------------------------------------------------------------------------


def _settlements_of(user_id: int, role: str | None) -> Select[tuple[ProfitShareSettlement]]:
    statement = select(ProfitShareSettlement)
    if role == "LEADER":
        return statement.where(ProfitShareSettlement.leader_id == user_id)
    if role == "FOLLOWER":
        return statement.where(ProfitShareSettlement.follower_id == user_id)
    return statement.where(
        (ProfitShareSettlement.leader_id == user_id)
        | (ProfitShareSettlement.follower_id == user_id)
    )


async def list_settlements(
    session: AsyncSession, *, user_id: int, role: str | None, first: int, after: str | None
) -> Page[ProfitShareSettlement]:
    """The settlements where the user is the leader, the follower, or either; newest
    first."""
    return await keyset_page(
        session,
        _settlements_of(user_id, role),
        key=ProfitShareSettlement.id,
        first=first,
        after=after,
        descending=True,
    )
