"""What a backtest is made of, validated (pure): the strategy and its parameters, the
simulation settings, the market spec of a symbol that is no market of ours, and the
inputs of one run (``RunInputs``: only plain, picklable values, so a run can go to a
thread, a process or another machine).

Limits (each refusal is a ``ValidationFailed`` naming the field; nothing is written):

    MA     1 <= fast < slow <= MAX_WINDOW; a fraction of equity in (0, 1] or a fixed
           quantity in (0, MAX_AMOUNT] (one of them)
    DCA    amount in (0, MAX_AMOUNT], every 1 .. MAX_EVERY candles, a take-profit in
           (0, MAX_TAKE_PROFIT]
    COPY   a leader's user id, and the follow settings a real follow takes
           (``app.social.domain.social.validate_follow``: ``InvalidFollowParameters``);
           the leader's fills (``history``) are loaded by the service, not stored
    settings   volume share in (0, 1] (or none: no cap), latency 0 .. MAX_LATENCY
               candles, slippage 0 .. MAX_SLIPPAGE_BPS, seed 0 .. 2^63 - 1
    balance    (0, MAX_AMOUNT] of the quote currency; fees in [0, MAX_FEE]
    limits     risk limits (``backtest_limits``): at most MAX_LIMITS, each valid as the
               live ``setRiskLimit`` takes it (``check_limit``: ``InvalidRiskLimit``), at
               a scope the simulated account has (ORDER, USER, MARKET, PLATFORM), one
               per kind and scope
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from app.backtesting.domain.copying import CopyLeader, LeaderTrade
from app.backtesting.domain.runner import RunResult, run_backtest
from app.backtesting.domain.strategies import (
    DollarCostAveraging,
    MovingAverageCrossover,
    Strategy,
)
from app.core.errors import ValidationFailed
from app.risk.domain.errors import InvalidRiskLimit
from app.risk.domain.limits import DEFAULT_WARN_RATIO, Action, Limit, LimitKind, check_limit
from app.risk.domain.states import Scope, ScopeRef
from app.social.domain.social import FollowMode, FollowParameters, validate_follow
from app.trading.domain.orders import MarketSpec
from app.venues.domain.paths import Candle, PathMode
from app.venues.domain.simulated import SimulationSettings

MAX_WINDOW = 10_000
MAX_EVERY = 100_000
MAX_AMOUNT = Decimal("1000000000000000")  # 1e15
MAX_TAKE_PROFIT = Decimal(10)  # +1000 %
MAX_LATENCY = 1_000
MAX_SLIPPAGE_BPS = 1_000
MAX_SEED = 2**63 - 1
MAX_FEE = Decimal("0.1")
DEFAULT_FEE = Decimal("0.001")  # 0.1 %, maker and taker, for a symbol that is no market of ours
DERIVED_BASE_SCALE = 8  # a derived market's lot: 10^-8 of the base
MAX_PRICE_DECIMALS = 12
MAX_LIMITS = 20  # risk limits per backtest
BACKTEST_SCOPES = (Scope.ORDER, Scope.USER, Scope.MARKET, Scope.PLATFORM)


class StrategyKind(StrEnum):
    MA = "MA"  # moving average crossover
    DCA = "DCA"  # dollar-cost averaging
    COPY = "COPY"  # copy a leader's fills (the copy-trading what-if)


@dataclass(frozen=True, slots=True)
class MovingAverageParameters:
    fast: int
    slow: int
    fraction: Decimal | None = None
    quantity: Decimal | None = None

    kind = StrategyKind.MA

    def __post_init__(self) -> None:
        _whole(self.fast, "fast", 1, MAX_WINDOW)
        _whole(self.slow, "slow", 1, MAX_WINDOW)
        if self.fast >= self.slow:
            raise ValidationFailed("fast must be below slow", field="fast")
        if (self.fraction is None) == (self.quantity is None):
            raise ValidationFailed("give a fraction or a quantity (one)", field="fraction")
        if self.fraction is not None:
            _amount(self.fraction, "fraction", Decimal(1))
        if self.quantity is not None:
            _amount(self.quantity, "quantity", MAX_AMOUNT)

    def build(self, market: MarketSpec) -> Strategy:
        return MovingAverageCrossover(
            market, fast=self.fast, slow=self.slow, fraction=self.fraction, quantity=self.quantity
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "fast": self.fast,
            "slow": self.slow,
            "fraction": _text(self.fraction),
            "quantity": _text(self.quantity),
        }


@dataclass(frozen=True, slots=True)
class DollarCostParameters:
    amount: Decimal
    every: int
    take_profit: Decimal | None = None

    kind = StrategyKind.DCA

    def __post_init__(self) -> None:
        _amount(self.amount, "amount", MAX_AMOUNT)
        _whole(self.every, "every", 1, MAX_EVERY)
        if self.take_profit is not None:
            _amount(self.take_profit, "takeProfit", MAX_TAKE_PROFIT)

    def build(self, market: MarketSpec) -> Strategy:
        return DollarCostAveraging(
            market, quote_amount=self.amount, every=self.every, take_profit=self.take_profit
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "amount": str(self.amount),
            "every": self.every,
            "takeProfit": _text(self.take_profit),
        }


@dataclass(frozen=True, slots=True)
class CopyLeaderParameters:
    """Copy ``leader_id`` with the settings of a follow. ``history``, the leader's fills
    over the period, is loaded by the service (``app.backtesting.leader_history``) before
    the run: it is neither stored nor compared."""

    leader_id: int
    follow: FollowParameters
    history: tuple[LeaderTrade, ...] = field(default=(), compare=False, repr=False)

    kind = StrategyKind.COPY

    def __post_init__(self) -> None:
        _whole(self.leader_id, "leaderId", 1, MAX_SEED)
        object.__setattr__(self, "follow", validate_follow(self.follow))

    def with_history(self, history: tuple[LeaderTrade, ...]) -> CopyLeaderParameters:
        return replace(self, history=history)

    def build(self, market: MarketSpec) -> Strategy:
        return CopyLeader(market, follow=self.follow, history=self.history)

    def as_json(self) -> dict[str, Any]:
        f = self.follow
        return {
            "leaderId": self.leader_id,
            "allocation": str(f.allocation),
            "mode": f.mode.value,
            "fixedAmount": _text(f.fixed_amount),
            "ratio": _text(f.ratio),
            "maxOrderNotional": _text(f.max_order_notional),
            "maxPositionPerAsset": _text(f.max_position_per_asset),
            "allowedSymbols": None if f.allowed_symbols is None else list(f.allowed_symbols),
            "slippageTolerance": str(f.slippage_tolerance),
            "stopLossPercent": _text(f.stop_loss_percent),
            "closePositionsOnStopLoss": f.close_positions_on_stop_loss,
        }


StrategyParameters = MovingAverageParameters | DollarCostParameters | CopyLeaderParameters


def parameters_from_json(kind: str, values: Mapping[str, Any]) -> StrategyParameters:
    """The parameters stored by ``as_json`` (validated again)."""
    if kind == StrategyKind.MA:
        return MovingAverageParameters(
            values["fast"], values["slow"], _decimal(values["fraction"]),
            _decimal(values["quantity"]),
        )  # fmt: skip
    if kind == StrategyKind.COPY:
        symbols = values["allowedSymbols"]
        follow = FollowParameters(
            allocation=Decimal(values["allocation"]),
            mode=FollowMode(values["mode"]),
            fixed_amount=_decimal(values["fixedAmount"]),
            ratio=_decimal(values["ratio"]),
            max_order_notional=_decimal(values["maxOrderNotional"]),
            max_position_per_asset=_decimal(values["maxPositionPerAsset"]),
            allowed_symbols=None if symbols is None else tuple(symbols),
            slippage_tolerance=Decimal(values["slippageTolerance"]),
            stop_loss_percent=_decimal(values["stopLossPercent"]),
            close_positions_on_stop_loss=values["closePositionsOnStopLoss"],
        )
        return CopyLeaderParameters(values["leaderId"], follow)
    return DollarCostParameters(
        Decimal(values["amount"]), values["every"], _decimal(values["takeProfit"])
    )


def simulation_settings(
    *,
    path: PathMode = PathMode.ADVERSE_FIRST,
    volume_share: Decimal | None = Decimal("0.1"),
    latency: int = 1,
    slippage_bps: int = 0,
    seed: int = 0,
) -> SimulationSettings:
    """Validated ``SimulationSettings``."""
    if volume_share is not None:
        _amount(volume_share, "volumeShare", Decimal(1))
    _whole(latency, "latency", 0, MAX_LATENCY)
    _whole(slippage_bps, "slippageBps", 0, MAX_SLIPPAGE_BPS)
    _whole(seed, "seed", 0, MAX_SEED)
    return SimulationSettings(path, volume_share, latency, slippage_bps, seed)


def settings_json(settings: SimulationSettings) -> dict[str, Any]:
    return {
        "path": settings.path.value,
        "volumeShare": _text(settings.volume_share),
        "latency": settings.latency,
        "slippageBps": settings.slippage_bps,
        "seed": settings.seed,
    }


def settings_from_json(values: Mapping[str, Any]) -> SimulationSettings:
    return SimulationSettings(
        PathMode(values["path"]), _decimal(values["volumeShare"]), values["latency"],
        values["slippageBps"], values["seed"],
    )  # fmt: skip


def check_balance(balance: Decimal) -> Decimal:
    return _amount(balance, "balance", MAX_AMOUNT)


def check_fee(fee: Decimal | None, field: str) -> Decimal | None:
    if fee is not None and not (0 <= fee <= MAX_FEE and fee.is_finite()):
        raise ValidationFailed(f"{field} is a rate from 0 to {MAX_FEE}", field=field)
    return fee


def derived_market(
    symbol: str,
    candles: Iterable[Candle],
    *,
    maker_fee: Decimal | None = None,
    taker_fee: Decimal | None = None,
) -> MarketSpec:
    """The spec of a symbol that is no market of ours: the tick is the finest price step
    the candles show (at least 0.01, at most 10^-12), the lot 10^-8 of the base, no
    minimum notional, fees DEFAULT_FEE (0.1 %) unless given; the quote's scale makes
    every fill value exact (tick decimals + 8)."""
    decimals = 2
    for c in candles:
        for price in (c.open, c.high, c.low, c.close):
            exponent = price.normalize().as_tuple().exponent
            if isinstance(exponent, int):
                decimals = max(decimals, -exponent)
    decimals = min(decimals, MAX_PRICE_DECIMALS)
    base, quote = symbol.split("/")
    return MarketSpec(
        symbol=symbol,
        base=base,
        quote=quote,
        base_scale=DERIVED_BASE_SCALE,
        quote_scale=decimals + DERIVED_BASE_SCALE,
        tick_size=Decimal(1).scaleb(-decimals),
        lot_size=Decimal(1).scaleb(-DERIVED_BASE_SCALE),
        min_notional=Decimal(0),
        maker_fee=DEFAULT_FEE if maker_fee is None else maker_fee,
        taker_fee=DEFAULT_FEE if taker_fee is None else taker_fee,
    )


def market_json(market: MarketSpec) -> dict[str, Any]:
    return {
        "symbol": market.symbol,
        "base": market.base,
        "quote": market.quote,
        "baseScale": market.base_scale,
        "quoteScale": market.quote_scale,
        "tickSize": str(market.tick_size),
        "lotSize": str(market.lot_size),
        "minNotional": str(market.min_notional),
        "makerFee": str(market.maker_fee),
        "takerFee": str(market.taker_fee),
    }


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """A risk limit as ``setRiskLimit`` takes it, for a backtest's account."""

    scope: Scope
    kind: LimitKind
    threshold: Decimal
    action: Action = Action.BLOCK_ENTRIES
    warn_ratio: Decimal = DEFAULT_WARN_RATIO
    cooldown_seconds: int | None = None


def backtest_limits(specs: Iterable[LimitSpec]) -> tuple[Limit, ...]:
    """The limits a backtest's account trades under (``protections``), checked as the live
    ones are; ids by position."""
    wanted = list(specs)
    if len(wanted) > MAX_LIMITS:
        raise ValidationFailed(f"At most {MAX_LIMITS} risk limits", field="riskLimits")
    seen: set[tuple[Scope, LimitKind]] = set()
    limits = []
    for i, spec in enumerate(wanted, start=1):
        if spec.scope not in BACKTEST_SCOPES:
            where = ", ".join(s.value for s in BACKTEST_SCOPES)
            raise InvalidRiskLimit(f"A backtest's limits are set at {where}", field="scope")
        check_limit(
            scope=spec.scope,
            kind=spec.kind,
            threshold=spec.threshold,
            action=spec.action,
            warn_ratio=spec.warn_ratio,
            cooldown_seconds=spec.cooldown_seconds,
        )
        if (spec.scope, spec.kind) in seen:
            raise InvalidRiskLimit(
                f"One {spec.kind.value} limit per scope ({spec.scope.value})", field="kind"
            )
        seen.add((spec.scope, spec.kind))
        limits.append(
            Limit(
                id=i,
                ref=ScopeRef(spec.scope, 0),
                kind=spec.kind,
                threshold=spec.threshold,
                action=spec.action,
                warn_ratio=spec.warn_ratio,
                cooldown_seconds=spec.cooldown_seconds,
            )
        )
    return tuple(limits)


def limits_json(limits: Iterable[Limit]) -> list[dict[str, Any]]:
    return [
        {
            "scope": lim.ref.scope.value,
            "kind": lim.kind.value,
            "threshold": str(lim.threshold),
            "action": lim.action.value,
            "warnRatio": str(lim.warn_ratio),
            "cooldownSeconds": lim.cooldown_seconds,
        }
        for lim in limits
    ]


def limits_from_json(values: Iterable[Mapping[str, Any]]) -> tuple[Limit, ...]:
    """The limits stored by ``limits_json`` (checked again)."""
    return backtest_limits(
        LimitSpec(
            Scope(v["scope"]),
            LimitKind(v["kind"]),
            Decimal(v["threshold"]),
            Action(v["action"]),
            Decimal(v["warnRatio"]),
            v["cooldownSeconds"],
        )
        for v in values
    )


@dataclass(frozen=True, slots=True)
class RunInputs:
    """Everything one run needs, plain and picklable."""

    strategy: StrategyParameters
    candles: tuple[Candle, ...]
    market: MarketSpec
    balances: Mapping[str, Decimal]
    settings: SimulationSettings
    bar: timedelta | None = None  # the bar length for annualising (``run_backtest``)
    limits: tuple[Limit, ...] = ()  # risk limits (``backtest_limits``)


def run(inputs: RunInputs, progress: Callable[[int], None] | None = None) -> RunResult:
    return run_backtest(
        inputs.strategy.build(inputs.market),
        inputs.candles,
        market=inputs.market,
        balances=inputs.balances,
        settings=inputs.settings,
        progress=progress,
        bar=inputs.bar,
        limits=inputs.limits,
    )


def _whole(value: int, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationFailed(f"{field} is a whole number from {low} to {high}", field=field)
    return value


def _amount(value: Decimal, field: str, high: Decimal) -> Decimal:
    if not value.is_finite() or not 0 < value <= high:
        raise ValidationFailed(f"{field} is above 0 and at most {high}", field=field)
    return value


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)
