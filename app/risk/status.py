"""Reading the risk engine: a user's status (each scope that concerns them, its state and
each limit's figure now) and the what-if check of a proposed order.

Both read what the placement reads (``app.risk.gate.read_context``; the status with
exact counts) plus, for the P&L limits, the marks the triggers keep with the P&L of now.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from sqlalchemy import func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.core.errors import NotAuthenticated
from app.risk import transitions
from app.risk.domain.checks import Decision, strictest_state
from app.risk.domain.limits import (
    Figures,
    Limit,
    LimitKind,
    Phase,
    ProposedOrder,
    figure,
    near,
    reached,
)
from app.risk.domain.pnl import Marks
from app.risk.domain.states import RiskState, Scope, ScopeRef, ScopeStatus
from app.risk.gate import Gate, follow_of, limit_of, markets_and_gate, read_context, status_of
from app.runtime import Runtime
from app.trading import commands, markets
from app.trading.domain import orders as rules
from app.trading.domain.orders import OrderRequest, Side
from db.models import Bot, Follow, RiskLimit, RiskTransition
from db.models import RiskState as RiskStateRow

# figures that depend on an order (its value) or on a market (the stale-data age): the
# status shows them where it can (a market's age at MARKET scope), else none
_ORDER_BOUND = frozenset({LimitKind.ORDER_NOTIONAL})


@dataclass(frozen=True, slots=True)
class LimitUsage:
    limit: Limit
    value: Decimal | None  # the figure now (None: it is an order's, see riskCheck)
    warning: bool
    reached: bool


@dataclass(frozen=True, slots=True)
class ScopeView:
    status: ScopeStatus
    state: RiskState  # as orders meet it now (a cool-down that ended is ACTIVE)
    limits: list[LimitUsage]
    transitions: list[RiskTransition]


@dataclass(frozen=True, slots=True)
class RiskStatus:
    state: RiskState  # the strictest of the scopes'
    scopes: list[ScopeView]


def _usage(limit: Limit, figures: Figures | None) -> LimitUsage:
    if figures is None or limit.kind in _ORDER_BOUND:
        return LimitUsage(limit, None, False, False)
    value = figure(limit.kind, figures)
    if limit.rule.phase is Phase.AFTER_FILLS:
        hit = reached(limit, value)
    else:
        hit = value >= limit.threshold  # the next order that adds to it is refused
    return LimitUsage(limit, value, near(limit, value), hit)


async def _pnl_figures(
    session: AsyncSession, rt: Runtime, refs: list[ScopeRef], rows: dict[ScopeRef, RiskStateRow]
) -> dict[ScopeRef, Figures]:
    """The P&L figures now of ``refs`` (USER, BOT, FOLLOW), from their scopes' marks."""
    now = rt.now()
    out = {}
    for ref, (pnl, realised) in (await transitions.scope_pnl(session, refs)).items():
        row = rows.get(ref)
        marks = (
            transitions.marks_of(vars(row))
            if row is not None and row.marks_day is not None
            else None
        )
        if marks is None:
            marks = Marks.start(now=now, pnl=pnl, realised=realised)
        out[ref] = marks.observe(now=now, pnl=pnl, realised=realised).figures()
    return out


async def risk_status(
    rt: Runtime, *, user_id: int | None, transitions_per_scope: int = 5
) -> RiskStatus:
    """The scopes that concern ``user_id`` (theirs, their follows', their bots', the
    markets' and the platform's with limits or a state), each with its limits' figures
    now."""
    if user_id is None:
        raise NotAuthenticated()
    now = rt.now()
    async with rt.sessions() as session, session.begin():
        follows = list(
            await session.scalars(select(Follow.id).where(Follow.follower_id == user_id))
        )
        bots = {
            row.id: row.account_id
            for row in await session.execute(
                select(Bot.id, Bot.account_id).where(
                    Bot.user_id == user_id, Bot.account_id.is_not(None)
                )
            )
        }
        mine = [ScopeRef(Scope.USER, user_id), ScopeRef(Scope.ORDER, user_id)]
        mine += [ScopeRef(Scope.FOLLOW, f) for f in follows]
        mine += [ScopeRef(Scope.BOT, b) for b in bots]
        keys = [(r.scope.value, r.id) for r in mine]
        admin = or_(
            tuple_(RiskLimit.scope, RiskLimit.scope_id).in_(keys),
            RiskLimit.scope.in_([Scope.MARKET.value, Scope.PLATFORM.value]),
        )
        limits = [
            limit_of(vars(row) | {"scope_id": row.scope_id})
            for row in await session.scalars(select(RiskLimit).where(admin).order_by(RiskLimit.id))
        ]
        state_rows = {
            ScopeRef(Scope(r.scope), r.scope_id): r
            for r in await session.scalars(
                select(RiskStateRow).where(
                    or_(
                        tuple_(RiskStateRow.scope, RiskStateRow.scope_id).in_(keys),
                        RiskStateRow.scope.in_([Scope.MARKET.value, Scope.PLATFORM.value]),
                    )
                )
            )
        }
        context = await read_context(
            session, now, users=[user_id, *bots.values()], follows=follows, exact=True
        )
        pnl_refs = [r for r in mine if r.scope in transitions.PNL_SCOPES]
        pnl = await _pnl_figures(session, rt, pnl_refs, state_rows)
        own = {ScopeRef(Scope.USER, user_id): context.figures.get(user_id, Figures())}
        own |= {ScopeRef(Scope.BOT, b): context.bot_figures.get(b, Figures()) for b in bots}
        figures_of = {
            ref: replace(own.get(ref, Figures()), **_pnl_fields(f)) for ref, f in pnl.items()
        }
        figures = figures_of[ScopeRef(Scope.USER, user_id)]
        market_ids = sorted({lim.ref.id for lim in limits if lim.ref.scope is Scope.MARKET})
        symbols = {
            m: row.symbol for m, row in (await markets.markets_by_ids(session, market_ids)).items()
        }
        ages = (await read_context(session, now, symbols=list(symbols.values()))).ages
        refs = {lim.ref for lim in limits} | set(state_rows) | {mine[0]}
        trails = await _latest_transitions(session, refs, transitions_per_scope)
        views = []
        for ref in sorted(refs, key=lambda r: (list(Scope).index(r.scope), r.id)):
            row = state_rows.get(ref)
            status = status_of(vars(row)) if row is not None else ScopeStatus(ref)
            own_limits = [lim for lim in limits if lim.ref == ref]
            views.append(
                ScopeView(
                    status=status,
                    state=status.effective(now),
                    limits=[
                        _usage(lim, _figures_at(ref, figures_of.get(ref, figures), ages))
                        for lim in own_limits
                    ],
                    transitions=trails.get(ref, []),
                )
            )
    state, _ = strictest_state([v.status for v in views], now)
    return RiskStatus(state, views)


async def _latest_transitions(
    session: AsyncSession, refs: set[ScopeRef], per_scope: int
) -> dict[ScopeRef, list[RiskTransition]]:
    """The latest ``per_scope`` transitions of each of ``refs``, newest first: one query."""
    rank = (
        func.row_number()
        .over(
            partition_by=(RiskTransition.scope, RiskTransition.scope_id),
            order_by=RiskTransition.id.desc(),
        )
        .label("rank")
    )
    keys = [(r.scope.value, r.id) for r in refs]
    ranked = (
        select(RiskTransition, rank)
        .where(tuple_(RiskTransition.scope, RiskTransition.scope_id).in_(keys))
        .subquery()
    )
    latest = aliased(RiskTransition, ranked)
    query = select(latest).where(ranked.c.rank <= per_scope).order_by(ranked.c.id.desc())
    out: dict[ScopeRef, list[RiskTransition]] = {}
    for row in await session.scalars(query):
        out.setdefault(ScopeRef(Scope(row.scope), row.scope_id), []).append(row)
    return out


def _pnl_fields(f: Figures) -> dict[str, object]:
    return {
        "loss_today": f.loss_today,
        "loss_this_week": f.loss_this_week,
        "drawdown": f.drawdown,
        "consecutive_losses": f.consecutive_losses,
    }


def _figures_at(ref: ScopeRef, figures: Figures, ages: dict[int, Decimal | None]) -> Figures | None:
    """The figures a scope's limits are shown against (``figures``: the scope's own: a
    follow's P&L, a bot's sub-account's; else the user's, their bots' included); a
    market's with its age."""
    if ref.scope is Scope.MARKET:
        return replace(figures, market_data_age=ages.get(ref.id))
    return figures


# --- what if ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WhatIf:
    decision: Decision
    order: ProposedOrder
    figures: Figures


async def risk_check(
    rt: Runtime,
    *,
    user_id: int | None,
    symbol: str,
    request: OrderRequest,
    client_order_id: str | None = None,
) -> WhatIf:
    """What the placement's risk check would decide about this order now (the order is
    validated as placeOrder validates it; nothing is written)."""
    if user_id is None:
        raise NotAuthenticated()
    now = rt.now()
    async with rt.sessions() as session, session.begin():
        market, usd_rate = await markets.market_with_quote_rate(session, symbol)
        valid = rules.validate_order(
            request,
            market.spec,
            now=now,
            reference_price=market.last_price,
            price_band_bps=rt.settings.trading_price_band_bps,
        )
        follow = follow_of(client_order_id) if client_order_id else None
        gate: Gate = await read_context(
            session,
            now,
            symbols=[market.symbol],
            users=[user_id],
            follows=[follow] if follow is not None else [],
        )
        decision, order, figures = gate.decide(
            user_id=user_id,
            market=market,
            valid=valid,
            usd_rate=usd_rate,
            client_order_id=client_order_id or "",
        )
    return WhatIf(decision, order, figures)


async def risk_check_amend(
    rt: Runtime,
    *,
    user_id: int | None,
    order_id: int,
    price: Decimal | None,
    quantity: Decimal | None,
) -> WhatIf:
    """What the amendment's risk check would decide now (the amendment is checked as
    amendOrder checks it; nothing is written)."""
    if user_id is None:
        raise NotAuthenticated()
    async with rt.sessions() as session, session.begin():
        amended = await commands.checked_amendment(rt, session, user_id, order_id, price, quantity)
        symbol = amended.market.symbol
        found, gate = await markets_and_gate(
            rt, session, [symbol], users=[user_id],
            client_order_ids=[amended.order.client_order_id],
        )  # fmt: skip
        before, after, moved = amended.values()
        decision, order, figures = gate.decide_amend(
            user_id=user_id,
            market=amended.market,
            usd_rate=found[symbol][1] if symbol in found else Decimal(0),
            side=Side(amended.order.side),
            before=before,
            after=after,
            moved=moved,
            client_order_id=amended.order.client_order_id,
        )
    return WhatIf(decision, order, figures)
