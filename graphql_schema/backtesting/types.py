"""Backtest types: the ``Backtest`` node (status, progress, metrics, its equity curve,
trades and decisions as connections, each page loaded with the other backtests' pages of
the request in one statement), the ``runBacktest`` input, payload and result union, and the
progress event of the ``backtestProgress`` subscription.

Metrics are exact: each figure is the Decimal the run computed (fractions, not
percentages: 0.12 is 12 %), shown without trailing zeros; money figures are in the quote
currency. An undefined metric (Sharpe of a flat curve, ...) is null."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any, TypeAlias

import strawberry
from strawberry import relay
from strawberry.types import Info

from app.backtesting.domain.evaluation import metrics_from_json
from app.backtesting.domain.metrics import BacktestMetrics as Metrics
from app.backtesting.domain.runner import CANCEL, SUBMIT
from app.backtesting.lifecycle import MAX_ATTEMPTS
from db.models import Backtest as BacktestRow
from db.models import BacktestDecision as DecisionRow
from db.models import BacktestEquityPoint as PointRow
from db.models import BacktestRiskEvent as RiskEventRow
from db.models import BacktestTrade as TradeRow
from db.queries import page_key
from graphql_schema.errors import (
    InvalidFollowParameters,
    InvalidRiskLimit,
    NotALeader,
    NotAuthenticated,
    NotFound,
    UnknownMarket,
    ValidationFailed,
)
from graphql_schema.ids import node_keys
from graphql_schema.paging import to_connection
from graphql_schema.risk.types import (
    RiskAction,
    RiskLimitKind,
    RiskScope,
    RiskState,
    SetRiskLimitInput,
)
from graphql_schema.social.types import FollowMode
from graphql_schema.trading.enums import OrderSide, OrderType


@strawberry.enum(description="QUEUED, then RUNNING, then DONE or FAILED (see reason).")
class BacktestStatus(Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"


@strawberry.enum(
    description="MA: moving average crossover; DCA: dollar-cost averaging; COPY: copying a"
    " leader's fills (the copy-trading what-if)."
)
class BacktestStrategyKind(Enum):
    MA = "MA"
    DCA = "DCA"
    COPY = "COPY"


@strawberry.enum(
    description="The order the price is assumed to take inside a candle: ADVERSE_FIRST"
    " (the extreme that hurts the account first: the low while holding, the high while"
    " flat), OHLC or OLHC."
)
class BacktestPathMode(Enum):
    ADVERSE_FIRST = "ADVERSE_FIRST"
    OHLC = "OHLC"
    OLHC = "OLHC"


def _plain(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.normalize()


@strawberry.type
class BacktestMetrics:
    """The figures of a finished backtest (fractions: 0.12 = 12 %)."""

    start: datetime
    end: datetime
    bars: int
    starting_equity: Decimal
    final_equity: Decimal
    total_return: Decimal
    buy_and_hold_return: Decimal
    cagr: Decimal | None
    volatility: Decimal | None = strawberry.field(description="Annualised.")
    sharpe: Decimal | None = strawberry.field(description="Annualised, risk-free rate 0.")
    sortino: Decimal | None
    calmar: Decimal | None
    max_drawdown: Decimal
    max_drawdown_peak_at: datetime | None
    max_drawdown_trough_at: datetime | None
    max_drawdown_recovered_at: datetime | None
    trades: int
    win_rate: Decimal | None
    profit_factor: Decimal | None
    expectancy: Decimal | None = strawberry.field(description="Mean net pnl per trade.")
    exposure: Decimal = strawberry.field(description="Share of candles closed holding.")
    fees_paid: Decimal

    @classmethod
    def from_metrics(cls, m: Metrics) -> BacktestMetrics:
        d = m.max_drawdown
        return cls(
            start=m.start,
            end=m.end,
            bars=m.bars,
            starting_equity=m.starting_equity.normalize(),
            final_equity=m.final_equity.normalize(),
            total_return=m.total_return.normalize(),
            buy_and_hold_return=m.buy_and_hold_return.normalize(),
            cagr=_plain(m.cagr),
            volatility=_plain(m.volatility),
            sharpe=_plain(m.sharpe),
            sortino=_plain(m.sortino),
            calmar=_plain(m.calmar),
            max_drawdown=d.depth.normalize(),
            max_drawdown_peak_at=d.peak_at,
            max_drawdown_trough_at=d.trough_at,
            max_drawdown_recovered_at=d.recovered_at,
            trades=m.trades,
            win_rate=_plain(m.win_rate),
            profit_factor=_plain(m.profit_factor),
            expectancy=_plain(m.expectancy),
            exposure=m.exposure.normalize(),
            fees_paid=m.fees_paid.normalize(),
        )


@strawberry.type
class BacktestEquityPoint:
    """The account at one candle's close: cash (quote) + position (base) x price."""

    at: datetime
    price: Decimal
    cash: Decimal
    position: Decimal
    equity: Decimal

    @classmethod
    def from_row(cls, row: PointRow) -> BacktestEquityPoint:
        return cls(
            at=row.at,
            price=row.price.normalize(),
            cash=row.cash.normalize(),
            position=row.position.normalize(),
            equity=row.equity.normalize(),
        )


@strawberry.type
class BacktestTrade:
    """A round trip, flat to flat (long only). Values before fees; pnl after them."""

    opened_at: datetime
    closed_at: datetime
    quantity: Decimal
    entry_value: Decimal
    exit_value: Decimal
    fees: Decimal
    pnl: Decimal

    @classmethod
    def from_row(cls, row: TradeRow) -> BacktestTrade:
        return cls(
            opened_at=row.opened_at,
            closed_at=row.closed_at,
            quantity=row.quantity.normalize(),
            entry_value=row.entry_value.normalize(),
            exit_value=row.exit_value.normalize(),
            fees=row.fees.normalize(),
            pnl=row.pnl.normalize(),
        )


@strawberry.enum(description="SUBMIT an order or CANCEL one.")
class BacktestDecisionAction(Enum):
    SUBMIT = SUBMIT
    CANCEL = CANCEL


@strawberry.type
class BacktestDecision:
    """What the strategy asked for at a candle's close, why, and the venue's answer."""

    at: datetime = strawberry.field(description="The candle's close.")
    candle: int = strawberry.field(description="The candle's index in the run, from 0.")
    action: BacktestDecisionAction
    client_order_id: str
    side: OrderSide | None = strawberry.field(description="A SUBMIT's.")  # type: ignore[valid-type]
    type: OrderType | None  # type: ignore[valid-type]
    quantity: Decimal | None
    price: Decimal | None = strawberry.field(description="A limit price.")
    reason: str = strawberry.field(description="The strategy's reason.")
    outcome: str = strawberry.field(description="OK, or the code of the venue's refusal.")

    @classmethod
    def from_row(cls, row: DecisionRow) -> BacktestDecision:
        return cls(
            at=row.at,
            candle=row.candle,
            action=BacktestDecisionAction(row.action),
            client_order_id=row.client_order_id,
            side=None if row.side is None else OrderSide(row.side),
            type=None if row.type is None else OrderType(row.type),
            quantity=_plain(row.quantity),
            price=_plain(row.price),
            reason=row.reason,
            outcome=row.outcome,
        )


@strawberry.type
class BacktestRiskEvent:
    """A refusal of an order by the backtest's risk limits (REFUSED), a limit an admitted
    order took to its warning ratio (WARNED, once a simulated day per limit), or a
    transition of its account's state (REDUCE, HALT, COOL_DOWN_OVER), at its simulated
    time."""

    at: datetime = strawberry.field(description="The close of the candle it happened at.")
    candle: int = strawberry.field(description="The candle's index in the run, from 0.")
    action: str = strawberry.field(description="REFUSED, WARNED, REDUCE, HALT or COOL_DOWN_OVER.")
    state: RiskState = strawberry.field(  # type: ignore[valid-type]
        description="The account's state after it (a refusal: as it was)."
    )
    limit: RiskLimitKind | None = strawberry.field(  # type: ignore[valid-type]
        description="The limit that bound or fired; null when a state refused the order."
    )
    value: Decimal | None = strawberry.field(description="Its figure.")
    client_order_id: str | None = strawberry.field(
        description="A refusal's order, or the order that took the limit to its warning."
    )
    reason: str = strawberry.field(
        description="The refusal's message, the warning's figure, the transition's reason."
    )

    @classmethod
    def from_row(cls, row: RiskEventRow) -> BacktestRiskEvent:
        return cls(
            at=row.at,
            candle=row.candle,
            action=row.action,
            state=RiskState(row.state),
            limit=None if row.limit_kind is None else RiskLimitKind(row.limit_kind),
            value=_plain(row.value),
            client_order_id=row.client_order_id,
            reason=row.reason,
        )


@strawberry.type
class BacktestRiskEventConnection(relay.Connection[BacktestRiskEvent]):
    """Risk events in the order they happened, paged by keyset cursor."""


@strawberry.type
class BacktestRiskLimit:
    """A risk limit the backtest ran under, as setRiskLimit took it."""

    scope: RiskScope  # type: ignore[valid-type]
    kind: RiskLimitKind  # type: ignore[valid-type]
    threshold: Decimal
    action: RiskAction  # type: ignore[valid-type]
    warn_ratio: Decimal
    cooldown_seconds: int | None

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> BacktestRiskLimit:
        return cls(
            scope=RiskScope(value["scope"]),
            kind=RiskLimitKind(value["kind"]),
            threshold=Decimal(value["threshold"]).normalize(),
            action=RiskAction(value["action"]),
            warn_ratio=Decimal(value["warnRatio"]).normalize(),
            cooldown_seconds=value["cooldownSeconds"],
        )


@strawberry.type
class BacktestDecisionConnection(relay.Connection[BacktestDecision]):
    """Decisions in the order they were made, paged by keyset cursor."""


@strawberry.type
class BacktestEquityPointConnection(relay.Connection[BacktestEquityPoint]):
    """Equity points in time order, paged by keyset cursor."""


@strawberry.type
class BacktestTradeConnection(relay.Connection[BacktestTrade]):
    """Round trips in time order, paged by keyset cursor."""


@strawberry.type
class BacktestSettings:
    path: BacktestPathMode
    volume_share: Decimal | None = strawberry.field(description="Null: no cap.")
    latency: int = strawberry.field(description="Candles from a decision to its arrival.")
    slippage_bps: int
    seed: int


@strawberry.type(name="Backtest")
class BacktestNode(relay.Node):
    """A strategy run over stored candles on the simulated venue. Visible to its owner."""

    id: relay.NodeID[int]
    status: BacktestStatus
    reason: str | None = strawberry.field(description="Why it FAILED.")
    strategy: BacktestStrategyKind
    parameters: strawberry.scalars.JSON = strawberry.field(
        description="The strategy's parameters (amounts as strings)."
    )
    symbol: str
    source: str
    interval: str
    start: datetime
    end: datetime
    settings: BacktestSettings
    balances: strawberry.scalars.JSON = strawberry.field(
        description="The starting balances by currency (amounts as strings)."
    )
    market: strawberry.scalars.JSON | None = strawberry.field(
        description="The market spec it ran on (ours, or one derived from the candles)."
    )
    candles_done: int
    candles_total: int = strawberry.field(description="0 until it is RUNNING.")
    attempts: int = strawberry.field(
        description="How many times it was started: a run whose server stopped is started"
        f" again from the start, by another server (at most {MAX_ATTEMPTS} times)."
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    stored_metrics: strawberry.Private[dict[str, Any] | None]
    stored_limits: strawberry.Private[list[dict[str, Any]]]

    @strawberry.field(description="The risk limits it ran under (none: no limits).")
    def risk_limits(self) -> list[BacktestRiskLimit]:
        return [BacktestRiskLimit.from_json(v) for v in self.stored_limits]

    @strawberry.field(
        description="Every order its risk limits refused and every transition of its"
        " account's risk state, with its simulated time and reason. Stored when DONE."
    )
    async def risk_events(
        self, info: Info, first: int = 100, after: str | None = None
    ) -> BacktestRiskEventConnection:
        key = page_key(self.id, first=first, after=after, key=RiskEventRow.id)
        page = await info.context.loaders.backtest_risk_event_page_by_key.load(key)
        return to_connection(BacktestRiskEventConnection, page, BacktestRiskEvent.from_row)  # type: ignore[return-value]

    @strawberry.field(description="Candles done / total, from 0 to 1.")
    def progress(self) -> Decimal:
        if not self.candles_total:
            return Decimal(1) if self.status is BacktestStatus.DONE else Decimal(0)
        return (
            (Decimal(self.candles_done) / Decimal(self.candles_total))
            .quantize(Decimal("0.0001"))
            .normalize()
        )

    @strawberry.field(description="Null until DONE.")
    def metrics(self) -> BacktestMetrics | None:
        if self.stored_metrics is None:
            return None
        return BacktestMetrics.from_metrics(metrics_from_json(self.stored_metrics))

    @strawberry.field(description="One point per candle, at its close, in time order.")
    async def equity_curve(
        self, info: Info, first: int = 100, after: str | None = None
    ) -> BacktestEquityPointConnection:
        key = page_key(self.id, first=first, after=after, key=PointRow.id)
        page = await info.context.loaders.backtest_equity_page_by_key.load(key)
        return to_connection(BacktestEquityPointConnection, page, BacktestEquityPoint.from_row)  # type: ignore[return-value]

    @strawberry.field(description="The round trips, in time order.")
    async def trades(
        self, info: Info, first: int = 100, after: str | None = None
    ) -> BacktestTradeConnection:
        key = page_key(self.id, first=first, after=after, key=TradeRow.id)
        page = await info.context.loaders.backtest_trade_page_by_key.load(key)
        return to_connection(BacktestTradeConnection, page, BacktestTrade.from_row)  # type: ignore[return-value]

    @strawberry.field(
        description="Every order the strategy submitted or cancelled, with its reason and"
        " the venue's answer, in the order made. Stored when the backtest is DONE."
    )
    async def decisions(
        self, info: Info, first: int = 100, after: str | None = None
    ) -> BacktestDecisionConnection:
        key = page_key(self.id, first=first, after=after, key=DecisionRow.id)
        page = await info.context.loaders.backtest_decision_page_by_key.load(key)
        return to_connection(BacktestDecisionConnection, page, BacktestDecision.from_row)  # type: ignore[return-value]

    @classmethod
    def from_row(cls, row: BacktestRow) -> BacktestNode:
        s = row.settings
        return cls(
            id=row.id,
            status=BacktestStatus(row.status),
            reason=row.reason,
            strategy=BacktestStrategyKind(row.strategy),
            parameters=row.parameters,
            symbol=row.symbol,
            source=row.source,
            interval=row.interval,
            start=row.start,
            end=row.end,
            settings=BacktestSettings(
                path=BacktestPathMode(s["path"]),
                volume_share=None if s["volumeShare"] is None else Decimal(s["volumeShare"]),
                latency=s["latency"],
                slippage_bps=s["slippageBps"],
                seed=s["seed"],
            ),
            balances=row.balances,
            market=row.market,
            candles_done=row.candles_done,
            candles_total=row.candles_total,
            attempts=row.attempts,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            stored_metrics=row.metrics,
            stored_limits=row.risk_limits,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[BacktestNode | None]:
        user_id = info.context.user_id
        rows = await info.context.loaders.backtest_by_id.load_many(node_keys(node_ids))
        return [cls.from_row(r) if r is not None and r.user_id == user_id else None for r in rows]


@strawberry.type
class BacktestConnection(relay.Connection[BacktestNode]):
    """Your backtests, newest first, paged by keyset cursor."""


@strawberry.type
class BacktestProgress:
    """A backtest's status and progress, as it changes."""

    id: strawberry.ID = strawberry.field(description="The Backtest's global ID.")
    status: BacktestStatus
    reason: str | None
    candles_done: int
    candles_total: int


@strawberry.input(description="Buy when the fast SMA of closes crosses above the slow one.")
class MovingAverageCrossoverInput:
    fast: int
    slow: int
    fraction: Decimal | None = strawberry.field(
        default=None, description="Of equity per entry, in (0, 1]; or give quantity."
    )
    quantity: Decimal | None = None


@strawberry.input(description="Buy `amount` of the quote currency every `every` candles.")
class DollarCostAveragingInput:
    amount: Decimal
    every: int
    take_profit: Decimal | None = strawberry.field(
        default=None, description="Sell all at the average cost x (1 + takeProfit)."
    )


@strawberry.input(
    description="What if you had copied this leader with these follow settings (those of"
    " followLeader; amounts in USDT): the leader's fills on the market over the period, copied"
    " as the live copier copies them (LIMIT IOC at the leader's price +- slippageTolerance),"
    " on the simulated venue. Source VENUE only; a PUBLIC leader, or yourself."
)
class CopyLeaderInput:
    leader_id: strawberry.ID = strawberry.field(description="A Leader's ID (or your own).")
    allocation: Decimal
    mode: FollowMode  # type: ignore[valid-type]
    fixed_amount: Decimal | None = None
    ratio: Decimal | None = None
    max_order_notional: Decimal | None = None
    max_position_per_asset: Decimal | None = None
    allowed_symbols: list[str] | None = None
    slippage_tolerance: Decimal = Decimal("0.01")
    stop_loss_percent: Decimal | None = None
    close_positions_on_stop_loss: bool = False


@strawberry.input
class RunBacktestInput:
    """One of movingAverage / dollarCostAveraging / copyLeader. Periods hold at most
    100000 candles."""

    symbol: str
    source: str = strawberry.field(description="file:<name>, exchange:<name> or VENUE.")
    interval: str
    start: datetime
    end: datetime
    moving_average: MovingAverageCrossoverInput | None = None
    dollar_cost_averaging: DollarCostAveragingInput | None = None
    copy_leader: CopyLeaderInput | None = None
    path: BacktestPathMode = BacktestPathMode.ADVERSE_FIRST
    volume_share: Decimal | None = strawberry.field(
        default=Decimal("0.1"), description="Of each candle's volume the account may trade."
    )
    latency: int = 1
    slippage_bps: int = 0
    seed: int = 0
    balance: Decimal = strawberry.field(
        default=Decimal(10_000), description="Starting balance of the quote currency."
    )
    maker_fee: Decimal | None = strawberry.field(
        default=None, description="Default: the market's (ours) or 0.001."
    )
    taker_fee: Decimal | None = None
    risk_limits: list[SetRiskLimitInput] = strawberry.field(
        default_factory=list,
        description="Risk limits the account trades under, as setRiskLimit takes them (scope"
        " ORDER, USER, MARKET or PLATFORM: all bind the one simulated account; amounts in"
        " the quote currency). Refusals and transitions: riskEvents.",
    )


@strawberry.type
class RunBacktestPayload:
    backtest: BacktestNode


RunBacktestResult: TypeAlias = Annotated[
    RunBacktestPayload
    | ValidationFailed
    | UnknownMarket
    | NotALeader
    | InvalidFollowParameters
    | InvalidRiskLimit
    | NotAuthenticated,
    strawberry.union("RunBacktestResult"),
]
BacktestResult: TypeAlias = Annotated[
    BacktestNode | NotFound | NotAuthenticated, strawberry.union("BacktestResult")
]
