"""What the trading benchmarks share: their database, the server's settings, funded
traders with tokens, the app under uvicorn, CPU time of a process, the JSON results.

The database is ``co_bench_trading_<pid>`` on the configured server (DATABASE_URL), or on
an embedded one under .data/bench-trading: created at the start of every run (so the book
is empty and the traders are fresh; a name of its own, so two benchmarks running at once
do not drop each other's), migrated, and dropped at the end unless ``--keep``. Redis keys
and channels get a prefix of their own per run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import insert

from app.__main__ import services
from app.core.settings import Settings
from app.embedded import with_database
from app.ledger import journal as ledger
from app.ledger.rules import AccountKind, Leg
from app.runtime import Runtime, build_runtime
from bench.__main__ import bench_settings
from bench.processes import ROOT, Children, free_port, uvicorn_command, wait_until_serving
from bench.report import RESULTS_DIR
from db.migrate import upgrade
from db.models import User
from db.session import in_transaction

DATA_DIR = ROOT / ".data" / "bench-trading"
DATABASE = "co_bench_trading"
SYMBOL = "BTC/USDT"
APP_FACTORY = "app.asgi:create_app_from_env"


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@contextlib.contextmanager
def trading_database(*, keep: bool = False) -> Iterator[tuple[str, str]]:
    """(database_url, redis_url) of a fresh, migrated ``co_bench_trading_<pid>``."""
    name = f"{DATABASE}_{os.getpid()}"
    with services(Settings(), data_dir=DATA_DIR) as (admin_url, redis_url):
        asyncio.run(_recreate(admin_url, name))
        database_url = with_database(admin_url, name)
        upgrade(database_url)
        try:
            yield database_url, redis_url
        finally:
            if not keep:
                asyncio.run(_drop(admin_url, name))


def analyse(database_url: str) -> bool:
    """ANALYZE the database, as autovacuum does on a live one as its tables grow (the
    engine's and the placement's statements run on generic plans, planned from these
    statistics); whether autovacuum is on (a machine may run PostgreSQL without it, and
    then nothing else does this during a run)."""

    async def run() -> bool:
        connection = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            await connection.execute("ANALYZE")
            return bool(await connection.fetchval("SELECT current_setting('autovacuum') = 'on'"))
        finally:
            await connection.close()

    return asyncio.run(run())


async def _recreate(admin_url: str, name: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def _drop(admin_url: str, name: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def server_settings(database_url: str, redis_url: str) -> dict[str, str]:
    """``python -m bench``'s production settings, plus: every rate limit out of the way
    (each request still draws from its budget), the market maker off (the bench makes
    every order), Redis keys under a prefix of this run, background jobs that have
    nothing to do in a bench off (the outbox relay stays: the engines' events go out
    through it)."""
    return {
        **bench_settings(database_url, redis_url, data_dir=DATA_DIR),
        "REDIS_PREFIX": f"cobench{os.getpid()}:",
        "RATE_LIMIT_ORDERS": "1000000000",
        "LOGIN_ATTEMPTS_PER_IP": "1000000000",
        "MARKET_MAKER_ENABLED": "false",
        "TRADING_ENGINE_ENABLED": "true",
        "EQUITY_SNAPSHOT_INTERVAL_SECONDS": "0",
        "STAKING_ACCRUAL_INTERVAL_SECONDS": "0",
        "WITHDRAWAL_WORKER_INTERVAL_SECONDS": "0",
        # a pool as large as the load (32 connections + the engines' 5): overflow
        # connections are closed on return, and a new one costs a connect and asyncpg's
        # type introspection, which at 32 in flight ran on most requests
        "DB_POOL_SIZE": "40",
        "DB_MAX_OVERFLOW": "0",
    }


def settings_from(overrides: dict[str, str]) -> Settings:
    return Settings(**{name.lower(): value for name, value in overrides.items()})


def runtime(settings: Settings) -> Runtime:
    return build_runtime(
        settings, database_url=settings.database_url or "", redis_url=settings.redis_url or ""
    )


@dataclass(frozen=True, slots=True)
class Trader:
    user_id: int
    token: str


async def create_traders(
    rt: Runtime, *, count: int, tag: str, funding: dict[str, Decimal]
) -> list[Trader]:
    """``count`` verified users (one INSERT), each funded with ``funding`` through the
    ledger (one journal entry per currency, from EXTERNAL), an access token each."""
    now = rt.now()
    rows = [
        {
            "email": f"t{i}-{tag}@bench.example",
            "display_name": f"Trader {i}",
            "password_hash": "x",  # never logs in: the token is issued directly
            "email_verified_at": now,
            "tokens_valid_after": now - timedelta(minutes=1),
        }
        for i in range(count)
    ]
    async with rt.sessions() as session, session.begin():
        ids = list((await session.scalars(insert(User).returning(User.id), rows)).all())
    for currency, amount in funding.items():
        external = ledger.system_account(currency, AccountKind.EXTERNAL)
        legs = [Leg(external, -amount * len(ids))]
        legs += [Leg(ledger.user_account(uid, currency), amount) for uid in ids]

        async def work(session: Any, legs: list[Leg] = legs) -> None:
            await ledger.post(session, kind="CORRECTION", legs=legs, memo="bench funding")

        await in_transaction(rt.sessions, work)
    return [
        Trader(uid, rt.signer.issue_access(user_id=uid, role="USER", now=now).token) for uid in ids
    ]


def start_server(
    children: Children,
    env: dict[str, str],
    logs: contextlib.ExitStack,
    *,
    name: str,
    factory: str = APP_FACTORY,
) -> tuple[subprocess.Popen[bytes], int]:
    """One uvicorn process (``python -m bench``'s settings), its log in results/logs."""
    (RESULTS_DIR / "logs").mkdir(parents=True, exist_ok=True)
    log = logs.enter_context((RESULTS_DIR / "logs" / f"{name}.log").open("wb"))
    port = free_port()
    proc = children.start(
        uvicorn_command(factory, port=port),
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_until_serving(proc, port)
    return proc, port


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (not its children), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    """CPU seconds so far (Linux /proc): the whole machine's busy and steal time (steal:
    what the hypervisor gave to other guests while this one wanted to run), and those of
    every PostgreSQL and Redis process on this machine (0 when they run elsewhere)."""

    busy: float
    steal: float
    postgres: float
    redis: float

    @classmethod
    def take(cls) -> CpuSnapshot:
        tick = os.sysconf("SC_CLK_TCK")
        # user nice system idle iowait irq softirq steal (guest time is within user)
        times = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        by_name = {"postgres": 0, "redis-server": 0}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                text = stat.read_text()
                name = text[text.index("(") + 1 : text.rindex(")")].split(":")[0]
                if name in by_name:
                    fields = text.rsplit(")", 1)[1].split()
                    by_name[name] += int(fields[11]) + int(fields[12])
        busy = sum(times) - times[3] - times[4]
        return cls(
            busy=busy / tick,
            steal=times[7] / tick,
            postgres=by_name["postgres"] / tick,
            redis=by_name["redis-server"] / tick,
        )

    def __sub__(self, before: CpuSnapshot) -> CpuSnapshot:
        return CpuSnapshot(
            busy=self.busy - before.busy,
            steal=self.steal - before.steal,
            postgres=self.postgres - before.postgres,
            redis=self.redis - before.redis,
        )


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def write_results(name: str, document: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


def verdict(met: bool) -> str:
    return "met" if met else "NOT MET"


def print_rows(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for line in [header, ["-" * w for w in widths], *rows]:
        print(
            "  ".join(
                str(cell).rjust(w) if i else str(cell).ljust(w)
                for i, (cell, w) in enumerate(zip(line, widths, strict=True))
            )
        )


class ActivitySampler:
    """What the server's PostgreSQL connections are doing, sampled every ``interval``
    from pg_stat_activity in a thread of its own while the block runs: the mean number of
    connections per (state or wait event, statement), e.g. how many wait for a row lock."""

    def __init__(self, database_url: str, *, interval: float = 0.1) -> None:
        self.dsn = asyncpg_dsn(database_url)
        self.database = self.dsn.rsplit("/", 1)[1].split("?")[0]
        self.interval = interval
        self.samples = 0
        self.counts: Counter[tuple[str, str]] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> ActivitySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    async def _run(self) -> None:
        connection = await asyncpg.connect(self.dsn)
        try:
            while not self._stop.is_set():
                rows = await connection.fetch(
                    "SELECT state, wait_event_type, wait_event, query FROM pg_stat_activity"
                    " WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type ="
                    " 'client backend'",
                    self.database,
                )
                self.samples += 1
                for r in rows:
                    if r["state"] != "active":
                        self.counts[(r["state"] or "?", "")] += 1
                        continue
                    wait = f"{r['wait_event_type']}:{r['wait_event']}" if r["wait_event"] else "CPU"
                    self.counts[(f"active {wait}", " ".join(r["query"].split())[:70])] += 1
                await asyncio.sleep(self.interval)
        finally:
            await connection.close()

    def mean_connections(self, top: int = 8) -> list[tuple[str, str, float]]:
        if not self.samples:
            return []
        return [(s, q, n / self.samples) for (s, q), n in self.counts.most_common(top)]
