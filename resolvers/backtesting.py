"""Backtest queries, the runBacktest mutation and the backtestProgress subscription.
Parse, one service call, map."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from strawberry import relay
from strawberry.types import Info

from app.backtesting import backtests, lifecycle
from app.backtesting.domain import specs
from app.core.errors import NotFound, TransientError, ValidationFailed
from app.events import topics
from app.events.pubsub import Dropped, Message
from app.risk.domain.limits import Action, LimitKind
from app.risk.domain.states import Scope
from app.social.domain.social import FollowMode, FollowParameters
from app.venues.domain.paths import PathMode
from graphql_schema.backtesting.types import (
    BacktestConnection,
    BacktestNode,
    BacktestProgress,
    BacktestResult,
    BacktestStatus,
    CopyLeaderInput,
    RunBacktestInput,
    RunBacktestPayload,
    RunBacktestResult,
)
from graphql_schema.errors import to_graphql_error
from graphql_schema.gateway.context import Context
from graphql_schema.ids import key_of, node_pk
from graphql_schema.paging import to_connection
from graphql_schema.risk.types import SetRiskLimitInput
from resolvers.common import attempt, subscribe

Ctx = Info[Context, None]
BACKTEST = "Backtest"
LEADER = "Leader"
FINAL = (lifecycle.DONE, lifecycle.FAILED)


def _strategy(input: RunBacktestInput) -> specs.StrategyParameters:
    ma, dca, copy = input.moving_average, input.dollar_cost_averaging, input.copy_leader
    if sum(s is not None for s in (ma, dca, copy)) != 1:
        raise ValidationFailed(
            "give movingAverage, dollarCostAveraging or copyLeader (one)", field="movingAverage"
        )
    if ma is not None:
        return specs.MovingAverageParameters(ma.fast, ma.slow, ma.fraction, ma.quantity)
    if copy is not None:
        return _copy(copy)
    assert dca is not None
    return specs.DollarCostParameters(dca.amount, dca.every, dca.take_profit)


def _copy(copy: CopyLeaderInput) -> specs.CopyLeaderParameters:
    follow = FollowParameters(
        allocation=copy.allocation,
        mode=FollowMode(copy.mode.value),
        fixed_amount=copy.fixed_amount,
        ratio=copy.ratio,
        max_order_notional=copy.max_order_notional,
        max_position_per_asset=copy.max_position_per_asset,
        allowed_symbols=None if copy.allowed_symbols is None else tuple(copy.allowed_symbols),
        slippage_tolerance=copy.slippage_tolerance,
        stop_loss_percent=copy.stop_loss_percent,
        close_positions_on_stop_loss=copy.close_positions_on_stop_loss,
    )
    return specs.CopyLeaderParameters(node_pk(copy.leader_id, LEADER, field="leaderId"), follow)


def _request(input: RunBacktestInput) -> backtests.BacktestRequest:
    return backtests.BacktestRequest(
        strategy=_strategy(input),
        symbol=input.symbol,
        source=input.source,
        interval=input.interval,
        start=input.start,
        end=input.end,
        settings=specs.simulation_settings(
            path=PathMode(input.path.value),
            volume_share=input.volume_share,
            latency=input.latency,
            slippage_bps=input.slippage_bps,
            seed=input.seed,
        ),
        balance=input.balance,
        maker_fee=input.maker_fee,
        taker_fee=input.taker_fee,
        limits=specs.backtest_limits(_limit(i) for i in input.risk_limits),
    )


def _limit(input: SetRiskLimitInput) -> specs.LimitSpec:
    """A limit as setRiskLimit takes it (its scope's follow or symbol have no meaning for
    the one simulated account)."""
    return specs.LimitSpec(
        scope=Scope(input.scope.scope.value),
        kind=LimitKind(input.kind.value),
        threshold=input.threshold,
        action=Action(input.action.value),
        warn_ratio=input.warn_ratio,
        cooldown_seconds=input.cooldown_seconds,
    )


async def run_backtest(info: Ctx, input: RunBacktestInput) -> RunBacktestResult:
    """Start a backtest: checked now (nothing is stored when it is refused), run in the
    background; follow it with backtest(id) or the backtestProgress subscription."""

    async def call() -> backtests.Backtest:
        user = info.context.require_user()
        return await backtests.start_backtest(
            info.context.rt, user_id=user.id, request=_request(input)
        )

    return await attempt(
        call(), lambda row: RunBacktestPayload(backtest=BacktestNode.from_row(row))
    )  # type: ignore[return-value]


def _key(id: relay.GlobalID) -> int:
    key = key_of(id.node_id) if id.type_name == BACKTEST else None
    if key is None:
        raise NotFound("You have no backtest with that id", field="id")
    return key


async def backtest(info: Ctx, id: relay.GlobalID) -> BacktestResult:
    """One of your backtests; NOT_FOUND for anyone else's."""
    user = info.context.require_user()
    try:
        row = await info.context.loaders.backtest_by_id.load(_key(id))
        if row is None or row.user_id != user.id:
            raise NotFound("You have no backtest with that id", field="id")
    except NotFound as error:
        return to_graphql_error(error)  # type: ignore[return-value]
    return BacktestNode.from_row(row)


async def my_backtests(info: Ctx, first: int = 20, after: str | None = None) -> BacktestConnection:
    """Your backtests, newest first."""
    ctx = info.context
    user = ctx.require_user()
    async with ctx.rt.reads() as session:
        page = await backtests.list_backtests(session, user_id=user.id, first=first, after=after)
    return to_connection(BacktestConnection, page, BacktestNode.from_row)  # type: ignore[return-value]


def _progress(p: topics.BacktestProgress) -> BacktestProgress:
    return BacktestProgress(
        id=strawberry.ID(str(relay.GlobalID(BACKTEST, str(p.backtest_id)))),
        status=BacktestStatus(p.status),
        reason=p.reason,
        candles_done=p.candles_done,
        candles_total=p.candles_total,
    )


async def backtest_progress(
    info: Ctx, id: relay.GlobalID
) -> AsyncGenerator[BacktestProgress, None]:
    """Your backtest's status and progress now, then as it changes, until DONE or FAILED."""
    user = info.context.require_user()
    key = _key(id)
    topic = topics.BACKTEST_PROGRESS
    async with subscribe(info, topic, user_id=user.id) as subscription:
        # subscribed first, read second: no change falls between the two
        async with info.context.rt.reads() as session:
            row = await backtests.get_backtest(session, user_id=user.id, backtest_id=key)
        current = lifecycle.progress_payload(row)
        yield _progress(current)
        if current.status in FINAL:
            return
        async for event in subscription:
            if isinstance(event, Dropped):
                raise TransientError("The stream ended: subscribe again")
            if not isinstance(event, Message):
                continue
            payload = topic.parse(event.data["payload"])
            if payload.backtest_id != key or _older(payload, current):
                continue
            current = payload
            yield _progress(payload)
            if payload.status in FINAL:
                return


_ORDER = {lifecycle.QUEUED: 0, lifecycle.RUNNING: 1, lifecycle.DONE: 2, lifecycle.FAILED: 2}


def _older(event: topics.BacktestProgress, current: topics.BacktestProgress) -> bool:
    """An event from before the state already sent (read after it was published)."""
    ahead = (_ORDER[event.status], event.candles_done, event.candles_total)
    now = (_ORDER[current.status], current.candles_done, current.candles_total)
    return ahead <= now
