"""The ``Decimal`` scalar: every amount, price and quantity, serialised as a string."""

from __future__ import annotations

import decimal
import re

import strawberry

# ASCII digits only and nothing after them: ``\d`` would take any script's digits (which
# ``Decimal()`` reads as numbers) and ``$`` a trailing newline.
_DECIMAL_TEXT = re.compile(r"-?[0-9]{1,30}(?:\.[0-9]{1,18})?", re.ASCII)


# Wide enough for any NUMERIC(38, 18) at any scale: quantize never fails for lack of digits.
_WIDE = decimal.Context(prec=60)
_QUANTA = tuple(decimal.Decimal(1).scaleb(-places) for places in range(19))  # scale 0..18
_ZERO = decimal.Decimal(0)


class ScaledDecimal(decimal.Decimal):
    """A Decimal shown with its own exponent, trailing zeros kept ("90000.00"): what
    ``at_places`` returns. Arithmetic on it gives plain Decimals."""

    __slots__ = ()


def places_of(step: decimal.Decimal) -> int:
    """Decimal places of a tick or lot size: 0.01 -> 2, 1 and 10 -> 0."""
    return max(0, -int(step.normalize().as_tuple().exponent))


def at_places(value: decimal.Decimal, places: int) -> ScaledDecimal:
    """``value`` shown with ``places`` decimals ("90000.00" for a 0.01 tick), as exchanges
    show amounts and prices; a value with more significant decimals than that keeps all
    of them (never rounded: a figure is never shown other than it is)."""
    if not value:
        value = _ZERO  # no "-0.00"
    quantum = _QUANTA[places]
    try:
        shown = value.quantize(quantum)  # the current context: fast on the hot path
    except decimal.InvalidOperation:  # more digits than its precision
        shown = value.quantize(quantum, context=_WIDE)
    if shown != value:
        shown = value.normalize(_WIDE)
    return ScaledDecimal(shown)


def serialize_decimal(value: decimal.Decimal) -> str:
    """Plain notation. A ``ScaledDecimal`` keeps its decimals ("90000.00"); any other
    value is shown without trailing zeros, so it reads the same whether it came from
    NUMERIC(38,18) or from the request: "25.5", "0.00000001", "100"."""
    if type(value) is ScaledDecimal:
        return format(value, "f")
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
