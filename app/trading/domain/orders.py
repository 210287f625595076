"""Order rules, independent of storage: value types, the market spec, validation of an
order request, the status machine, holds and trigger conditions.

Units. The edge speaks ``Decimal``; the matching engine speaks integers scoped to one
``MarketSpec``: a price is a whole number of *ticks* (``price / tick_size``), a quantity
a whole number of *lots* (``quantity / lot_size``) and a quote amount a whole number of
the quote currency's minor units (USDT 6 decimals: 1 unit = 0.000001). ``MarketSpec``
refuses a tick and lot whose product is not a whole number of quote units, so the value
of every fill, ``price_ticks * quantity_lots * units_per_tick_lot``, is exact and never
rounded (BTC/USDT: tick 0.01 x lot 0.0001 = 1 unit; a USD market, 2 decimals, needs
tick x lot >= 0.01, e.g. tick 1 and lot 0.01). Fees are the only rounding: an order's
fees so far are ``ceil(sum(value of each fill * its fee rate))`` in quote units,
charged fill by fill as that total grows, so they never undercharge and never exceed
the hold (``hold_for``).

Lifecycle (``TRANSITIONS`` is the whole truth; ``apply`` refuses anything else)::

    NEW ─accept─► OPEN ─fill_partial─► PARTIALLY_FILLED ─fill─► FILLED
     │             └───────────────────────fill─────────────────► FILLED
     ├─reject─► REJECTED
     └─arm─► UNTRIGGERED ─trigger─► TRIGGERED ─accept─► OPEN
                                              └─reject─► REJECTED

    PENDING ─release─► NEW      a BRACKET's take-profit and stop-loss wait in PENDING
    PENDING ─arm─► UNTRIGGERED  until the entry has filled (or cancel with it)

    cancel ► CANCELED and expire ► EXPIRED from every status that is not final;
    amend keeps OPEN, PARTIALLY_FILLED and UNTRIGGERED as they are.

``NEW`` is an order stored and sequenced for the engine, ``TRIGGERED`` a conditional
order whose trigger fired, sequenced for the engine in turn: from both, the engine
accepts it (``OPEN``, then fills) or rejects it. A conditional order waits in
``UNTRIGGERED`` for its trigger, a cancel or (limit types with GTD) its ``expires_at``;
the market types are IOC or FOK once triggered and have no expiry.

Size: one vocabulary, an order's rules in ``MarketSpec``'s integer units: validation,
the hold it sizes and the trigger conditions must round and compare the same ticks and
lots, and the domain's values and status machine are what they speak; nearly every
trading module imports it. Its ``# ---`` sections (status machine, market, order types,
holds, triggers) are where it would split if it grows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from functools import cache
from math import gcd

from app.core.errors import InvariantViolation
from app.trading.domain.errors import (
    BelowMinimumNotional,
    InvalidOrder,
    MarketHalted,
    OrderNotAmendable,
    OrderNotCancellable,
    PriceOffTick,
    PriceOutsideBand,
    QuantityOffLotSize,
    StopPriceWrongSide,
)

MAX_DECIMAL = Decimal("1e20")
BPS = 10_000  # basis points in one
DEFAULT_MAX_SLIPPAGE_BPS = 500  # a MARKET order without a worst price trades within 5 %
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP_MARKET = "STOP_MARKET"
    STOP_LIMIT = "STOP_LIMIT"
    TAKE_PROFIT_MARKET = "TAKE_PROFIT_MARKET"
    TAKE_PROFIT_LIMIT = "TAKE_PROFIT_LIMIT"
    TRAILING_STOP = "TRAILING_STOP"


class TimeInForce(StrEnum):
    GTC = "GTC"  # good till cancelled
    IOC = "IOC"  # immediate or cancel: what does not fill on arrival expires
    FOK = "FOK"  # fill or kill: all on arrival or nothing
    GTD = "GTD"  # good till ``expires_at``


class MarketStatus(StrEnum):
    OPEN = "OPEN"
    HALTED = "HALTED"


class TrailingOffsetType(StrEnum):
    AMOUNT = "AMOUNT"  # the stop trails the best price by a fixed price distance
    PERCENT = "PERCENT"  # ... by a percentage of it


class Trigger(StrEnum):
    STOP = "STOP"  # a BUY fires when the price rises to the stop, a SELL when it falls
    TAKE_PROFIT = "TAKE_PROFIT"  # the other way round
    TRAILING = "TRAILING"  # a STOP whose price follows the market (see ``TrailingState``)


# --- the status machine -------------------------------------------------------------------


class OrderStatus(StrEnum):
    NEW = "NEW"
    OPEN = "OPEN"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    UNTRIGGERED = "UNTRIGGERED"
    TRIGGERED = "TRIGGERED"
    PENDING = "PENDING"  # a BRACKET's take-profit or stop-loss, waiting for its entry


class OrderEvent(StrEnum):
    ACCEPT = "ACCEPT"
    REJECT = "REJECT"
    ARM = "ARM"  # a conditional order handed to the trigger engine
    TRIGGER = "TRIGGER"
    FILL_PARTIAL = "FILL_PARTIAL"
    FILL = "FILL"  # the last lot
    AMEND = "AMEND"
    CANCEL = "CANCEL"
    EXPIRE = "EXPIRE"
    RELEASE = "RELEASE"  # a BRACKET's entry filled: its take-profit goes to the engine


_S, _E = OrderStatus, OrderEvent
TRANSITIONS: Mapping[tuple[OrderStatus, OrderEvent], OrderStatus] = {
    (_S.NEW, _E.ACCEPT): _S.OPEN,
    (_S.NEW, _E.REJECT): _S.REJECTED,
    (_S.NEW, _E.ARM): _S.UNTRIGGERED,
    (_S.NEW, _E.CANCEL): _S.CANCELED,
    (_S.NEW, _E.EXPIRE): _S.EXPIRED,
    (_S.UNTRIGGERED, _E.TRIGGER): _S.TRIGGERED,
    (_S.UNTRIGGERED, _E.AMEND): _S.UNTRIGGERED,
    (_S.UNTRIGGERED, _E.CANCEL): _S.CANCELED,
    (_S.UNTRIGGERED, _E.EXPIRE): _S.EXPIRED,
    (_S.TRIGGERED, _E.ACCEPT): _S.OPEN,
    (_S.TRIGGERED, _E.REJECT): _S.REJECTED,
    (_S.TRIGGERED, _E.CANCEL): _S.CANCELED,
    (_S.TRIGGERED, _E.EXPIRE): _S.EXPIRED,
    (_S.OPEN, _E.FILL_PARTIAL): _S.PARTIALLY_FILLED,
    (_S.OPEN, _E.FILL): _S.FILLED,
    (_S.OPEN, _E.AMEND): _S.OPEN,
    (_S.OPEN, _E.CANCEL): _S.CANCELED,
    (_S.OPEN, _E.EXPIRE): _S.EXPIRED,
    (_S.PARTIALLY_FILLED, _E.FILL_PARTIAL): _S.PARTIALLY_FILLED,
    (_S.PARTIALLY_FILLED, _E.FILL): _S.FILLED,
    (_S.PARTIALLY_FILLED, _E.AMEND): _S.PARTIALLY_FILLED,
    (_S.PARTIALLY_FILLED, _E.CANCEL): _S.CANCELED,
    (_S.PARTIALLY_FILLED, _E.EXPIRE): _S.EXPIRED,
    (_S.PENDING, _E.RELEASE): _S.NEW,
    (_S.PENDING, _E.ARM): _S.UNTRIGGERED,
    (_S.PENDING, _E.CANCEL): _S.CANCELED,
}
FINAL_STATUSES = frozenset({_S.FILLED, _S.CANCELED, _S.REJECTED, _S.EXPIRED})
# What counts against a user's maximum of open orders (and holds funds).
LIVE_STATUSES = frozenset(OrderStatus) - FINAL_STATUSES


def apply(status: OrderStatus | str, event: OrderEvent) -> OrderStatus:
    """The status after ``event``. A user's cancel or amend that the status does not
    allow is a ``UserError``; any other refused event means the engine and the stored
    order disagree, which is a bug (``InvariantViolation``)."""
    current = OrderStatus(status)
    try:
        return TRANSITIONS[(current, event)]
    except KeyError:
        if event is OrderEvent.CANCEL:
            raise OrderNotCancellable(f"A {current.value} order cannot be canceled") from None
        if event is OrderEvent.AMEND:
            raise OrderNotAmendable(f"A {current.value} order cannot be amended") from None
        raise InvariantViolation(f"order event {event.value} in status {current.value}") from None


def epoch_ms(moment: datetime) -> int:
    """An aware datetime as whole milliseconds since the epoch (the engine's clock)."""
    return (moment - EPOCH) // timedelta(milliseconds=1)


# --- the market ---------------------------------------------------------------------------


def _ratio(value: Decimal) -> tuple[int, int]:
    numerator, denominator = value.as_integer_ratio()
    return numerator, denominator


def _whole_multiple(value: Decimal, step: Decimal) -> int | None:
    """``value / step`` when it is a whole number, computed exactly (no context rounding)."""
    vn, vd = _ratio(value)
    sn, sd = _ratio(step)
    quotient, remainder = divmod(vn * sd, vd * sn)
    return None if remainder else quotient


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """One market's trading rules. Fees are rates (``Decimal("0.001")`` is 0.1 %), both
    charged in the quote currency; ``base_scale`` / ``quote_scale`` are the currencies'
    decimal places (``CurrencySpec.scale``)."""

    symbol: str
    base: str
    quote: str
    base_scale: int
    quote_scale: int
    tick_size: Decimal
    lot_size: Decimal
    min_notional: Decimal
    maker_fee: Decimal
    taker_fee: Decimal
    status: MarketStatus = MarketStatus.OPEN

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise InvariantViolation(f"market {self.symbol}: {problem}")

    def _problem(self) -> str | None:
        if self.tick_size <= 0 or self.lot_size <= 0 or self.min_notional < 0:
            return "tick size and lot size must be positive, the minimum notional not negative"
        if not (0 <= self.maker_fee < 1 and 0 <= self.taker_fee < 1):
            return "fee rates must be in [0, 1)"
        if _whole_multiple(self.lot_size, Decimal(1).scaleb(-self.base_scale)) is None:
            return f"lot size {self.lot_size} is finer than {self.base}'s minor unit"
        if _whole_multiple(self.tick_size * self.lot_size, self.quote_unit) is None:
            return (
                f"tick size x lot size ({self.tick_size * self.lot_size}) is not a whole number"
                f" of {self.quote}'s minor unit, so fill values would need rounding"
            )
        return None

    # The derived figures below are computed once per distinct value: an
    # order asks for several of them, and each is a few Decimal divisions.

    @property
    def quote_unit(self) -> Decimal:
        return _minor_unit(self.quote_scale)

    @property
    def units_per_tick_lot(self) -> int:
        """Quote minor units in one tick times one lot: a fill's value is
        ``price_ticks * quantity_lots * units_per_tick_lot``."""
        return _tick_lot_units(self.tick_size, self.lot_size, self.quote_scale)

    @property
    def fee_denominator(self) -> int:
        """The least common denominator of both fee rates."""
        return _fee_terms(self.maker_fee, self.taker_fee)[0]

    @property
    def maker_fee_numerator(self) -> int:
        return _fee_terms(self.maker_fee, self.taker_fee)[1]

    @property
    def taker_fee_numerator(self) -> int:
        return _fee_terms(self.maker_fee, self.taker_fee)[2]

    @property
    def base_units_per_lot(self) -> int:
        return _lot_units(self.lot_size, self.base_scale)

    def to_ticks(self, price: Decimal, *, field: str = "price") -> int:
        ticks = _whole_multiple(_positive(price, field), self.tick_size)
        if ticks is None:
            raise PriceOffTick(
                f"{self.symbol} prices are multiples of {self.tick_size.normalize():f}",
                field=field,
            )
        return ticks

    def to_lots(self, quantity: Decimal, *, field: str = "quantity") -> int:
        lots = _whole_multiple(_positive(quantity, field), self.lot_size)
        if lots is None:
            raise QuantityOffLotSize(
                f"{self.symbol} quantities are multiples of {self.lot_size.normalize():f}",
                field=field,
            )
        return lots

    def nearest_ticks(self, price: Decimal) -> int:
        """A reference price (which need not be on the tick) in whole ticks, rounded down,
        at least one."""
        try:
            # Decimal's // is exact (the quotient's integer part, truncated: the floor of a
            # positive price; anything at or below zero gives one tick either way); it
            # refuses a quotient longer than the context's precision, hence the fallback
            ticks = int(price // self.tick_size)
        except (ArithmeticError, ValueError):
            pn, pd = _ratio(price)
            tn, td = _ratio(self.tick_size)
            ticks = pn * td // (pd * tn)
        return max(1, ticks)

    def price(self, ticks: int) -> Decimal:
        return self.tick_size * ticks

    def quantity(self, lots: int) -> Decimal:
        return self.lot_size * lots

    def quote_amount(self, units: int) -> Decimal:
        return self.quote_unit * units

    def notional_units(self, price_ticks: int, quantity_lots: int) -> int:
        return price_ticks * quantity_lots * self.units_per_tick_lot


# Each depends on its arguments' values only (equal Decimals give equal answers), so the
# first answer for a value serves every spec with it.


@cache
def _minor_unit(scale: int) -> Decimal:
    return Decimal(1).scaleb(-scale)


@cache
def _tick_lot_units(tick_size: Decimal, lot_size: Decimal, quote_scale: int) -> int:
    units = _whole_multiple(tick_size * lot_size, _minor_unit(quote_scale))
    assert units is not None  # checked in MarketSpec.__post_init__
    return units


@cache
def _lot_units(lot_size: Decimal, base_scale: int) -> int:
    units = _whole_multiple(lot_size, _minor_unit(base_scale))
    assert units is not None  # checked in MarketSpec.__post_init__
    return units


@cache
def _fee_terms(maker_fee: Decimal, taker_fee: Decimal) -> tuple[int, int, int]:
    """(the least common denominator of both rates, the maker's numerator over it, the
    taker's)."""
    maker_num, maker_den = _ratio(maker_fee)
    taker_num, taker_den = _ratio(taker_fee)
    denominator = maker_den * taker_den // gcd(maker_den, taker_den)
    return (
        denominator,
        maker_num * (denominator // maker_den),
        taker_num * (denominator // taker_den),
    )


def _positive(value: Decimal, field: str) -> Decimal:
    if not value.is_finite() or value <= 0:
        raise InvalidOrder("Must be a number greater than zero", field=field)
    if value >= MAX_DECIMAL:
        raise InvalidOrder("Too large", field=field)
    return value


# --- order types as data ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TypeRules:
    book_type: OrderType  # LIMIT or MARKET: what reaches the book (after the trigger)
    takes_price: bool  # a limit price
    takes_stop: bool  # a trigger price
    trigger: Trigger | None


_T = OrderType
TYPE_RULES: Mapping[OrderType, TypeRules] = {
    _T.MARKET: TypeRules(_T.MARKET, False, False, None),
    _T.LIMIT: TypeRules(_T.LIMIT, True, False, None),
    _T.STOP_MARKET: TypeRules(_T.MARKET, False, True, Trigger.STOP),
    _T.STOP_LIMIT: TypeRules(_T.LIMIT, True, True, Trigger.STOP),
    _T.TAKE_PROFIT_MARKET: TypeRules(_T.MARKET, False, True, Trigger.TAKE_PROFIT),
    _T.TAKE_PROFIT_LIMIT: TypeRules(_T.LIMIT, True, True, Trigger.TAKE_PROFIT),
    _T.TRAILING_STOP: TypeRules(_T.MARKET, False, False, Trigger.TRAILING),
}
MARKET_TIME_IN_FORCE = frozenset({TimeInForce.IOC, TimeInForce.FOK})
POST_ONLY_TIME_IN_FORCE = frozenset({TimeInForce.GTC, TimeInForce.GTD})


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What a client asks for, as received (GraphQL field names in ``field``)."""

    side: Side
    type: OrderType
    quantity: Decimal
    price: Decimal | None = None  # limit price
    stop_price: Decimal | None = None
    time_in_force: TimeInForce | None = None  # GTC for limit types, IOC for market types
    expires_at: datetime | None = None  # GTD only
    post_only: bool = False
    worst_price: Decimal | None = None  # market types: the worst acceptable price ...
    max_slippage_bps: int | None = None  # ... or the slippage from the reference price
    trailing_offset: Decimal | None = None
    trailing_offset_type: TrailingOffsetType = TrailingOffsetType.AMOUNT
    activation_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class TrailingSpec:
    offset: int  # ticks (AMOUNT) or basis points (PERCENT)
    offset_type: TrailingOffsetType
    activation: int | None  # ticks


@dataclass(frozen=True, slots=True)
class ValidOrder:
    """A request checked against its market, in ticks and lots. ``price`` is the limit
    price of limit types and the worst acceptable price (slippage protection) of market
    types, so a MARKET order never trades beyond it and a BUY's hold is bounded."""

    side: Side
    type: OrderType
    quantity: int
    price: int
    time_in_force: TimeInForce
    post_only: bool = False
    stop_price: int | None = None
    expires_at: datetime | None = None
    trailing: TrailingSpec | None = None

    @property
    def book_type(self) -> OrderType:
        return TYPE_RULES[self.type].book_type

    @property
    def trigger(self) -> Trigger | None:
        return TYPE_RULES[self.type].trigger


def validate_order(
    request: OrderRequest,
    market: MarketSpec,
    *,
    now: datetime,
    reference_price: Decimal | None = None,
    price_band_bps: int | None = None,
) -> ValidOrder:
    """``request`` checked against ``market``; a typed ``UserError`` for the first
    problem. ``reference_price`` is the last trade price (None on a market that never
    traded): trigger prices must be on the far side of it, LIMIT prices within
    ``price_band_bps`` of it, and MARKET orders without a worst price may trade at most
    ``max_slippage_bps`` (default ``DEFAULT_MAX_SLIPPAGE_BPS``) away from it."""
    if market.status is not MarketStatus.OPEN:
        raise MarketHalted(f"Trading on {market.symbol} is halted")
    rules = TYPE_RULES[request.type]
    _check_fields(request, rules)
    quantity = market.to_lots(request.quantity)
    reference = None if reference_price is None else market.nearest_ticks(reference_price)
    stop = _stop_ticks(request, rules, market, reference)
    trailing = _trailing(request, market, reference) if rules.trigger is Trigger.TRAILING else None
    tif = _time_in_force(request, rules, now)
    if rules.book_type is OrderType.LIMIT:
        assert request.price is not None  # _check_fields
        price = valuation = market.to_ticks(request.price)
        if request.type is OrderType.LIMIT:
            check_price_band(price, reference, price_band_bps)
    else:
        anchor = _market_anchor(request.side, stop, trailing, reference)
        price = _worst_price(request, market, anchor)
        valuation = anchor or price
    check_min_notional(market, valuation, quantity)
    return ValidOrder(
        side=request.side,
        type=request.type,
        quantity=quantity,
        price=price,
        time_in_force=tif,
        post_only=request.post_only,
        stop_price=stop,
        expires_at=request.expires_at,
        trailing=trailing,
    )


def _check_fields(request: OrderRequest, rules: TypeRules) -> None:
    is_market = rules.book_type is OrderType.MARKET
    present = {
        "price": (request.price is not None, rules.takes_price),
        "stopPrice": (request.stop_price is not None, rules.takes_stop),
        "worstPrice": (request.worst_price is not None, is_market),
        "maxSlippageBps": (request.max_slippage_bps is not None, is_market),
        "trailingOffset": (request.trailing_offset is not None, rules.trigger is Trigger.TRAILING),
        "activationPrice": (
            request.activation_price is not None,
            rules.trigger is Trigger.TRAILING,
        ),
        "postOnly": (request.post_only, not is_market),
    }
    for field, (given, allowed) in present.items():
        if given and not allowed:
            raise InvalidOrder(f"A {request.type.value} order takes no {field}", field=field)
    required = {
        "price": rules.takes_price,
        "stopPrice": rules.takes_stop,
        "trailingOffset": rules.trigger is Trigger.TRAILING,
    }
    for field, needed in required.items():
        if needed and not present[field][0]:
            raise InvalidOrder(f"A {request.type.value} order needs a {field}", field=field)
    if request.worst_price is not None and request.max_slippage_bps is not None:
        raise InvalidOrder("Give a worst price or a maximum slippage, not both", field="worstPrice")


def _time_in_force(request: OrderRequest, rules: TypeRules, now: datetime) -> TimeInForce:
    is_market = rules.book_type is OrderType.MARKET
    tif = request.time_in_force or (TimeInForce.IOC if is_market else TimeInForce.GTC)
    if is_market and tif not in MARKET_TIME_IN_FORCE:
        raise InvalidOrder(f"A {request.type.value} order is IOC or FOK", field="timeInForce")
    if request.post_only and tif not in POST_ONLY_TIME_IN_FORCE:
        raise InvalidOrder("A post-only order is GTC or GTD", field="postOnly")
    if (tif is TimeInForce.GTD) != (request.expires_at is not None):
        raise InvalidOrder("expiresAt goes with GTD, and only with it", field="expiresAt")
    if request.expires_at is not None and request.expires_at <= now:
        raise InvalidOrder("expiresAt is in the past", field="expiresAt")
    return tif


def _stop_ticks(
    request: OrderRequest, rules: TypeRules, market: MarketSpec, reference: int | None
) -> int | None:
    if request.stop_price is None:
        return None
    stop = market.to_ticks(request.stop_price, field="stopPrice")
    assert rules.trigger is not None
    if reference is not None and not _beyond(rules.trigger, request.side, stop, reference):
        raise StopPriceWrongSide(
            f"A {request.side.value} {request.type.value} order's stop price must be"
            f" {'above' if fires_rising(rules.trigger, request.side) else 'below'}"
            " the last price",
            field="stopPrice",
        )
    return stop


def _trailing(request: OrderRequest, market: MarketSpec, reference: int | None) -> TrailingSpec:
    assert request.trailing_offset is not None  # _check_fields
    if request.trailing_offset_type is TrailingOffsetType.AMOUNT:
        offset = market.to_ticks(request.trailing_offset, field="trailingOffset")
    else:
        bps = _whole_multiple(_positive(request.trailing_offset, "trailingOffset"), Decimal("0.01"))
        if bps is None or bps >= BPS:
            raise InvalidOrder(
                "A trailing percentage is below 100 with at most two decimals",
                field="trailingOffset",
            )
        offset = bps
    activation = None
    if request.activation_price is not None:
        activation = market.to_ticks(request.activation_price, field="activationPrice")
        # A SELL trails the highs: it activates once the price has risen to `activation`.
        rising = request.side is Side.SELL
        if reference is not None and not (
            activation > reference if rising else activation < reference
        ):
            raise StopPriceWrongSide(
                f"A {request.side.value} trailing stop's activation price must be"
                f" {'above' if rising else 'below'} the last price",
                field="activationPrice",
            )
    return TrailingSpec(
        offset=offset, offset_type=request.trailing_offset_type, activation=activation
    )


def _market_anchor(
    side: Side, stop: int | None, trailing: TrailingSpec | None, reference: int | None
) -> int | None:
    """The price a market-type order's slippage is measured from: the stop price of a
    stop / take-profit, the highest stop a BUY trailing stop can reach (its stop only
    falls after activation), the reference price otherwise."""
    if stop is not None:
        return stop
    if trailing is not None:
        start = trailing.activation if trailing.activation is not None else reference
        if start is None:
            return None
        return trailing_stop_price(side, trailing, start)
    return reference


def _worst_price(request: OrderRequest, market: MarketSpec, anchor: int | None) -> int:
    if request.worst_price is not None:
        return market.to_ticks(request.worst_price, field="worstPrice")
    if anchor is None:
        raise InvalidOrder(
            "This market has no last price yet: give a worst acceptable price",
            field="worstPrice",
        )
    bps = request.max_slippage_bps
    if bps is None:
        bps = DEFAULT_MAX_SLIPPAGE_BPS
    if not 0 <= bps < BPS:
        raise InvalidOrder("A slippage is at least 0 and below 10000 bps", field="maxSlippageBps")
    return protection_price(request.side, anchor, bps)


def protection_price(side: Side, anchor_ticks: int, max_slippage_bps: int) -> int:
    """The worst price a market-type order accepts: ``max_slippage_bps`` above the
    anchor for a BUY (rounded down to a tick), below it for a SELL (rounded up), never
    under one tick."""
    if side is Side.BUY:
        return anchor_ticks * (BPS + max_slippage_bps) // BPS
    return max(1, -(-anchor_ticks * (BPS - max_slippage_bps) // BPS))


def check_price_band(price_ticks: int, reference_ticks: int | None, band_bps: int | None) -> None:
    """A limit price at most ``band_bps`` away from the last price (no band on a market
    that never traded)."""
    if reference_ticks is None or band_bps is None:
        return
    if abs(price_ticks - reference_ticks) * BPS > reference_ticks * band_bps:
        raise PriceOutsideBand(
            f"The price must be within {band_bps / 100:g} % of the last price", field="price"
        )


def check_min_notional(market: MarketSpec, price_ticks: int, quantity_lots: int) -> None:
    value = market.quote_amount(market.notional_units(price_ticks, quantity_lots))
    if value < market.min_notional:
        raise BelowMinimumNotional(
            f"{market.symbol} orders are worth at least {market.min_notional.normalize():f}"
            f" {market.quote}",
            field="quantity",
        )


# --- holds --------------------------------------------------------------------------------


def hold_units(market: MarketSpec, side: Side, price_ticks: int, quantity_lots: int) -> int:
    """What an order must hold, in minor units of the currency it pays with: the base
    quantity for a SELL; for a BUY the value at its (limit or worst) price plus the
    larger fee rate, rounded up as fees are. Every fill is at ``price_ticks`` or better,
    so fills and fees never exceed it."""
    if side is Side.SELL:
        return quantity_lots * market.base_units_per_lot
    notional = market.notional_units(price_ticks, quantity_lots)
    fee_num = max(market.maker_fee_numerator, market.taker_fee_numerator)
    return notional + -(-notional * fee_num // market.fee_denominator)


def hold_for(market: MarketSpec, order: ValidOrder) -> tuple[str, Decimal]:
    """(currency, amount) to hold when ``order`` is placed."""
    units = hold_units(market, order.side, order.price, order.quantity)
    if order.side is Side.SELL:
        return market.base, Decimal(1).scaleb(-market.base_scale) * units
    return market.quote, market.quote_amount(units)


# --- triggers -----------------------------------------------------------------------------


def fires_rising(trigger: Trigger, side: Side) -> bool:
    """Whether the order fires when the price rises to its stop (else when it falls)."""
    return (trigger is Trigger.TAKE_PROFIT) == (side is Side.SELL)


def _beyond(trigger: Trigger, side: Side, stop: int, last: int) -> bool:
    return stop > last if fires_rising(trigger, side) else stop < last


def is_triggered(order: ValidOrder, last_ticks: int) -> bool:
    """For STOP_* and TAKE_PROFIT_* orders: whether the last trade price fires it."""
    assert order.trigger in (Trigger.STOP, Trigger.TAKE_PROFIT) and order.stop_price is not None
    if fires_rising(order.trigger, order.side):
        return last_ticks >= order.stop_price
    return last_ticks <= order.stop_price


@dataclass(frozen=True, slots=True)
class TrailingState:
    """A trailing stop between trades: whether it is active, and the best price since
    (the highest for a SELL, the lowest for a BUY)."""

    active: bool
    extreme: int | None = None


def start_trailing(spec: TrailingSpec) -> TrailingState:
    return TrailingState(active=spec.activation is None)


def trailing_stop_price(side: Side, spec: TrailingSpec, extreme: int) -> int:
    """A SELL's stop trails below the highs (rounded down), a BUY's above the lows (up)."""
    if spec.offset_type is TrailingOffsetType.AMOUNT:
        return extreme - spec.offset if side is Side.SELL else extreme + spec.offset
    if side is Side.SELL:
        return extreme * (BPS - spec.offset) // BPS
    return -(-extreme * (BPS + spec.offset) // BPS)


def observe_trailing(
    side: Side, spec: TrailingSpec, state: TrailingState, last_ticks: int
) -> tuple[TrailingState, bool]:
    """The state after a trade at ``last_ticks``, and whether the stop fired."""
    if not state.active:
        assert spec.activation is not None
        reached = (
            last_ticks >= spec.activation if side is Side.SELL else last_ticks <= spec.activation
        )
        if not reached:
            return state, False
    if state.extreme is None:
        extreme = last_ticks
    else:
        extreme = (
            max(state.extreme, last_ticks) if side is Side.SELL else min(state.extreme, last_ticks)
        )
    state = TrailingState(active=True, extreme=extreme)
    stop = trailing_stop_price(side, spec, extreme)
    fired = last_ticks <= stop if side is Side.SELL else last_ticks >= stop
    return state, fired
