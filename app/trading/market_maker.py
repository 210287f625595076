"""The built-in market maker: liquidity and moving prices for the embedded default run.

Two system users trade through the ordinary services (``app.trading.placement``), with
their own balances, funded through the ledger from the EXTERNAL system account (journal
kind ``MARKET_MAKER_FUNDING``) and topped up when low:

    market maker   quotes LEVELS bids and asks on every open market, layered around a
                   reference price (GTC limit orders, on tick and lot, above the minimum
                   notional, inside the price band of the last price)
    market flow    now and then takes the maker's best quote with a small IOC order:
                   self-trade prevention keeps the maker from trading with itself, and
                   without trades the last price (and with it the price band) stands still

Each cycle: the USD price of every currency but the cash ones takes one step of a
seeded random walk (``app.trading.domain.market_making``); a market's reference is the walk's
cross rate (ETH/BTC = ETH/USD / BTC/USD, so cross rates stay consistent), kept in the
price band; the maker cancels its quotes on the market and places the new ladder; the
flow may trade. The engine writes each USD/USDT market's trade price into
``reference_prices``, which keeps the currency reference prices current; a restarted
maker starts its walk from them.

The quotes are not post-only, on purpose: when the walk moves through a user's resting
limit order, the maker's quote trades with it, as the market would.

The same seed and the same starting prices give the same quotes. Off unless
MARKET_MAKER_ENABLED (``python -m app serve`` turns it on with embedded servers); with
several processes one leads (a Redis key with a time to live) and the others wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import UserError
from app.core.settings import Settings
from app.ledger import journal as ledger
from app.ledger.rules import AccountKind, Leg, move
from app.runtime import Runtime
from app.trading import commands, markets, placement
from app.trading.domain import market_making as mm
from app.trading.domain.orders import MarketStatus, OrderRequest, OrderType, TimeInForce
from app.trading.engine.settlement import CASH
from app.trading.markets import MarketRow
from db.models import User
from db.raw import driver
from db.session import in_transaction

log = logging.getLogger(__name__)

MAKER_EMAIL = "market-maker@cryptoorchestrator.local"
FLOW_EMAIL = "market-flow@cryptoorchestrator.local"
FUNDING_KIND = "MARKET_MAKER_FUNDING"
UNUSABLE_PASSWORD = "!"  # not an argon2 hash: no password ever matches it
LEADER_TTL_SECONDS = 30


@dataclass(frozen=True, slots=True)
class MakerConfig:
    seed: int = 1
    levels: int = 5
    spread_bps: int = 20
    step_bps: int = 10
    volatility_bps: int = 10
    trade_probability: float = 0.5
    level_value_usd: Decimal = Decimal(2000)  # the first level; outer levels are larger
    funding_usd: Decimal = Decimal(1_000_000)  # each system user's balance per currency
    band_bps: int = 1000  # the markets' price band (TRADING_PRICE_BAND_BPS)

    @classmethod
    def from_settings(cls, settings: Settings) -> MakerConfig:
        return cls(
            seed=settings.market_maker_seed,
            levels=settings.market_maker_levels,
            spread_bps=settings.market_maker_spread_bps,
            volatility_bps=settings.market_maker_volatility_bps,
            trade_probability=settings.market_maker_trade_probability,
            band_bps=settings.trading_price_band_bps,
        )


@dataclass(frozen=True, slots=True)
class MarketPlan:
    """What one cycle does on one market."""

    market: MarketRow
    reference: Decimal
    quotes: list[mm.Quote]
    take: mm.Quote | None  # the flow's order, if it trades this cycle


@dataclass(frozen=True, slots=True)
class SystemTraders:
    maker_id: int
    flow_id: int


# --- the system users and their money ------------------------------------------------------


async def ensure_traders(rt: Runtime) -> SystemTraders:
    """The maker and the flow users (created once, verified, no usable password)."""

    async def work(session: AsyncSession) -> SystemTraders:
        for email, name in ((MAKER_EMAIL, "Market Maker"), (FLOW_EMAIL, "Market Flow")):
            await session.execute(
                insert(User)
                .values(
                    email=email,
                    display_name=name,
                    password_hash=UNUSABLE_PASSWORD,
                    role="USER",
                    email_verified_at=func.now(),
                )
                .on_conflict_do_nothing(index_elements=[User.email])
            )
        rows = await session.execute(
            select(User.email, User.id).where(User.email.in_([MAKER_EMAIL, FLOW_EMAIL]))
        )
        ids = {email: uid for email, uid in rows.all()}
        return SystemTraders(maker_id=ids[MAKER_EMAIL], flow_id=ids[FLOW_EMAIL])

    return await in_transaction(rt.sessions, work)


async def top_up(rt: Runtime, user_ids: list[int], funding_usd: Decimal) -> int:
    """Bring every enabled currency of each user (available + held) back to about
    ``funding_usd`` of value when it fell below half of it, in one journal entry from the
    EXTERNAL system account; the number of balances topped up."""

    async def work(session: AsyncSession) -> int:
        pg = await driver(session)
        currencies = await pg.fetch(
            "SELECT c.code, c.scale, p.usd_price FROM currencies c"
            " JOIN reference_prices p ON p.currency = c.code WHERE c.enabled ORDER BY c.code"
        )
        held = {
            (r["user_id"], r["currency"]): r["total"]
            for r in await pg.fetch(
                "SELECT user_id, currency, sum(balance) AS total FROM ledger_accounts"
                " WHERE user_id = ANY($1::bigint[]) AND kind IN ('AVAILABLE', 'HELD')"
                " GROUP BY user_id, currency",
                user_ids,
            )
        }
        legs: list[Leg] = []
        for uid in user_ids:
            for row in currencies:
                target = (funding_usd / row["usd_price"]).quantize(
                    Decimal(1).scaleb(-row["scale"]), ROUND_FLOOR
                )
                have = held.get((uid, row["code"]), Decimal(0))
                if have * 2 < target:
                    legs += move(
                        target - have,
                        ledger.system_account(row["code"], AccountKind.EXTERNAL),
                        ledger.user_account(uid, row["code"]),
                    )
        if legs:
            await ledger.post(session, kind=FUNDING_KIND, legs=legs, memo="market maker funding")
        return len(legs) // 2

    return await in_transaction(rt.sessions, work)


# --- the maker ---------------------------------------------------------------------------


class MarketMaker:
    def __init__(self, rt: Runtime, config: MakerConfig | None = None) -> None:
        self.rt = rt
        self.config = config or MakerConfig.from_settings(rt.settings)
        self.rng = random.Random(self.config.seed)  # noqa: S311 (a simulation, not security)
        self.walk = mm.PriceWalk(fixed=CASH)
        self._traders: SystemTraders | None = None
        self._task: asyncio.Task[None] | None = None
        self._token = uuid.uuid4().hex

    # -- one cycle ------------------------------------------------------------------------

    async def cycle(self) -> list[MarketPlan]:
        """Step the walk, requote every open market, maybe trade; the plans carried out."""
        traders = await self._ensure_traders()
        await top_up(self.rt, [traders.maker_id, traders.flow_id], self.config.funding_usd)
        async with self.rt.sessions() as session:
            rows = await markets.list_markets(session)
            pg = await driver(session)
            usd = {
                r["currency"]: r["usd_price"]
                for r in await pg.fetch("SELECT currency, usd_price FROM reference_prices")
            }
        plans = self.plan(rows, usd)
        results = await asyncio.gather(
            *(self._carry_out(traders, plan) for plan in plans), return_exceptions=True
        )
        for plan, result in zip(plans, results, strict=True):
            if isinstance(result, Exception):
                log.error(
                    "market maker failed on a market",
                    exc_info=result,
                    extra={"market": plan.market.symbol},
                )
            elif isinstance(result, BaseException):
                raise result
        return plans

    def plan(self, rows: list[MarketRow], usd: dict[str, Decimal]) -> list[MarketPlan]:
        """The walk's next step and every open market's quotes: pure and seeded, so the
        same seed and prices always plan the same."""
        config = self.config
        self.walk.step(self.rng, config.volatility_bps, usd)
        plans = []
        for market in sorted(rows, key=lambda m: m.id):
            spec = market.spec
            reference = self.walk.rate(spec.base, spec.quote)
            quote_usd = self.walk.prices.get(spec.quote)
            if spec.status is not MarketStatus.OPEN or reference is None or not quote_usd:
                continue
            shape = mm.LadderShape(
                levels=config.levels,
                spread_bps=config.spread_bps,
                step_bps=config.step_bps,
                level_value=config.level_value_usd / quote_usd,
            )
            room = config.band_bps - int(mm.max_offset_bps(shape)) - 1
            reference = mm.keep_in_band(reference, market.last_price, room)
            quotes = mm.ladder(spec, reference, shape, self.rng)
            take = mm.taker_order(spec, quotes, self.rng, config.trade_probability)
            plans.append(MarketPlan(market, reference, quotes, take))
        return plans

    async def _carry_out(self, traders: SystemTraders, plan: MarketPlan) -> None:
        symbol, spec = plan.market.symbol, plan.market.spec
        await commands.cancel_all_orders(self.rt, user_id=traders.maker_id, symbol=symbol)
        orders = [(traders.maker_id, q, TimeInForce.GTC) for q in plan.quotes]
        if plan.take is not None:
            orders.append((traders.flow_id, plan.take, TimeInForce.IOC))
        for user_id, quote, tif in orders:
            request = OrderRequest(
                side=quote.side,
                type=OrderType.LIMIT,
                quantity=spec.quantity(quote.quantity),
                price=spec.price(quote.price),
                time_in_force=tif,
            )
            try:
                await placement.place_order(
                    self.rt, user_id=user_id, symbol=symbol, request=request
                )
            except UserError as error:
                log.warning(
                    "market maker order refused",
                    extra={"market": symbol, "code": error.code, "reason": str(error)},
                )

    async def _ensure_traders(self) -> SystemTraders:
        if self._traders is None:
            self._traders = await ensure_traders(self.rt)
        return self._traders

    async def withdraw(self) -> None:
        """Cancel every quote of the maker (on every market)."""
        traders = await self._ensure_traders()
        await commands.cancel_all_orders(self.rt, user_id=traders.maker_id)

    # -- running in the server process ---------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="market-maker")

    async def stop(self) -> None:
        """Stop cycling and, if this process was making markets, withdraw the quotes
        (call it before the engines stop)."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        try:
            if await self._is_leader():
                await asyncio.wait_for(self.withdraw(), self.rt.settings.trading_wait_seconds + 1)
                await self.rt.redis.delete(self._leader_key)
        except Exception:
            log.warning("market maker could not withdraw its quotes", exc_info=True)

    async def run(self) -> None:
        log.info("market maker started", extra={"seed": self.config.seed})
        while True:
            try:
                if await self._lead():
                    await self.cycle()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("market maker cycle failed")
            await asyncio.sleep(self.rt.settings.market_maker_interval_seconds)

    @property
    def _leader_key(self) -> str:
        return self.rt.redis_key("market-maker", "leader")

    async def _is_leader(self) -> bool:
        return await self.rt.redis.get(self._leader_key) == self._token.encode()

    async def _lead(self) -> bool:
        """Whether this process is the one making markets (several may run the maker)."""
        ttl = max(LEADER_TTL_SECONDS, int(self.rt.settings.market_maker_interval_seconds * 3))
        if await self.rt.redis.set(self._leader_key, self._token, nx=True, ex=ttl):
            return True
        if await self._is_leader():
            await self.rt.redis.expire(self._leader_key, ttl)
            return True
        return False
