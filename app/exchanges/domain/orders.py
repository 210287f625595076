"""Orders on connected exchange accounts, independent of ccxt and storage.

An order's life (``TRANSITIONS`` is the whole truth; ``advance`` never moves back)::

    PENDING_SUBMIT ─► OPEN ─► PARTIALLY_FILLED ─► FILLED
          │            │            │
          │            └────────────┴──► CANCELED
          └──► REJECTED (refused, or looked up and never placed); or straight to any
               state the exchange reports when the answer comes back

An emulated stop starts ARMED (held by the platform, not sent): fired, it becomes
PENDING_SUBMIT and goes on as above; disarmed, CANCELED (``domain/triggers.py``).

The client order id is ours, made before the request (``new_client_order_id``): 18
lowercase alphanumerics, valid at every exchange (Binance 36 of [A-Za-z0-9_-], OKX 32
of [a-z0-9], Kraken 18 characters of free text, Bybit's ``orderLinkId`` 36 of
[A-Za-z0-9_-], Coinbase's ``client_order_id`` free text).

Advanced orders are native where ccxt says the exchange has them, unless the
platform's own correction (``STOP_CORRECTIONS``) says otherwise; elsewhere they would
be emulated (``OrderTypeSupport.emulated``)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from app.core.errors import ValidationFailed
from app.exchanges.domain.catalogue import ExchangeId
from app.exchanges.domain.markets import ExchangeMarket
from app.trading.domain.orders import Side

CLIENT_ORDER_ID_PREFIX = "co"
MAX_AMOUNT = Decimal("1e18")  # NUMERIC(38, 18) holds 20 integer digits


class ExchangeOrderType(StrEnum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"
    STOP_LOSS = "STOP_LOSS"  # a market order when the stop price trades
    STOP_LOSS_LIMIT = "STOP_LOSS_LIMIT"  # a limit order when the stop price trades

    @property
    def has_limit(self) -> bool:
        return self in (ExchangeOrderType.LIMIT, ExchangeOrderType.STOP_LOSS_LIMIT)

    @property
    def is_stop(self) -> bool:
        return self in (ExchangeOrderType.STOP_LOSS, ExchangeOrderType.STOP_LOSS_LIMIT)


class ExchangeOrderStatus(StrEnum):
    ARMED = "ARMED"  # an emulated stop the platform holds, not sent (app/exchanges/triggers.py)
    PENDING_SUBMIT = "PENDING_SUBMIT"  # our row exists; the exchange's answer is not in
    OPEN = "OPEN"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"


S = ExchangeOrderStatus
LIVE = frozenset({S.PENDING_SUBMIT, S.OPEN, S.PARTIALLY_FILLED})
# still working: live at the exchange, or an emulated stop the platform holds
WORKING = LIVE | {S.ARMED}
CANCELLABLE = frozenset({S.OPEN, S.PARTIALLY_FILLED})
# the states each state may move to (an exchange's report may skip steps)
TRANSITIONS: Mapping[S, frozenset[S]] = {
    S.ARMED: frozenset({S.PENDING_SUBMIT, S.CANCELED}),  # fired (claimed), or disarmed
    S.PENDING_SUBMIT: frozenset({S.OPEN, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.REJECTED}),
    S.OPEN: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELED}),
    S.PARTIALLY_FILLED: frozenset({S.FILLED, S.CANCELED}),
    S.FILLED: frozenset(),
    S.CANCELED: frozenset(),
    S.REJECTED: frozenset(),
}


def advance(current: S, reported: S) -> S:
    """The state after the exchange reports ``reported``: a move the table allows, else
    ``current`` (a late report of an earlier state never moves an order back)."""
    return reported if reported in TRANSITIONS[current] else current


def new_client_order_id() -> str:
    return CLIENT_ORDER_ID_PREFIX + secrets.token_hex(8)


# Ids of ours derived from a key: 2 letters and 16 hex digits of the key's SHA-256, 18
# lowercase alphanumerics that every exchange takes (Kraken takes 18, OKX only [a-z0-9]).
# The same key is always the same id, so an order sent again is the same order.
DIGITS = 16


def derived_client_order_id(prefix: str, key: str) -> str:
    """The client order id for ``key`` (a caller's own id, a copy's key)."""
    return prefix + hashlib.sha256(key.encode()).hexdigest()[:DIGITS]


def derived_client_order_id_sql(prefix: str, key_sql: str) -> str:
    """``derived_client_order_id`` as a PostgreSQL expression of the text ``key_sql``,
    for statements that derive ids from the keys they read (a test checks both agree)."""
    assert prefix.isalnum(), prefix
    return f"'{prefix}' || left(encode(sha256(convert_to({key_sql}, 'UTF8')), 'hex'), {DIGITS})"


@dataclass(frozen=True, slots=True)
class OrderSubmission:
    """What is sent: amounts already checked against the market (``check_submission``)."""

    client_order_id: str
    symbol: str
    side: Side
    type: ExchangeOrderType
    quantity: Decimal
    price: Decimal | None = None
    stop_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class ReportedOrder:
    """An order as the exchange reports it (the ccxt edge's conversion)."""

    exchange_order_id: str
    client_order_id: str | None
    symbol: str
    status: S
    filled: Decimal


@dataclass(frozen=True, slots=True)
class ReportedTrade:
    trade_id: str
    exchange_order_id: str
    symbol: str
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_currency: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class StreamedTrades:
    """A stream's next trades, with the orders they moved where the exchange's trade
    events carry their order's state (Kraken's executions; elsewhere none: the order
    updates say it)."""

    orders: list[ReportedOrder]
    trades: list[ReportedTrade]


# --- capabilities: ccxt's data, with the platform's corrections as data ----------------


@dataclass(frozen=True, slots=True)
class OrderTypeSupport:
    type: ExchangeOrderType
    emulated: bool  # True: the platform would hold it (no protection while it is down)


# Where ccxt's capability data does not hold for the platform's use: the stop types
# native there, whatever ccxt's "native stop-loss on spot" says. OKX: none (ccxt's spot
# stop goes to the algo endpoint, ``/trade/order-algo``, whose orders fetchOrder,
# fetchOpenOrders and fetchMyTrades do not return by client order id: the platform
# could not follow them). Coinbase: the stop-limit only (ccxt's createOrder refuses a
# stop market order: Coinbase's stops are ``stop_limit_stop_limit_*``). Bybit's spot
# stop (``orderFilter=tpslOrder``) is listed with its ``orderLinkId`` among the open and
# ended orders: native, as ccxt says.
STOP_CORRECTIONS: Mapping[ExchangeId, frozenset[ExchangeOrderType]] = {
    ExchangeId.OKX: frozenset(),
    ExchangeId.COINBASE: frozenset({ExchangeOrderType.STOP_LOSS_LIMIT}),
}
# Where orders can be placed: the exchanges whose order path the stand-ins' contract
# covers (tests/exchanges/test_orders_contract.py); an exchange added to the catalogue
# is not among them until its stand-in passes that contract.
ORDER_EXCHANGES: frozenset[ExchangeId] = frozenset(
    {ExchangeId.BINANCE, ExchangeId.KRAKEN, ExchangeId.OKX, ExchangeId.BYBIT,
     ExchangeId.COINBASE}
)  # fmt: skip
# Where a spot market buy is sized in the quote currency (what to spend), not in the
# base quantity the platform sends: refused there (Coinbase's ``market_market_ioc`` buy
# takes ``quote_size``; ccxt would need a price to convert, which a market order has not).
QUOTE_SIZED_MARKET_BUYS: frozenset[ExchangeId] = frozenset({ExchangeId.COINBASE})
# Whether ccxt's fetchOrder finds an order by our client order id at the exchange
# (Kraken's fetchOrder takes only its integer ``userref``; Bybit's needs an
# "acknowledged" flag and sees only the last 500 orders; Coinbase's takes only its own
# order id: open and ended orders are read and matched instead, the safe default for an
# exchange not checked).
FETCH_BY_CLIENT_ID: Mapping[ExchangeId, bool] = {
    ExchangeId.BINANCE: True,
    ExchangeId.KRAKEN: False,
    ExchangeId.OKX: True,
    ExchangeId.BYBIT: False,
    ExchangeId.COINBASE: False,
}


def order_types(exchange: ExchangeId, *, ccxt_native_stop: bool) -> tuple[OrderTypeSupport, ...]:
    """Each order type at ``exchange``: limit and market native everywhere; stops native
    where ccxt says so, unless a correction names the ones that are."""
    stops = frozenset(t for t in ExchangeOrderType if t.is_stop and ccxt_native_stop)
    native = STOP_CORRECTIONS.get(exchange, stops)
    return tuple(
        OrderTypeSupport(t, emulated=t.is_stop and t not in native) for t in ExchangeOrderType
    )


# --- checks against the exchange's market ----------------------------------------------


def _positive(value: Decimal | None, field: str) -> Decimal:
    if value is None:
        raise ValidationFailed(f"{field} is required for this order type", field=field)
    if not value.is_finite() or not 0 < value < MAX_AMOUNT:
        raise ValidationFailed(f"{field} must be positive and below {MAX_AMOUNT:f}", field=field)
    return value


def _on_step(value: Decimal, step: Decimal, field: str, what: str) -> None:
    if value % step != 0:
        raise ValidationFailed(f"{field} must be a multiple of the {what} {step:f}", field=field)


def check_submission(market: ExchangeMarket, submission: OrderSubmission) -> None:
    """``ValidationFailed`` (naming the field) unless the order meets the market's
    precision and limits: quantity on the lot and at least the minimum amount, prices on
    the tick, the value at least the minimum notional (where a price is known)."""
    if not market.active:
        raise ValidationFailed("This market is not trading at the exchange", field="symbol")
    kind = submission.type
    quantity = _positive(submission.quantity, "quantity")
    _on_step(quantity, market.lot_size, "quantity", "lot size")
    if market.min_amount is not None and quantity < market.min_amount:
        raise ValidationFailed(f"quantity must be at least {market.min_amount:f}", field="quantity")
    price = _positive(submission.price, "price") if kind.has_limit else None
    if not kind.has_limit and submission.price is not None:
        raise ValidationFailed("A price is for limit orders only", field="price")
    stop = _positive(submission.stop_price, "stopPrice") if kind.is_stop else None
    if not kind.is_stop and submission.stop_price is not None:
        raise ValidationFailed("A stop price is for stop orders only", field="stopPrice")
    for value, field in ((price, "price"), (stop, "stopPrice")):
        if value is not None:
            _on_step(value, market.tick_size, field, "tick size")
    reference = price or stop
    if market.min_notional and reference is not None and quantity * reference < market.min_notional:
        raise ValidationFailed(
            f"The order's value must be at least {market.min_notional:f} {market.quote}",
            field="quantity",
        )
