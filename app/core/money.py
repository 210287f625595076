"""Money arithmetic: exact Decimals quantized per currency. Never float."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_UP, Decimal, InvalidOperation

from app.core.errors import ValidationFailed

MAX_AMOUNT = Decimal("1e20")
CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class CurrencySpec:
    code: str
    scale: int  # decimal places of the minor unit: USD 2, BTC 8, ETH 18 (we keep 8)

    @property
    def quantum(self) -> Decimal:
        return Decimal(1).scaleb(-self.scale)


def parse_amount(value: Decimal, currency: CurrencySpec, *, field: str = "amount") -> Decimal:
    """A strictly positive amount with no more decimals than the currency allows."""
    try:
        if not value.is_finite():
            raise ValidationFailed("Amount must be a finite number", field=field)
        if value <= 0:
            raise ValidationFailed("Amount must be greater than zero", field=field)
        if value >= MAX_AMOUNT:
            raise ValidationFailed("Amount is too large", field=field)
        quantized = value.quantize(currency.quantum)
    except InvalidOperation as error:
        raise ValidationFailed("Amount is not a valid number", field=field) from error
    if quantized != value:
        raise ValidationFailed(
            f"{currency.code} amounts have at most {currency.scale} decimal places", field=field
        )
    return quantized


def usd_value(amount: Decimal, usd_price: Decimal) -> Decimal:
    """USD value in cents, rounded up, for limits: a limit is never undercounted."""
    return (amount * usd_price).quantize(CENT, rounding=ROUND_UP)
