"""Limits, independent of storage: their kinds, actions, the figures they watch and when
a figure reaches one.

Two phases. A PRE_TRADE limit is checked against each proposed order in the placement
transaction: it binds when the figure *after* the order would exceed the threshold (a
TRADES_PER_DAY of 5 admits the fifth order of the day and refuses the sixth), and the
order is refused (action BLOCK_ENTRIES). An AFTER_FILLS limit is evaluated when the
scope's fills change its figures: it fires when the figure *reaches* the threshold, and
its action moves the scope's state (``app.risk.domain.states``)::

    kind                phase        figure (USD unless said)               binds
    ORDER_NOTIONAL      PRE_TRADE    the order's value                      every order
    ORDER_RATE          PRE_TRADE    orders placed in the last minute       every order
    CANCEL_RATE         PRE_TRADE    cancels asked in the last minute       every order
    TRADES_PER_DAY      PRE_TRADE    orders placed since 00:00 UTC          every order
    ASSET_EXPOSURE      PRE_TRADE    held + being bought, in one asset      entries
    TOTAL_EXPOSURE      PRE_TRADE    the same, all non-cash assets          entries
    CONCENTRATION       PRE_TRADE    one asset's exposure, % of equity      entries
    STALE_MARKET_DATA   PRE_TRADE    seconds since the market last traded   entries
    DAILY_LOSS          AFTER_FILLS  loss (realised + unrealised) today
    WEEKLY_LOSS         AFTER_FILLS  loss since Monday 00:00 UTC
    DRAWDOWN            AFTER_FILLS  the P&L's fall from its peak
    CONSECUTIVE_LOSSES  AFTER_FILLS  losing closes in a row

An *entry* is an order that increases exposure: it acquires a non-cash asset (a BUY of
BTC/USDT; both sides of ETH/BTC). Orders that only reduce exposure (a SELL of BTC/USDT)
are never refused for exposure or stale data, so a user can always get flat.

Actions of an AFTER_FILLS limit (``EFFECTS``): BLOCK_ENTRIES (REDUCING), CANCEL_ORDERS
(HALTED, open orders canceled), REDUCE_TO_FLAT (REDUCING, open orders canceled, positions
sold with protected market orders), COOL_DOWN (HALTED for ``cooldown_seconds``, open
orders canceled, then ACTIVE again). A warning goes out once a figure reaches
``warn_ratio`` of the threshold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from app.risk.domain.errors import InvalidRiskLimit
from app.risk.domain.states import SCOPE_ORDER, SEVERITY, RiskState, Scope, ScopeRef, stricter

ZERO = Decimal(0)
HUNDRED = Decimal(100)
DEFAULT_WARN_RATIO = Decimal("0.8")
MAX_THRESHOLD = Decimal(10) ** 18
MAX_COOLDOWN_SECONDS = 366 * 24 * 3600
FLATTEN_SLIPPAGE_BPS = 300  # REDUCE_TO_FLAT's market sells: at most this far from the last


class Phase(StrEnum):
    PRE_TRADE = "PRE_TRADE"
    AFTER_FILLS = "AFTER_FILLS"


class LimitKind(StrEnum):
    ORDER_NOTIONAL = "ORDER_NOTIONAL"
    ORDER_RATE = "ORDER_RATE"
    CANCEL_RATE = "CANCEL_RATE"
    TRADES_PER_DAY = "TRADES_PER_DAY"
    ASSET_EXPOSURE = "ASSET_EXPOSURE"
    TOTAL_EXPOSURE = "TOTAL_EXPOSURE"
    CONCENTRATION = "CONCENTRATION"
    STALE_MARKET_DATA = "STALE_MARKET_DATA"
    DAILY_LOSS = "DAILY_LOSS"
    WEEKLY_LOSS = "WEEKLY_LOSS"
    DRAWDOWN = "DRAWDOWN"
    CONSECUTIVE_LOSSES = "CONSECUTIVE_LOSSES"


class Action(StrEnum):
    BLOCK_ENTRIES = "BLOCK_ENTRIES"
    CANCEL_ORDERS = "CANCEL_ORDERS"
    REDUCE_TO_FLAT = "REDUCE_TO_FLAT"
    COOL_DOWN = "COOL_DOWN"


@dataclass(frozen=True, slots=True)
class Effect:
    """What an AFTER_FILLS action does to its scope."""

    state: RiskState
    cancel_orders: bool = False
    flatten: bool = False
    cools_down: bool = False


EFFECTS: Mapping[Action, Effect] = {
    Action.BLOCK_ENTRIES: Effect(RiskState.REDUCING),
    Action.CANCEL_ORDERS: Effect(RiskState.HALTED, cancel_orders=True),
    Action.REDUCE_TO_FLAT: Effect(RiskState.REDUCING, cancel_orders=True, flatten=True),
    Action.COOL_DOWN: Effect(RiskState.HALTED, cancel_orders=True, cools_down=True),
}

# a bot's own figures are its sub-account's (its owner's USER figures count them too)
_PER_USER = frozenset({Scope.BOT, Scope.USER, Scope.PLATFORM})
_MARKETS = frozenset({Scope.BOT, Scope.USER, Scope.MARKET, Scope.PLATFORM})
_P_AND_L = frozenset({Scope.USER, Scope.BOT, Scope.FOLLOW})


@dataclass(frozen=True, slots=True)
class KindRule:
    phase: Phase
    unit: str  # what the threshold counts: USD, ORDERS, CANCELS, PERCENT, SECONDS, LOSSES
    scopes: frozenset[Scope]  # where it may be set
    entries_only: bool = False  # PRE_TRADE: binds only orders that increase exposure
    whole: bool = False  # the threshold is a whole number
    counts: bool = False  # PRE_TRADE: the figure counts requests (not checked on amends)


KINDS: Mapping[LimitKind, KindRule] = {
    LimitKind.ORDER_NOTIONAL: KindRule(Phase.PRE_TRADE, "USD", frozenset(Scope)),
    LimitKind.ORDER_RATE: KindRule(Phase.PRE_TRADE, "ORDERS", _PER_USER, whole=True, counts=True),
    LimitKind.CANCEL_RATE: KindRule(Phase.PRE_TRADE, "CANCELS", _PER_USER, whole=True, counts=True),
    LimitKind.TRADES_PER_DAY: KindRule(
        Phase.PRE_TRADE, "ORDERS", _PER_USER, whole=True, counts=True
    ),
    LimitKind.ASSET_EXPOSURE: KindRule(Phase.PRE_TRADE, "USD", _MARKETS, entries_only=True),
    LimitKind.TOTAL_EXPOSURE: KindRule(Phase.PRE_TRADE, "USD", _PER_USER, entries_only=True),
    LimitKind.CONCENTRATION: KindRule(Phase.PRE_TRADE, "PERCENT", _MARKETS, entries_only=True),
    LimitKind.STALE_MARKET_DATA: KindRule(Phase.PRE_TRADE, "SECONDS", _MARKETS, entries_only=True),
    LimitKind.DAILY_LOSS: KindRule(Phase.AFTER_FILLS, "USD", _P_AND_L),
    LimitKind.WEEKLY_LOSS: KindRule(Phase.AFTER_FILLS, "USD", _P_AND_L),
    LimitKind.DRAWDOWN: KindRule(Phase.AFTER_FILLS, "USD", _P_AND_L),
    LimitKind.CONSECUTIVE_LOSSES: KindRule(Phase.AFTER_FILLS, "LOSSES", _P_AND_L, whole=True),
}
PRE_TRADE_KINDS = frozenset(k for k, r in KINDS.items() if r.phase is Phase.PRE_TRADE)
AFTER_FILLS_KINDS = frozenset(k for k, r in KINDS.items() if r.phase is Phase.AFTER_FILLS)


@dataclass(frozen=True, slots=True)
class Limit:
    id: int
    ref: ScopeRef
    kind: LimitKind
    threshold: Decimal
    action: Action = Action.BLOCK_ENTRIES
    warn_ratio: Decimal = DEFAULT_WARN_RATIO
    cooldown_seconds: int | None = None
    set_by: int | None = None  # the user who set it
    requires_two_factor: bool = False  # its reset needs a two-factor code
    # read on every check: made once per limit
    rule: KindRule = field(init=False, repr=False, compare=False)
    warn_at: Decimal = field(init=False, repr=False, compare=False)  # the figure that warns
    check_key: tuple[int, int] = field(init=False, repr=False, compare=False)  # scope, id

    def __post_init__(self) -> None:
        object.__setattr__(self, "rule", KINDS[self.kind])
        object.__setattr__(self, "warn_at", self.warn_ratio * self.threshold)
        object.__setattr__(self, "check_key", (SCOPE_ORDER.index(self.ref.scope), self.id))

    def describe(self) -> str:
        """Like: DAILY_LOSS of 100 USD (USER 7)."""
        return f"{self.kind.value} of {_plain(self.threshold)} {self.rule.unit} ({self.ref})"


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


def check_limit(
    *,
    scope: Scope,
    kind: LimitKind,
    threshold: Decimal,
    action: Action,
    warn_ratio: Decimal,
    cooldown_seconds: int | None,
) -> None:
    """``InvalidRiskLimit`` (naming the field) for a limit that cannot be set."""
    rule = KINDS[kind]
    if scope not in rule.scopes:
        where = ", ".join(s.value for s in sorted(rule.scopes, key=list(Scope).index))
        raise InvalidRiskLimit(f"{kind.value} can be set at {where}", field="scope")
    if not threshold.is_finite() or threshold <= 0 or threshold >= MAX_THRESHOLD:
        raise InvalidRiskLimit("The threshold must be a number above zero", field="threshold")
    if rule.whole and threshold != threshold.to_integral_value():
        raise InvalidRiskLimit(f"{kind.value} counts whole {rule.unit.lower()}", field="threshold")
    if rule.unit == "PERCENT" and threshold > HUNDRED:
        raise InvalidRiskLimit("A percentage is at most 100", field="threshold")
    if not warn_ratio.is_finite() or not ZERO < warn_ratio <= 1:
        raise InvalidRiskLimit("The warning ratio is above 0 and at most 1", field="warnRatio")
    if rule.phase is Phase.PRE_TRADE and action is not Action.BLOCK_ENTRIES:
        raise InvalidRiskLimit(
            f"{kind.value} is checked before each order: its action is BLOCK_ENTRIES",
            field="action",
        )
    if action is Action.COOL_DOWN:
        if cooldown_seconds is None or not 0 < cooldown_seconds <= MAX_COOLDOWN_SECONDS:
            raise InvalidRiskLimit(
                "A cool-down lasts from 1 second to a year", field="cooldownSeconds"
            )
    elif cooldown_seconds is not None:
        raise InvalidRiskLimit("Only COOL_DOWN takes a cool-down", field="cooldownSeconds")


# --- figures -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Figures:
    """What a trader's limits watch, as read in the placement transaction (the counts
    may stop at a cap: past every threshold they are not read further)."""

    orders_last_minute: int = 0
    cancels_last_minute: int = 0
    orders_today: int = 0
    exposure: Mapping[str, Decimal] = field(default_factory=dict)  # USD per non-cash asset
    equity: Decimal = ZERO  # USD, everything the trader holds
    market_data_age: Decimal | None = None  # seconds since the order's market traded
    loss_today: Decimal = ZERO
    loss_this_week: Decimal = ZERO
    drawdown: Decimal = ZERO
    consecutive_losses: int = 0

    def after(self, order: ProposedOrder) -> Figures:
        """The figures once ``order`` is placed (the next order of a batch meets these)."""
        exposure = dict(self.exposure)
        if order.acquires is not None:
            exposure[order.acquires] = exposure.get(order.acquires, ZERO) + order.added
        return self._moved(order.placed, exposure, self.market_data_age)

    def aged(self, market_data_age: Decimal | None) -> Figures:
        """These figures on a market last traded ``market_data_age`` seconds ago (as
        ``dataclasses.replace``, without its introspection: once per order checked)."""
        return self._moved(0, self.exposure, market_data_age)

    def _moved(
        self, placed: int, exposure: Mapping[str, Decimal], market_data_age: Decimal | None
    ) -> Figures:
        return Figures(
            orders_last_minute=self.orders_last_minute + placed,
            cancels_last_minute=self.cancels_last_minute,
            orders_today=self.orders_today + placed,
            exposure=exposure,
            equity=self.equity,
            market_data_age=market_data_age,
            loss_today=self.loss_today,
            loss_this_week=self.loss_this_week,
            drawdown=self.drawdown,
            consecutive_losses=self.consecutive_losses,
        )


@dataclass(frozen=True, slots=True)
class ProposedOrder:
    """An order as the limits see it: its value in USD and the non-cash asset it would
    acquire (None: it only reduces exposure). An amendment (``amendment``) is the order
    as amended (``notional``) adding ``adds`` to the exposure, and places no order."""

    notional: Decimal
    acquires: str | None = None
    adds: Decimal | None = None  # the exposure it adds; None: ``notional``
    amends: bool = False  # an amendment of a live order, not a new one

    @property
    def entry(self) -> bool:
        return self.acquires is not None

    @property
    def added(self) -> Decimal:
        return self.notional if self.adds is None else self.adds

    @property
    def placed(self) -> int:
        """How many orders it adds to the order counts."""
        return 0 if self.amends else 1


def amendment(
    *, before: Decimal, after: Decimal, moved: bool, acquires: str | None
) -> ProposedOrder | None:
    """An amendment of a live order as the limits see it, from the value (USD) of what is
    left of it ``before`` and ``after`` the amendment (``moved``: its price changes);
    None when it only shrinks the order, which always passes the limits. It is an entry
    when it acquires a non-cash asset and adds value: the exposure limits judge the
    increase, ORDER_NOTIONAL the order as amended."""
    if not moved and after <= before:
        return None
    increase = after - before
    grows = acquires is not None and increase > 0
    return ProposedOrder(after, acquires if grows else None, adds=max(increase, ZERO), amends=True)


def _share(part: Decimal, whole: Decimal) -> Decimal:
    if whole <= 0:
        return HUNDRED if part > 0 else ZERO
    return HUNDRED * part / whole


def figure(kind: LimitKind, figures: Figures, order: ProposedOrder | None = None) -> Decimal:
    """The figure ``kind`` watches: after ``order`` when one is given (as
    ``figures.after(order)`` has it), else as it is (exposure and concentration: the
    largest asset's)."""
    placed = 0 if order is None else order.placed
    adds = order.added if order is not None and order.acquires is not None else ZERO
    if kind is LimitKind.ORDER_NOTIONAL:
        return order.notional if order is not None else ZERO
    if kind is LimitKind.ORDER_RATE:
        return Decimal(figures.orders_last_minute + placed)
    if kind is LimitKind.CANCEL_RATE:
        return Decimal(figures.cancels_last_minute)
    if kind is LimitKind.TRADES_PER_DAY:
        return Decimal(figures.orders_today + placed)
    if kind is LimitKind.TOTAL_EXPOSURE:
        return sum(figures.exposure.values(), ZERO) + adds
    if kind in (LimitKind.ASSET_EXPOSURE, LimitKind.CONCENTRATION):
        if order is not None and order.acquires is not None:
            held = figures.exposure.get(order.acquires, ZERO) + adds
        else:
            held = max(figures.exposure.values(), default=ZERO)
        return held if kind is LimitKind.ASSET_EXPOSURE else _share(held, figures.equity)
    if kind is LimitKind.STALE_MARKET_DATA:
        return figures.market_data_age if figures.market_data_age is not None else ZERO
    if kind is LimitKind.DAILY_LOSS:
        return figures.loss_today
    if kind is LimitKind.WEEKLY_LOSS:
        return figures.loss_this_week
    if kind is LimitKind.DRAWDOWN:
        return figures.drawdown
    return Decimal(figures.consecutive_losses)


def binds(limit: Limit, figures: Figures, order: ProposedOrder) -> Decimal | None:
    """The figure after ``order`` when ``limit`` (PRE_TRADE) refuses it, else None: it
    binds only when that figure exceeds the threshold, and an entries-only kind only
    an entry."""
    if limit.rule.phase is not Phase.PRE_TRADE:
        return None
    if not applies(limit, order):
        return None
    value = figure(limit.kind, figures, order)
    return value if value > limit.threshold else None


def applies(limit: Limit, order: ProposedOrder) -> bool:
    """Whether PRE_TRADE ``limit`` judges ``order``: an entries-only kind only an entry,
    a count of requests only a new order (an amendment places none: as nautilus_trader
    rates modifications apart from submissions, and Binance's keep-priority amend does not
    count as an order)."""
    if limit.rule.entries_only and not order.entry:
        return False
    return not (limit.rule.counts and order.amends)


def reached(limit: Limit, value: Decimal) -> bool:
    """An AFTER_FILLS limit fires once its figure reaches the threshold."""
    return value >= limit.threshold


def near(limit: Limit, value: Decimal) -> bool:
    """Worth a warning: the figure has reached ``warn_ratio`` of the threshold."""
    return value >= limit.warn_at


@dataclass(frozen=True, slots=True)
class Breach:
    limit: Limit
    value: Decimal

    @property
    def effect(self) -> Effect:
        return EFFECTS[self.limit.action]

    @property
    def reason(self) -> str:
        """The transition's reason: like DAILY_LOSS of 100 USD (USER 7) reached (120)."""
        return f"{self.limit.describe()} reached ({_plain(self.value)})"

    def cooldown_until(self, now: datetime) -> datetime | None:
        """When the scope it halts becomes ACTIVE again (COOL_DOWN), else None."""
        if self.effect.cools_down and self.limit.cooldown_seconds:
            return now + timedelta(seconds=self.limit.cooldown_seconds)
        return None


def after_fills(limits: Iterable[Limit], figures: Figures) -> tuple[list[Breach], list[Breach]]:
    """The AFTER_FILLS ``limits`` that fire on ``figures``, and those only near enough
    for a warning."""
    fired, warned = [], []
    for limit in limits:
        if limit.rule.phase is not Phase.AFTER_FILLS:
            continue
        value = figure(limit.kind, figures)
        if reached(limit, value):
            fired.append(Breach(limit, value))
        elif near(limit, value):
            warned.append(Breach(limit, value))
    return fired, warned


def to_act(
    limits: Iterable[Limit], figures: Figures, state: RiskState
) -> tuple[Breach | None, list[Breach]]:
    """What a scope in ``state`` does on ``figures``, the one decision after fills (the
    ``risk-triggers`` consumer and a backtest's protections alike): the strictest
    AFTER_FILLS limit that fired when its action makes the state stricter (else None),
    and the limits near enough for a warning."""
    fired, warned = after_fills(limits, figures)
    breach = strictest(fired)
    if breach is None or not stricter(breach.effect.state, state):
        return None, warned
    return breach, warned


def strictest(breaches: Sequence[Breach]) -> Breach | None:
    """The breach whose action leaves the strictest state (a cool-down before a plain
    halt, cancels before none); the first of equals."""

    def rank(b: Breach) -> tuple[int, int, int, int]:
        e = b.effect
        return (SEVERITY[e.state], e.flatten, e.cancel_orders, e.cools_down)

    best: Breach | None = None
    for breach in breaches:
        if best is None or rank(breach) > rank(best):
            best = breach
    return best
