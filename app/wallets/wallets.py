"""Currencies and wallet balances (reads)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import CurrencyDisabled, UnknownCurrency
from app.core.money import CurrencySpec
from db.models import Currency, LedgerAccount, ReferencePrice
from db.raw import driver


@dataclass(frozen=True, slots=True)
class Wallet:
    currency: str
    available: Decimal
    held: Decimal
    staked: Decimal
    usd_price: Decimal | None

    @property
    def total(self) -> Decimal:
        return self.available + self.held + self.staked

    @property
    def usd_value(self) -> Decimal | None:
        return (
            None
            if self.usd_price is None
            else (self.total * self.usd_price).quantize(Decimal("0.01"))
        )


async def get_enabled_currency(
    session: AsyncSession, code: str, *, field: str = "currency"
) -> Currency:
    connection = await driver(session)
    row = await connection.fetchrow(
        "SELECT code, name, kind, scale, min_withdrawal, withdrawal_fee, enabled"
        " FROM currencies WHERE code = $1",
        code.strip().upper(),
    )
    currency = Currency(**row) if row is not None else None  # transient, read-only
    if currency is None:
        raise UnknownCurrency(f"Unknown currency {code!r}", field=field)
    if not currency.enabled:
        raise CurrencyDisabled(f"{currency.code} is currently disabled", field=field)
    return currency


def spec(currency: Currency) -> CurrencySpec:
    return CurrencySpec(code=currency.code, scale=currency.scale)


async def wallets_by_user_ids(session: AsyncSession, user_ids: Sequence[int]) -> list[list[Wallet]]:
    """Every enabled currency for every user, zero where no account exists (one query)."""
    rows = (
        await session.execute(
            select(
                LedgerAccount.user_id,
                LedgerAccount.currency,
                LedgerAccount.kind,
                LedgerAccount.balance,
            ).where(LedgerAccount.user_id.in_(user_ids))
        )
    ).all()
    currencies = (
        await session.execute(
            select(Currency.code, ReferencePrice.usd_price)
            .outerjoin(ReferencePrice, and_(ReferencePrice.currency == Currency.code))
            .where(Currency.enabled.is_(True))
            .order_by(Currency.code)
        )
    ).all()
    balances: dict[tuple[int, str, str], Decimal] = {
        (r.user_id, r.currency, r.kind): r.balance for r in rows
    }
    zero = Decimal(0)
    return [
        [
            Wallet(
                currency=c.code,
                available=balances.get((uid, c.code, "AVAILABLE"), zero),
                held=balances.get((uid, c.code, "HELD"), zero),
                staked=balances.get((uid, c.code, "STAKED"), zero),
                usd_price=c.usd_price,
            )
            for c in currencies
        ]
        for uid in user_ids
    ]


async def list_currencies(session: AsyncSession) -> list[tuple[Currency, Decimal | None]]:
    """Every currency (enabled or not) with its USD reference price, by code."""
    rows = await session.execute(
        select(Currency, ReferencePrice.usd_price)
        .outerjoin(ReferencePrice, ReferencePrice.currency == Currency.code)
        .order_by(Currency.code)
    )
    return [(currency, price) for currency, price in rows.all()]
