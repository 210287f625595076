"""Withdrawals: request (second factor, KYC, daily limit, hold), admin review, cancel,
and the payout worker with the hot-wallet sweep.

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

import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from functools import partial
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import audit, kyc
from app.accounts.accounts import consume_second_factor
from app.accounts.security_events import SecurityEventKind, record_security_event
from app.adapters.payouts import Broadcaster, Payout, SimulatedBroadcaster
from app.core.errors import (
    BelowMinimumWithdrawal,
    EmailNotVerified,
    Forbidden,
    InsufficientFunds,
    InvalidTwoFactorCode,
    KycRequired,
    NotAuthenticated,
    NotFound,
    PayoutRejected,
    TransientError,
    TwoFactorNotEnabled,
    ValidationFailed,
    WithdrawalNotSupported,
)
from app.core.money import parse_amount, usd_value
from app.events import outbox, topics
from app.ledger import holds, idempotency
from app.ledger import journal as ledger
from app.ledger.rules import AccountKind, AccountRef, move
from app.runtime import Runtime
from app.wallets.domain import withdrawals as rules
from app.wallets.domain.withdrawals import WithdrawalEvent, WithdrawalStatus
from app.wallets.wallets import get_enabled_currency, spec
from db.models import Currency, LedgerAccount, ReferencePrice, User, Withdrawal
from db.queries import Page, keyset_page, lock_user
from db.session import in_transaction

log = logging.getLogger(__name__)

OPERATION = "withdrawal"
WORKER_BATCH = 50
MAX_REASON_LENGTH = 500
KYC_LEVEL_TO_WITHDRAW = 1
SIMULATED = SimulatedBroadcaster()


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


class PayoutOutcome(StrEnum):
    SENT = "SENT"
    FAILED = "FAILED"
    WAITING = "WAITING"  # stays APPROVED: hot wallet short, or the network busy


@dataclass(slots=True)
class WorkerRun:
    sent: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)
    swept: dict[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Custody:
    """What the platform holds of one currency (positive numbers)."""

    currency: str
    hot_wallet: Decimal
    cold_storage: Decimal


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
    coin = await _withdrawable_currency(session, request.currency)
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


# --- cancel and review -------------------------------------------------------------------


async def cancel_withdrawal(*, rt: Runtime, user_id: int | None, withdrawal_id: int) -> Withdrawal:
    """The owner takes it back while it is not sent; the hold is released."""
    if user_id is None:
        raise NotAuthenticated()

    async def work(session: AsyncSession) -> Withdrawal:
        withdrawal = await _lock_or_not_found(session, withdrawal_id)
        if withdrawal.user_id != user_id:
            raise NotFound("No such withdrawal", field="id")
        await _transition(session, rt=rt, withdrawal=withdrawal, event=WithdrawalEvent.CANCEL)
        return withdrawal

    return await in_transaction(rt.sessions, work)


async def approve_withdrawal(
    *, rt: Runtime, actor_id: int | None, withdrawal_id: int
) -> Withdrawal:
    """An admin releases a withdrawal held for review; the worker pays it out."""

    async def work(session: AsyncSession) -> Withdrawal:
        actor, withdrawal = await _admin_and_withdrawal(session, actor_id, withdrawal_id)
        withdrawal.reviewed_by = actor.id
        await _transition(session, rt=rt, withdrawal=withdrawal, event=WithdrawalEvent.APPROVE)
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
        await _transition(session, rt=rt, withdrawal=withdrawal, event=WithdrawalEvent.REJECT)
        await _audit(
            session,
            actor=actor,
            action="withdrawal.reject",
            withdrawal=withdrawal,
            reason=reason,
        )
        return withdrawal

    return await in_transaction(rt.sessions, work)


async def refill_hot_wallet(
    *, rt: Runtime, actor_id: int | None, currency: str, amount: Decimal
) -> Custody:
    """An admin moves ``amount`` from cold storage to the hot wallet (for payouts the hot
    wallet cannot cover). Audited."""

    async def work(session: AsyncSession) -> Custody:
        actor = await audit.require_admin(session, actor_id)
        coin = await _withdrawable_currency(session, currency)
        value = parse_amount(amount, spec(coin))
        hot, cold = _custody_accounts(coin.code)
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


# --- the payout worker -------------------------------------------------------------------


async def process_approved_withdrawals(
    rt: Runtime, limit: int = WORKER_BATCH, *, broadcaster: Broadcaster = SIMULATED
) -> WorkerRun:
    """Pay out up to ``limit`` APPROVED withdrawals (oldest first, one transaction each),
    then sweep the hot wallets. Safe to run in several processes at once: a withdrawal
    is taken with FOR UPDATE SKIP LOCKED, so each is handled by one worker."""
    run = WorkerRun()
    after = 0
    for _ in range(limit):
        pay_next = partial(_pay_next, rt=rt, broadcaster=broadcaster, after=after)
        handled = await in_transaction(rt.sessions, pay_next)
        if handled is None:
            break
        after, outcome = handled
        {
            PayoutOutcome.SENT: run.sent,
            PayoutOutcome.FAILED: run.failed,
            PayoutOutcome.WAITING: run.waiting,
        }[outcome].append(after)
    run.swept = await sweep_hot_wallets(rt)
    return run


async def _pay_next(
    session: AsyncSession, *, rt: Runtime, broadcaster: Broadcaster, after: int
) -> tuple[int, PayoutOutcome] | None:
    withdrawal = await session.scalar(
        select(Withdrawal)
        .where(Withdrawal.status == WithdrawalStatus.APPROVED.value, Withdrawal.id > after)
        .order_by(Withdrawal.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if withdrawal is None:
        return None
    hot, _ = _custody_accounts(withdrawal.currency)
    fees = ledger.system_account(withdrawal.currency, AccountKind.FEES)
    held = ledger.user_account(withdrawal.user_id, withdrawal.currency, AccountKind.HELD)
    accounts = await ledger.lock_accounts(session, [held, hot, fees])
    if -accounts[hot].balance < withdrawal.amount:
        log.warning(
            "hot wallet cannot cover withdrawal; it waits",
            extra={"withdrawal_id": withdrawal.id, "currency": withdrawal.currency},
        )
        return withdrawal.id, PayoutOutcome.WAITING
    payout = Payout(
        withdrawal_id=withdrawal.id,
        currency=withdrawal.currency,
        amount=withdrawal.amount,
        destination_address=withdrawal.destination_address,
    )
    try:
        tx_hash = await broadcaster.broadcast(payout)
    except TransientError as error:
        log.warning("payout not sent, retrying later: %s", error.message)
        return withdrawal.id, PayoutOutcome.WAITING
    except PayoutRejected as error:
        withdrawal.failure_reason = error.message
        await _transition(session, rt=rt, withdrawal=withdrawal, event=WithdrawalEvent.FAIL)
        return withdrawal.id, PayoutOutcome.FAILED
    hold = await holds.lock_hold(session, withdrawal.hold_id)
    destinations = [(hot, withdrawal.amount)]
    if withdrawal.fee > 0:
        destinations.append((fees, withdrawal.fee))
    await holds.spend_hold(
        session, hold, kind="WITHDRAWAL", destinations=destinations, now=rt.now(), final=True
    )
    withdrawal.tx_hash = tx_hash
    await _transition(session, rt=rt, withdrawal=withdrawal, event=WithdrawalEvent.SEND)
    return withdrawal.id, PayoutOutcome.SENT


async def sweep_hot_wallets(rt: Runtime) -> dict[str, Decimal]:
    """Move what each hot wallet holds above its cap (HOT_WALLET_CAP_USD at the reference
    price, or a HOT_WALLET_CAPS_USD override) to cold storage, keeping at least what
    approved payouts are waiting for. Returns the amounts swept."""
    async with rt.sessions() as session:
        priced = (
            await session.execute(
                select(Currency, ReferencePrice.usd_price)
                .join(ReferencePrice, ReferencePrice.currency == Currency.code)
                .where(Currency.kind == "CRYPTO")
                .order_by(Currency.code)
            )
        ).all()
    swept = {}
    for coin, usd_price in priced:
        cap_usd = rt.settings.hot_wallet_caps_usd.get(coin.code, rt.settings.hot_wallet_cap_usd)
        sweep_one = partial(_sweep_one, coin=coin, cap=cap_usd / usd_price)
        amount = await in_transaction(rt.sessions, sweep_one)
        if amount > 0:
            swept[coin.code] = amount
    return swept


async def _sweep_one(session: AsyncSession, *, coin: Currency, cap: Decimal) -> Decimal:
    hot, cold = _custody_accounts(coin.code)
    accounts = await ledger.lock_accounts(session, [hot, cold])
    reserved = await session.scalar(
        select(func.coalesce(func.sum(Withdrawal.amount), 0)).where(
            Withdrawal.currency == coin.code,
            Withdrawal.status == WithdrawalStatus.APPROVED.value,
        )
    )
    amount = rules.sweep_amount(
        holdings=-accounts[hot].balance, cap=cap, reserved=reserved, quantum=spec(coin).quantum
    )
    if amount > 0:
        await ledger.post(
            session, kind="HOT_TO_COLD", legs=move(amount, cold, hot), memo="sweep to cold"
        )
        log.info("swept hot wallet to cold storage", extra={"currency": coin.code})
    return amount


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


async def list_pending_review(
    session: AsyncSession, *, first: int, after: str | None
) -> Page[Withdrawal]:
    """Withdrawals waiting for an admin, oldest first."""
    statement = select(Withdrawal).where(Withdrawal.status == WithdrawalStatus.PENDING_REVIEW.value)
    return await keyset_page(session, statement, key=Withdrawal.id, first=first, after=after)


# --- helpers -----------------------------------------------------------------------------


async def lock_withdrawal(session: AsyncSession, withdrawal_id: int) -> Withdrawal | None:
    """SELECT ... FOR UPDATE on one withdrawal row."""
    return await session.scalar(
        select(Withdrawal)
        .where(Withdrawal.id == withdrawal_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def _lock_or_not_found(session: AsyncSession, withdrawal_id: int) -> Withdrawal:
    withdrawal = await lock_withdrawal(session, withdrawal_id)
    if withdrawal is None:
        raise NotFound("No such withdrawal", field="id")
    return withdrawal


async def _admin_and_withdrawal(
    session: AsyncSession, actor_id: int | None, withdrawal_id: int
) -> tuple[User, Withdrawal]:
    actor = await audit.require_admin(session, actor_id)
    withdrawal = await _lock_or_not_found(session, withdrawal_id)
    if withdrawal.user_id == actor.id:
        raise Forbidden("You cannot review your own withdrawal")
    return actor, withdrawal


async def _transition(
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


async def _withdrawable_currency(session: AsyncSession, code: str) -> Currency:
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


def _custody_accounts(currency: str) -> tuple[AccountRef, AccountRef]:
    return (
        ledger.system_account(currency, AccountKind.HOT_WALLET),
        ledger.system_account(currency, AccountKind.COLD_STORAGE),
    )


def _plain(value: Decimal) -> str:
    """For JSON payloads: "11000", not "11000.000000000000000000" (NUMERIC(38,18))."""
    return format(value.normalize(), "f")
