"""``createBot`` / ``previewBot``'s input: a name, exactly one kind's settings (``dca``,
``grid``, ``signal`` or ``rebalance``), the symbol, a rebalance bot's allocation, an
alert-driven bot's IP allowlist, ``paper`` (play money on a paper account of its
own) and ``exchangeAccountId`` (on one of your connected exchange accounts).
Percentages are fractions (0.01 = 1 %), amounts are in the quote currency, durations
whole seconds. ``to_request`` makes the service's ``BotRequest``; the settings' limits
are checked there (``ValidationFailed`` naming the input field)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import strawberry

from app.bots.domain import dca_settings, grid_settings, rebalance
from app.bots.domain.machines import Settings
from app.bots.domain.signal_bot import SignalSettings
from app.bots.preview import BotRequest
from app.core.errors import ValidationFailed
from graphql_schema.bots.types import (
    DcaStartCondition,
    GridAtBounds,
    GridSpacing,
    RebalanceTrigger,
)
from graphql_schema.exchanges.types import EXCHANGE_ACCOUNT
from graphql_schema.ids import node_pk

KIND_FIELDS = ("dca", "grid", "signal", "rebalance")


def _seconds(value: int) -> timedelta:
    return timedelta(seconds=value)  # GraphQL Int: 32 bits, so always a timedelta


@strawberry.input(description="A take-profit step: sell `share` of the position at `profit`.")
class TakeProfitStepInput:
    profit: Decimal = strawberry.field(description="Above the average entry (0.01 = 1 %).")
    share: Decimal = strawberry.field(description="Of the position; the shares add up to 1.")


@strawberry.input(
    description="A DCA bot: each deal buys `baseOrder` at market, then rests safety orders"
    " below the entry and a take-profit above its average entry."
)
class DcaSettingsInput:
    base_order: Decimal
    max_safety_orders: int = 0
    safety_order: Decimal | None = strawberry.field(
        default=None, description="The first safety order's size; needed with safety orders."
    )
    max_active_safety_orders: int | None = strawberry.field(
        default=None, description="Resting at once; default maxSafetyOrders."
    )
    price_deviation: Decimal | None = strawberry.field(
        default=None, description="The first safety order's distance below the entry."
    )
    step_scale: Decimal = Decimal(1)
    volume_scale: Decimal = Decimal(1)
    take_profit: list[TakeProfitStepInput] | None = strawberry.field(
        default=None, description="Default: one step selling it all at 1 % profit."
    )
    trailing_deviation: Decimal | None = None
    stop_loss: Decimal | None = strawberry.field(
        default=None, description="Sell everything this far below the average entry."
    )
    max_active_deals: int = 1
    cooldown_seconds: int = 0
    start: DcaStartCondition = DcaStartCondition.IMMEDIATELY  # type: ignore[valid-type]
    max_slippage_bps: int = 100

    def to_settings(self) -> dca_settings.DcaSettings:
        steps = (
            (dca_settings.TakeProfitStep(Decimal("0.01"), Decimal(1)),)
            if self.take_profit is None
            else tuple(dca_settings.TakeProfitStep(s.profit, s.share) for s in self.take_profit)
        )
        if self.max_safety_orders and (self.safety_order is None or self.price_deviation is None):
            field = "safetyOrder" if self.safety_order is None else "priceDeviation"
            raise ValidationFailed("Needed when the bot has safety orders", field=field)
        return dca_settings.DcaSettings(
            base_order=self.base_order,
            safety_order=self.safety_order or Decimal(0),
            max_safety_orders=self.max_safety_orders,
            max_active_safety_orders=(
                self.max_safety_orders
                if self.max_active_safety_orders is None
                else self.max_active_safety_orders
            ),
            price_deviation=self.price_deviation or Decimal(0),
            step_scale=self.step_scale,
            volume_scale=self.volume_scale,
            take_profit=steps,
            trailing_deviation=self.trailing_deviation,
            stop_loss=self.stop_loss,
            max_active_deals=self.max_active_deals,
            cooldown=_seconds(self.cooldown_seconds),
            start=dca_settings.StartCondition(self.start.value),
            max_slippage_bps=self.max_slippage_bps,
        )


@strawberry.input(
    description="A grid bot: `levels` price lines from `lower` to `upper`; each level buys"
    " at its lower line and sells at its upper one, `investment` spread over them."
)
class GridSettingsInput:
    lower: Decimal
    upper: Decimal
    levels: int = strawberry.field(description="Price lines, lower and upper included.")
    investment: Decimal = strawberry.field(description="Fees included.")
    spacing: GridSpacing = GridSpacing.ARITHMETIC  # type: ignore[valid-type]
    at_bounds: GridAtBounds = GridAtBounds.WAIT  # type: ignore[valid-type]
    max_slippage_bps: int = 100

    def to_settings(self) -> grid_settings.GridSettings:
        return grid_settings.GridSettings(
            lower=self.lower,
            upper=self.upper,
            levels=self.levels,
            investment=self.investment,
            spacing=grid_settings.Spacing(self.spacing.value),
            at_bounds=grid_settings.AtBounds(self.at_bounds.value),
            max_slippage_bps=self.max_slippage_bps,
        )


@strawberry.input(
    description="A signal bot: buys and sells at market on the TradingView alerts its"
    " webhook receives, within `budget`."
)
class SignalSettingsInput:
    amount: Decimal = strawberry.field(description="Spent per BUY (unless the alert says).")
    budget: Decimal = strawberry.field(description="The most its position may cost.")
    max_lag_seconds: int = strawberry.field(
        default=60, description="Older alerts are dropped (1 second to a day)."
    )
    use_alert_size: bool = True
    max_slippage_bps: int = 100

    def to_settings(self) -> SignalSettings:
        return SignalSettings(
            amount=self.amount,
            budget=self.budget,
            max_lag=_seconds(self.max_lag_seconds),
            use_alert_size=self.use_alert_size,
            max_slippage_bps=self.max_slippage_bps,
        )


@strawberry.input
class RebalanceTargetInput:
    asset: str
    weight: Decimal = strawberry.field(description="Of the value (0.5 = half).")


@strawberry.input(
    description="A rebalance bot: holds its assets at target weights of their value in"
    " `quote`, trading each on `<asset>/<quote>`."
)
class RebalanceSettingsInput:
    quote: str
    targets: list[RebalanceTargetInput]
    trigger: RebalanceTrigger  # type: ignore[valid-type]
    threshold: Decimal | None = strawberry.field(
        default=None, description="THRESHOLD: a weight this far off its target (0.05)."
    )
    period_seconds: int | None = strawberry.field(default=None, description="PERIOD.")
    min_trade: Decimal = Decimal(0)
    max_slippage_bps: int = 100

    def to_settings(self) -> rebalance.RebalanceSettings:
        return rebalance.RebalanceSettings(
            quote=self.quote.strip().upper(),
            targets=tuple(
                rebalance.Target(t.asset.strip().upper(), t.weight) for t in self.targets
            ),
            trigger=rebalance.RebalanceTrigger(self.trigger.value),
            threshold=self.threshold,
            period=None if self.period_seconds is None else _seconds(self.period_seconds),
            min_trade=self.min_trade,
            max_slippage_bps=self.max_slippage_bps,
        )


@strawberry.input
class BotAmountInput:
    currency: str
    amount: Decimal


@strawberry.input(
    description="Exactly one of dca, grid, signal and rebalance. `symbol` for the first"
    " three; a rebalance bot trades its targets' markets and is given `allocation`."
)
class CreateBotInput:
    name: str
    symbol: str | None = None
    dca: DcaSettingsInput | None = None
    grid: GridSettingsInput | None = None
    signal: SignalSettingsInput | None = None
    rebalance: RebalanceSettingsInput | None = None
    allocation: list[BotAmountInput] | None = strawberry.field(
        default=None, description="REBALANCE: what it is given from your wallet, by currency."
    )
    ip_allowlist: list[str] | None = strawberry.field(
        default=None,
        description="An alert-driven bot (SIGNAL, or DCA started by SIGNAL): the addresses"
        " or networks its webhook takes alerts from (default: any).",
    )
    paper: bool = strawberry.field(
        default=False,
        description="Trade play money on a paper account of its own (yours, on the bot's"
        " one market, opened with what the bot would take from your wallet) instead of"
        " your money: nothing leaves your wallet. Beyond the paper limits (10000000 per"
        " currency at its scale, 10 open paper accounts) or over several markets:"
        " ValidationFailed on `paper`.",
    )
    exchange_account_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="Trade on this connected exchange account of yours (an ExchangeAccount"
        " id), on the exchange's market `symbol` (e.g. BTC/USDT), with the money you hold"
        " there: nothing leaves your wallet; the bot's budget (baseOrder and safety"
        " orders, investment, budget) bounds what its orders commit. DCA, GRID and SIGNAL"
        " bots. Not yours or disconnected: NotFound; suspended, or with `paper`:"
        " ValidationFailed; a symbol the exchange does not list: UnknownMarket; all on"
        " `exchangeAccountId` or `symbol`.",
    )

    def to_request(self) -> BotRequest:
        return BotRequest(
            name=self.name,
            settings=self._settings(),
            symbol=self.symbol,
            allocation=tuple(
                rebalance.Holding(a.currency.strip().upper(), a.amount)
                for a in self.allocation or ()
            ),
            ip_allowlist=tuple(self.ip_allowlist or ()),
            paper=self.paper,
            exchange_account_id=(
                None
                if self.exchange_account_id is None
                else node_pk(
                    str(self.exchange_account_id), EXCHANGE_ACCOUNT, field="exchangeAccountId"
                )
            ),
        )

    def _settings(self) -> Settings:
        given = [(name, getattr(self, name)) for name in KIND_FIELDS]
        chosen = [(name, value) for name, value in given if value is not None]
        if len(chosen) != 1:
            field = chosen[1][0] if chosen else KIND_FIELDS[0]
            raise ValidationFailed(
                "Give the settings of one kind: dca, grid, signal or rebalance", field=field
            )
        settings: Settings = chosen[0][1].to_settings()
        return settings
