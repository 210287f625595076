"""Withdrawals: request (second factor, KYC, daily limit, hold), cancel, the user's list,
and what admin review (``withdrawal_admin``) and the payout worker with the hot-wallet
sweep (``withdrawal_worker``) share: the row lock, the status transition, the custody
accounts.

Money (see the sign convention in ``app.ledger.rules``):

    request      user AVAILABLE -(x+f)   user HELD +(x+f)      (a PENDING hold)
    cancel / reject / fail               the hold is voided: back to AVAILABLE
    sent         user HELD -(x+f)        HOT_WALLET +x, FEES +f
    sweep        HOT_WALLET +y           COLD_STORAGE -y       (y above the cap)
    refill       COLD_STORAGE +y         HOT_WALLET -y         (an admin action)

Hot-wallet shortfall: the worker never pays out more than the hot wallet holds. Such a
withdrawal stays APPROVED and is retried on every run (the sweep leaves enough in the hot
wallet for the waiting payouts); an admin tops the hot wallet up from cold storage with
``refill_hot_wallet`` when deposits alone will not cover it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import kyc
from app.accounts.accounts import consume_second_factor
from app.accounts.security_events import SecurityEventKind, record_security_event
from app.core.errors import (
    BelowMinimumWithdrawal,
    EmailNotVerified,
    InvalidTwoFactorCode,
    KycRequired,
    NotAuthenticated,
    NotFound,
    TwoFactorNotEnabled,
    WithdrawalNotSupported,
)
from app.core.money import parse_amount, usd_value
from app.events import outbox, topics
from app.ledger import holds, idempotency
from app.ledger import journal as ledger
from app.ledger.rules import AccountKind, AccountRef
from app.runtime import Runtime
from app.wallets.domain import withdrawals as rules
from app.wallets.domain.withdrawals import WithdrawalEvent, WithdrawalStatus
from app.wallets.wallets import get_enabled_currency, spec
from db.models import Currency, ReferencePrice, User, Withdrawal
from db.queries import Page, keyset_page, lock_user
from db.session import in_transaction

OPERATION = "withdrawal"
KYC_LEVEL_TO_WITHDRAW = 1


@dataclass(frozen=True, slots=True)
class WithdrawalRequest:
    currency: str
    amount: Decimal
    destination_address: str

    def params(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "amount": str(self.amount),
            "destinationAddress": self.destination_address,
        }


# --- request -----------------------------------------------------------------------------


async def request_withdrawal(
    *,
    rt: Runtime,
    user_id: int | None,
    currency: str,
    amount: Decimal,
    destination_address: str,
    totp_code: str,
    idempotency_key: str,
) -> Withdrawal:
    """Check, consume the second factor and hold amount + fee, in one transaction.
    The same key with the same request returns the original withdrawal."""
    if user_id is None:
        raise NotAuthenticated()
    idempotency.check_key(idempotency_key)
    request = WithdrawalRequest(
        currency=currency.strip().upper(),
        amount=amount,
        destination_address=destination_address.strip(),
    )

    async def work(session: AsyncSession) -> Withdrawal:
        replay = await idempotency.claim(
            session,
            user_id=user_id,
            key=idempotency_key,
            operation=OPERATION,
            params=request.params(),
        )
        if replay is not None:
            return await _get(session, replay["withdrawal_id"])
        user = await lock_user(session, user_id)
        if user is None:
            raise NotAuthenticated()
        if user.totp_secret is None:
            raise TwoFactorNotEnabled("Turn on two-factor authentication to withdraw")
        if not await consume_second_factor(rt=rt, session=session, user=user, code=totp_code):
            raise InvalidTwoFactorCode(field="totpCode")
        withdrawal = await place_withdrawal(session, rt=rt, user=user, request=request)
        await record_security_event(
            session,
            user_id=user.id,
            kind=SecurityEventKind.WITHDRAWAL_REQUESTED,
            details={
                "withdrawalId": withdrawal.id,
                "currency": withdrawal.currency,
                "amount": str(withdrawal.amount),
                "status": withdrawal.status,
            },
        )
        await idempotency.remember(
            session,
            user_id=user_id,
            key=idempotency_key,
            response={"withdrawal_id": withdrawal.id},
        )
        return withdrawal

    return await in_transaction(rt.sessions, work)


async def place_withdrawal(
    session: AsyncSession, *, rt: Runtime, user: User, request: WithdrawalRequest
) -> Withdrawal:
    """Every check but the second factor, then the hold and the row.

    The caller runs this in its transaction with ``user`` locked
    (``lock_user``) and the second factor already consumed. The user lock
    serializes one user's withdrawals, so the daily-limit sum cannot race; the ledger's
    account locks guard the balance."""
    if user.email_verified_at is None:
        raise EmailNotVerified()
    if user.kyc_level < KYC_LEVEL_TO_WITHDRAW:
        raise KycRequired()
    coin = await withdrawable_currency(session, request.currency)
    amount = parse_amount(request.amount, spec(coin))
    if amount < coin.min_withdrawal:
        raise BelowMinimumWithdrawal(
            f"The minimum {coin.code} withdrawal is {coin.min_withdrawal.normalize():f}",
            field="amount",
        )
    address = rules.check_address(coin.code, request.destination_address)
    value = usd_value(amount, await _usd_price(session, coin.code))
    limits = await kyc.daily_limits(session, user.kyc_level)
    now = rt.now()
    rules.check_daily_limit(
        used_usd=await _used_today(session, user_id=user.id, now=now),
        requested_usd=value,
        limit_usd=limits.withdrawal_usd,
    )
    status = rules.initial_status(
        value,
        review_above_usd=rt.settings.cold_storage_threshold_usd,
        flagged=user.flagged_at is not None,
    )
    withdrawal_id = await session.scalar(
        select(func.nextval(func.pg_get_serial_sequence("withdrawals", "id")))
    )
    hold = await holds.place_hold(
        session,
        user_id=user.id,
        currency=coin.code,
        amount=amount + coin.withdrawal_fee,
        reference=f"withdrawal:{withdrawal_id}",
    )
    withdrawal = Withdrawal(
        id=withdrawal_id,
        user_id=user.id,
        currency=coin.code,
        amount=amount,
        fee=coin.withdrawal_fee,
        usd_value=value,
        destination_address=address,
        status=status.value,
        hold_id=hold.id,
        created_at=now,
    )
    session.add(withdrawal)
    await session.flush()
    await _emit(session, withdrawal, previous=None)
    return withdrawal


# --- cancel ------------------------------------------------------------------------------


async def cancel_withdrawal(*, rt: Runtime, user_id: int | None, withdrawal_id: int) -> Withdrawal:
    """The owner takes it back while it is not sent; the hold is released."""
    if user_id is None:
        raise NotAuthenticated()

    async def work(session: AsyncSession) -> Withdrawal:
        withdrawal = await lock_or_not_found(session, withdrawal_id)
        if withdrawal.user_id != user_id:
            raise NotFound("No such withdrawal", field="id")
        await transition(session, rt=rt, withdrawal=withdrawal, event=WithdrawalEvent.CANCEL)
        return withdrawal

    return await in_transaction(rt.sessions, work)


# --- reads -------------------------------------------------------------------------------


async def list_withdrawals(
    session: AsyncSession,
    *,
    user_id: int,
    first: int,
    after: str | None,
    status: WithdrawalStatus | None = None,
) -> Page[Withdrawal]:
    """The user's withdrawals, newest first."""
    statement = select(Withdrawal).where(Withdrawal.user_id == user_id)
    if status is not None:
        statement = statement.where(Withdrawal.status == status.value)
    return await keyset_page(
        session, statement, key=Withdrawal.id, first=first, after=after, descending=True
    )


# --- helpers (also the review's and the worker's) ----------------------------------------


async def lock_withdrawal(session: AsyncSession, withdrawal_id: int) -> Withdrawal | None:
    """SELECT ... FOR UPDATE on one withdrawal row."""
    return await session.scalar(
        select(Withdrawal)
        .where(Withdrawal.id == withdrawal_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def lock_or_not_found(session: AsyncSession, withdrawal_id: int) -> Withdrawal:
    withdrawal = await lock_withdrawal(session, withdrawal_id)
    if withdrawal is None:
        raise NotFound("No such withdrawal", field="id")
    return withdrawal


async def transition(
    session: AsyncSession, *, rt: Runtime, withdrawal: Withdrawal, event: WithdrawalEvent
) -> None:
    """Apply ``event`` through the transition table, release the hold when the event
    gives the money back, and announce the change. Set other columns before: this
    flushes the row."""
    previous = withdrawal.status
    withdrawal.status = rules.apply(previous, event).value
    if event in rules.RELEASES_HOLD:
        hold = await holds.lock_hold(session, withdrawal.hold_id)
        await holds.void_hold(session, hold, now=rt.now())
    await session.flush()
    await _emit(session, withdrawal, previous=previous)


async def _emit(session: AsyncSession, withdrawal: Withdrawal, *, previous: str | None) -> None:
    changed = topics.WithdrawalStatusChanged(
        withdrawal_id=withdrawal.id,
        status=withdrawal.status,
        previous_status=previous,
        currency=withdrawal.currency,
        amount=withdrawal.amount,
        tx_hash=withdrawal.tx_hash,
    )
    await outbox.write(session, topics.withdrawal_status_changed(withdrawal.user_id, changed))


async def withdrawable_currency(session: AsyncSession, code: str) -> Currency:
    coin = await get_enabled_currency(session, code)
    if coin.kind != "CRYPTO" or coin.code not in rules.ADDRESS_FORMATS:
        raise WithdrawalNotSupported(
            f"{coin.code} cannot be withdrawn to an address", field="currency"
        )
    return coin


async def _usd_price(session: AsyncSession, currency: str) -> Decimal:
    price = await session.scalar(
        select(ReferencePrice.usd_price).where(ReferencePrice.currency == currency)
    )
    if price is None:
        raise WithdrawalNotSupported(
            f"{currency} withdrawals are paused (no reference price)", field="currency"
        )
    return price


async def _used_today(session: AsyncSession, *, user_id: int, now: datetime) -> Decimal:
    start, end = rules.utc_day(now)
    used = await session.scalar(
        select(func.coalesce(func.sum(Withdrawal.usd_value), 0)).where(
            Withdrawal.user_id == user_id,
            Withdrawal.created_at >= start,
            Withdrawal.created_at < end,
            Withdrawal.status.in_([s.value for s in rules.COUNTS_AGAINST_LIMIT]),
        )
    )
    return Decimal(used)


async def _get(session: AsyncSession, withdrawal_id: int) -> Withdrawal:
    withdrawal = await session.get(Withdrawal, withdrawal_id)
    assert withdrawal is not None
    return withdrawal


def custody_accounts(currency: str) -> tuple[AccountRef, AccountRef]:
    return (
        ledger.system_account(currency, AccountKind.HOT_WALLET),
        ledger.system_account(currency, AccountKind.COLD_STORAGE),
    )
