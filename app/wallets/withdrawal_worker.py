"""The payout worker: APPROVED withdrawals are broadcast (one transaction each, the hold
spent to the hot wallet and the fee account), then each hot wallet is swept to cold
storage above its cap. A payout the hot wallet cannot cover waits (see
``app.wallets.withdrawals``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from functools import partial

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.adapters.payouts import Broadcaster, Payout, SimulatedBroadcaster
from app.core.errors import PayoutRejected, TransientError
from app.ledger import holds
from app.ledger import journal as ledger
from app.ledger.rules import AccountKind, move
from app.runtime import Runtime
from app.wallets.domain import withdrawals as rules
from app.wallets.domain.withdrawals import WithdrawalEvent, WithdrawalStatus
from app.wallets.wallets import spec
from app.wallets.withdrawals import custody_accounts, transition
from db.models import Currency, ReferencePrice, Withdrawal
from db.session import in_transaction

log = logging.getLogger(__name__)

WORKER_BATCH = 50
SIMULATED = SimulatedBroadcaster()


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
    hot, _ = custody_accounts(withdrawal.currency)
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
        await transition(session, rt=rt, withdrawal=withdrawal, event=WithdrawalEvent.FAIL)
        return withdrawal.id, PayoutOutcome.FAILED
    hold = await holds.lock_hold(session, withdrawal.hold_id)
    destinations = [(hot, withdrawal.amount)]
    if withdrawal.fee > 0:
        destinations.append((fees, withdrawal.fee))
    await holds.spend_hold(
        session, hold, kind="WITHDRAWAL", destinations=destinations, now=rt.now(), final=True
    )
    withdrawal.tx_hash = tx_hash
    await transition(session, rt=rt, withdrawal=withdrawal, event=WithdrawalEvent.SEND)
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
    hot, cold = custody_accounts(coin.code)
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
