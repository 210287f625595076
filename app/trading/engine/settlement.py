"""What a batch's money does, in plain arithmetic: amounts in minor units as Decimals, the
hold an order needs, and the positions (quantity, USD cost, realized P&L) that fills move.

Money, per fill (all amounts in minor units, fees in the quote currency):

    buyer  HELD quote   -(value + buyer fee)     seller AVAILABLE quote +(value - seller fee)
    seller HELD base    -quantity                buyer  AVAILABLE base  +quantity
    FEES quote          +(buyer fee + seller fee)

An order's hold shrinks by what its fills spend; what is left goes back to AVAILABLE when
the order ends (and no other live order shares the hold: an OCO's legs hold once).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from app.trading.domain.orders import MarketSpec, Side
from app.trading.domain.positions import Position

CASH = frozenset({"USD", "USDT"})  # no position is kept in these
_D = Decimal


def decimal_amount(spec: MarketSpec, currency: str, units: int) -> Decimal:
    """``units`` minor units of ``currency`` (the market's base or quote)."""
    scale = spec.base_scale if currency == spec.base else spec.quote_scale
    return _D(units).scaleb(-scale)


def hold_need(spec: MarketSpec, side: Side, price: int, lots: int, fee_numerator: int) -> int:
    """What an order of ``lots`` at ``price`` must hold (minor units), its fee accumulator
    ``fee_numerator`` so far."""
    if side is Side.SELL:
        return lots * spec.base_units_per_lot
    notional = spec.notional_units(price, lots)
    rate = max(spec.maker_fee_numerator, spec.taker_fee_numerator)
    den = spec.fee_denominator
    return notional + (-(-(fee_numerator + notional * rate) // den)) - (-(-fee_numerator // den))


def settle_positions(
    current: dict[tuple[int, str], Position],
    moves: Iterable[tuple[int, str, Decimal, Decimal, bool]],
    rate: Decimal,
) -> None:
    """Apply ``moves`` (user, asset, quantity, quote value, acquired) to ``current``
    ((user, asset) -> its ``Position``: quantity, USD cost, realized P&L; replaced in the
    dict), the quote currency at ``rate`` USD."""
    for user, asset, quantity, quote_value, acquired in moves:
        position = current[(user, asset)]
        usd = quote_value * rate
        if acquired:
            current[(user, asset)] = position.bought(quantity, usd)
        else:
            current[(user, asset)] = position.sold_tracked(quantity, usd)
