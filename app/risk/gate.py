"""The risk check in the placement transaction.

``markets_and_gate`` reads what a batch of orders is checked against in the statement
the placement runs anyway for its markets (``CONTEXT_SQL`` is one more item of its
select list): the limits and non-ACTIVE states of every scope of the batch (its
traders, their copy orders' follows, its markets, the platform) and, per trader, the
figures those limits watch. The statement runs after the traders' rows are locked
(``TRADERS_SQL``, FOR NO KEY UPDATE), so it sees every order a trader's earlier
transactions committed, and whoever moves a trader's state (``app.risk.triggers``) or
sets a limit holds that same row lock: no order passes a user's limit or state that is
changing at the same moment. The markets' and the platform's scopes are locked shared
before the traders' rows (``app.risk.sql.share_scopes``); their states and limits change
under the same lock, exclusive: a change waits for the placements that read what it
replaces, and the placements after it read what it made.

A bot trades as a sub-account of its owner (``users.owner_id``): its orders meet its
BOT scope (``Gate.bots``) and its owner's ORDER and USER scopes (``Gate.owners``), and
the owner's figures count every sub-account's orders and holdings, so a user cannot
get past their own limits or state by running a bot. ``TRADERS_SQL`` locks the owner's
row with the sub-account's (one statement, in id order): the placements of an owner and
of all their bots take turns on the owner's row.

``Gate.check`` decides each order of the batch in memory (``check_order``) and moves the
person's figures (and a bot's own) on by each order it admits, so a batch's orders
count each other.
An order admitted here and then refused for its funds still counts (as the open-orders
limit does): the gate errs towards refusing.

Amendments (``check_amend``, in ``amendOrder``'s transaction after the trader's row lock,
through the same statement): the states, and unless the amendment only shrinks the order
the PRE_TRADE limits as a new order would meet them (``limits.amendment``): ORDER_NOTIONAL
on what is left of the order as amended, the exposure limits on what it adds; the counts
(TRADES_PER_DAY, ORDER_RATE, CANCEL_RATE) are not checked, an amendment places no order.

Warnings (``warn_pre_trade``): a limit an admitted order takes to its ``warn_ratio`` is
notified once a day per person and limit (``notices``), in the placement's transaction
with its outbox event; a bot's order warns its owner (a sub-account reads no
notifications), keyed as the owner's own orders are. The statement already says which
(person, limit) pairs were warned of today (``Gate.warned``): an order far from every
limit, or near one already warned of, writes nothing more.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.notifications.notifications import NewNotification, create_notifications
from app.risk import notices
from app.risk.domain.checks import Decision, check_order, order_scopes
from app.risk.domain.limits import (
    PRE_TRADE_KINDS,
    Action,
    Figures,
    Limit,
    LimitKind,
    ProposedOrder,
    amendment,
)
from app.risk.domain.states import RiskState, Scope, ScopeRef, ScopeStatus
from app.risk.sql import CONTEXT_SQL
from app.runtime import Runtime
from app.social.domain.copying import parse_client_order_id
from app.trading import markets
from app.trading.domain.orders import MarketSpec, Side, ValidOrder
from app.trading.engine.settlement import CASH
from app.trading.markets import MarketRow
from db.models import RiskLimit
from db.models import RiskState as RiskStateRow
from db.raw import driver

_CASH = sorted(CASH)
# by value, for the batch context's strings (an Enum call is several times slower)
_SCOPES = {s.value: s for s in Scope}
_KINDS = {k.value: k for k in LimitKind}
_ACTIONS = {a.value: a for a in Action}
_NONE = Figures()  # a trader's figures before anything is read or placed


def follow_of(client_order_id: str) -> int | None:
    """The follow a copy (or close) order was placed for."""
    parsed = parse_client_order_id(client_order_id)
    return parsed[1] if parsed is not None else None


def proposed(spec: MarketSpec, valid: ValidOrder, usd_rate: Decimal) -> ProposedOrder:
    """``valid`` as the limits see it: its value in USD at its (worst) price, and the
    non-cash asset it acquires."""
    notional = spec.quote_amount(spec.notional_units(valid.price, valid.quantity)) * usd_rate
    acquired = spec.base if valid.side is Side.BUY else spec.quote
    return ProposedOrder(notional, None if acquired in CASH else acquired)


@dataclass
class Gate:
    """A batch's risk context; ``check`` each order."""

    now: datetime
    limits: dict[ScopeRef, list[Limit]] = field(default_factory=dict)  # PRE_TRADE, by scope
    states: dict[ScopeRef, ScopeStatus] = field(default_factory=dict)
    figures: dict[int, Figures] = field(default_factory=dict)  # per person (a bot's owner)
    bot_figures: dict[int, Figures] = field(default_factory=dict)  # per bot: its sub-account's
    ages: dict[int, Decimal | None] = field(default_factory=dict)  # per market
    bots: dict[int, int] = field(default_factory=dict)  # trader -> bot (a sub-account's)
    owners: dict[int, int] = field(default_factory=dict)  # trader -> owner (a sub-account's)
    warned: set[tuple[int, int]] = field(default_factory=set)  # (person, limit) today

    @property
    def idle(self) -> bool:
        return not self.limits and not self.states

    def person(self, user_id: int) -> int:
        """Whose ORDER and USER scopes ``user_id``'s orders meet: a sub-account's owner."""
        return self.owners.get(user_id, user_id)

    def _scope_figures(self, bot_id: int | None, age: Decimal | None) -> dict[ScopeRef, Figures]:
        if bot_id is None:
            return {}
        own = self.bot_figures.get(bot_id, _NONE).aged(age)
        return {ScopeRef(Scope.BOT, bot_id): own}

    def decide(
        self, *, user_id: int, market: MarketRow, valid: ValidOrder, usd_rate: Decimal,
        client_order_id: str,
    ) -> tuple[Decision, ProposedOrder, Figures]:  # fmt: skip
        order = proposed(market.spec, valid, usd_rate)
        bot_id = self.bots.get(user_id)
        refs = order_scopes(
            user_id=self.person(user_id),
            market_id=market.id,
            follow_id=follow_of(client_order_id),
            bot_id=bot_id,
        )
        age = self.ages.get(market.id)
        figures = self.figures.get(self.person(user_id), _NONE).aged(age)
        decision = check_order(
            order,
            scopes=refs,
            states=self.states,
            limits=[limit for ref in refs for limit in self.limits.get(ref, ())],
            figures=figures,
            now=self.now,
            scope_figures=self._scope_figures(bot_id, age),
        )
        return decision, order, figures

    def check(
        self, *, user_id: int, market: MarketRow, valid: ValidOrder, usd_rate: Decimal,
        client_order_id: str,
    ) -> Decision | None:  # fmt: skip
        """Refuse the order with the binding limit's or state's typed error, or count it
        (its decision: the limits it nears; None when nothing applies)."""
        if self.idle:
            return None
        decision, order, figures = self.decide(
            user_id=user_id,
            market=market,
            valid=valid,
            usd_rate=usd_rate,
            client_order_id=client_order_id,
        )
        if decision.binding is not None:
            raise decision.binding.error()
        self.figures[self.person(user_id)] = figures.after(order)
        bot_id = self.bots.get(user_id)
        if bot_id is not None:
            self.bot_figures[bot_id] = self.bot_figures.get(bot_id, Figures()).after(order)
        return decision

    def decide_amend(
        self, *, user_id: int, market: MarketRow, usd_rate: Decimal, side: Side,
        before: Decimal, after: Decimal, moved: bool, client_order_id: str,
    ) -> tuple[Decision, ProposedOrder, Figures]:  # fmt: skip
        """The decision on an amendment of a live order (``before`` / ``after``: the value
        of what is left of it, in its quote currency; ``moved``: a new price): the states,
        and unless it only shrinks the order the PRE_TRADE limits as a new order would
        meet them (``amendment``)."""
        acquired = market.spec.base if side is Side.BUY else market.spec.quote
        amended = amendment(
            before=before * usd_rate,
            after=after * usd_rate,
            moved=moved,
            acquires=None if acquired in CASH else acquired,
        )
        # as ``decide``: a bot's amendment meets its owner's ORDER and USER scopes on the
        # owner's figures, and its BOT scope on its sub-account's
        bot_id = self.bots.get(user_id)
        refs = order_scopes(
            user_id=self.person(user_id),
            market_id=market.id,
            follow_id=follow_of(client_order_id),
            bot_id=bot_id,
        )
        age = self.ages.get(market.id)
        figures = self.figures.get(self.person(user_id), _NONE).aged(age)
        shrinks = ProposedOrder(after * usd_rate, adds=Decimal(0), amends=True)
        decision = check_order(
            amended or shrinks,
            scopes=refs,
            states=self.states,
            limits=[] if amended is None else [x for r in refs for x in self.limits.get(r, ())],
            figures=figures,
            now=self.now,
            scope_figures=self._scope_figures(bot_id, age),
        )
        return decision, amended or shrinks, figures

    def check_amend(
        self, *, user_id: int, market: MarketRow, usd_rate: Decimal, side: Side,
        before: Decimal, after: Decimal, moved: bool, client_order_id: str,
    ) -> Decision:  # fmt: skip
        """``decide_amend``: the binding limit's or state's typed error, else the decision
        (its warnings)."""
        decision, _, _ = self.decide_amend(
            user_id=user_id, market=market, usd_rate=usd_rate, side=side, before=before,
            after=after, moved=moved, client_order_id=client_order_id,
        )  # fmt: skip
        if decision.binding is not None:
            raise decision.binding.error()
        return decision


# --- warnings -------------------------------------------------------------------------------


def warnings_due(
    gate: Gate, decisions: Iterable[tuple[int, Decision | None]]
) -> list[NewNotification]:
    """The warnings of the admitted orders' ``decisions`` (per trader) not yet given
    today (``gate.warned``), one per (person, limit); each marked given. A bot's go to
    its owner (``Gate.person``): a sub-account reads no notifications, and the owner's
    limits are the ones its orders near (the BOT scope's too: the owner sets those)."""
    notes = []
    day = gate.now.date()
    for user_id, decision in decisions:
        person = gate.person(user_id)
        for limit, value in decision.warnings if decision is not None else ():
            if (person, limit.id) not in gate.warned:
                gate.warned.add((person, limit.id))
                notes.append(notices.warning(person, limit, value, day))
    return notes


async def warn_pre_trade(
    session: AsyncSession, gate: Gate, decisions: Iterable[tuple[int, Decision | None]]
) -> None:
    """Write the due warnings (``warnings_due``) in the caller's transaction, with their
    outbox events: no statement when there is none."""
    notes = warnings_due(gate, decisions)
    if notes:
        await create_notifications(session, notes)


# --- reading the context ---------------------------------------------------------------------


def context_parameters(
    now: datetime, users: Sequence[int], follows: Sequence[int], *, exact: bool = False
) -> tuple[Any, ...]:
    """$2..$9 of ``CONTEXT_SQL``."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return (
        sorted(set(users)),
        sorted(set(follows)),
        now,
        day,
        now - timedelta(minutes=1),
        _CASH,
        exact,
        day.date().isoformat(),  # the warnings' (``notices.warning_source``)
    )


async def markets_and_gate(
    rt: Runtime,
    session: AsyncSession,
    symbols: list[str],
    *,
    users: Iterable[int | None],
    client_order_ids: Iterable[str] = (),
) -> tuple[dict[str, tuple[MarketRow, Decimal]], Gate]:
    """The markets of ``symbols`` with their quotes' USD rates (as
    ``markets.markets_with_quote_rates``) and the batch's ``Gate``, in one statement;
    without ``rt.risk_checks`` the markets alone and an idle gate."""
    now = rt.now()
    if not rt.risk_checks:
        return await markets.markets_with_quote_rates(session, symbols), Gate(now)
    follows = [f for c in client_order_ids if (f := follow_of(c)) is not None]
    found, context = await markets.markets_with_quote_rates_and(
        session,
        symbols,
        CONTEXT_SQL,
        *context_parameters(now, [u for u in users if u is not None], follows),
    )
    return found, gate_from(now, context)


async def read_context(
    session: AsyncSession,
    now: datetime,
    *,
    symbols: Sequence[str] = (),
    users: Sequence[int] = (),
    follows: Sequence[int] = (),
    exact: bool = False,
) -> Gate:
    """The context on its own (the status, the what-if query)."""
    connection = await driver(session)
    text = await connection.fetchval(
        f"SELECT {CONTEXT_SQL}",
        list(symbols),
        *context_parameters(now, users, follows, exact=exact),
    )
    return gate_from(now, text)


async def bot_scope(session: AsyncSession, gate: Gate, bot_id: int) -> ScopeRef:
    """A bot trading without a sub-account (on a connected exchange account): its BOT
    scope's PRE_TRADE limits and non-ACTIVE state, added to ``gate`` (``CONTEXT_SQL``
    finds a bot by its sub-account only); its scope's reference."""
    ref = ScopeRef(Scope.BOT, bot_id)
    limits = await session.execute(
        select(RiskLimit.__table__).where(
            RiskLimit.scope == Scope.BOT.value, RiskLimit.scope_id == bot_id,
            RiskLimit.kind.in_([k.value for k in PRE_TRADE_KINDS]),
        )
    )  # fmt: skip
    gate.limits[ref] = [limit_of(row) for row in limits.mappings()]
    states = await session.execute(
        select(RiskStateRow.__table__).where(
            RiskStateRow.scope == Scope.BOT.value, RiskStateRow.scope_id == bot_id,
            RiskStateRow.state != RiskState.ACTIVE.value,
        )
    )  # fmt: skip
    for row in states.mappings():
        gate.states[ref] = status_of(row)
    return ref


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(value)


def limit_of(r: Mapping[str, Any]) -> Limit:
    return Limit(
        id=int(r["id"]),
        ref=ScopeRef(Scope(r["scope"]), int(r["scope_id"])),
        kind=LimitKind(r["kind"]),
        threshold=_decimal(r["threshold"]),
        action=Action(r["action"]),
        warn_ratio=_decimal(r["warn_ratio"]),
        cooldown_seconds=r["cooldown_seconds"],
        set_by=r["set_by"],
        requires_two_factor=bool(r["requires_two_factor"]),
    )


def _moment(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def status_of(r: Mapping[str, Any]) -> ScopeStatus:
    return ScopeStatus(
        ref=ScopeRef(Scope(r["scope"]), int(r["scope_id"])),
        state=RiskState(r["state"]),
        since=_moment(r["since"]),
        cooldown_until=_moment(r["cooldown_until"]),
        reason=r["reason"],
        limit_id=r["limit_id"],
    )


_LIMITS: dict[tuple[Any, ...], Limit] = {}  # the same rows come batch after batch
_MAX_CACHED = 100_000


def _limit(row: tuple[Any, ...]) -> Limit:
    """A context row's ``Limit``: made once per version of the row (the row is the key:
    a limit changed is another row)."""
    limit = _LIMITS.get(row)
    if limit is None:
        i, scope, scope_id, kind, threshold, action, warn_ratio = row
        limit = Limit(
            id=i,
            ref=ScopeRef(_SCOPES[scope], scope_id),
            kind=_KINDS[kind],
            threshold=Decimal(threshold),
            action=_ACTIONS[action],
            warn_ratio=Decimal(warn_ratio),
        )
        if len(_LIMITS) >= _MAX_CACHED:
            _LIMITS.clear()
        _LIMITS[row] = limit
    return limit


def gate_from(now: datetime, text: str | None) -> Gate:
    """The ``Gate`` of ``CONTEXT_SQL``'s JSON (None: no market matched)."""
    if text is None:
        return Gate(now)
    limits, states, subjects, ages, who, warned = json.loads(text)
    gate = Gate(now)
    for row in limits or ():
        limit = _limit(tuple(row))
        gate.limits.setdefault(limit.ref, []).append(limit)
    for scope, scope_id, state, cooldown_until, reason, limit_id in states or ():
        ref = ScopeRef(Scope(scope), scope_id)
        gate.states[ref] = ScopeStatus(
            ref,
            RiskState(state),
            cooldown_until=_moment(cooldown_until),
            reason=reason,
            limit_id=limit_id,
        )
    for scope, subject, today, minute, cancels, equity, assets in subjects or ():
        figures = Figures(
            orders_last_minute=minute or 0,
            cancels_last_minute=cancels or 0,
            orders_today=today or 0,
            exposure={a: Decimal(v) for a, v in (assets or {}).items()},
            equity=Decimal(equity or 0),
        )
        (gate.bot_figures if scope == Scope.BOT.value else gate.figures)[subject] = figures
    for trader, person, bot in who or ():
        if person != trader:
            gate.owners[trader] = person
        if bot is not None:
            gate.bots[trader] = bot
    gate.ages = {int(m): None if a is None else Decimal(a) for m, a in (ages or {}).items()}
    gate.warned = {(user_id, limit_id) for user_id, limit_id in warned or ()}
    return gate
