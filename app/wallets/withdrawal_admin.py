"""What admins do with withdrawals: review those held for it (approve, reject; the
queue, oldest first) and custody (what the hot wallet and cold storage hold of a
currency; refilling the hot wallet from cold storage). Every action is audited."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import audit
from app.accounts.security_events import SecurityEventKind, record_security_event
from app.core.errors import Forbidden, InsufficientFunds, ValidationFailed
from app.core.money import parse_amount
from app.ledger import journal as ledger
from app.ledger.rules import AccountKind, move
from app.runtime import Runtime
from app.wallets.domain.withdrawals import WithdrawalEvent, WithdrawalStatus
from app.wallets.wallets import spec
from app.wallets.withdrawals import (
    custody_accounts,
    lock_or_not_found,
    transition,
    withdrawable_currency,
)
from db.models import LedgerAccount, User, Withdrawal
from db.queries import Page, keyset_page
from db.session import in_transaction

MAX_REASON_LENGTH = 500


@dataclass(frozen=True, slots=True)
class Custody:
    """What the platform holds of one currency (positive numbers)."""

    currency: str
    hot_wallet: Decimal
    cold_storage: Decimal


# --- review ------------------------------------------------------------------------------


async def approve_withdrawal(
    *, rt: Runtime, actor_id: int | None, withdrawal_id: int
) -> Withdrawal:
    """An admin releases a withdrawal held for review; the worker pays it out."""

    async def work(session: AsyncSession) -> Withdrawal:
        actor, withdrawal = await _admin_and_withdrawal(session, actor_id, withdrawal_id)
        withdrawal.reviewed_by = actor.id
        await transition(session, rt=rt, withdrawal=withdrawal, event=WithdrawalEvent.APPROVE)
        await _audit(session, actor=actor, action="withdrawal.approve", withdrawal=withdrawal)
        await record_security_event(
            session,
            user_id=withdrawal.user_id,
            kind=SecurityEventKind.WITHDRAWAL_APPROVED,
            details={"withdrawalId": withdrawal.id, "approvedBy": actor.id},
        )
        return withdrawal

    return await in_transaction(rt.sessions, work)


async def reject_withdrawal(
    *, rt: Runtime, actor_id: int | None, withdrawal_id: int, reason: str
) -> Withdrawal:
    """An admin refuses a withdrawal held for review; the hold is released."""
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON_LENGTH:
        raise ValidationFailed(
            f"Give a reason of 1 to {MAX_REASON_LENGTH} characters", field="reason"
        )

    async def work(session: AsyncSession) -> Withdrawal:
        actor, withdrawal = await _admin_and_withdrawal(session, actor_id, withdrawal_id)
        withdrawal.reviewed_by = actor.id
        withdrawal.review_reason = reason
        await transition(session, rt=rt, withdrawal=withdrawal, event=WithdrawalEvent.REJECT)
        await _audit(
            session,
            actor=actor,
            action="withdrawal.reject",
            withdrawal=withdrawal,
            reason=reason,
        )
        return withdrawal

    return await in_transaction(rt.sessions, work)


async def list_pending_review(
    session: AsyncSession, *, first: int, after: str | None
) -> Page[Withdrawal]:
    """Withdrawals waiting for an admin, oldest first."""
    statement = select(Withdrawal).where(Withdrawal.status == WithdrawalStatus.PENDING_REVIEW.value)
    return await keyset_page(session, statement, key=Withdrawal.id, first=first, after=after)


async def _admin_and_withdrawal(
    session: AsyncSession, actor_id: int | None, withdrawal_id: int
) -> tuple[User, Withdrawal]:
    actor = await audit.require_admin(session, actor_id)
    withdrawal = await lock_or_not_found(session, withdrawal_id)
    if withdrawal.user_id == actor.id:
        raise Forbidden("You cannot review your own withdrawal")
    return actor, withdrawal


async def _audit(
    session: AsyncSession,
    *,
    actor: User,
    action: str,
    withdrawal: Withdrawal,
    reason: str | None = None,
) -> None:
    await audit.record(
        session,
        actor_id=actor.id,
        action=action,
        target=f"withdrawal:{withdrawal.id}",
        details={
            "userId": withdrawal.user_id,
            "currency": withdrawal.currency,
            "amount": _plain(withdrawal.amount),
            "usdValue": _plain(withdrawal.usd_value),
            "reason": reason,
        },
    )


# --- custody -----------------------------------------------------------------------------


async def refill_hot_wallet(
    *, rt: Runtime, actor_id: int | None, currency: str, amount: Decimal
) -> Custody:
    """An admin moves ``amount`` from cold storage to the hot wallet (for payouts the hot
    wallet cannot cover). Audited."""

    async def work(session: AsyncSession) -> Custody:
        actor = await audit.require_admin(session, actor_id)
        coin = await withdrawable_currency(session, currency)
        value = parse_amount(amount, spec(coin))
        hot, cold = custody_accounts(coin.code)
        accounts = await ledger.lock_accounts(session, [hot, cold])
        in_cold = -accounts[cold].balance
        if value > in_cold:
            raise InsufficientFunds(
                f"Cold storage holds {in_cold.normalize():f} {coin.code}", field="amount"
            )
        posted = await ledger.post(
            session, kind="COLD_TO_HOT", legs=move(value, hot, cold), memo="hot wallet refill"
        )
        await audit.record(
            session,
            actor_id=actor.id,
            action="custody.refill_hot_wallet",
            target=f"currency:{coin.code}",
            details={"amount": _plain(value), "entryId": posted.entry_id},
        )
        return Custody(
            currency=coin.code,
            hot_wallet=-posted.balances[hot],
            cold_storage=-posted.balances[cold],
        )

    return await in_transaction(rt.sessions, work)


async def get_custody(session: AsyncSession, currency: str) -> Custody:
    """Hot and cold holdings of one currency (read only)."""
    rows = dict(
        (
            await session.execute(
                select(LedgerAccount.kind, LedgerAccount.balance).where(
                    LedgerAccount.user_id.is_(None),
                    LedgerAccount.currency == currency,
                    LedgerAccount.kind.in_(
                        [AccountKind.HOT_WALLET.value, AccountKind.COLD_STORAGE.value]
                    ),
                )
            )
        ).all()
    )
    zero = Decimal(0)
    return Custody(
        currency=currency,
        hot_wallet=-rows.get(AccountKind.HOT_WALLET.value, zero),
        cold_storage=-rows.get(AccountKind.COLD_STORAGE.value, zero),
    )


def _plain(value: Decimal) -> str:
    """For JSON payloads: "11000", not "11000.000000000000000000" (NUMERIC(38,18))."""
    return format(value.normalize(), "f")
