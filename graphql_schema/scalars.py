"""The ``Decimal`` scalar: every amount, price and quantity, serialised as a string."""

from __future__ import annotations

import decimal
import re

import strawberry

# ASCII digits only and nothing after them: ``\d`` would take any script's digits (which
# ``Decimal()`` reads as numbers) and ``$`` a trailing newline.
_DECIMAL_TEXT = re.compile(r"-?[0-9]{1,30}(?:\.[0-9]{1,18})?", re.ASCII)


def serialize_decimal(value: decimal.Decimal) -> str:
    """Plain notation without trailing zeros, so a value reads the same whether it came
    from NUMERIC(38,18) or from the request: "25.5", "0.00000001", "100"."""
    if not isinstance(value, decimal.Decimal) or not value.is_finite():
        raise TypeError(f"Decimal expected, got {value!r}")
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def parse_decimal(value: object) -> decimal.Decimal:
    """Strings only (a JSON number may already have lost precision as a float);
    plain ASCII notation: no exponent, sign "+", whitespace, NaN or infinity."""
    if not isinstance(value, str) or not _DECIMAL_TEXT.fullmatch(value):
        raise ValueError(f'Decimal must be a string like "12.50", got {value!r}')
    return decimal.Decimal(value)


DecimalScalar = strawberry.scalar(
    name="Decimal",
    description='Exact decimal number serialised as a string, e.g. "0.00125000". Never a float.',
    serialize=serialize_decimal,
    parse_value=parse_decimal,
)
