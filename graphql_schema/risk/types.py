"""Risk engine types: limits, scopes' states and their figures, the what-if check, the
inputs and payloads of the risk mutations. Thresholds and figures are ``Decimal``
strings in each kind's unit (``unit``: USD, ORDERS, CANCELS, PERCENT, SECONDS, LOSSES)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

import strawberry
from strawberry import relay
from strawberry.relay.utils import to_base64
from strawberry.types import Info

from app.core.errors import ValidationFailed
from app.risk import status as risk_status
from app.risk.domain import limits as domain
from app.risk.domain import states
from app.risk.domain.checks import Binding
from app.risk.gate import limit_of
from app.risk.limits import LimitRequest, Target
from db.models import RiskLimit as RiskLimitRow
from db.models import RiskTransition as RiskTransitionRow
from graphql_schema.enums import derived_enum
from graphql_schema.ids import node_keys, node_pk
from graphql_schema.trading.markets import MarketNode

FOLLOW = "Follow"
BOT = "Bot"

RiskScope = derived_enum(
    states.Scope,
    name="RiskScope",
    description="Where a limit or a state applies: ORDER (each of your orders and your"
    " bots'), BOT (one bot's orders), FOLLOW (a follow's copy orders), USER (your account,"
    " your bots' orders included), MARKET and PLATFORM (set by admins).",
)
RiskState = derived_enum(
    states.RiskState,
    name="RiskState",
    values={
        "ACTIVE": "Every order is accepted.",
        "REDUCING": "Only orders that reduce exposure (no new non-cash asset).",
        "HALTED": "No orders: cancels only.",
    },
)
RiskLimitKind = derived_enum(
    domain.LimitKind,
    name="RiskLimitKind",
    values={
        "ORDER_NOTIONAL": "An order's value, USD.",
        "ORDER_RATE": "Orders placed in the last minute.",
        "CANCEL_RATE": "Cancels asked in the last minute (new orders stop past it).",
        "TRADES_PER_DAY": "Orders placed since 00:00 UTC.",
        "ASSET_EXPOSURE": "USD held and being bought in any one non-cash asset.",
        "TOTAL_EXPOSURE": "The same over all non-cash assets.",
        "CONCENTRATION": "One asset's exposure, percent of your equity.",
        "STALE_MARKET_DATA": "Seconds since the order's market last traded.",
        "DAILY_LOSS": "Realised plus unrealised loss since 00:00 UTC, USD.",
        "WEEKLY_LOSS": "The same since Monday 00:00 UTC.",
        "DRAWDOWN": "The fall of your P&L from its peak, USD.",
        "CONSECUTIVE_LOSSES": "Losing closes in a row.",
    },
)
RiskAction = derived_enum(
    domain.Action,
    name="RiskAction",
    values={
        "BLOCK_ENTRIES": "Before an order: refuse it. After fills: REDUCING.",
        "CANCEL_ORDERS": "HALTED, open orders canceled.",
        "REDUCE_TO_FLAT": "REDUCING, open orders canceled, positions sold (protected).",
        "COOL_DOWN": "HALTED for cooldownSeconds, open orders canceled, then ACTIVE.",
    },
)


def follow_id(ref: states.ScopeRef) -> strawberry.ID | None:
    return strawberry.ID(to_base64(FOLLOW, ref.id)) if ref.scope is states.Scope.FOLLOW else None


def bot_id(ref: states.ScopeRef) -> strawberry.ID | None:
    return strawberry.ID(to_base64(BOT, ref.id)) if ref.scope is states.Scope.BOT else None


async def market_of(info: Info, ref: states.ScopeRef) -> MarketNode | None:
    if ref.scope is not states.Scope.MARKET:
        return None
    return MarketNode.from_row(await info.context.loaders.market_by_id.load(ref.id))


@strawberry.type(name="RiskLimit")
class RiskLimitNode(relay.Node):
    """A limit of a scope. Yours, or a market's or the platform's (every order meets
    those)."""

    id: relay.NodeID[int]
    scope: RiskScope
    kind: RiskLimitKind
    threshold: Decimal
    unit: str = strawberry.field(description="What the threshold counts.")
    action: RiskAction
    warn_ratio: Decimal = strawberry.field(description="A warning at this share of it.")
    cooldown_seconds: int | None
    requires_two_factor: bool = strawberry.field(
        description="Resetting what it caused needs a two-factor code."
    )
    follow: strawberry.ID | None = strawberry.field(description="FOLLOW scope: the Follow.")
    bot: strawberry.ID | None = strawberry.field(description="BOT scope: the Bot.")
    ref: strawberry.Private[states.ScopeRef]

    @strawberry.field(description="MARKET scope: the market.")
    async def market(self, info: Info) -> MarketNode | None:
        return await market_of(info, self.ref)

    @classmethod
    def from_limit(cls, limit: domain.Limit) -> RiskLimitNode:
        return cls(
            id=limit.id,
            scope=RiskScope(limit.ref.scope.value),
            kind=RiskLimitKind(limit.kind.value),
            threshold=limit.threshold.normalize(),
            unit=limit.rule.unit,
            action=RiskAction(limit.action.value),
            warn_ratio=limit.warn_ratio.normalize(),
            cooldown_seconds=limit.cooldown_seconds,
            requires_two_factor=limit.requires_two_factor,
            follow=follow_id(limit.ref),
            bot=bot_id(limit.ref),
            ref=limit.ref,
        )

    @classmethod
    def from_row(cls, row: RiskLimitRow) -> RiskLimitNode:
        return cls.from_limit(limit_of(vars(row)))

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[RiskLimitNode | None]:
        ctx = info.context
        rows = await ctx.loaders.risk_limit_by_id.load_many(node_keys(node_ids))
        return [cls.from_row(r) if r is not None and _visible(ctx, r) else None for r in rows]


def _visible(ctx: object, row: RiskLimitRow) -> bool:
    """A market's and the platform's limits are everyone's to see; the others their
    setter's (a follow's: the follower, a bot's: its owner) and admins'."""
    if row.scope in (states.Scope.MARKET.value, states.Scope.PLATFORM.value):
        return ctx.user_id is not None  # type: ignore[attr-defined]
    if row.scope in (states.Scope.FOLLOW.value, states.Scope.BOT.value):
        return row.set_by is not None and ctx.can_see_user(row.set_by)  # type: ignore[attr-defined]
    return bool(ctx.can_see_user(row.scope_id))  # type: ignore[attr-defined]


@strawberry.type
class RiskLimitUsage:
    limit: RiskLimitNode
    value: Decimal | None = strawberry.field(
        description="The figure it watches, now (an order's value: see riskCheck)."
    )
    ratio: Decimal | None = strawberry.field(description="value / threshold.")
    warning: bool = strawberry.field(description="At or past the warning ratio.")
    reached: bool = strawberry.field(description="At or past the threshold.")

    @classmethod
    def of(
        cls, limit: domain.Limit, value: Decimal | None, warning: bool, reached: bool
    ) -> RiskLimitUsage:
        ratio = None if value is None else (value / limit.threshold).quantize(Decimal("0.0001"))
        return cls(
            limit=RiskLimitNode.from_limit(limit),
            value=None if value is None else value.normalize(),
            ratio=None if ratio is None else ratio.normalize(),
            warning=warning,
            reached=reached,
        )


@strawberry.type
class RiskTransition:
    """One change of a scope's state."""

    from_state: RiskState
    to_state: RiskState
    reason: str
    by_risk_engine: bool = strawberry.field(description="False: a person made it.")
    at: datetime

    @classmethod
    def from_row(cls, row: RiskTransitionRow) -> RiskTransition:
        return cls(
            from_state=RiskState(row.from_state),
            to_state=RiskState(row.to_state),
            reason=row.reason,
            by_risk_engine=row.actor_id is None,
            at=row.at,
        )


@strawberry.type
class RiskScopeStatus:
    scope: RiskScope
    follow: strawberry.ID | None
    bot: strawberry.ID | None
    state: RiskState = strawberry.field(description="As orders meet it now.")
    since: datetime | None
    cooldown_until: datetime | None
    reason: str | None
    limits: list[RiskLimitUsage]
    transitions: list[RiskTransition] = strawberry.field(description="The latest, newest first.")
    ref: strawberry.Private[states.ScopeRef]

    @strawberry.field(description="MARKET scope: the market.")
    async def market(self, info: Info) -> MarketNode | None:
        return await market_of(info, self.ref)

    @classmethod
    def from_view(cls, view: risk_status.ScopeView) -> RiskScopeStatus:
        status = view.status
        return cls(
            scope=RiskScope(status.ref.scope.value),
            follow=follow_id(status.ref),
            bot=bot_id(status.ref),
            state=RiskState(view.state.value),
            since=status.since,
            cooldown_until=status.cooldown_until,
            reason=status.reason,
            limits=[RiskLimitUsage.of(u.limit, u.value, u.warning, u.reached) for u in view.limits],
            transitions=[RiskTransition.from_row(t) for t in view.transitions],
            ref=status.ref,
        )


@strawberry.type
class RiskStatus:
    """Your risk limits and the states of the scopes your orders belong to."""

    state: RiskState = strawberry.field(description="The strictest of the scopes'.")
    scopes: list[RiskScopeStatus]

    @classmethod
    def from_status(cls, status: risk_status.RiskStatus) -> RiskStatus:
        return cls(
            state=RiskState(status.state.value),
            scopes=[RiskScopeStatus.from_view(v) for v in status.scopes],
        )


@strawberry.type
class RiskBinding:
    """What refuses the order: a scope's state, or a limit it would exceed."""

    scope: RiskScope
    follow: strawberry.ID | None
    bot: strawberry.ID | None
    state: RiskState | None
    limit: RiskLimitNode | None
    value: Decimal | None = strawberry.field(description="The limit's figure after the order.")
    code: str = strawberry.field(description="The error placeOrder would answer.")
    message: str
    ref: strawberry.Private[states.ScopeRef]

    @strawberry.field(description="MARKET scope: the market.")
    async def market(self, info: Info) -> MarketNode | None:
        return await market_of(info, self.ref)

    @classmethod
    def of(cls, binding: Binding) -> RiskBinding:
        error = binding.error()
        return cls(
            scope=RiskScope(binding.ref.scope.value),
            follow=follow_id(binding.ref),
            bot=bot_id(binding.ref),
            state=None if binding.state is None else RiskState(binding.state.value),
            limit=None if binding.limit is None else RiskLimitNode.from_limit(binding.limit),
            value=None if binding.value is None else binding.value.normalize(),
            code=error.code,
            message=error.message,
            ref=binding.ref,
        )


@strawberry.type
class RiskCheck:
    """What the risk check would decide about an order now (nothing is placed)."""

    allowed: bool
    notional_usd: Decimal = strawberry.field(description="The order's value, USD.")
    entry: bool = strawberry.field(description="It would increase exposure.")
    binding: RiskBinding | None
    warnings: list[RiskLimitUsage] = strawberry.field(
        description="Limits it would take past their warning ratio."
    )

    @classmethod
    def of(cls, what_if: risk_status.WhatIf) -> RiskCheck:
        d = what_if.decision
        return cls(
            allowed=d.allowed,
            notional_usd=what_if.order.notional.quantize(Decimal("0.01")).normalize(),
            entry=what_if.order.entry,
            binding=None if d.binding is None else RiskBinding.of(d.binding),
            warnings=[RiskLimitUsage.of(limit, v, True, False) for limit, v in d.warnings],
        )


# --- inputs and payloads -----------------------------------------------------------------------


def _target(
    scope: states.Scope,
    follow: strawberry.ID | None,
    symbol: str | None,
    bot: strawberry.ID | None = None,
) -> Target:
    if scope is states.Scope.FOLLOW:
        if follow is None:
            raise ValidationFailed("Name the follow: followId", field="followId")
        return Target(scope, follow_id=node_pk(follow, FOLLOW, field="followId"))
    if scope is states.Scope.BOT:
        if bot is None:
            raise ValidationFailed("Name the bot: botId", field="botId")
        return Target(scope, bot_id=node_pk(bot, BOT, field="botId"))
    return Target(scope, symbol=symbol)


@strawberry.input
class RiskScopeInput:
    """A scope: FOLLOW names its ``followId``, BOT its ``botId`` (a bot of yours),
    MARKET its ``symbol``."""

    scope: RiskScope
    follow_id: strawberry.ID | None = None
    symbol: str | None = None
    bot_id: strawberry.ID | None = None

    def to_target(self) -> Target:
        return _target(states.Scope(self.scope.value), self.follow_id, self.symbol, self.bot_id)


@strawberry.input
class SetRiskLimitInput:
    """One limit per kind and scope: setting it again replaces it."""

    scope: RiskScopeInput
    kind: RiskLimitKind
    threshold: Decimal
    action: RiskAction = strawberry.field(
        default=RiskAction.BLOCK_ENTRIES,
        description="Limits checked before each order (ORDER_NOTIONAL to STALE_MARKET_DATA)"
        " only BLOCK_ENTRIES.",
    )
    warn_ratio: Decimal = Decimal("0.8")
    cooldown_seconds: int | None = strawberry.field(default=None, description="COOL_DOWN only.")

    def to_request(self) -> LimitRequest:
        return LimitRequest(
            target=self.scope.to_target(),
            kind=domain.LimitKind(self.kind.value),
            threshold=self.threshold,
            action=domain.Action(self.action.value),
            warn_ratio=self.warn_ratio,
            cooldown_seconds=self.cooldown_seconds,
        )


@strawberry.type
class RiskLimitPayload:
    limit: RiskLimitNode


@strawberry.type
class RiskLimitRemovedPayload:
    removed_id: strawberry.ID


@strawberry.type
class RiskStatePayload:
    scope: RiskScope
    follow: strawberry.ID | None
    bot: strawberry.ID | None
    state: RiskState
    since: datetime | None
    reason: str | None
    ref: strawberry.Private[states.ScopeRef]

    @strawberry.field(description="MARKET scope: the market.")
    async def market(self, info: Info) -> MarketNode | None:
        return await market_of(info, self.ref)

    @classmethod
    def of(cls, status: states.ScopeStatus) -> RiskStatePayload:
        return cls(
            scope=RiskScope(status.ref.scope.value),
            follow=follow_id(status.ref),
            bot=bot_id(status.ref),
            state=RiskState(status.state.value),
            since=status.since,
            reason=status.reason,
            ref=status.ref,
        )
