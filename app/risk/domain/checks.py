"""Whether a proposed order passes, given its scopes' states and limits: the one decision
the placement transaction, the what-if query and a backtest make alike.

``check_order`` looks at the order's scopes in ``SCOPE_ORDER`` (ORDER, BOT, FOLLOW,
USER, MARKET, PLATFORM): first their states (a HALTED scope refuses every order, a
REDUCING one every entry), then their PRE_TRADE limits, and names the first that binds.
Limits that do not bind but whose figure after the order has reached their warning
ratio come back as warnings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from operator import attrgetter

from app.core.errors import UserError
from app.risk.domain.errors import RiskHalted, RiskLimitReached, RiskReducing
from app.risk.domain.limits import (
    Figures,
    Limit,
    LimitKind,
    Phase,
    ProposedOrder,
    applies,
    figure,
    near,
)
from app.risk.domain.states import (
    PLATFORM_ID,
    SCOPE_ORDER,
    SEVERITY,
    RiskState,
    Scope,
    ScopeRef,
    ScopeStatus,
)


@dataclass(frozen=True, slots=True)
class Binding:
    """Why an order is refused: a scope's state (``limit`` the one that moved it, if
    any) or a limit it would exceed (``value``: the figure after the order)."""

    ref: ScopeRef
    state: RiskState | None = None
    limit: Limit | None = None
    value: Decimal | None = None
    reason: str | None = None

    def error(self) -> UserError:
        if self.state is RiskState.HALTED:
            why = f": {self.reason}" if self.reason else ""
            return RiskHalted(f"{self.ref} is halted (cancels only){why}")
        if self.state is RiskState.REDUCING:
            why = f": {self.reason}" if self.reason else ""
            return RiskReducing(f"{self.ref} only takes orders that reduce exposure{why}")
        assert self.limit is not None and self.value is not None
        return RiskLimitReached(
            f"The order would take {self.limit.describe()} to"
            f" {format(self.value.normalize(), 'f')}",
            field="quantity",
        )


@dataclass(frozen=True, slots=True)
class Decision:
    binding: Binding | None
    warnings: tuple[tuple[Limit, Decimal], ...] = ()

    @property
    def allowed(self) -> bool:
        return self.binding is None


_RANK = {scope: i for i, scope in enumerate(SCOPE_ORDER)}
_CHECK_KEY = attrgetter("check_key")  # (rank of its scope, id)


def _rank(ref: ScopeRef) -> int:
    return _RANK[ref.scope]


def check_order(
    order: ProposedOrder,
    *,
    scopes: Iterable[ScopeRef],
    states: Mapping[ScopeRef, ScopeStatus],
    limits: Iterable[Limit],
    figures: Figures,
    now: datetime,
    scope_figures: Mapping[ScopeRef, Figures] | None = None,
) -> Decision:
    """The decision on ``order`` (``figures``: its trader's before it, the person's: a
    bot's owner's, which count their bots' orders; ``scope_figures``: a scope's own
    where it has them, a BOT scope its sub-account's)."""
    refs = sorted(set(scopes), key=_rank)
    wanted = frozenset(refs)
    for ref in refs:
        status = states.get(ref)
        if status is None:
            continue
        state = status.effective(now)
        if state is RiskState.HALTED or (state is RiskState.REDUCING and order.entry):
            return Decision(Binding(ref, state=state, reason=status.reason))
    mine = sorted(
        (limit for limit in limits if limit.ref in wanted and limit.rule.phase is Phase.PRE_TRADE),
        key=_CHECK_KEY,
    )
    warnings = []
    values: dict[tuple[LimitKind, int], Decimal] = {}  # a figure per kind and figures
    for limit in mine:
        if not applies(limit, order):
            continue
        own = scope_figures.get(limit.ref, figures) if scope_figures else figures
        key = (limit.kind, id(own))
        value = values.get(key)
        if value is None:
            value = values[key] = figure(limit.kind, own, order)
        if value > limit.threshold:  # ``binds``
            return Decision(Binding(limit.ref, limit=limit, value=value))
        if near(limit, value):
            warnings.append((limit, value))
    return Decision(None, tuple(warnings))


def order_scopes(
    *,
    user_id: int,
    market_id: int,
    follow_id: int | None = None,
    bot_id: int | None = None,
) -> list[ScopeRef]:
    """The scopes an order of ``user_id`` on ``market_id`` belongs to (a copy order's
    follow, a bot's orders' bot). A bot's order is its owner's: ``user_id`` the owner's,
    whose ORDER and USER scopes bind it too."""
    refs = [ScopeRef(Scope.ORDER, user_id), ScopeRef(Scope.USER, user_id)]
    refs += [ScopeRef(Scope.MARKET, market_id), ScopeRef(Scope.PLATFORM, PLATFORM_ID)]
    if follow_id is not None:
        refs.append(ScopeRef(Scope.FOLLOW, follow_id))
    if bot_id is not None:
        refs.append(ScopeRef(Scope.BOT, bot_id))
    return sorted(refs, key=_rank)


def strictest_state(
    statuses: Sequence[ScopeStatus], now: datetime
) -> tuple[RiskState, ScopeStatus | None]:
    """The strictest effective state among ``statuses`` (and whose it is)."""
    best: tuple[RiskState, ScopeStatus | None] = (RiskState.ACTIVE, None)
    for status in statuses:
        state = status.effective(now)
        if SEVERITY[state] > SEVERITY[best[0]]:
            best = (state, status)
    return best
