"""Before a bot is made: its settings checked against its markets, the pre-flight figures
at its market's last price, and a quick backtest on stored candles. ``preview_bot``
only shows them (``previewBot``); ``create_bot`` shows them and makes the bot
(``createBot``, through ``bots.create_bot``).

A ``BotRequest`` is what a client asks for: a name, one kind's settings (the kind is
the settings' type), the symbol it trades (a rebalance bot: none, its markets are
``<asset>/<quote>`` of its targets), what a rebalance bot is given, and the sources its
webhook takes alerts from (an alert-driven bot only: SIGNAL, or DCA started by alerts),
whether it is a paper bot (``paper``: ``bots.create_bot(paper=True)``, play money on
a paper account of its own), or one on the owner's connected exchange account
(``exchange_account_id``: its market checked there, ``exchange_markets``; its prices
the exchange's; no quick backtest). Every check refuses with nothing written:
``ValidationFailed`` naming the input field, ``UnknownMarket`` / ``MarketHalted``,
``GridSpacingBelowFees``. A paper bot's pre-flight is a live bot's; what its paper
account could not hold (several markets, play money beyond the paper caps) is refused
on ``paper`` by the preview too (``paper_checks``); the open paper accounts are counted
only when it is made (as the funds of a live bot are only taken then).

Pre-flight (``Preflight``): what the bot takes from its owner's wallet, by currency
(``machines.funding``); at the market's last price, a DCA bot's ladder
(``preflight.dca_preflight``) or a grid's lines and profit per level
(``preflight.grid_preflight``); ``problem`` says why there are no figures at a price (the
market has not traded yet).

Quick backtest (``QuickBacktest``): the bot's machine through ``run_backtest`` on the
simulated venue (default simulation settings: latency one candle, 10 % of each candle's
volume), given what it would be funded with, under the risk limits its orders would meet
(``trading_limits``: its owner's ORDER and USER limits, its market's and the platform's,
checked by the backtest's protections as the placement checks them; a paper bot's:
none), over the last ``QUICK_CANDLES`` candles the market data store holds of its
symbol: 1h candles (merged from a finer interval when that is what is held) from the
source whose candles are the most recent, else that source's finest interval. Bounded
so that ``createBot`` answers at once: at most ``QUICK_CANDLES`` candles, read in one
query, a bot that keeps at most ``MAX_QUICK_ORDERS`` orders open, run in a worker thread
and stopped after ``QUICK_SECONDS``. No backtest (None, with the reason in
``backtest_skipped``): a bot driven by alerts (no alerts to replay), a rebalance bot over
more than one asset (a backtest trades one market), a bot beyond those bounds, fewer than
``MIN_CANDLES`` candles stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.domain.api_keys import normalise_networks
from app.backtesting.domain.evaluation import evaluate, venue_candles
from app.backtesting.domain.metrics import BacktestMetrics
from app.backtesting.domain.protections import REFUSED, WARNED
from app.backtesting.domain.runner import SUBMIT, run_backtest
from app.bots import bots, exchange_markets
from app.bots.domain.backtest import BotStrategy
from app.bots.domain.dca_settings import DcaSettings, StartCondition
from app.bots.domain.grid_settings import GridSettings
from app.bots.domain.machines import SETTINGS, BotSpec, Settings, funding, machine, validate
from app.bots.domain.preflight import DcaPreflight, GridPreflight, dca_preflight, grid_preflight
from app.bots.domain.rebalance import Holding, RebalanceSettings
from app.bots.domain.runtime import BotKind
from app.bots.domain.signal_bot import SignalSettings
from app.core.errors import InsufficientFunds, NotAuthenticated, UserError, ValidationFailed
from app.marketdata import reads as market_data
from app.marketdata.domain.candles import INTERVALS, Interval
from app.paper.domain.session import check_starting_balances
from app.risk.domain.limits import Limit
from app.risk.gate import limit_of
from app.runtime import Runtime
from app.trading.domain.orders import MarketSpec
from app.trading.markets import markets_with_quote_rates
from app.venues.domain.paths import Candle
from db.models import Bot, RiskLimit
from db.models.marketdata import MarketCandle

QUICK_INTERVAL = INTERVALS["1h"]
QUICK_CANDLES = 720  # 30 days of hours
MIN_CANDLES = 24
MAX_QUICK_ORDERS = 250  # orders open at once (a DCA bot's deals x their orders, ...)
QUICK_SECONDS = 3  # of computing, a safety net: the bounds above keep it well below
KINDS: Mapping[type, BotKind] = {settings: kind for kind, settings in SETTINGS.items()}
FUNDED_BY = {  # the input field that sets what a bot of each kind is given
    BotKind.DCA: "baseOrder",
    BotKind.GRID: "investment",
    BotKind.SIGNAL: "budget",
    BotKind.REBALANCE: "allocation",
}


@dataclass(frozen=True, slots=True)
class BotRequest:
    name: str
    settings: Settings
    symbol: str | None = None  # DCA, GRID, SIGNAL
    allocation: tuple[Holding, ...] = ()  # REBALANCE
    ip_allowlist: tuple[str, ...] = ()  # an alert-driven bot's webhook
    paper: bool = False  # on a paper account of its own, with play money
    exchange_account_id: int | None = None  # on the owner's connected exchange account

    @property
    def kind(self) -> BotKind:
        return KINDS[type(self.settings)]


@dataclass(frozen=True, slots=True)
class Preflight:
    price: Decimal | None  # the market's last price the figures are at
    funding: Mapping[str, Decimal]  # what the bot is given, by currency
    dca: DcaPreflight | None = None
    grid: GridPreflight | None = None
    problem: str | None = None  # why there are no figures at a price


@dataclass(frozen=True, slots=True)
class QuickBacktest:
    source: str
    symbol: str
    interval: str
    candles: int
    start: datetime  # the first candle's open
    end: datetime  # the last candle's close
    metrics: BacktestMetrics
    orders: int  # orders the bot placed
    fills: int
    decisions: int  # every decision the bot made, with its reason
    risk_limits: int = 0  # the limits it ran under
    risk_refusals: int = 0  # orders those limits refused
    risk_transitions: int = 0  # states they moved (REDUCE, HALT, COOL_DOWN_OVER)


@dataclass(frozen=True, slots=True)
class Preview:
    spec: BotSpec
    preflight: Preflight
    backtest: QuickBacktest | None
    backtest_skipped: str | None  # why there is no backtest


@dataclass(frozen=True, slots=True)
class Made:
    bot: Bot  # as it is once it has taken its first steps
    webhook_secret: str | None  # shown once: only its hash is kept
    preview: Preview


async def preview_bot(rt: Runtime, *, user_id: int | None, request: BotRequest) -> Preview:
    """The checks, the pre-flight and the quick backtest; nothing is written."""
    if user_id is None:
        raise NotAuthenticated()
    spec, prices = await _checked(rt, request, user_id)
    return Preview(spec, preflight(spec, prices), *await _backtest(rt, spec, request, user_id))


async def _backtest(
    rt: Runtime, spec: BotSpec, request: BotRequest, user_id: int
) -> tuple[QuickBacktest | None, str | None]:
    if request.exchange_account_id is not None:
        return None, "A bot on an exchange account: no backtest on the platform's candles"
    return await quick_backtest(rt, spec, owner=None if request.paper else user_id)


async def create_bot(rt: Runtime, *, user_id: int | None, request: BotRequest) -> Made:
    """The pre-flight, then the bot (``bots.create_bot``), then its quick backtest."""
    if user_id is None:
        raise NotAuthenticated()
    spec, prices = await _checked(rt, request, user_id)
    flight = preflight(spec, prices)
    try:
        created = await bots.create_bot(
            rt,
            user_id=user_id,
            spec=spec,
            ip_allowlist=allowlist(request),
            paper=request.paper,
            exchange_account_id=request.exchange_account_id,
        )
    except InsufficientFunds as error:  # named after the setting that asks for the money
        raise InsufficientFunds(error.message, field=FUNDED_BY[spec.kind]) from None
    async with rt.reads() as session:  # as it is after its first steps
        (bot,) = await bots.bots_by_ids(session, [created.bot.id])
    try:  # the bot is made: nothing the backtest meets may fail the call now
        backtest, skipped = await _backtest(rt, spec, request, user_id)
    except UserError as error:
        backtest, skipped = None, f"The backtest stopped: {error.message}"
    return Made(bot or created.bot, created.webhook_secret,
                Preview(spec, flight, backtest, skipped))  # fmt: skip


def rebalance_symbols(settings: RebalanceSettings) -> tuple[str, ...]:
    """A rebalance bot's markets: ``<asset>/<quote>`` of each target but the quote."""
    quote = settings.quote
    return tuple(f"{t.asset}/{quote}" for t in settings.targets if t.asset != quote)


def takes_alerts(settings: Settings) -> bool:
    return isinstance(settings, SignalSettings) or (
        isinstance(settings, DcaSettings) and settings.start is StartCondition.SIGNAL
    )


async def _checked(
    rt: Runtime, request: BotRequest, user_id: int
) -> tuple[BotSpec, Mapping[str, Decimal | None]]:
    """The validated spec and its markets' last prices by symbol (an exchange bot's: its
    exchange's, ``exchange_markets``)."""
    symbols = _symbols(request)
    allowlist(request)
    if request.exchange_account_id is not None:
        return await _exchange_checked(rt, request, user_id, symbols)
    async with rt.reads() as session:
        markets = await bots.markets_for(session, symbols)
        rows = await markets_with_quote_rates(session, [m.symbol for m in markets])
    spec = validate(BotSpec(request.kind, request.name, request.settings, markets,
                            request.allocation))  # fmt: skip
    if request.paper:
        paper_checks(spec)
    return spec, {symbol: row.last_price for symbol, (row, _) in rows.items()}


async def _exchange_checked(
    rt: Runtime, request: BotRequest, user_id: int, symbols: tuple[str, ...]
) -> tuple[BotSpec, Mapping[str, Decimal | None]]:
    account_id = request.exchange_account_id
    assert account_id is not None
    if request.paper:
        raise ValidationFailed("A paper bot or one on an exchange account, not both",
                               field=exchange_markets.FIELD)  # fmt: skip
    if request.kind is BotKind.REBALANCE:
        # it holds a portfolio of several assets as its own; a bot on an exchange account
        # trades one market within a budget in its quote, the account's balances shared
        raise ValidationFailed(
            "A rebalance bot runs on the platform only: it holds several assets given"
            " from your wallet as its own, and a bot on an exchange account trades one"
            " market within a budget in its quote (the account's balances are shared"
            " with you and your other bots)", field=exchange_markets.FIELD,
        )  # fmt: skip
    symbol = exchange_markets.one_market(symbols)
    market = await exchange_markets.exchange_market(
        rt, user_id=user_id, account_id=account_id, symbol=symbol
    )
    spec = validate(BotSpec(request.kind, request.name, request.settings, (market.spec,),
                            request.allocation))  # fmt: skip
    return spec, {market.spec.symbol: market.last_price}


def paper_checks(spec: BotSpec) -> None:
    """What a paper bot's account could not hold, refused on ``paper`` as
    ``bots.create_bot`` refuses it: more than one market, play money (what the bot would
    be funded with) beyond the paper caps (``check_starting_balances``)."""
    if len(spec.markets) != 1:
        raise ValidationFailed("A paper bot trades one market", field="paper")
    try:
        check_starting_balances(spec.markets[0], funding(spec))
    except ValidationFailed as error:
        raise ValidationFailed(error.message, field="paper") from None


def _symbols(request: BotRequest) -> tuple[str, ...]:
    if isinstance(request.settings, RebalanceSettings):
        if request.symbol is not None:
            raise ValidationFailed(
                "A rebalance bot trades the markets of its targets: no symbol", field="symbol"
            )
        return rebalance_symbols(request.settings)
    if request.allocation:
        raise ValidationFailed("Only a rebalance bot is given an allocation", field="allocation")
    if request.symbol is None:
        raise ValidationFailed("The market the bot trades, e.g. BTC/USDT", field="symbol")
    return (request.symbol,)


def allowlist(request: BotRequest) -> tuple[str, ...]:
    """The webhook's allowlist, normalised (``10.0.0.7/8`` is ``10.0.0.0/8``)."""
    if not request.ip_allowlist:
        return ()
    if not takes_alerts(request.settings):
        raise ValidationFailed(
            "Only a bot that takes alerts has a webhook to restrict", field="ipAllowlist"
        )
    try:
        return tuple(normalise_networks(request.ip_allowlist))
    except ValidationFailed as error:
        raise ValidationFailed(error.message, field="ipAllowlist") from None


def preflight(spec: BotSpec, prices: Mapping[str, Decimal | None]) -> Preflight:
    """The figures of a validated bot at its market's last price (``prices`` by symbol)."""
    market = spec.markets[0]
    needs = funding(spec)
    settings = spec.settings
    if not isinstance(settings, DcaSettings | GridSettings):
        return Preflight(prices.get(market.symbol), needs)
    price = prices.get(market.symbol)
    if price is None:
        return Preflight(None, needs, problem=f"{market.symbol} has not traded yet: no price")
    if isinstance(settings, DcaSettings):
        return Preflight(price, needs, dca=dca_preflight(settings, market, price))
    return Preflight(price, needs, grid=grid_preflight(settings, market, price))


# --- the quick backtest ---------------------------------------------------------------


async def quick_backtest(
    rt: Runtime, spec: BotSpec, *, owner: int | None = None
) -> tuple[QuickBacktest | None, str | None]:
    """(the backtest, None) or (None, why there is none); under ``owner``'s limits
    (``trading_limits``) when given."""
    settings = spec.settings
    if takes_alerts(settings):
        return None, "The bot acts on alerts: there are none to replay"
    if len(spec.markets) != 1:
        return None, f"A backtest trades one market: this bot trades {len(spec.markets)}"
    if open_orders_bound(spec) > MAX_QUICK_ORDERS:
        return None, (
            f"A quick backtest runs bots that keep at most {MAX_QUICK_ORDERS} orders open:"
            f" this one may keep {open_orders_bound(spec)}"
        )
    market = spec.markets[0]
    async with rt.reads() as session:
        series = await latest_series(session, market.symbol)
        if series is None:
            return None, f"No candles of {market.symbol} are stored"
        source, interval, last = series
        end = interval.next(interval.floor(last))
        start = interval.shift(end, -QUICK_CANDLES)
        stored = await market_data.candles(
            session, source=source, symbol=market.symbol, interval=interval.name,
            start=start, end=end,
        )  # fmt: skip
        limits = () if owner is None else await trading_limits(session, owner, market.symbol)
    if len(stored) < MIN_CANDLES:
        return None, (
            f"{len(stored)} {interval.name} candles of {market.symbol} are stored in the"
            f" last {QUICK_CANDLES}: a backtest needs {MIN_CANDLES}"
        )
    candles = tuple(venue_candles(stored, interval))
    balances = _balances(spec)
    ran = await asyncio.to_thread(_run, spec, market, source, interval, candles, balances, limits)
    return (None, ran) if isinstance(ran, str) else (ran, None)


def _balances(spec: BotSpec) -> dict[str, Decimal]:
    if isinstance(spec.settings, RebalanceSettings):
        return {h.asset: h.quantity for h in spec.allocation if h.quantity > 0}
    return dict(funding(spec))


def open_orders_bound(spec: BotSpec) -> int:
    """The most orders the bot keeps open at once."""
    s = spec.settings
    if isinstance(s, DcaSettings):
        return s.max_active_deals * (s.max_active_safety_orders + len(s.take_profit) + 1)
    if isinstance(s, GridSettings):
        return s.levels
    return 2 * len(spec.markets)


class _TooLong(Exception):
    """The quick backtest ran out of time."""


def _run(
    spec: BotSpec,
    market: MarketSpec,
    source: str,
    interval: Interval,
    candles: Sequence[Candle],
    balances: Mapping[str, Decimal],
    limits: Sequence[Limit],
) -> QuickBacktest | str:
    """The backtest, or why it was cut short (in a worker thread)."""
    bot = machine(spec.kind, 0, spec.settings, spec.markets, spec.allocation)
    strategy = BotStrategy(bot, market)
    deadline = time.monotonic() + QUICK_SECONDS

    def in_time(done: int) -> None:
        if time.monotonic() > deadline:
            raise _TooLong(done)

    try:
        run = run_backtest(strategy, candles, market=market, balances=balances,
                           progress=in_time, bar=interval.step, limits=limits)  # fmt: skip
    except _TooLong as cut:
        return (
            f"The quick backtest was stopped after {QUICK_SECONDS} s, at candle {cut.args[0]}"
            f" of {len(candles)}"
        )
    return QuickBacktest(
        source=source, symbol=market.symbol, interval=interval.name, candles=len(candles),
        start=candles[0].open_time, end=candles[-1].close_time,
        metrics=evaluate(run).metrics,
        orders=sum(1 for d in run.decisions if d.action == SUBMIT and d.outcome == "OK"),
        fills=len(run.fills), decisions=len(strategy.decisions), risk_limits=len(limits),
        risk_refusals=sum(1 for e in run.risk_events if e.action == REFUSED),
        risk_transitions=sum(1 for e in run.risk_events if e.action not in (REFUSED, WARNED)),
    )  # fmt: skip


# a bot's orders meet its owner's ORDER and USER scopes, its market's and the platform's
_TRADING_LIMITS = text(f"""
    SELECT l.* FROM {RiskLimit.__tablename__} l
    WHERE (l.scope IN ('ORDER', 'USER') AND l.scope_id = :owner)
       OR (l.scope = 'MARKET' AND l.scope_id = (SELECT id FROM markets WHERE symbol = :symbol))
       OR l.scope = 'PLATFORM'
    ORDER BY l.id
""")  # noqa: S608 (no input in the text: the table's name)


async def trading_limits(session: AsyncSession, owner: int, symbol: str) -> tuple[Limit, ...]:
    """The limits a new bot of ``owner``'s trading ``symbol`` would place its orders
    under (it has no BOT limits yet), as they are now."""
    rows = await session.execute(_TRADING_LIMITS, {"owner": owner, "symbol": symbol})
    return tuple(limit_of(r) for r in rows.mappings())


# The latest candle per (source, interval) of one symbol, from the candles' primary key
# (source, symbol, interval, open_time): the sources by a loose index scan (a handful),
# then one index lookup per source and interval.
_LATEST = text(f"""
    WITH RECURSIVE sources(source) AS (
        SELECT min(source) FROM {MarketCandle.__tablename__}
        UNION ALL
        SELECT (SELECT min(c.source) FROM {MarketCandle.__tablename__} c
                WHERE c.source > s.source)
        FROM sources s WHERE s.source IS NOT NULL
    )
    SELECT s.source, i.name AS interval,
           (SELECT max(c.open_time) FROM {MarketCandle.__tablename__} c
            WHERE c.source = s.source AND c.symbol = :symbol AND c.interval = i.name) AS last
    FROM sources s CROSS JOIN unnest(CAST(:intervals AS text[])) AS i(name)
    WHERE s.source IS NOT NULL
""")  # noqa: S608 (no input in the text: the table's name)


async def latest_series(
    session: AsyncSession, symbol: str
) -> tuple[str, Interval, datetime] | None:
    """(source, interval, its last candle's open) of the candles to backtest ``symbol``
    on: 1h (or finer, merged) from the source with the most recent candle, else that
    source's finest interval; None when none is stored."""
    rows = await session.execute(_LATEST, {"symbol": symbol, "intervals": list(INTERVALS)})
    held = [(r.source, INTERVALS[r.interval], r.last) for r in rows if r.last is not None]
    if not held:
        return None
    source = max(held, key=lambda h: (h[2], h[0]))[0]
    mine = [h for h in held if h[0] == source]
    hourly = [h for h in mine if h[1].divides(QUICK_INTERVAL)]
    if hourly:
        return source, QUICK_INTERVAL, max(h[2] for h in hourly)
    finest = min(mine, key=lambda h: h[1].step)
    return source, finest[1], finest[2]
