"""A bot's kind, settings and markets as its machine (pure): what the service stores and
what it runs.

``BotSpec`` is what a bot is made of: its kind, validated settings, its markets and
what it starts with (``allocation``: the amounts moved into its sub-account, by
currency). ``machine`` builds the state machine for a stored bot; ``funding`` is what a
new bot needs from its owner's wallet, the most it can ever spend:

    DCA        per deal its base order and every safety order, each with the larger
               fee rate and a minor unit for the fee's rounding, times the deals that
               may be active at once
    GRID       its investment (fees included)
    SIGNAL     its budget (fees included)
    REBALANCE  the holdings it is given
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from app.bots.domain import codec
from app.bots.domain.dca import DcaBot, DcaState
from app.bots.domain.dca_settings import DcaSettings, deal_budget, validate_dca
from app.bots.domain.errors import refuse
from app.bots.domain.grid import GridBot, GridState
from app.bots.domain.grid_settings import GridSettings, validate_grid
from app.bots.domain.rebalance import (
    Holding,
    RebalanceBot,
    RebalanceSettings,
    RebalanceState,
    validate_rebalance,
)
from app.bots.domain.runtime import MAX_AMOUNT, Bot, BotKind, ceil_to, max_fee
from app.bots.domain.signal_bot import SignalBot, SignalSettings, SignalState, validate_signal
from app.trading.domain.orders import MarketSpec

Settings = DcaSettings | GridSettings | SignalSettings | RebalanceSettings
State = DcaState | GridState | SignalState | RebalanceState

SETTINGS: Mapping[BotKind, type[Any]] = {
    BotKind.DCA: DcaSettings,
    BotKind.GRID: GridSettings,
    BotKind.SIGNAL: SignalSettings,
    BotKind.REBALANCE: RebalanceSettings,
}
STATES: Mapping[BotKind, type[Any]] = {
    BotKind.DCA: DcaState,
    BotKind.GRID: GridState,
    BotKind.SIGNAL: SignalState,
    BotKind.REBALANCE: RebalanceState,
}
MAX_NAME_LENGTH = 80


@dataclass(frozen=True, slots=True)
class BotSpec:
    kind: BotKind
    name: str
    settings: Settings
    markets: tuple[MarketSpec, ...]  # the first is the bot's market (a rebalance bot: all)
    allocation: tuple[Holding, ...] = ()  # REBALANCE: what it is given

    @property
    def quote(self) -> str:
        return self.markets[0].quote

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(m.symbol for m in self.markets)


def valid_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME_LENGTH or not name.isprintable():
        refuse("name", f"A name of 1 to {MAX_NAME_LENGTH} printable characters")
    return name


def validate(spec: BotSpec) -> BotSpec:
    """``spec`` if allowed, else ``ValidationFailed`` (or the kind's own error)."""
    name = valid_name(spec.name)
    if spec.kind is BotKind.REBALANCE:
        assert isinstance(spec.settings, RebalanceSettings)
        validate_rebalance(spec.settings, {m.symbol: m for m in spec.markets})
        _allocation(spec)
    else:
        if len(spec.markets) != 1:
            refuse("symbol", "A bot of this kind trades one market")
        market = spec.markets[0]
        if isinstance(spec.settings, DcaSettings):
            validate_dca(spec.settings, market)
        elif isinstance(spec.settings, GridSettings):
            validate_grid(spec.settings, market)
        elif isinstance(spec.settings, SignalSettings):
            validate_signal(spec.settings)
    if not isinstance(spec.settings, SETTINGS[spec.kind]):
        refuse("settings", f"Settings of a {spec.kind.value} bot")
    return BotSpec(spec.kind, name, spec.settings, spec.markets, spec.allocation)


def _allocation(spec: BotSpec) -> None:
    assert isinstance(spec.settings, RebalanceSettings)
    assets = {t.asset for t in spec.settings.targets} | {spec.settings.quote}
    seen: set[str] = set()
    for holding in spec.allocation:
        if holding.asset not in assets or holding.asset in seen:
            refuse("allocation", "One amount per asset of the targets (or the quote)")
        if not holding.quantity.is_finite() or not 0 <= holding.quantity <= MAX_AMOUNT:
            refuse("allocation", f"Amounts between 0 and {MAX_AMOUNT}")
        seen.add(holding.asset)
    if not any(h.quantity > 0 for h in spec.allocation):
        refuse("allocation", "Something to rebalance: an amount above 0")


def funding(spec: BotSpec) -> dict[str, Decimal]:
    """What the bot's sub-account is given from its owner's wallet, by currency."""
    s, market = spec.settings, spec.markets[0]
    if isinstance(s, DcaSettings):
        orders = s.max_safety_orders + 1
        per_deal = deal_budget(s) * (1 + max_fee(market)) + orders * market.quote_unit
        return {market.quote: ceil_to(per_deal * s.max_active_deals, market.quote_unit)}
    if isinstance(s, GridSettings):
        return {market.quote: s.investment}
    if isinstance(s, SignalSettings):
        return {market.quote: s.budget}
    return {h.asset: h.quantity for h in spec.allocation if h.quantity > 0}


def machine(
    kind: BotKind,
    bot_id: int,
    settings: Settings,
    markets: tuple[MarketSpec, ...],
    allocation: tuple[Holding, ...] = (),
) -> Bot[Any]:
    if isinstance(settings, DcaSettings):
        return cast(Bot[Any], DcaBot(bot_id, markets[0], settings))
    if isinstance(settings, GridSettings):
        return cast(Bot[Any], GridBot(bot_id, markets[0], settings))
    if isinstance(settings, SignalSettings):
        return cast(Bot[Any], SignalBot(bot_id, markets[0], settings))
    return cast(Bot[Any], RebalanceBot(bot_id, markets, settings, allocation))


def read_settings(kind: BotKind, data: Any) -> Settings:
    settings: Settings = codec.from_json(SETTINGS[kind], data)
    return settings


def read_state(kind: BotKind, data: Any) -> State:
    state: State = codec.from_json(STATES[kind], data)
    return state
