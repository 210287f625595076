"""exchange custody: balances held at a connected exchange mirrored into ledger accounts of
their own, reconciled by syncs

- ``ledger_accounts.exchange_account_id`` (nullable, FK exchange_connections): set on the
  exchange custody kinds (EXCHANGE_FREE, EXCHANGE_USED, EXCHANGE_COUNTERPARTY) and only on
  them (CHECK ``exchange_kind_matches_owner``). The unique key becomes (user_id, currency,
  kind, exchange_account_id), NULLS NOT DISTINCT: two connections each mirror BTC, and a
  platform account is still found by its first three columns. A mirror account never goes
  negative (CHECK ``exchange_mirror_non_negative``); a partial index finds a connection's
  accounts.
- ``exchange_connections.synced_at`` (the mirror's "as of") and ``sync_attempted_at`` (the
  periodic job claims connections by it, indexed with ``status``).
- ``exchange_syncs``: one row per sync run, whatever came of it.

Revision ID: 0019_exchange_custody
Revises: 0018_paper_bots
Create Date: 2026-12-04 22:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0019_exchange_custody"
down_revision: str | None = "0018_paper_bots"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EXCHANGE_KINDS = "('EXCHANGE_FREE', 'EXCHANGE_USED', 'EXCHANGE_COUNTERPARTY')"


def upgrade() -> None:
    op.add_column("ledger_accounts", sa.Column("exchange_account_id", sa.BigInteger()))
    op.create_foreign_key(
        op.f("fk_ledger_accounts_exchange_account_id_exchange_connections"),
        "ledger_accounts", "exchange_connections", ["exchange_account_id"], ["id"],
    )  # fmt: skip
    op.drop_constraint(
        "uq_ledger_accounts_user_id_currency_kind", "ledger_accounts", type_="unique"
    )
    op.create_unique_constraint(
        op.f("uq_ledger_accounts_user_id_currency_kind_exchange_account_id"),
        "ledger_accounts", ["user_id", "currency", "kind", "exchange_account_id"],
        postgresql_nulls_not_distinct=True,
    )  # fmt: skip
    op.create_check_constraint(
        op.f("ck_ledger_accounts_exchange_kind_matches_owner"), "ledger_accounts",
        f"(exchange_account_id IS NOT NULL) = (kind IN {_EXCHANGE_KINDS})",
    )  # fmt: skip
    op.create_check_constraint(
        op.f("ck_ledger_accounts_exchange_mirror_non_negative"), "ledger_accounts",
        "kind NOT IN ('EXCHANGE_FREE', 'EXCHANGE_USED') OR balance >= 0",
    )  # fmt: skip
    op.create_index(
        op.f("ix_ledger_accounts_exchange_account_id_currency_kind"), "ledger_accounts",
        ["exchange_account_id", "currency", "kind"],
        postgresql_where=sa.text("exchange_account_id IS NOT NULL"),
    )  # fmt: skip
    op.add_column("exchange_connections", sa.Column("synced_at", sa.DateTime(timezone=True)))
    op.add_column(
        "exchange_connections", sa.Column("sync_attempted_at", sa.DateTime(timezone=True))
    )
    op.create_index(
        op.f("ix_exchange_connections_status_sync_attempted_at"),
        "exchange_connections", ["status", "sync_attempted_at"],
    )  # fmt: skip
    _create_syncs()


def _create_syncs() -> None:
    op.create_table(
        "exchange_syncs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("connection_id", sa.BigInteger(), nullable=False),
        sa.Column("trigger", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("error_code", sa.Text(), nullable=True),
        sa.Column("changes", postgresql.JSONB(), server_default="[]", nullable=False),
        sa.Column("unmirrored", postgresql.JSONB(), server_default="{}", nullable=False),
        sa.Column("journal_entry_id", sa.BigInteger(), nullable=True),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "trigger IN ('CONNECT', 'SCHEDULED', 'MANUAL', 'DISCONNECT')",
            name=op.f("ck_exchange_syncs_trigger_known"),
        ),
        sa.CheckConstraint(
            "outcome IN ('CHANGED', 'UNCHANGED', 'FAILED', 'SUPERSEDED', 'CLOSED')",
            name=op.f("ck_exchange_syncs_outcome_known"),
        ),
        sa.CheckConstraint(
            "(outcome = 'FAILED') = (error_code IS NOT NULL)",
            name=op.f("ck_exchange_syncs_failed_has_code"),
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["exchange_connections.id"],
            name=op.f("fk_exchange_syncs_connection_id_exchange_connections"),
        ),
        sa.ForeignKeyConstraint(
            ["journal_entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_exchange_syncs_journal_entry_id_journal_entries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exchange_syncs")),
    )
    op.create_index(
        op.f("ix_exchange_syncs_connection_id_id"), "exchange_syncs", ["connection_id", "id"]
    )


def downgrade() -> None:
    op.drop_table("exchange_syncs")
    op.drop_index(op.f("ix_exchange_connections_status_sync_attempted_at"))
    op.drop_column("exchange_connections", "sync_attempted_at")
    op.drop_column("exchange_connections", "synced_at")
    op.execute(
        "DELETE FROM postings WHERE account_id IN"
        " (SELECT id FROM ledger_accounts WHERE exchange_account_id IS NOT NULL)"
    )
    op.execute("DELETE FROM ledger_accounts WHERE exchange_account_id IS NOT NULL")
    op.drop_index(op.f("ix_ledger_accounts_exchange_account_id_currency_kind"))
    op.drop_constraint(op.f("ck_ledger_accounts_exchange_mirror_non_negative"), "ledger_accounts")
    op.drop_constraint(op.f("ck_ledger_accounts_exchange_kind_matches_owner"), "ledger_accounts")
    op.drop_constraint(
        op.f("uq_ledger_accounts_user_id_currency_kind_exchange_account_id"), "ledger_accounts"
    )
    op.create_unique_constraint(
        op.f("uq_ledger_accounts_user_id_currency_kind"), "ledger_accounts",
        ["user_id", "currency", "kind"], postgresql_nulls_not_distinct=True,
    )  # fmt: skip
    op.drop_column("ledger_accounts", "exchange_account_id")
