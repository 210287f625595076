"""What ``previewBot`` and ``createBot`` answer (the pre-flight: the funding, a DCA bot's
ladder or a grid's levels at the market's last price, a quick backtest on stored
candles), the mutations' payloads and their result unions."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, TypeAlias

import strawberry

from app.bots import preview
from app.bots.domain.preflight import DcaPreflight, GridPreflight
from graphql_schema.backtesting.types import BacktestMetrics
from graphql_schema.bots.types import BotAmount, BotNode, amounts
from graphql_schema.errors import (
    BotNotFound,
    BotStopped,
    ExchangeKeyInvalid,
    ExchangeRateLimited,
    ExchangeUnavailable,
    GridSpacingBelowFees,
    InsufficientFunds,
    MarketHalted,
    NotAuthenticated,
    NotFound,
    UnknownMarket,
    UnsupportedExchange,
    ValidationFailed,
)


def _plain(value: Decimal) -> Decimal:
    return value.normalize()


@strawberry.type(description="One order of a DCA deal as the bot would place it.")
class DcaLadderRow:
    order: int = strawberry.field(description="0: the base order, then safety orders 1, 2 ...")
    deviation: Decimal = strawberry.field(description="Below the entry (0.02 = 2 %).")
    price: Decimal
    quantity: Decimal
    value: Decimal = strawberry.field(description="price x quantity, fees not included.")
    fee: Decimal
    position: Decimal = strawberry.field(description="What the deal holds once it filled.")
    cost: Decimal = strawberry.field(description="What the deal has paid then, fees included.")
    average_entry: Decimal = strawberry.field(description="Fees not included.")
    breakeven: Decimal = strawberry.field(description="Fees included, the exit's too.")
    take_profit: Decimal = strawberry.field(description="The first take-profit step's price.")


@strawberry.type
class DcaPreview:
    orders: list[DcaLadderRow]
    worst_case_capital: Decimal = strawberry.field(
        description="One deal with every safety order filled, its base order at its worst"
        " price, fees included."
    )
    all_deals_capital: Decimal = strawberry.field(description="That for maxActiveDeals deals.")

    @classmethod
    def of(cls, p: DcaPreflight) -> DcaPreview:
        return cls(
            orders=[
                DcaLadderRow(
                    order=r.order,
                    deviation=_plain(r.deviation),
                    price=_plain(r.price),
                    quantity=_plain(r.quantity),
                    value=_plain(r.value),
                    fee=_plain(r.fee),
                    position=_plain(r.position),
                    cost=_plain(r.cost),
                    average_entry=_plain(r.average_entry),
                    breakeven=_plain(r.breakeven),
                    take_profit=_plain(r.take_profit),
                )
                for r in p.rows
            ],
            worst_case_capital=_plain(p.worst_case_capital),
            all_deals_capital=_plain(p.all_deals_capital),
        )


@strawberry.type(description="A grid level: it buys at `buy` and sells at `sell`.")
class GridLevelPreview:
    buy: Decimal
    sell: Decimal
    profit_per_unit: Decimal = strawberry.field(description="Net of both maker fees.")
    profit_fraction: Decimal = strawberry.field(description="profitPerUnit / buy.")
    round_trip_profit: Decimal = strawberry.field(
        description="A round trip of quantityPerLevel, net of the fees as charged."
    )


@strawberry.type
class GridPreview:
    lines: list[Decimal]
    quantity_per_level: Decimal
    levels: list[GridLevelPreview]
    problem: str | None = strawberry.field(
        description="Why it would not start at the price (null: it would)."
    )

    @classmethod
    def of(cls, p: GridPreflight) -> GridPreview:
        return cls(
            lines=[_plain(line) for line in p.lines],
            quantity_per_level=_plain(p.quantity),
            levels=[
                GridLevelPreview(
                    buy=_plain(level.buy),
                    sell=_plain(level.sell),
                    profit_per_unit=_plain(level.profit),
                    profit_fraction=_plain(level.fraction.quantize(Decimal("1e-12"))),
                    round_trip_profit=_plain(trip),
                )
                for level, trip in zip(p.per_unit, p.round_trips, strict=True)
            ],
            problem=p.problem,
        )


@strawberry.type(
    description="The bot over the last candles the market data store holds of its symbol"
    " (1h when it can, at most 720), on the simulated venue, given what it would be funded"
    " with."
)
class BotBacktest:
    source: str
    symbol: str
    interval: str
    candles: int
    start: datetime
    end: datetime
    orders: int = strawberry.field(description="Orders it placed.")
    fills: int
    decisions: int
    metrics: BacktestMetrics
    risk_limits: int = strawberry.field(
        description="The risk limits it ran under: those its orders would meet (yours at"
        " ORDER and USER scope, its market's, the platform's; a paper bot's: none)."
    )
    risk_refusals: int = strawberry.field(description="Orders those limits refused.")
    risk_transitions: int = strawberry.field(
        description="Changes of state those limits caused (REDUCE, HALT, a cool-down's end)."
    )


@strawberry.type
class BotPreflight:
    price: Decimal | None = strawberry.field(description="The market's last price used.")
    funding: list[BotAmount] = strawberry.field(
        description="What the bot takes from your wallet, by currency: the most it can spend."
    )
    dca: DcaPreview | None
    grid: GridPreview | None
    problem: str | None = strawberry.field(description="Why there are no figures at a price.")
    backtest: BotBacktest | None
    backtest_skipped: str | None = strawberry.field(description="Why backtest is null.")

    @classmethod
    def of(cls, p: preview.Preview) -> BotPreflight:
        f, b = p.preflight, p.backtest
        return cls(
            price=None if f.price is None else _plain(f.price),
            funding=amounts(f.funding),
            dca=None if f.dca is None else DcaPreview.of(f.dca),
            grid=None if f.grid is None else GridPreview.of(f.grid),
            problem=f.problem,
            backtest=None
            if b is None
            else BotBacktest(
                source=b.source,
                symbol=b.symbol,
                interval=b.interval,
                candles=b.candles,
                start=b.start,
                end=b.end,
                orders=b.orders,
                fills=b.fills,
                decisions=b.decisions,
                metrics=BacktestMetrics.from_metrics(b.metrics),
                risk_limits=b.risk_limits,
                risk_refusals=b.risk_refusals,
                risk_transitions=b.risk_transitions,
            ),
            backtest_skipped=p.backtest_skipped,
        )


@strawberry.type
class CreateBotPayload:
    bot: BotNode
    preflight: BotPreflight
    webhook_url: str | None = strawberry.field(description="Null: the bot takes no alerts.")
    webhook_secret: str | None = strawberry.field(
        description="Shown once, here only: put it in each alert's JSON as `secret`."
    )


@strawberry.type
class BotPayload:
    bot: BotNode


# an exchange bot's account and market are checked at its exchange too
_EXCHANGE_ERRORS = (
    NotFound | UnsupportedExchange | ExchangeUnavailable | ExchangeKeyInvalid
    | ExchangeRateLimited
)  # fmt: skip
_SETTINGS_ERRORS = (
    ValidationFailed | NotAuthenticated | UnknownMarket | MarketHalted | GridSpacingBelowFees
    | _EXCHANGE_ERRORS
)  # fmt: skip
CreateBotResult: TypeAlias = Annotated[
    CreateBotPayload | _SETTINGS_ERRORS | InsufficientFunds, strawberry.union("CreateBotResult")
]
PreviewBotResult: TypeAlias = Annotated[
    BotPreflight | _SETTINGS_ERRORS, strawberry.union("PreviewBotResult")
]
BotResult: TypeAlias = Annotated[
    BotPayload | BotNotFound | BotStopped | ValidationFailed | NotAuthenticated,
    strawberry.union("BotResult"),
]
