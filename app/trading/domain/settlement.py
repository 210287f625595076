"""A fill's settlement, independent of storage: the legs of its TRADE journal entry and
what it draws on each side's hold (TigerBeetle's currency exchange: linked transfers out
of two pending holds). Amounts are in minor units as the book keeps them; the legs in
Decimal at each currency's scale. Fees are charged in the quote currency::

    buyer  HELD quote   -(value + buyer fee)     seller AVAILABLE quote +(value - seller fee)
    seller HELD base    -quantity                buyer  AVAILABLE base  +quantity
    FEES quote          +(buyer fee + seller fee)

The buyer's hold covers the value and its fee, the seller's the base quantity: a fill that
needs more than a hold has left is a bug (``InvariantViolation``), never an overdraft.
What is left of a hold when its order ends goes back to AVAILABLE (``app.ledger.holds``);
a fill only draws. Legs of zero (a fee-free side) are left out.
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

from app.core.errors import InvariantViolation
from app.ledger.rules import AccountKind, AccountRef, Leg
from app.trading.domain.matching import Fill
from app.trading.domain.orders import MarketSpec, Side

TRADE = "TRADE"  # the journal entry's kind (app.ledger.rules.FLOWS)


class Settlement(NamedTuple):
    legs: list[Leg]  # the TRADE entry
    buyer_draw: int  # quote units out of the buyer's hold: value + buyer fee
    seller_draw: int  # base units out of the seller's hold
    base: Decimal  # the base quantity
    value: Decimal  # quote
    buyer_paid: Decimal  # quote, value + buyer fee
    seller_received: Decimal  # quote, value - seller fee
    maker_fee: Decimal  # quote
    taker_fee: Decimal  # quote


def buyer_and_seller(fill: Fill) -> tuple[int, int]:
    """The user ids of the buyer and the seller."""
    if fill.taker_side is Side.BUY:
        return fill.taker_user_id, fill.maker_user_id
    return fill.maker_user_id, fill.taker_user_id


def settle(
    spec: MarketSpec, fill: Fill, *, buyer_hold_left: int, seller_hold_left: int
) -> Settlement:
    """The TRADE legs of ``fill`` and what it draws on both holds (``*_hold_left``: what
    each has left before it, in minor units of the currency it holds)."""
    buyer_id, seller_id = buyer_and_seller(fill)
    buyer_takes = fill.taker_side is Side.BUY
    buyer_fee = fill.taker_fee if buyer_takes else fill.maker_fee
    seller_fee = fill.maker_fee if buyer_takes else fill.taker_fee
    value = fill.notional
    buyer_draw = value + buyer_fee
    seller_draw = fill.quantity * spec.base_units_per_lot
    if buyer_draw > buyer_hold_left or seller_draw > seller_hold_left:
        raise InvariantViolation(f"a fill spends more than its hold: {fill}")
    quote_scale = -spec.quote_scale
    base = Decimal(seller_draw).scaleb(-spec.base_scale)
    paid = Decimal(buyer_draw).scaleb(quote_scale)
    received = Decimal(value - seller_fee).scaleb(quote_scale)
    fees = Decimal(buyer_fee + seller_fee).scaleb(quote_scale)
    quote, held, available = spec.quote, AccountKind.HELD, AccountKind.AVAILABLE
    legs = [
        Leg(AccountRef(quote, held, buyer_id), -paid),
        Leg(AccountRef(quote, available, seller_id), received),
        Leg(AccountRef(quote, AccountKind.FEES), fees),
        Leg(AccountRef(spec.base, held, seller_id), -base),
        Leg(AccountRef(spec.base, available, buyer_id), base),
    ]
    return Settlement(
        legs=[leg for leg in legs if leg.amount != 0],
        buyer_draw=buyer_draw,
        seller_draw=seller_draw,
        base=base,
        value=Decimal(value).scaleb(quote_scale),
        buyer_paid=paid,
        seller_received=received,
        maker_fee=Decimal(fill.maker_fee).scaleb(quote_scale),
        taker_fee=Decimal(fill.taker_fee).scaleb(quote_scale),
    )
