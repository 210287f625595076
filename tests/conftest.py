"""Test set-up: a real PostgreSQL database per xdist worker (migrated once with Alembic),
a real Redis database per worker, an in-process SMTP server, and per-test isolation by
truncating every table and flushing the worker's Redis database after each test.

Run through ``python3 dev.py test`` (or ``python -m app test``), which provides
DATABASE_URL / REDIS_URL, embedded servers included.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, insert, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.asgi import create_app
from app.core import reference_data
from app.core.settings import Settings
from app.embedded import ensure_database, with_database
from app.ledger.journal import check_invariants
from app.runtime import Runtime, build_runtime, utcnow
from app.staking import catalogue as staking_catalogue
from app.trading.engine.runner import EngineSet
from db.base import Base
from db.migrate import upgrade
from db.models import Currency, KycLimit, Market, ReferencePrice
from db.session import sqlstate
from tests.support import GraphQLClient, Mailbox, QueryCounter, start_smtp_server
from tests.support.partner import client_with
from tests.support.trading import running_engines
from tests.support.watchdog import pytest_runtest_protocol, remember_loop

__all__ = ["pytest_runtest_protocol"]  # the watchdog's hook, registered by this conftest

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
WORKER_NUMBER = int(WORKER[2:]) if WORKER.startswith("gw") else 0
# Every run has its own databases and Redis keys, so two runs on one machine (or a
# process some earlier run left behind) never share state: co_test_<run>_<worker>.
RUN = re.sub(r"\W", "", os.environ.get("PYTEST_XDIST_TESTRUNUID", uuid.uuid4().hex))[:10]
DATABASE = f"co_test_{RUN}_{WORKER_NUMBER}"


def _require(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} is not set: run the suite with `python3 dev.py test`", returncode=2)
    return value


def _redis_url_for_worker(url: str, number: int) -> str:
    db = 1 + number % 15
    if url.startswith("unix://"):
        base = re.sub(r"[?&]db=\d+", "", url)
        return f"{base}{'&' if '?' in base else '?'}db={db}"
    return re.sub(r"^(rediss?://[^/?]+)(/\d*)?", lambda m: f"{m.group(1)}/{db}", url)


async def _admin(admin_url: str):
    import asyncpg

    return await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))


async def _drop_and_create(admin_url: str, name: str) -> None:
    connection = await _admin(admin_url)
    try:
        # test databases of runs that died (more than an hour old, nobody connected); a
        # run in progress elsewhere may have no connection open for a moment
        stale: list = []
        with contextlib.suppress(Exception):  # pg_stat_file needs a superuser: skip it
            stale = await connection.fetch(
                "SELECT datname FROM pg_database d WHERE datname LIKE 'co\\_test\\_%'"
                " AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)"
                " AND (pg_stat_file('base/' || d.oid || '/PG_VERSION')).modification"
                "     < now() - interval '1 hour'"
            )
        for row in stale:
            with contextlib.suppress(Exception):  # in use again meanwhile: leave it
                await connection.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}"')
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()
    await ensure_database(admin_url, name)


async def _drop(admin_url: str, name: str) -> None:
    connection = await _admin(admin_url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def restore_reference_data(connection: AsyncConnection) -> None:
    """What migration 0002 inserts; truncation removed it."""
    for model, rows in (
        (Currency, reference_data.currency_rows()),
        (ReferencePrice, reference_data.price_rows()),
        (KycLimit, reference_data.kyc_limit_rows()),
        (Market, reference_data.market_rows()),
    ):
        await connection.execute(insert(model), rows)
    await staking_catalogue.restore(connection)  # what migration 0003 inserts


@pytest.fixture(scope="session")
def smtp() -> Iterator[Mailbox]:
    mailbox, controller = start_smtp_server()
    yield mailbox
    controller.stop()


@pytest.fixture(scope="session")
def settings(smtp: Mailbox) -> Iterator[Settings]:
    admin_url = _require("DATABASE_URL")
    database_url = with_database(admin_url, DATABASE)
    os.environ["CO_TEST_DATABASE_URL"] = database_url  # what a watchdog dump reads
    # asyncio.run / Alembic's own loop run in a thread, away from pytest-asyncio's loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _drop_and_create(admin_url, DATABASE)).result()
        pool.submit(upgrade, database_url).result()  # the only way tables are created
    yield Settings(
        env="test",
        database_url=database_url,
        redis_url=_redis_url_for_worker(_require("REDIS_URL"), WORKER_NUMBER),
        redis_prefix=f"co-test-{RUN}-{WORKER_NUMBER}:",
        public_url="http://testserver",
        data_dir=Path(tempfile.mkdtemp(prefix="co-test-")),
        smtp_url=smtp.url,
        seed_demo_data=False,
        log_json=False,
        db_pool_size=5,
        # Engines run where a test starts them (tests/support/trading.py); servers under test
        # (LiveServer) start their own, as standbys when a test already owns a market.
        trading_engine_poll_seconds=0.05,
        trading_engine_takeover_seconds=0.2,
    )
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _drop(admin_url, DATABASE)).result()


@pytest.fixture(scope="session")
async def rt(settings: Settings) -> AsyncIterator[Runtime]:
    assert settings.database_url and settings.redis_url
    runtime = build_runtime(
        settings, database_url=settings.database_url, redis_url=settings.redis_url
    )
    remember_loop()
    yield runtime
    await runtime.aclose()


# Ends what a test left inside a transaction for longer than any live job holds one (a
# server, engine or worker stopped mid-flight): it would keep a lock TRUNCATE needs forever.
_END_STRAY_TRANSACTIONS = """
    SELECT pid, state, application_name, left(query, 120),
           pg_terminate_backend(pid) FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid()
      AND state IN ('idle in transaction', 'idle in transaction (aborted)', 'active')
      AND coalesce(xact_start, query_start) < now() - interval '2 seconds'
"""
_BUSY = {"55P03", "40P01"}  # lock not available (NOWAIT), deadlock detected
_EMPTY_WITHIN = 60.0  # seconds before a test's teardown gives up


async def _empty(runtime: Runtime, tables: str) -> None:
    """Takes every table's lock at once or none (NOWAIT), then empties them. A module's
    live servers keep their engines and background jobs polling these tables: waiting for
    one lock while holding others deadlocks with them (their reads lock tables in another
    order), so this never waits holding a lock; the caller tries again a moment later."""
    async with runtime.engine.begin() as connection:
        await connection.execute(text(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE NOWAIT"))
        await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        await restore_reference_data(connection)


async def _empty_between_tests(runtime: Runtime, tables: str, test: str) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    busy_since = started
    while True:
        try:
            await _empty(runtime, tables)
            return
        except DBAPIError as error:
            if sqlstate(error) not in _BUSY:
                raise
        now = loop.time()
        if now - started > _EMPTY_WITHIN:
            pytest.fail(f"could not empty the tables within {_EMPTY_WITHIN:.0f} s")
        if now - busy_since > 2.0:
            async with runtime.engine.begin() as connection:
                ended = (await connection.execute(text(_END_STRAY_TRANSACTIONS))).all()
            if ended:  # shown with the test's output when it fails
                print(f"{test}: ended stray transactions: {ended}", file=sys.stderr)
            busy_since = now
        await asyncio.sleep(random.uniform(0.005, 0.03))


@pytest.fixture(autouse=True)
async def _isolate(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """After each test that touched the database or Redis: empty both."""
    yield
    if "rt" not in request.fixturenames:
        return
    runtime: Runtime = request.getfixturevalue("rt")
    runtime.clock = utcnow
    async with runtime.sessions() as session:
        problems = await check_invariants(session)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    await _empty_between_tests(runtime, tables, request.node.nodeid)
    runtime.applied.forget()  # market sequences start again at 0
    keys = [key async for key in runtime.redis.scan_iter(match=runtime.redis_key("*"))]
    if keys:
        await runtime.redis.unlink(*keys)
    request.getfixturevalue("smtp").clear()
    assert problems == [], "ledger invariants broken:\n" + "\n".join(problems)


@pytest.fixture
async def client(rt: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(runtime=rt))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def gql(client: httpx.AsyncClient) -> GraphQLClient:
    return GraphQLClient(client)


@pytest.fixture
def mailbox(smtp: Mailbox) -> Mailbox:
    return smtp


@pytest.fixture
def sql_statements(rt: Runtime) -> Iterator[QueryCounter]:
    counter = QueryCounter()
    event.listen(rt.engine.sync_engine, "before_cursor_execute", counter.record)
    yield counter
    event.remove(rt.engine.sync_engine, "before_cursor_execute", counter.record)


@pytest.fixture
def statements(rt: Runtime) -> Iterator[list[str]]:
    """The statements sent on the runtime's pooled connections through asyncpg's own calls
    (raw asyncpg, BEGIN, COMMIT: its query logger on each connection as it is checked
    out); SQLAlchemy's statements (prepared) are ``sql_statements``'. The logger runs soon
    after each statement: let the loop turn once before counting."""
    sent: list[str] = []
    # asyncpg's own type introspection, once per connection and type: not ours
    introspection = ("typeinfo_tree", "set_config('jit'", "current_setting('jit')")

    def log(record: Any) -> None:
        if not any(marker in record.query for marker in introspection):
            sent.append(record.query)

    def on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        raw = dbapi_connection.driver_connection
        raw.remove_query_logger(log)
        raw.add_query_logger(log)

    event.listen(rt.engine.sync_engine, "checkout", on_checkout)
    yield sent
    event.remove(rt.engine.sync_engine, "checkout", on_checkout)


@pytest.fixture
async def engines(rt: Runtime) -> AsyncIterator[EngineSet]:
    """Every market's engine running in the test's event loop (tests/support/trading.py)."""
    async with running_engines(rt) as running:
        yield running


@pytest.fixture
async def live_gql(live, rt: Runtime) -> AsyncIterator[GraphQLClient]:  # type: ignore[no-untyped-def]
    """GraphQL over HTTP to the module's ``live`` server (a ``tests.gateway.test_websocket.
    LiveServer`` each such module defines). Depends on ``rt`` so that the database and
    Redis are emptied after the test."""
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        yield GraphQLClient(http)


@pytest.fixture
async def api(rt: Runtime) -> AsyncIterator[GraphQLClient]:
    """GraphQL over HTTP with leaders that need no closed trades yet."""
    rt.applied  # noqa: B018 (made now, so the runtime client_with copies shares it)
    async with client_with(rt, leader_min_closed_trades=0) as http:
        yield GraphQLClient(http)
