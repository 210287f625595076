"""The bench users (verified, funded through the ledger, signed in) and the ledger checks
run after every scenario."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.ledger import journal as ledger
from app.ledger.rules import AccountKind, Leg
from app.runtime import Runtime
from bench.transfer_plan import Party
from db.models import LedgerAccount, Transfer, User
from db.session import in_transaction


@dataclass(frozen=True, slots=True)
class LedgerCheck:
    problems: list[str]  # app.ledger.journal.check_invariants: empty when all hold
    user_totals: dict[str, Decimal]  # the bench users' balances summed per currency
    transfers_sent: int  # transfers rows whose sender is a bench user


async def create_parties(
    rt: Runtime, *, count: int, tag: str, currency: str, funding: Decimal
) -> list[Party]:
    ids = await _insert_verified_users(rt, count=count, tag=tag)
    await _fund(rt, ids, currency=currency, amount=funding)
    now = rt.now()
    return [
        Party(uid, _email(tag, i), rt.signer.issue_access(user_id=uid, role="USER", now=now).token)
        for i, uid in enumerate(ids)
    ]


def _email(tag: str, index: int) -> str:
    return f"u{index}-{tag}@bench.example"


async def _insert_verified_users(rt: Runtime, *, count: int, tag: str) -> list[int]:
    """One INSERT; ``tokens_valid_after`` in the past so the tokens issued next are valid."""
    now = rt.now()
    rows = [
        {
            "email": _email(tag, i),
            "display_name": f"Bench {i}",
            "password_hash": "x",  # no password: these users never log in
            "email_verified_at": now,
            "tokens_valid_after": now - timedelta(minutes=1),
        }
        for i in range(count)
    ]
    async with rt.sessions() as session, session.begin():
        return list((await session.scalars(insert(User).returning(User.id), rows)).all())


async def _fund(rt: Runtime, user_ids: Sequence[int], *, currency: str, amount: Decimal) -> None:
    """Money enters from the EXTERNAL system account, through the ledger (one entry)."""
    external = ledger.system_account(currency, AccountKind.EXTERNAL)
    legs = [Leg(external, -amount * len(user_ids))]
    legs += [Leg(ledger.user_account(uid, currency), amount) for uid in user_ids]

    async def work(session: AsyncSession) -> None:
        await ledger.post(session, kind="CORRECTION", legs=legs, memo="bench funding")

    await in_transaction(rt.sessions, work)


async def check_ledger(rt: Runtime, user_ids: Sequence[int]) -> LedgerCheck:
    async with rt.sessions() as session:
        problems = await ledger.check_invariants(session)
        totals = (
            await session.execute(
                select(LedgerAccount.currency, func.sum(LedgerAccount.balance))
                .where(LedgerAccount.user_id.in_(user_ids))
                .group_by(LedgerAccount.currency)
            )
        ).all()
        sent = await session.scalar(
            select(func.count()).select_from(Transfer).where(Transfer.sender_id.in_(user_ids))
        )
    return LedgerCheck(problems, {c: total for c, total in totals}, sent or 0)
