"""Crypto deposits: a stable address per user and currency, and an admin's credit of an
on-chain transfer to one of them, exactly once per transaction hash.

The credit is idempotent on the transaction hash (``deposits.tx_hash`` is unique): the
insert that claims the hash and the ledger entry commit together, a concurrent or
repeated credit of the same hash waits for the first and gets its deposit back with
nothing changed, and the same hash with another amount, currency or address is refused.
A currency that is disabled can still be credited: the coins have arrived.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import audit
from app.core.errors import (
    DepositMethodNotSupported,
    InvariantViolation,
    NotAuthenticated,
    NotFound,
    TxHashConflict,
    UnknownCurrency,
)
from app.core.money import parse_amount
from app.events import topics
from app.ledger import journal as ledger
from app.ledger.rules import AccountKind, move
from app.runtime import Runtime
from app.wallets.deposits import emit_event
from app.wallets.domain.deposit_addresses import (
    chain_for,
    derive_address,
    normalise_address,
    normalise_tx_hash,
)
from app.wallets.domain.deposits import DepositMethod, DepositStatus, plain
from app.wallets.wallets import get_enabled_currency, spec
from db.models import Currency, Deposit, DepositAddress
from db.session import in_transaction

CRYPTO_CURRENCY_KIND = "CRYPTO"


@dataclass(frozen=True, slots=True)
class DepositAddressInfo:
    currency: str
    address: str
    network: str


@dataclass(frozen=True, slots=True)
class CryptoDepositCredited:
    deposit: Deposit
    credited: bool  # False: this transaction was credited before, nothing changed now


def _require_crypto(currency: Currency) -> None:
    if currency.kind != CRYPTO_CURRENCY_KIND:
        raise DepositMethodNotSupported(
            f"{currency.code} is deposited by card, not to an address", field="currency"
        )


async def deposit_address(*, rt: Runtime, user_id: int | None, currency: str) -> DepositAddressInfo:
    """The user's address for ``currency``: derived on first use, then stored (stable
    even if SECRET_KEY changes; unique across users)."""
    if user_id is None:
        raise NotAuthenticated()

    async def work(session: AsyncSession) -> DepositAddressInfo:
        coin = await get_enabled_currency(session, currency)
        _require_crypto(coin)
        chain = chain_for(coin.code)
        address = await _stored_address(session, user_id=user_id, currency=coin.code)
        if address is None:
            derived = derive_address(
                key=rt.settings.secret_key.get_secret_value().encode(),
                user_id=user_id,
                currency=coin.code,
            )
            await session.execute(
                insert(DepositAddress)
                .values(user_id=user_id, currency=coin.code, address=derived)
                .on_conflict_do_nothing()
            )
            address = await _stored_address(session, user_id=user_id, currency=coin.code)
        if address is None:
            raise InvariantViolation(f"deposit address collision for user {user_id}")
        return DepositAddressInfo(currency=coin.code, address=address, network=chain.network)

    return await in_transaction(rt.sessions, work)


async def _stored_address(session: AsyncSession, *, user_id: int, currency: str) -> str | None:
    return await session.scalar(
        select(DepositAddress.address).where(
            DepositAddress.user_id == user_id, DepositAddress.currency == currency
        )
    )


async def credit_crypto_deposit(
    *,
    rt: Runtime,
    actor_id: int | None,
    currency: str,
    address: str,
    tx_hash: str,
    amount: Decimal,
) -> CryptoDepositCredited:
    """Admin only: HOT_WALLET -> the address owner's AVAILABLE, once per ``tx_hash``."""

    async def work(session: AsyncSession) -> CryptoDepositCredited:
        actor = await audit.require_admin(session, actor_id)
        coin = await session.get(Currency, currency.strip().upper())
        if coin is None:
            raise UnknownCurrency(f"Unknown currency {currency!r}", field="currency")
        _require_crypto(coin)
        value = parse_amount(amount, spec(coin))
        to_address = normalise_address(coin.code, address)
        tx = normalise_tx_hash(coin.code, tx_hash)
        owner_id = await session.scalar(
            select(DepositAddress.user_id).where(
                DepositAddress.currency == coin.code, DepositAddress.address == to_address
            )
        )
        if owner_id is None:
            raise NotFound(f"No user has this {coin.code} deposit address", field="address")
        deposit_id = await session.scalar(
            insert(Deposit)
            .values(
                user_id=owner_id,
                currency=coin.code,
                amount=value,
                method=DepositMethod.CRYPTO.value,
                status=DepositStatus.SUCCEEDED.value,
                tx_hash=tx,
                address=to_address,
                credited_amount=value,
            )
            .on_conflict_do_nothing(index_elements=[Deposit.tx_hash])
            .returning(Deposit.id)
        )
        if deposit_id is None:
            return CryptoDepositCredited(
                deposit=await _same_credit(session, tx, coin.code, to_address, value),
                credited=False,
            )
        deposit = await session.get(Deposit, deposit_id)
        assert deposit is not None
        await _credit(session, deposit)
        await audit.record(
            session,
            actor_id=actor.id,
            action="deposit.credit_crypto",
            target=f"deposit:{deposit.id}",
            details={
                "userId": owner_id,
                "currency": coin.code,
                "amount": plain(value),
                "address": to_address,
                "txHash": tx,
            },
        )
        return CryptoDepositCredited(deposit=deposit, credited=True)

    return await in_transaction(rt.sessions, work)


async def _same_credit(
    session: AsyncSession, tx: str, currency: str, address: str, amount: Decimal
) -> Deposit:
    """The deposit already recorded for ``tx``, if it is the same credit."""
    existing = await session.scalar(select(Deposit).where(Deposit.tx_hash == tx))
    assert existing is not None
    if (existing.currency, existing.address, existing.amount) != (currency, address, amount):
        raise TxHashConflict(
            "This transaction hash was already credited with another amount or address",
            field="txHash",
        )
    return existing


async def _credit(session: AsyncSession, deposit: Deposit) -> None:
    user = ledger.user_account(deposit.user_id, deposit.currency)
    posted = await ledger.post(
        session,
        kind="CRYPTO_DEPOSIT",
        legs=move(
            deposit.amount, ledger.system_account(deposit.currency, AccountKind.HOT_WALLET), user
        ),
        reference=f"deposit:{deposit.id}",
    )
    await emit_event(
        session,
        deposit,
        topics.DEPOSIT_CREDITED,
        amount=deposit.amount,
        balance_after=posted.balances[user],
        tx_hash=deposit.tx_hash,
    )
