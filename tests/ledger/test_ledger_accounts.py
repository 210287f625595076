"""Locking ledger accounts (``ledger.lock_accounts``): the accounts asked for, made when
missing, found through the unique index however many accounts there are."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import insert

from app.ledger import journal as ledger
from app.ledger.rules import AccountKind, AccountRef
from app.runtime import Runtime
from db.models import User
from db.raw import driver
from db.session import in_transaction

CURRENCIES = ("BTC", "ETH", "SOL", "USDT")


async def _users(rt: Runtime, count: int) -> list[int]:
    rows = [
        {"email": f"acct{i}@example.com", "display_name": f"A{i}", "password_hash": "x"}
        for i in range(count)
    ]
    async with rt.sessions() as session, session.begin():
        return list((await session.scalars(insert(User).returning(User.id), rows)).all())


async def _many_accounts(rt: Runtime, user_ids: list[int]) -> None:
    """An AVAILABLE and a HELD account per user and currency, statistics taken."""
    async with rt.sessions() as session, session.begin():
        pg = await driver(session)
        await pg.execute(
            """
            INSERT INTO ledger_accounts (user_id, currency, kind)
            SELECT u, c, k FROM unnest($1::bigint[]) AS u, unnest($2::text[]) AS c,
                   unnest(ARRAY['AVAILABLE', 'HELD']) AS k
            ON CONFLICT DO NOTHING
            """,
            user_ids,
            list(CURRENCIES),
        )
        await pg.execute("ANALYZE ledger_accounts")


def _scans(plan: Any) -> list[tuple[str, str]]:
    """Every (node type, relation) of an EXPLAIN (FORMAT JSON) plan."""
    found = [(plan["Node Type"], plan.get("Relation Name", ""))]
    for child in plan.get("Plans", ()):
        found += _scans(child)
    return found


async def test_lock_finds_existing_makes_missing_and_locks_system_accounts(rt: Runtime) -> None:
    (alice, bob) = await _users(rt, 2)
    wanted = [
        ledger.user_account(alice, "USDT"),
        AccountRef("USDT", AccountKind.HELD, alice),
        ledger.user_account(bob, "BTC"),
        ledger.system_account("USDT", AccountKind.FEES),
    ]

    async def lock(session: Any) -> dict[AccountRef, ledger.LockedAccount]:
        return await ledger.lock_accounts(session, wanted)

    first = await in_transaction(rt.sessions, lock)
    again = await in_transaction(rt.sessions, lock)
    assert set(first) == set(again) == set(wanted)
    assert {ref: a.id for ref, a in first.items()} == {ref: a.id for ref, a in again.items()}
    assert all(a.balance == Decimal(0) for ref, a in first.items() if ref.user_id is not None)
    async with rt.sessions() as session:
        made = await (await driver(session)).fetchval(
            "SELECT count(*) FROM ledger_accounts WHERE user_id = ANY($1::bigint[])",
            [alice, bob],
        )
    assert made == 3  # one account each, none twice


async def test_lock_reads_the_accounts_by_index_not_by_scanning_them_all(rt: Runtime) -> None:
    """With thousands of accounts the lock plans index lookups for the few it wants (a
    user's by ``user_id =``, a system account's by ``user_id IS NULL``): no sequential
    scan of ``ledger_accounts``, whose cost would grow with every user."""
    user_ids = await _users(rt, 600)
    await _many_accounts(rt, user_ids)
    wanted = [ledger.user_account(uid, "USDT") for uid in user_ids[100:110]]
    wanted.append(ledger.system_account("USDT", AccountKind.FEES))

    async def explain(session: Any) -> Any:
        pg = await driver(session)
        plans = await pg.fetchval(  # the connection decodes json
            f"EXPLAIN (FORMAT JSON) WITH {ledger.ACCOUNT_CTES} {ledger.ACCOUNTS_LOCKED}",
            *ledger.lock_accounts_parameters(wanted),
        )
        return plans[0]["Plan"]

    scans = _scans(await in_transaction(rt.sessions, explain))
    on_accounts = [node for node, relation in scans if relation == "ledger_accounts"]
    assert on_accounts, scans
    assert "Seq Scan" not in on_accounts, scans
