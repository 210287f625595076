"""Process-wide resources, built once at start-up and passed to every service call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.accounts.domain.tokens import TokenSigner
from app.adapters.mail import Mailer, build_mailer
from app.adapters.payments import PaymentGateway
from app.adapters.stripe_gateway import StripeGateway
from app.core.settings import Settings
from app.events.engine_signals import AppliedWatcher
from app.exchanges.ccxt_edge import CcxtConnector
from app.exchanges.connector import ExchangeConnector
from app.exchanges.domain.sealing import KeyRing
from db.session import create_engine, create_sessionmaker

C = TypeVar("C")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis
    mailer: Mailer
    signer: TokenSigner
    payments: PaymentGateway
    # connected exchange accounts: the key ring that seals their API secrets, and ccxt
    exchange_keys: KeyRing
    exchanges: ExchangeConnector
    clock: Callable[[], datetime] = field(default=utcnow)
    _applied: AppliedWatcher | None = field(default=None, repr=False)
    _reads: async_sessionmaker[AsyncSession] | None = field(default=None, repr=False)
    _coalescers: dict[str, Any] = field(default_factory=dict, repr=False)
    # the matching engines of this process by market symbol (``EngineSet``): a placement
    # for one of these markets, while it owns it, is matched in its own transaction
    matching: dict[str, Any] = field(default_factory=dict, repr=False)
    # the risk engine's check in the placement transaction (``app.risk.gate``); off only
    # in the benchmark's baseline (bench/risk_place.py), never by configuration
    risk_checks: bool = True

    def now(self) -> datetime:
        return self.clock()

    @property
    def applied(self) -> AppliedWatcher:
        """Waits for the matching engines (one LISTEN connection, opened on first use)."""
        if self._applied is None:
            self._applied = AppliedWatcher(self.engine)
        return self._applied

    @property
    def reads(self) -> async_sessionmaker[AsyncSession]:
        """Sessions for reading only, outside a transaction (autocommit): a read is one
        round trip, not BEGIN + statement + ROLLBACK. Under READ COMMITTED a transaction
        gives a run of reads nothing either (each statement takes its own snapshot); for
        locks or writes use ``sessions``."""
        if self._reads is None:
            self._reads = create_sessionmaker(
                self.engine.execution_options(isolation_level="AUTOCOMMIT")
            )
        return self._reads

    def coalescer(self, name: str, make: Callable[[], C]) -> C:
        """This runtime's one ``name`` (an ``app.core.coalesce.Coalescer``), made on first use."""
        if name not in self._coalescers:
            self._coalescers[name] = make()
        return self._coalescers[name]  # type: ignore[no-any-return]

    def redis_key(self, *parts: str) -> str:
        return self.settings.redis_prefix + ":".join(parts)

    async def aclose(self) -> None:
        if self._applied is not None:
            await self._applied.aclose()
        await self.redis.aclose()
        await self.payments.aclose()
        await self.exchanges.aclose()
        await self.engine.dispose()


def build_runtime(
    settings: Settings, *, database_url: str, redis_url: str, mailer: Mailer | None = None
) -> Runtime:
    engine = create_engine(
        database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow
    )
    smtp_url = settings.smtp_url.get_secret_value() if settings.smtp_url else None
    active_key, master_keys = settings.exchange_key_ring()
    exchange_keys = KeyRing(master_keys, active=active_key)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=create_sessionmaker(engine),
        # No socket read timeout: redis-py runs commands under asyncio.wait_for when one
        # is set, which on Python 3.11 can swallow a task's cancellation (shutdown hangs).
        # Connecting stays bounded; dead connections are found by the health checks.
        redis=Redis.from_url(
            redis_url,
            health_check_interval=30,
            socket_timeout=None,
            socket_connect_timeout=5,
        ),
        mailer=mailer
        or build_mailer(
            smtp_url=smtp_url,
            folder=settings.mail_dir,
            sender=settings.mail_from,
            log_bodies=settings.is_development,
        ),
        signer=TokenSigner(
            jwt_secret=settings.jwt_secret.get_secret_value(),
            secret_key=settings.secret_key.get_secret_value(),
            issuer=settings.jwt_issuer,
            access_ttl=timedelta(seconds=settings.access_token_ttl_seconds),
        ),
        payments=StripeGateway.from_settings(settings),
        exchange_keys=exchange_keys,
        exchanges=CcxtConnector.from_settings(settings, exchange_keys),
    )
