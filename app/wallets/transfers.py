"""Internal transfers between users: instant, idempotent, in both users' history."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import (
    EmailNotVerified,
    NotAuthenticated,
    RecipientNotFound,
    TransferToSelf,
    ValidationFailed,
)
from app.core.money import parse_amount
from app.events import outbox, topics
from app.ledger import idempotency
from app.ledger import journal as ledger
from app.ledger.rules import move
from app.runtime import Runtime
from app.wallets.wallets import get_enabled_currency, spec
from db.models import Transfer
from db.raw import driver
from db.session import in_transaction

MAX_MEMO_LENGTH = 140
OPERATION = "transfer"


@dataclass(frozen=True, slots=True)
class TransferDone:
    transfer: Transfer
    sender_balance_after: Decimal


async def transfer(
    *,
    rt: Runtime,
    sender_id: int | None,
    recipient: str,
    currency: str,
    amount: Decimal,
    memo: str | None,
    idempotency_key: str,
) -> TransferDone:
    if sender_id is None:
        raise NotAuthenticated()
    memo = (memo or "").strip() or None
    if memo is not None and len(memo) > MAX_MEMO_LENGTH:
        raise ValidationFailed(f"Memo is at most {MAX_MEMO_LENGTH} characters", field="memo")
    idempotency.check_key(idempotency_key)
    params = {  # normalised, so "25.50" and "@bob" retry "25.5" and "bob"
        "recipient": recipient.strip().lower().removeprefix("@"),
        "currency": currency.strip().upper(),
        "amount": format(amount.normalize(), "f"),
        "memo": memo,
    }

    async def work(session: AsyncSession) -> TransferDone:
        replay = await idempotency.claim(
            session, user_id=sender_id, key=idempotency_key, operation=OPERATION, params=params
        )
        if replay is not None:
            return await _load(session, replay)
        coin = await get_enabled_currency(session, currency)
        value = parse_amount(amount, spec(coin))
        receiver_id = await _parties(session, sender_id=sender_id, recipient=recipient)
        posted = await ledger.post(
            session,
            kind="TRANSFER",
            legs=move(
                value,
                ledger.user_account(sender_id, coin.code),
                ledger.user_account(receiver_id, coin.code),
            ),
            memo=memo,
        )
        connection = await driver(session)
        inserted = await connection.fetchrow(
            "INSERT INTO transfers (sender_id, recipient_id, currency, amount, memo, entry_id)"
            " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
            sender_id,
            receiver_id,
            coin.code,
            value,
            memo,
            posted.entry_id,
        )
        row = Transfer(**inserted)  # transient, read-only
        sender_after = posted.balances[ledger.user_account(sender_id, coin.code)]
        received = topics.TransferReceived(
            transfer_id=row.id, currency=coin.code, amount=value, sender_id=sender_id, memo=memo
        )
        await outbox.write(session, topics.transfer_received(receiver_id, received))
        response = {"transfer_id": row.id, "sender_balance_after": str(sender_after)}
        await idempotency.remember(
            session, user_id=sender_id, key=idempotency_key, response=response
        )
        return TransferDone(transfer=row, sender_balance_after=sender_after)

    return await in_transaction(rt.sessions, work)


async def _parties(session: AsyncSession, *, sender_id: int, recipient: str) -> int:
    """Check the sender may send and find the recipient (by email or handle): one query."""
    needle = recipient.strip().lower().removeprefix("@")
    connection = await driver(session)
    rows = await connection.fetch(
        "SELECT id, email_verified_at, email, handle FROM users"
        " WHERE id = $1 OR email = $2 OR handle = $2",
        sender_id,
        needle,
    )
    sender = next((r for r in rows if r["id"] == sender_id), None)
    if sender is None:
        raise NotAuthenticated()
    if sender["email_verified_at"] is None:
        raise EmailNotVerified()
    matches = [r["id"] for r in rows if needle and needle in (r["email"], r["handle"])]
    if not matches:
        raise RecipientNotFound(field="recipient")
    if matches == [sender_id]:
        raise TransferToSelf(field="recipient")
    return next(m for m in matches if m != sender_id)


async def _load(session: AsyncSession, response: dict) -> TransferDone:
    row = await session.get(Transfer, response["transfer_id"])
    assert row is not None
    return TransferDone(
        transfer=row, sender_balance_after=Decimal(response["sender_balance_after"])
    )
