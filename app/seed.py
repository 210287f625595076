"""Demo data for development: users who can trade at once and leaders with a history.

Everything goes through the ordinary services, as an admin and the users would:

    users        the demo logins (verified email), created once
    KYC          each non-admin submits, the demo admin approves level 1 (``kyc`` service)
    funds        the demo admin credits crypto deposits to each user's deposit address
                 (``credit_crypto_deposit``: HOT_WALLET -> AVAILABLE through the ledger,
                 once per transaction hash, which is derived from the user and currency)
    history      each leader trades round trips on BTC/USDT with the demo desk: real
                 orders (``place_order``, one ``clientOrderId`` each) matched by the real
                 engine, so fills, positions and ledger entries exist
    leaders      public leader profiles (``become_leader``: the eligibility rules apply)
    leaderboard  an equity snapshot and the leaderboard job, so the board is not empty
                 until LEADERBOARD_INTERVAL_SECONDS
    market data  monthly BTC/USD 2012-2024 (``file:btcusd-monthly``, 1M) through the
                 market data importer, from the file backtesting.py ships (AGPL-3.0, a
                 dev dependency: read where it is installed, never copied into this
                 repository); skipped with one log line where it is not installed
    backtest     a moving-average crossover over it for Alice (``start_backtest``), run
                 to DONE before the seed ends

Idempotent: a second run finds every user, KYC level, deposit (by its transaction hash),
order (by its clientOrderId), leader profile, candle (the importer's upsert) and the demo
backtest in place and changes nothing. Development
only: production refuses SEED_DEMO_DATA (``app.core.settings``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from app.accounts import kyc
from app.accounts.domain.kyc import DocumentType, KycStatus
from app.accounts.domain.passwords import hash_password
from app.backtesting import backtests
from app.backtesting.domain.specs import MovingAverageParameters
from app.marketdata.importer import import_file
from app.runtime import Runtime
from app.social import leaderboard, leaders
from app.social.domain.social import LeaderProfile, Visibility
from app.trading import commands, placement
from app.trading.domain.orders import OrderRequest, OrderType, Side, TimeInForce
from app.trading.engine.runner import EngineSet
from app.trading.markets import market_by_symbol
from app.trading.reads import order_book, snapshot_equity
from app.wallets.crypto_deposits import credit_crypto_deposit, deposit_address
from app.wallets.domain.deposit_addresses import base58
from db.models import Backtest, Leader, Order, User

log = logging.getLogger(__name__)
USER, ADMIN = "USER", "ADMIN"


@dataclass(frozen=True)
class DemoLogin:
    email: str
    password: str
    role: str
    display_name: str


ALICE = DemoLogin("alice@demo.example", "alice-demo-pass-1", USER, "Alice")
BOB = DemoLogin("bob@demo.example", "bob-demo-pass-2", USER, "Bob")
DEMO_ADMIN = DemoLogin("admin@demo.example", "admin-demo-pass-3", ADMIN, "Demo Admin")
CAROL = DemoLogin("carol@demo.example", "carol-demo-pass-4", USER, "Carol")
DAVE = DemoLogin("dave@demo.example", "dave-demo-pass-5", USER, "Dave")
ERIN = DemoLogin("erin@demo.example", "erin-demo-pass-6", USER, "Erin")
DESK = DemoLogin("desk@demo.example", "desk-demo-pass-7", USER, "Demo Desk")

DEMO_LOGINS = (ALICE, BOB, DEMO_ADMIN, CAROL, DAVE, ERIN, DESK)

TRADERS = {"USDT": "25000", "BTC": "0.5", "ETH": "5", "SOL": "50"}
LEADER_FUNDS = {"USDT": "20000", "BTC": "0.25"}
DESK_FUNDS = {"USDT": "500000", "BTC": "10"}
FUNDS = {
    ALICE: TRADERS,
    BOB: TRADERS,
    CAROL: LEADER_FUNDS,
    DAVE: LEADER_FUNDS,
    ERIN: LEADER_FUNDS,
    DESK: DESK_FUNDS,
}

HISTORY_SYMBOL = "BTC/USDT"
HISTORY_QUANTITY = Decimal("0.01")


@dataclass(frozen=True)
class DemoLeader:
    login: DemoLogin
    name: str
    bio: str
    profit_share_percent: Decimal
    # per round trip: the sell price's distance from the buy price, in basis points
    round_trips_bps: tuple[int, ...]


DEMO_LEADERS = (
    DemoLeader(
        CAROL,
        "Carol Trend",
        "Buys strength, sells into rallies.",
        Decimal(10),
        (120, 90, 150, 80, 110),
    ),
    DemoLeader(
        DAVE,
        "Dave Swing",
        "Short swings on BTC, tight exits.",
        Decimal(15),
        (100, -60, 90, -40, 70),
    ),
    DemoLeader(
        ERIN, "Erin Steady", "Small, frequent, careful.", Decimal(5), (50, 60, -30, 45, -70)
    ),
)


async def seed_demo_data(rt: Runtime) -> None:
    """Idempotent: see the module docstring."""
    ids = await _ensure_users(rt)
    admin_id = ids[DEMO_ADMIN.email]
    for login in FUNDS:
        await _approve_kyc(rt, admin_id=admin_id, user_id=ids[login.email], name=login.display_name)
    for login, amounts in FUNDS.items():
        await _fund(rt, admin_id=admin_id, login=login, user_id=ids[login.email], amounts=amounts)
    created = False
    async with _engines(rt):
        for leader in DEMO_LEADERS:
            created |= await _ensure_leader(rt, leader, ids[leader.login.email], ids[DESK.email])
        # what the desk offered but no leader took (another trader did) is withdrawn
        await commands.cancel_all_orders(rt, user_id=ids[DESK.email], symbol=HISTORY_SYMBOL)
    if created:
        await snapshot_equity(rt)
        await leaderboard.recompute_leaderboard(rt)
    await seed_demo_dataset(rt, path=dataset_path(), user_id=ids[ALICE.email])


async def _ensure_users(rt: Runtime) -> dict[str, int]:
    async with rt.sessions() as session, session.begin():
        existing = set(
            await session.scalars(
                select(User.email).where(User.email.in_([d.email for d in DEMO_LOGINS]))
            )
        )
        for login in DEMO_LOGINS:
            if login.email in existing:
                continue  # argon2 costs: hash only for new users
            await session.execute(
                insert(User)
                .values(
                    email=login.email,
                    display_name=login.display_name,
                    password_hash=hash_password(login.password),
                    role=login.role,
                    email_verified_at=func.now(),
                )
                .on_conflict_do_nothing(index_elements=[User.email])
            )
        rows = await session.execute(
            select(User.email, User.id).where(User.email.in_([d.email for d in DEMO_LOGINS]))
        )
        return {email: uid for email, uid in rows.all()}


async def _approve_kyc(rt: Runtime, *, admin_id: int, user_id: int, name: str) -> None:
    """Level 1 through a submission the demo admin approves; nothing when already there."""
    async with rt.sessions() as session:
        user = await session.get(User, user_id)
        assert user is not None
        level, status = user.kyc_level, user.kyc_status
    if level >= 1:
        return
    if status != KycStatus.PENDING:
        await kyc.submit_kyc(
            rt=rt,
            user_id=user_id,
            full_name=name,
            country="GB",
            date_of_birth=date(1990, 1, 1),
            document_type=DocumentType.PASSPORT,
            document_number=f"DEMO{user_id:06d}",
        )
    await kyc.review_kyc(
        rt=rt, actor_id=admin_id, user_id=user_id, approve=True, level=1, reason=None
    )


def demo_tx_hash(email: str, currency: str) -> str:
    """The demo deposit's transaction hash, in the currency's chain format: the same for
    the same user and currency, so a second run credits nothing."""
    seed = f"demo-seed:{email}:{currency}".encode()
    if currency == "BTC":
        return hashlib.sha256(seed).hexdigest()
    if currency == "SOL":
        return base58(hashlib.sha512(seed).digest())
    return "0x" + hashlib.sha256(seed).hexdigest()  # ETH and ERC-20 USDT


async def _fund(
    rt: Runtime, *, admin_id: int, login: DemoLogin, user_id: int, amounts: dict[str, str]
) -> None:
    for currency, amount in amounts.items():
        address = await deposit_address(rt=rt, user_id=user_id, currency=currency)
        await credit_crypto_deposit(
            rt=rt,
            actor_id=admin_id,
            currency=currency,
            address=address.address,
            tx_hash=demo_tx_hash(login.email, currency),
            amount=Decimal(amount),
        )


@contextlib.asynccontextmanager
async def _engines(rt: Runtime) -> AsyncIterator[None]:
    """The matching engines for the history's orders: this process's own when none run
    here yet (a running server's engines take over as owners when they hold the markets)."""
    if rt.matching:
        yield
        return
    engines = EngineSet(rt)
    await engines.start()
    try:
        with contextlib.suppress(TimeoutError):  # another process owns them: it matches
            await engines.wait_owned(timeout=5)
        yield
    finally:
        await engines.stop()


async def _ensure_leader(rt: Runtime, leader: DemoLeader, user_id: int, desk_id: int) -> bool:
    """The leader's round trips with the desk, then the public profile; False when the
    profile was there already."""
    async with rt.sessions() as session:
        if await session.get(Leader, user_id) is not None:
            return False
        market = await market_by_symbol(session, HISTORY_SYMBOL)
    base = market.last_price or market.reference_price
    prefix = f"demo-{leader.login.email.split('@')[0]}"
    for number, bps in enumerate(leader.round_trips_bps):
        spec = market.spec
        sell = spec.price(spec.nearest_ticks(base * (1 + Decimal(bps) / 10_000)))
        buy = spec.price(spec.nearest_ticks(base))
        for side, price in ((Side.BUY, buy), (Side.SELL, sell)):
            await _trade(
                rt,
                leader=user_id,
                desk=desk_id,
                leader_side=side,
                price=price,
                key=f"{prefix}-{number}-{side.value.lower()}",
            )
    await leaders.become_leader(
        rt,
        user_id=user_id,
        profile=LeaderProfile(
            display_name=leader.name,
            bio=leader.bio,
            profit_share_percent=leader.profit_share_percent,
            minimum_allocation=Decimal(100),
            visibility=Visibility.PUBLIC,
        ),
    )
    return True


async def _trade(
    rt: Runtime, *, leader: int, desk: int, leader_side: Side, price: Decimal, key: str
) -> None:
    """The desk rests the other side (GTC), the leader takes it (IOC): one fill each. The
    price is moved inside the spread of what else rests in the book (a market maker's
    quotes), so the desk's order trades with nothing but the leader's."""
    desk_side = Side.SELL if leader_side is Side.BUY else Side.BUY
    desk_order = f"{key}-desk"
    placed = await _placed_price(rt, desk, desk_order)
    if placed is None:
        price = await _inside_spread(rt, price)
        await _place(rt, desk, desk_side, TimeInForce.GTC, price, desk_order)
    else:
        price = placed  # an earlier run that stopped half-way placed it
    if await _placed_price(rt, leader, f"{key}-leader") is None:
        await _place(rt, leader, leader_side, TimeInForce.IOC, price, f"{key}-leader")


async def _inside_spread(rt: Runtime, price: Decimal) -> Decimal:
    async with rt.sessions() as session:
        market = await market_by_symbol(session, HISTORY_SYMBOL)
        book = await order_book(session, market_id=market.id, symbol=HISTORY_SYMBOL, depth=1)
    tick = market.spec.tick_size
    if book.bids and price <= book.bids[0].price:
        price = book.bids[0].price + tick
    if book.asks and price >= book.asks[0].price:
        price = book.asks[0].price - tick
    return price


async def _place(
    rt: Runtime, user_id: int, side: Side, tif: TimeInForce, price: Decimal, client_order_id: str
) -> None:
    await placement.place_order(
        rt,
        user_id=user_id,
        symbol=HISTORY_SYMBOL,
        request=OrderRequest(
            side=side,
            type=OrderType.LIMIT,
            quantity=HISTORY_QUANTITY,
            price=price,
            time_in_force=tif,
        ),
        client_order_id=client_order_id,
    )


async def _placed_price(rt: Runtime, user_id: int, client_order_id: str) -> Decimal | None:
    """The limit price of the user's order with this clientOrderId, if placed."""
    async with rt.sessions() as session:
        return await session.scalar(
            select(Order.price).where(
                Order.user_id == user_id, Order.client_order_id == client_order_id
            )
        )


# --- market data and a backtest ----------------------------------------------------------

DATASET_PACKAGE = "backtesting"  # backtesting.py, AGPL-3.0: a dev dependency only
DATASET_FILE = ("test", "BTCUSD.csv")  # monthly BTC/USD, rows dated the month's last day
DATASET_SOURCE = "file:btcusd-monthly"
DATASET_SYMBOL = "BTC/USD"
DATASET_INTERVAL = "1M"
DEMO_BACKTEST = backtests.BacktestRequest(
    MovingAverageParameters(fast=3, slow=12, fraction=Decimal(1)),
    DATASET_SYMBOL,
    DATASET_SOURCE,
    DATASET_INTERVAL,
    datetime(2012, 1, 1, tzinfo=UTC),
    datetime(2025, 1, 1, tzinfo=UTC),
    balance=Decimal(10_000),
)


def dataset_path(package: str = DATASET_PACKAGE) -> Path | None:
    """The monthly BTC/USD file of the installed ``package``; None when it is not installed.
    Found without importing the package (backtesting.py's import loads pandas and bokeh)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), *DATASET_FILE)
    return path if path.is_file() else None


async def seed_demo_dataset(rt: Runtime, *, path: Path | None, user_id: int) -> None:
    """Import the file at ``path`` (None: log that it is skipped), then the user's demo
    backtest over it, unless they have one over that source already."""
    if path is None:
        log.info(
            "demo market data skipped: the dev-only package %r is not installed",
            DATASET_PACKAGE,
        )
        return
    s = await import_file(
        rt.sessions,
        path=path,
        source=DATASET_SOURCE,
        symbol=DATASET_SYMBOL,
        interval=DATASET_INTERVAL,
        time_label="end",
    )
    log.info(
        "demo market data: %s %s %s from %s: %d rows, %d inserted, %d updated, %d unchanged,"
        " %d rejected",
        s.source, s.symbol, s.interval, path, s.rows, s.inserted, s.updated, s.unchanged,
        s.rejected,
    )  # fmt: skip
    async with rt.sessions() as session:
        held = await session.scalar(
            select(Backtest.id)
            .where(Backtest.user_id == user_id, Backtest.source == DATASET_SOURCE)
            .limit(1)
        )
    if held is None:
        row = await backtests.start_backtest(rt, user_id=user_id, request=DEMO_BACKTEST)
        await backtests.worker().wait(row.id)
