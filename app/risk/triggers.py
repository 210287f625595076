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

    the scopes      with AFTER_FILLS limits whose P&L these fills (or their markets'
                    prices) move: USER (the trader, or the owner of a sub-account that
                    traded), BOT (a bot whose sub-account traded), FOLLOW (a follow
                    of the trader's, or one holding a copy position in a market that
                    traded)
    their people    the user each scope belongs to (the user, the bot's owner, the
                    follower): their rows locked in id order (FOR NO KEY UPDATE, as a
                    placement locks them, a bot's with its owner's: a placement sees the
                    state before or after, never a state that is changing)
    their states    locked (made ACTIVE where missing); a cool-down that ended is
                    recorded first (COOL_DOWN_OVER)
    P&L             realised + unrealised (USD): the user's positions and every
                    sub-account's (their live bots'), the bot's sub-account's, the
                    follow's copy positions (``follow_positions``);
                    the marks moved (``app.risk.domain.pnl``: the day's and the week's
                    start, the peak, consecutive losing closes)
    limits          ``to_act``: the strictest that fired moves that scope's state
                    only (only ever stricter), with its reason; CANCEL_ORDERS,
                    REDUCE_TO_FLAT and COOL_DOWN cancel the scope's open orders (a
                    user's and their bots', a bot's, a follow's copy orders), in this
                    transaction (a user's orders at the exchanges, their exchange
                    bots' and their own, are asked to be canceled here and sent after
                    the commit: ``app.exchanges.cancel_requests``); each transition a
                    RISK notification to the user, each limit near its threshold a
                    warning (once a day per limit)

After COMMIT, REDUCE_TO_FLAT sells what the scope holds: once the cancels are applied,
a protected MARKET sell (``FLATTEN_SLIPPAGE_BPS`` from the last trade) per non-cash
asset of the user's and each sub-account's (or the bot's sub-account's) on its USD(T)
market, idempotent on ``risk-flat-<transition>-<asset>`` (a sub-account's:
``risk-flat-<transition>-<account>-<asset>``); a follow's positions are closed as its stop-loss
closes them (``app.social.follow_close``).

``expire_cool_downs`` (same job) records the end of every cool-down that is over.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import AppError
from app.events import event_log, topics
from app.exchanges import cancel_requests
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
from app.runtime import Runtime
from app.social.domain.copying import copy_client_order_prefix
from app.social.follow_close import close_follow_positions
from app.trading import commands, markets, placement
from app.trading.domain.orders import OrderRequest, OrderType, Side
from app.trading.engine.settlement import CASH
from db.models import RiskLimit
from db.raw import bind_select, driver
from db.session import in_transaction

log = logging.getLogger(__name__)

CONSUMER = "risk-triggers"
TOPICS = (topics.FILLS.named(),)
EVENT_BATCH = 500

_LIMIT_COLUMNS = bind_select(
    "app.risk.triggers._LIMIT_COLUMNS",
    "l.id, l.scope, l.scope_id, l.kind, l.threshold, l.action, l.warn_ratio,"
    " l.cooldown_seconds, l.set_by, l.requires_two_factor",
    {"l": RiskLimit},
)
# The AFTER_FILLS limits ($2 kinds) of the scopes the batch's traders ($1) are in and of
# those holding an asset whose market traded ($3: a price move is a P&L move without a
# fill of theirs), each with its ``person`` (whose row is locked, who is told) and its
# ``account`` (whose orders and holdings its actions touch). A USER scope is the
# person's: a sub-account that traded or holds (``coalesce(owner_id, id)``) brings in its
# owner's, whose P&L counts it.
_LIMITS_SQL = f"""
    SELECT {_LIMIT_COLUMNS}, l.scope_id AS person, l.scope_id AS account
    FROM risk_limits l
    WHERE l.scope = 'USER' AND l.kind = ANY($2::text[])
      AND l.scope_id IN (
          SELECT coalesce(u.owner_id, u.id) FROM users u
          WHERE u.id = ANY($1::bigint[]) OR u.id IN (
              SELECT p.user_id FROM positions p
              WHERE p.currency = ANY($3::text[]) AND p.quantity > 0))
    UNION ALL
    SELECT {_LIMIT_COLUMNS}, b.user_id, b.account_id
    FROM risk_limits l JOIN bots b ON b.id = l.scope_id
    WHERE l.scope = 'BOT' AND l.kind = ANY($2::text[]) AND b.account_id IS NOT NULL
      AND (b.account_id = ANY($1::bigint[]) OR b.account_id IN (
          SELECT p.user_id FROM positions p
          WHERE p.currency = ANY($3::text[]) AND p.quantity > 0))
    UNION ALL
    SELECT {_LIMIT_COLUMNS}, f.follower_id, f.follower_id
    FROM risk_limits l JOIN follows f ON f.id = l.scope_id
    WHERE l.scope = 'FOLLOW' AND l.kind = ANY($2::text[])
      AND (f.follower_id = ANY($1::bigint[]) OR f.id IN (
          SELECT fp.follow_id FROM follow_positions fp
          WHERE fp.currency = ANY($3::text[]) AND fp.quantity > 0))
    ORDER BY scope, scope_id, id
"""  # noqa: S608 (no input in the text)
_LOCK_USERS_SQL = "SELECT id FROM users WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE"


@dataclass(frozen=True, slots=True)
class Flatten:
    user_id: int  # whose holdings are sold (a bot's: its sub-account)
    transition_id: int
    queued: list[tuple[int, int, list[int]]]  # the cancels to wait for
    follow_id: int | None = None  # a follow's: its copy positions are closed instead
    sub_accounts: bool = False  # a USER scope's: its sub-accounts' holdings sold too


@dataclass(frozen=True, slots=True)
class Watched:
    """A scope with AFTER_FILLS limits: whose it is (``person``: locked, told) and whose
    orders and holdings its actions touch (``account``)."""

    ref: ScopeRef
    person: int
    account: int


async def run_once(rt: Runtime) -> int:
    """The job: every batch of fills after the checkpoint, then the cool-downs that are
    over; the events handled."""
    handled = 0
    while True:
        read, to_flatten = await in_transaction(rt.sessions, lambda s: _batch(rt, s))
        handled += read
        if read:  # the exchange orders a USER scope's action asked to cancel
            await cancel_requests.send_asked(rt)
        for job in to_flatten:
            await (close_follow(rt, job) if job.follow_id is not None else flatten(rt, job))
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
    """The AFTER_FILLS limits of ``traders``' scopes (and of the holders of ``bases``)
    against their P&L now, in the caller's transaction; the flattenings to do after it
    commits."""
    connection = await driver(session)
    rows = await connection.fetch(
        _LIMITS_SQL, list(traders), sorted(AFTER_FILLS_KINDS), list(bases)
    )
    if not rows:
        return []
    limits = [limit_of(r) for r in rows]
    watched = {
        limit.ref: Watched(limit.ref, r["person"], r["account"])
        for limit, r in zip(limits, rows, strict=True)
    }
    await connection.fetch(_LOCK_USERS_SQL, sorted({w.person for w in watched.values()}))
    refs = sorted(watched)
    states = await transitions.lock_states(session, refs)
    pnl = await transitions.scope_pnl(session, refs)
    now = rt.now()
    notes: list[NewNotification] = []
    to_flatten: list[Flatten] = []
    for ref in refs:
        scope = watched[ref]
        row = states[ref]
        current, realised = pnl[ref]
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
        # to the scope's person (a bot's owner, a follow's follower), keyed as the gate's
        notes += [notices.warning(scope.person, b.limit, b.value, now.date()) for b in warned]
        if breach is None:
            continue
        moved, queued = await _act(rt, session, scope, state, breach)
        notes.append(_transition_note(scope.person, moved.transition_id, breach))
        if breach.effect.flatten:
            follow = ref.id if ref.scope is Scope.FOLLOW else None
            subs = ref.scope is Scope.USER
            to_flatten.append(Flatten(scope.account, moved.transition_id, queued, follow, subs))
    await create_notifications(session, notes)
    return to_flatten


async def _act(
    rt: Runtime, session: AsyncSession, scope: Watched, state: RiskState, breach: Breach
) -> tuple[transitions.Moved, list[tuple[int, int, list[int]]]]:
    effect = breach.effect
    moved = await transitions.move(
        session,
        scope.ref,
        state,
        event_towards(effect.state),
        reason=breach.reason,
        limit_id=breach.limit.id,
        cooldown_until=breach.cooldown_until(rt.now()),
    )
    queued = await _cancel(session, scope, rt.now()) if effect.cancel_orders else []
    return moved, queued


async def _cancel(
    session: AsyncSession, scope: Watched, now: datetime
) -> list[tuple[int, int, list[int]]]:
    """Cancel the scope's open orders: a user's and their bots' (its state binds theirs),
    and every live order of theirs at the exchanges (their exchange bots' and their own:
    asked here, sent after the commit), a bot's sub-account's, a follow's copy orders."""
    if scope.ref.scope is Scope.FOLLOW:
        prefix = copy_client_order_prefix(scope.ref.id)
        return await commands.cancel_prefixed_commands(session, scope.account, prefix)
    if scope.ref.scope is Scope.USER:
        await cancel_requests.ask_for_user(session, user_id=scope.account, now=now)
        return await commands.cancel_account_commands(session, scope.account)
    return await commands.cancel_all_commands(session, scope.account, None)


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


# What an account ($1) holds, not cash ($2), and with $3 what its sub-accounts hold (a
# USER scope's: its bots' holdings are the user's account too), in one statement
_HOLDINGS_SQL = """
    SELECT a.user_id, a.currency, a.balance FROM ledger_accounts a
    WHERE (a.user_id = $1
           OR ($3::boolean AND a.user_id IN (SELECT s.id FROM users s WHERE s.owner_id = $1)))
      AND a.kind = 'AVAILABLE' AND a.balance > 0 AND NOT a.currency = ANY($2::text[])
    ORDER BY a.user_id, a.currency
"""


async def flatten(rt: Runtime, job: Flatten) -> None:
    """Sell what the trader holds (REDUCE_TO_FLAT), once its cancels are applied: a
    protected MARKET sell per account (a user's and, at USER scope, each sub-account) and
    non-cash asset on its USDT (else USD) market."""
    try:
        await commands.wait_for_commands(rt, job.queued)
    except AppError:
        log.warning("flatten: cancels not applied in time", extra={"user_id": job.user_id})
    async with rt.sessions() as session:
        connection = await driver(session)
        held = await connection.fetch(_HOLDINGS_SQL, job.user_id, sorted(CASH), job.sub_accounts)
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
        account = row["user_id"]
        try:
            await placement.place_order(
                rt,
                user_id=account,
                symbol=symbol,
                request=request,
                client_order_id=_flat_client_id(job, account, row["currency"]),
            )
        except AppError as error:  # a refusal (no liquidity, below the minimum): logged
            log.warning(
                "flatten: sell refused",
                extra={"user_id": account, "symbol": symbol, "code": error.code},
            )


def _flat_client_id(job: Flatten, account: int, currency: str) -> str:
    """Idempotent per transition, account and asset: the scope's own account's sale is
    ``risk-flat-<transition>-<asset>``, a sub-account's names the sub-account too."""
    if account == job.user_id:
        return f"risk-flat-{job.transition_id}-{currency}"
    return f"risk-flat-{job.transition_id}-{account}-{currency}"


async def close_follow(rt: Runtime, job: Flatten) -> None:
    """A follow's REDUCE_TO_FLAT: once its copy orders' cancels are applied, its copy
    positions closed as its stop-loss closes them."""
    assert job.follow_id is not None
    try:
        await commands.wait_for_commands(rt, job.queued)
    except AppError:
        log.warning("close follow: cancels not applied in time", extra={"follow": job.follow_id})
    try:
        await close_follow_positions(rt, follow_id=job.follow_id)
    except AppError as error:
        log.warning("close follow: refused", extra={"follow": job.follow_id, "code": error.code})


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
