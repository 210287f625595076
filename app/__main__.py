"""Command line: ``python -m app serve | migrate | seed | test | engine | copy-worker | data``.

``serve`` starts embedded PostgreSQL + Redis when DATABASE_URL / REDIS_URL are unset,
migrates, seeds demo data (when SEED_DEMO_DATA), prints the URL and logins, serves.
``test`` does the same set-up for the test suite, then runs pytest.
``engine`` runs only the matching engines (production: API processes then set
TRADING_ENGINE_ENABLED=false); several engine processes are owner and standbys.
``copy-worker`` runs only the copy trading worker (API processes then set
COPY_WORKER_ENABLED=false); several take turns batch by batch.
``backtest [sweep] ...`` backtests a strategy over stored candles (same servers as ``data``).
``data import FILE ...`` imports an OHLCV file into the market data store, ``data
import-trades FILE ...`` a trade file (on DATABASE_URL, or embedded servers, migrated
first, when it is unset).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from app.core.logs import configure_logging
from app.core.settings import Settings

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp

    from app.runtime import Runtime


@contextlib.contextmanager
def services(settings: Settings, *, data_dir: Path) -> Iterator[tuple[str, str]]:
    """(database_url, redis_url): the configured servers, or embedded ones under data_dir."""
    if settings.database_url and settings.redis_url:
        yield settings.database_url, settings.redis_url
        return
    if settings.database_url or settings.redis_url:
        raise SystemExit("Set both DATABASE_URL and REDIS_URL, or neither (embedded servers).")
    from app.embedded import start_embedded

    embedded = start_embedded(data_dir)
    try:
        yield embedded.database_url, embedded.redis_url
    finally:
        embedded.stop()


def _seed(settings: Settings, database_url: str, redis_url: str) -> None:
    from app.seed import seed_demo_data

    _run_on_runtime(settings, database_url, redis_url, seed_demo_data)


def with_embedded_defaults(settings: Settings) -> Settings:
    """With embedded servers (no DATABASE_URL / REDIS_URL) the market maker runs, so a
    fresh run has moving order books, unless MARKET_MAKER_ENABLED says otherwise."""
    if settings.database_url or settings.redis_url:
        return settings
    if "market_maker_enabled" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"market_maker_enabled": True})


def _banner(settings: Settings) -> str:
    from app.seed import DEMO_LOGINS

    url = f"http://{settings.host}:{settings.port}/graphql"
    lines = [f"CryptoOrchestrator is serving GraphQL at {url}"]
    if settings.is_development:
        lines.append(f"GraphiQL: open {url} in a browser")
    if settings.seed_demo_data:
        lines.append("Demo logins (email / password):")
        lines += [f"  {d.email} / {d.password}  ({d.role})" for d in DEMO_LOGINS]
    if settings.market_maker_enabled:
        lines.append("Market maker: quoting every market (MARKET_MAKER_ENABLED=false: off)")
    return "\n".join(lines)


def serve(settings: Settings) -> None:
    import uvicorn

    from app.asgi import create_app
    from db.migrate import upgrade

    settings = with_embedded_defaults(settings)
    with services(settings, data_dir=settings.data_dir) as (database_url, redis_url):
        upgrade(database_url)
        if settings.seed_demo_data:
            _seed(settings, database_url, redis_url)
        app = create_app(settings, database_url=database_url, redis_url=redis_url)
        print(_banner(settings), flush=True)
        uvicorn.Server(uvicorn_config(settings, app)).run()


def uvicorn_config(settings: Settings, app: ASGIApp) -> uvicorn.Config:
    """How ``serve`` runs uvicorn (the Dockerfile's CMD passes the same options)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=10,
        ws_max_size=settings.ws_max_message_bytes,
        ws_per_message_deflate=settings.ws_per_message_deflate,
    )


def migrate(settings: Settings) -> None:
    from db.migrate import upgrade

    if not settings.database_url:
        raise SystemExit("DATABASE_URL is not set")
    upgrade(settings.database_url)


def _with_runtime(settings: Settings, body: Callable[[Runtime], Awaitable[None]]) -> None:
    """Run ``body`` on a runtime over DATABASE_URL / REDIS_URL until it ends or the
    process is stopped; the runtime is closed after."""
    if not (settings.database_url and settings.redis_url):
        raise SystemExit("DATABASE_URL and REDIS_URL are not set")
    _run_on_runtime(settings, settings.database_url, settings.redis_url, body)


def _run_on_runtime(
    settings: Settings,
    database_url: str,
    redis_url: str,
    body: Callable[[Runtime], Awaitable[object]],
) -> None:
    """``body`` on a runtime over these servers; the runtime is closed after."""
    from app.runtime import build_runtime

    async def run() -> None:
        rt = build_runtime(settings, database_url=database_url, redis_url=redis_url)
        try:
            await body(rt)
        finally:
            await rt.aclose()

    asyncio.run(run())


def run_engines(settings: Settings) -> None:
    from app.trading.engine.runner import EngineSet

    async def body(rt: Runtime) -> None:
        engines = EngineSet(rt)
        try:
            await engines.start()
            await asyncio.Event().wait()
        finally:
            await engines.stop()

    _with_runtime(settings, body)


def run_worker(settings: Settings) -> None:
    """The server's background jobs (outbox relay, event consumers, copy trading, accrual,
    withdrawals, ...) without the API: beside servers run with BACKGROUND_JOBS_ENABLED=false."""
    from app.background import default_jobs
    from app.backtesting.backtests import stop_worker as stop_backtests
    from app.jobs import add_withdrawal_jobs

    async def body(rt: Runtime) -> None:
        jobs = add_withdrawal_jobs(default_jobs(rt))
        jobs.start()
        try:
            await asyncio.Event().wait()
        finally:
            await jobs.stop()
            await stop_backtests()

    _with_runtime(settings, body)


def run_copy_worker(settings: Settings) -> None:
    from app.social.copy_trading import run_worker as copy_worker

    _with_runtime(settings, copy_worker)


def run_tests(settings: Settings, pytest_args: list[str]) -> int:
    with services(settings, data_dir=settings.data_dir / "test") as (database_url, redis_url):
        env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
        return subprocess.call([sys.executable, "-m", "pytest", *pytest_args], env=env)  # noqa: S603


def run_data(settings: Settings, args: argparse.Namespace) -> int:
    from app.marketdata.cli import run_command
    from db.migrate import upgrade

    if settings.database_url:
        return run_command(settings.database_url, args)
    with services(settings, data_dir=settings.data_dir) as (database_url, _):
        upgrade(database_url)
        return run_command(database_url, args)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run_backtest_command(settings: Settings, args: argparse.Namespace) -> int:
    from app.backtesting.cli import run_command
    from db.migrate import upgrade

    if settings.database_url:
        return run_command(settings.database_url, args)
    with services(settings, data_dir=settings.data_dir) as (database_url, _):
        upgrade(database_url)
        return run_command(database_url, args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the API (embedded servers when no URLs are set)")
    commands.add_parser("migrate", help="alembic upgrade head on DATABASE_URL")
    commands.add_parser("seed", help="insert demo data on DATABASE_URL / REDIS_URL")
    commands.add_parser("test", help="run the test suite; other arguments go to pytest")
    commands.add_parser("engine", help="run the matching engines only (owner or standby)")
    commands.add_parser("copy-worker", help="run the copy trading worker only")
    commands.add_parser("worker", help="run the background jobs only (no API, no engines)")
    from app.marketdata.cli import add_commands as add_data_commands

    add_data_commands(commands)
    from app.backtesting.cli import add_commands as add_backtest_commands

    add_backtest_commands(commands)
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "test":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")

    # uvicorn re-raises the signal after its graceful shutdown; make SIGTERM unwind
    # through our finally blocks (which stop the embedded servers) like Ctrl-C does.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    settings = Settings()
    configure_logging(level=settings.log_level, json_output=settings.log_json)
    if args.command == "serve":
        serve(settings)
    elif args.command == "migrate":
        migrate(settings)
    elif args.command == "seed":
        if settings.is_production:
            raise SystemExit(
                "Refusing to seed demo data in production: the demo accounts (an admin "
                "among them) have published passwords."
            )
        if not (settings.database_url and settings.redis_url):
            raise SystemExit("DATABASE_URL and REDIS_URL are not set")
        _seed(settings, settings.database_url, settings.redis_url)
    elif args.command == "test":
        return run_tests(settings, extra)
    elif args.command == "engine":
        run_engines(settings)
    elif args.command == "copy-worker":
        run_copy_worker(settings)
    elif args.command == "worker":
        run_worker(settings)
    elif args.command == "data":
        return run_data(settings, args)
    elif args.command == "backtest":
        return run_backtest_command(settings, args)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
