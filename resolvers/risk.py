"""Risk engine queries and mutations: parse, call one service, map."""

from __future__ import annotations

from decimal import Decimal

import strawberry
from strawberry.relay.utils import to_base64
from strawberry.types import Info

from app.risk import limits, status
from app.risk.domain.states import RiskState as DomainRiskState
from db.models import RiskLimit as RiskLimitRow
from graphql_schema.gateway.context import Context
from graphql_schema.ids import node_pk
from graphql_schema.risk.results import (
    RemoveRiskLimitResult,
    ResetRiskResult,
    RiskCheckAmendResult,
    RiskCheckResult,
    SetRiskLimitResult,
    SetRiskStateResult,
)
from graphql_schema.risk.types import (
    RiskCheck,
    RiskLimitNode,
    RiskLimitPayload,
    RiskLimitRemovedPayload,
    RiskScopeInput,
    RiskState,
    RiskStatePayload,
    SetRiskLimitInput,
)
from graphql_schema.trading.types import PlaceOrderInput
from resolvers.common import attempt

Ctx = Info[Context, None]
RISK_LIMIT = "RiskLimit"
ORDER = "Order"


async def risk_check(info: Ctx, input: PlaceOrderInput) -> RiskCheckResult:
    """What the risk check would decide about this order now, and which limit or state
    would bind: nothing is placed."""

    async def call() -> status.WhatIf:
        return await status.risk_check(
            info.context.rt,
            user_id=info.context.user_id,
            symbol=input.symbol,
            request=input.to_request(),
            client_order_id=input.client_order_id,
        )

    return await attempt(call(), RiskCheck.of)


async def risk_check_amend(
    info: Ctx,
    id: strawberry.ID,
    price: Decimal | None = None,
    quantity: Decimal | None = None,
) -> RiskCheckAmendResult:
    """What the risk check would decide about this amendOrder now (the same arguments),
    and which limit or state would bind: nothing is changed."""

    async def call() -> status.WhatIf:
        return await status.risk_check_amend(
            info.context.rt,
            user_id=info.context.user_id,
            order_id=node_pk(id, ORDER, field="id"),
            price=price,
            quantity=quantity,
        )

    return await attempt(call(), RiskCheck.of)


async def set_risk_limit(info: Ctx, input: SetRiskLimitInput) -> SetRiskLimitResult:
    """Set (or replace) a limit of one of your scopes; admins a market's or the
    platform's (audited)."""

    async def call() -> RiskLimitRow:
        return await limits.set_limit(
            info.context.rt, user_id=info.context.user_id, request=input.to_request()
        )

    return await attempt(call(), lambda row: RiskLimitPayload(limit=RiskLimitNode.from_row(row)))


async def remove_risk_limit(info: Ctx, id: strawberry.ID) -> RemoveRiskLimitResult:
    """Take a limit away; a state it caused stays until resetRisk."""

    async def call() -> RiskLimitRow:
        return await limits.remove_limit(
            info.context.rt,
            user_id=info.context.user_id,
            limit_id=node_pk(id, RISK_LIMIT, field="id"),
        )

    return await attempt(
        call(),
        lambda row: RiskLimitRemovedPayload(
            removed_id=strawberry.ID(to_base64(RISK_LIMIT, row.id))
        ),
    )


async def reset_risk(
    info: Ctx, scope: RiskScopeInput, totp_code: str | None = None
) -> ResetRiskResult:
    """Bring a scope back to ACTIVE (its P&L limits measure from now): your own scopes
    with a two-factor code (TOTP or a recovery code), a market or the platform as an
    admin (audited)."""

    async def call() -> limits.ScopeStatus:
        return await limits.reset(
            info.context.rt,
            user_id=info.context.user_id,
            target=scope.to_target(),
            totp_code=totp_code,
        )

    return await attempt(call(), RiskStatePayload.of)


async def set_risk_state(
    info: Ctx, scope: RiskScopeInput, state: RiskState, reason: str = ""
) -> SetRiskStateResult:
    """Admin: a market or the platform to REDUCING or HALTED by hand (audited);
    resetRisk brings it back."""

    async def call() -> limits.ScopeStatus:
        return await limits.set_state(
            info.context.rt,
            actor_id=info.context.user_id,
            target=scope.to_target(),
            state=DomainRiskState(state.value),
            reason=reason,
        )

    return await attempt(call(), RiskStatePayload.of)
