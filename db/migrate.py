"""Apply Alembic migrations: the only way tables are created."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

ROOT = Path(__file__).resolve().parent.parent
# pg_advisory_xact_lock key that serialises upgrades of one database (migrations/env.py)
MIGRATION_LOCK_KEY = 0x4D49_4752_4154_45  # "MIGRATE"


def alembic_config(database_url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "heads") -> None:
    """Synchronous: call it outside a running event loop (or in a thread).

    ``heads``: work developed in parallel may branch from the same revision until a
    merge revision joins the branches; every head is applied. Safe to run from several
    processes at once: they take turns (an advisory lock), the later ones do nothing."""
    command.upgrade(alembic_config(database_url), revision)
