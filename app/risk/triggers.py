"""What fills set off: the ``risk-triggers`` consumer of the outbox topic ``fills``.

Why a consumer and not the engine's settlement transaction: the engine's batch is the
venue's hot path (one writer per market, two statements per batch); a user's P&L spans
every market and their positions are written by several engines, and what a trigger
does (cancel the user's orders on every market, sell positions) is the request side's
(commands in sequence per market, placements). So the engine stays as it is and this
consumer, like copy trading's (``app.social.copy_trading``), reads the fills after they
commit, in batches: the latency is the poll's (``COPY_POLL_SECONDS``), the cost off the
engine's path.

One transaction per batch of events, with the checkpoint:

    the traders     whose fills these are and who have AFTER_FILLS limits (USER scope);
                    their rows locked in id order (FOR NO KEY UPDATE, as a placement
                    locks them: a placement sees the state before or after, never a
                    state that is changing)
    their states    locked (made ACTIVE where missing); a cool-down that ended is
                    recorded first (COOL_DOWN_OVER)
    P&L             realised + unrealised from their positions (USD), the marks moved
                    (``app.risk.domain.pnl``: the day's and the week's start, the peak,
                    consecutive losing closes)
    limits          ``after_fills``: the strictest that fired moves the state (only ever
                    stricter), with its reason; CANCEL_ORDERS, REDUCE_TO_FLAT and
                    COOL_DOWN cancel the trader's open orders (CANCEL_ALL per market, in
                    this transaction); each transition a RISK notification, each limit
                    near its threshold a warning (once a day per limit)

After COMMIT, REDUCE_TO_FLAT sells what the trader holds: once the cancels are applied,
a protected MARKET sell (``FLATTEN_SLIPPAGE_BPS`` from the last trade) per non-cash
asset on its USD(T) market, idempotent on ``risk-flat-<transition>-<asset>``.

``expire_cool_downs`` (same job) records the end of every cool-down that is over.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import AppError
from app.events import event_log, topics
from app.notifications.notifications import NewNotification, create_notifications
from app.notifications.rules import Draft, NotificationType, Priority
from app.risk import notices, transitions
from app.risk.domain.limits import AFTER_FILLS_KINDS, FLATTEN_SLIPPAGE_BPS, Breach, to_act
from app.risk.domain.pnl import Marks
from app.risk.domain.states import (
    RiskState,
    Scope,
    ScopeRef,
    StateEvent,
    event_towards,
)
from app.risk.gate import limit_of
from app.risk.sql import PNL_SQL
from app.runtime import Runtime
from app.trading import commands, markets, placement
from app.trading.domain.orders import OrderRequest, OrderType, Side
from app.trading.engine.settlement import CASH
from db.raw import driver
from db.session import in_transaction

log = logging.getLogger(__name__)

CONSUMER = "risk-triggers"
TOPICS = (topics.FILLS.named(),)
EVENT_BATCH = 500

# The AFTER_FILLS limits of the batch's traders ($1) and of those holding an asset whose
# market traded ($3: a price move is a P&L move without a fill of theirs)
_LIMITS_SQL = """
    SELECT id, scope, scope_id, kind, threshold, action, warn_ratio, cooldown_seconds,
           set_by, requires_two_factor
    FROM risk_limits
    WHERE scope = 'USER' AND kind = ANY($2::text[])
      AND (scope_id = ANY($1::bigint[]) OR scope_id IN (
          SELECT p.user_id FROM positions p
          WHERE p.currency = ANY($3::text[]) AND p.quantity > 0))
    ORDER BY scope_id, id
"""
_LOCK_USERS_SQL = "SELECT id FROM users WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE"


@dataclass(frozen=True, slots=True)
class Flatten:
    user_id: int
    transition_id: int
    queued: list[tuple[int, int, list[int]]]  # the cancels to wait for


async def run_once(rt: Runtime) -> int:
    """The job: every batch of fills after the checkpoint, then the cool-downs that are
    over; the events handled."""
    handled = 0
    while True:
        read, to_flatten = await in_transaction(rt.sessions, lambda s: _batch(rt, s))
        handled += read
        for job in to_flatten:
            await flatten(rt, job)
        if read < EVENT_BATCH:
            break
    await expire_cool_downs(rt)
    return handled


async def _batch(rt: Runtime, session: AsyncSession) -> tuple[int, list[Flatten]]:
    events = await event_log.read(session, CONSUMER, topics=TOPICS, limit=EVENT_BATCH)
    fills = [topics.FILLS.parse(e.payload) for e in events if e.user_id is not None]
    traders = sorted({e.user_id for e in events if e.user_id is not None})
    bases = sorted({f.symbol.split("/")[0] for f in fills})
    to_flatten: list[Flatten] = []
    if traders:
        to_flatten = await evaluate(rt, session, traders, bases)
    await event_log.advance(session, CONSUMER, events)
    return len(events), to_flatten


async def evaluate(
    rt: Runtime, session: AsyncSession, traders: Sequence[int], bases: Sequence[str] = ()
) -> list[Flatten]:
    """The AFTER_FILLS limits of ``traders`` (and of the holders of ``bases``) against
    their P&L now, in the caller's transaction; the flattenings to do after it commits."""
    connection = await driver(session)
    rows = await connection.fetch(
        _LIMITS_SQL, list(traders), sorted(AFTER_FILLS_KINDS), list(bases)
    )
    if not rows:
        return []
    limits = [limit_of(r) for r in rows]
    watched = sorted({limit.ref.id for limit in limits})
    await connection.fetch(_LOCK_USERS_SQL, watched)
    refs = [ScopeRef(Scope.USER, uid) for uid in watched]
    states = await transitions.lock_states(session, refs)
    pnl = {
        r["user_id"]: (r["pnl"], r["realised"]) for r in await connection.fetch(PNL_SQL, watched)
    }
    now = rt.now()
    notes: list[NewNotification] = []
    to_flatten: list[Flatten] = []
    for ref in refs:
        row = states[ref]
        current, realised = pnl.get(ref.id, (Decimal(0), Decimal(0)))
        before = transitions.marks_of(row)
        if before is None:
            marks = Marks.start(now=now, pnl=current, realised=realised)
        else:
            marks = before.observe(now=now, pnl=current, realised=realised)
        await transitions.save_marks(session, ref, marks)
        state = RiskState(row["state"])
        if row["cooldown_until"] is not None and state is RiskState.HALTED:
            if row["cooldown_until"] <= now:
                await transitions.move(
                    session, ref, state, StateEvent.COOL_DOWN_OVER, reason="cool-down over"
                )
                state = RiskState.ACTIVE
        breach, warned = to_act([lim for lim in limits if lim.ref == ref], marks.figures(), state)
        notes += [notices.warning(ref.id, b.limit, b.value, now.date()) for b in warned]
        if breach is None:
            continue
        moved, queued = await _act(rt, session, ref, state, breach)
        notes.append(_transition_note(ref.id, moved.transition_id, breach))
        if breach.effect.flatten:
            to_flatten.append(Flatten(ref.id, moved.transition_id, queued))
    await create_notifications(session, notes)
    return to_flatten


async def _act(
    rt: Runtime, session: AsyncSession, ref: ScopeRef, state: RiskState, breach: Breach
) -> tuple[transitions.Moved, list[tuple[int, int, list[int]]]]:
    effect = breach.effect
    moved = await transitions.move(
        session,
        ref,
        state,
        event_towards(effect.state),
        reason=breach.reason,
        limit_id=breach.limit.id,
        cooldown_until=breach.cooldown_until(rt.now()),
    )
    queued = []
    if effect.cancel_orders:
        queued = await commands.cancel_all_commands(session, ref.id, None)
    return moved, queued


_DOES = {
    RiskState.REDUCING: "only orders that reduce your exposure are accepted",
    RiskState.HALTED: "no new orders are accepted",
}


def _transition_note(user_id: int, transition_id: int, breach: Breach) -> NewNotification:
    effect = breach.effect
    does = _DOES[effect.state]
    if effect.cancel_orders:
        does += " and your open orders are being canceled"
    if effect.flatten:
        does += "; your positions are being sold"
    if effect.cools_down and breach.limit.cooldown_seconds:
        does += f", for {breach.limit.cooldown_seconds} seconds"
    body = (
        f"Your risk limit {breach.limit.describe()} was reached at {notices.plain(breach.value)}:"
        f" {does}. Reset it with two-factor authentication (resetRisk) when you are ready."
    )
    priority = Priority.CRITICAL if effect.state is RiskState.HALTED else Priority.HIGH
    draft = Draft(NotificationType.RISK, priority, "Risk limit reached", body)
    return NewNotification(user_id, f"risk-transition:{transition_id}", draft)


# --- after the commit --------------------------------------------------------------------------


_HOLDINGS_SQL = """
    SELECT a.currency, a.balance FROM ledger_accounts a
    WHERE a.user_id = $1 AND a.kind = 'AVAILABLE' AND a.balance > 0
      AND NOT a.currency = ANY($2::text[])
    ORDER BY a.currency
"""


async def flatten(rt: Runtime, job: Flatten) -> None:
    """Sell what the trader holds (REDUCE_TO_FLAT), once its cancels are applied: a
    protected MARKET sell per non-cash asset on its USDT (else USD) market."""
    try:
        await commands.wait_for_commands(rt, job.queued)
    except AppError:
        log.warning("flatten: cancels not applied in time", extra={"user_id": job.user_id})
    async with rt.sessions() as session:
        connection = await driver(session)
        held = await connection.fetch(_HOLDINGS_SQL, job.user_id, sorted(CASH))
        found = await markets.markets_with_quote_rates(
            session, [f"{r['currency']}/{q}" for r in held for q in ("USDT", "USD")]
        )
    for row in held:
        symbol = next(
            (s for s in (f"{row['currency']}/USDT", f"{row['currency']}/USD") if s in found), None
        )
        if symbol is None:
            continue
        spec = found[symbol][0].spec
        quantity = (row["balance"] / spec.lot_size).to_integral_value(ROUND_DOWN) * spec.lot_size
        if quantity <= 0:
            continue
        request = OrderRequest(
            side=Side.SELL,
            type=OrderType.MARKET,
            quantity=quantity,
            max_slippage_bps=FLATTEN_SLIPPAGE_BPS,
        )
        try:
            await placement.place_order(
                rt,
                user_id=job.user_id,
                symbol=symbol,
                request=request,
                client_order_id=f"risk-flat-{job.transition_id}-{row['currency']}",
            )
        except AppError as error:  # a refusal (no liquidity, below the minimum): logged
            log.warning(
                "flatten: sell refused",
                extra={"user_id": job.user_id, "symbol": symbol, "code": error.code},
            )


async def expire_cool_downs(rt: Runtime) -> int:
    """Record the end of every cool-down that is over (orders already meet ACTIVE)."""

    async def work(session: AsyncSession) -> int:
        connection = await driver(session)
        due = await connection.fetch(
            "SELECT scope, scope_id FROM risk_states WHERE state = 'HALTED'"
            " AND cooldown_until <= $1 ORDER BY scope, scope_id",
            rt.now(),
        )
        if not due:
            return 0
        refs = [ScopeRef(Scope(r["scope"]), r["scope_id"]) for r in due]
        rows = await transitions.lock_states(session, refs)
        ended = 0
        for ref, row in rows.items():
            until = row["cooldown_until"]
            if row["state"] == RiskState.HALTED.value and until is not None and until <= rt.now():
                await transitions.move(
                    session, ref, RiskState.HALTED, StateEvent.COOL_DOWN_OVER,
                    reason="cool-down over",
                )  # fmt: skip
                ended += 1
        return ended

    return await in_transaction(rt.sessions, work)
