"""ccxt behind ``ExchangeConnector``: the only module that imports ccxt, and only inside
functions (``import ccxt`` loads every exchange: seconds and ~100 MB per process).

Here, once: a stored account's credentials are opened (for ccxt to sign its requests);
ccxt's floats become Decimals (through ``str``); venue quirks are data (``_OPTIONS``,
``_PERMISSIONS``); and ccxt's errors become ours, grouped by what the caller should do:

    ccxt.NetworkError (timeouts, ExchangeNotAvailable,
    OnMaintenance, InvalidNonce), ccxt.BadResponse   retried (reads only) with exponential
                                                     backoff, then ExchangeUnavailable
    ccxt.RateLimitExceeded, ccxt.DDoSProtection      ExchangeRateLimited: never retried
                                                     here (the exchange asked us to wait)
    ccxt.PermissionDenied                            ExchangePermissionDenied
    ccxt.AuthenticationError (bad key, signature,
    passphrase; suspended account)                   ExchangeKeyInvalid
    ccxt.InsufficientFunds                           ExchangeInsufficientFunds
    ccxt.OrderNotFound                               ExchangeOrderNotFound
    ccxt.BadSymbol (no such market at the exchange)  ExchangeSymbolUnknown
    ccxt.NotSupported, ArgumentsRequired             InvariantViolation: our bug
    any other ccxt.ExchangeError                     ExchangeRejected: never retried blindly

A write (placing, canceling an order) is never retried: a network failure or a bad
response on a write is ``ExchangeOutcomeUnknown`` (the exchange may have done it), and
the caller looks the order up by its client order id instead.

ccxt's own messages (which quote the exchange's answer and URL) are not passed on nor
logged: only the exchange, the call and the error's class are.

Size: one idea, the adapter edge: every call into ccxt (accounts, market data, orders),
its conversion and its errors, in the one module allowed to import ccxt.
"""

from __future__ import annotations

import asyncio
import decimal
import hashlib
import logging
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from app.core.errors import AppError, InvariantViolation, ValidationFailed
from app.core.settings import Settings
from app.exchanges.domain.accounts import (
    PERMISSION_READERS,
    Balance,
    Credentials,
    KeyPermissions,
)
from app.exchanges.domain.catalogue import ExchangeId
from app.exchanges.domain.errors import (
    ExchangeInsufficientFunds,
    ExchangeKeyInvalid,
    ExchangeOrderNotFound,
    ExchangeOutcomeUnknown,
    ExchangePermissionDenied,
    ExchangeRateLimited,
    ExchangeRejected,
    ExchangeSymbolUnknown,
    ExchangeUnavailable,
)
from app.exchanges.domain.marketdata import (
    BOOK_MAX,
    ExchangeBook,
    ExchangeTicker,
    Level,
    okx_book_checksum,
    timestamp,
)
from app.exchanges.domain.markets import ExchangeMarket
from app.exchanges.domain.orders import (
    FETCH_BY_CLIENT_ID,
    OrderSubmission,
    OrderTypeSupport,
    ReportedOrder,
    ReportedTrade,
    StreamedTrades,
    order_types,
)
from app.exchanges.domain.sealing import Binding, KeyRing, SealedSecret
from app.marketdata.domain.candles import Candle, interval_named, out_of_range, problems
from app.marketdata.domain.trades import Trade

log = logging.getLogger(__name__)
T = TypeVar("T")

# ccxt logs every request's headers (the API key among them) at DEBUG: never let it.
_CCXT_LOGGER = logging.getLogger("app.exchanges.ccxt")
_CCXT_LOGGER.setLevel(logging.WARNING)
MARKETS_TTL_SECONDS = 3600.0
# a stored account's ccxt instance is kept this long unused (``_Instances``)
INSTANCE_IDLE_SECONDS = 300.0
# Per exchange, ccxt options: spot markets only, and no currency list (Binance's and
# OKX's are private endpoints; the platform needs markets and balances).
_OPTIONS: dict[ExchangeId, dict[str, Any]] = {
    ExchangeId.BINANCE: {
        "fetchMarkets": {"types": ["spot"]},
        "fetchCurrencies": False,
        "fetchMargins": False,
    },
    ExchangeId.KRAKEN: {},
    # a spot market buy's amount in the base currency (ccxt's default for OKX: the cost)
    ExchangeId.OKX: {"fetchMarkets": {"types": ["spot"]}, "tgtCcy": "base_ccy"},
    ExchangeId.BYBIT: {"fetchMarkets": {"types": ["spot"]}},
    ExchangeId.COINBASE: {"fetchBalance": "v3PrivateGetBrokerageAccounts"},
}
# ccxt's implicit method for the exchange's own endpoint that reports a key's permissions
_PERMISSIONS: dict[ExchangeId, str] = {
    ExchangeId.BINANCE: "sapiGetAccountApiRestrictions",
    ExchangeId.KRAKEN: "privatePostGetApiKeyInfo",
    ExchangeId.OKX: "privateGetAccountConfig",
    ExchangeId.BYBIT: "privateGetV5UserQueryApi",
    ExchangeId.COINBASE: "v3PrivateGetBrokerageKeyPermissions",
}
# Refusals of the key that ccxt raises as a generic error (Binance's spot API maps its
# key and signature codes to BadRequest / OperationRejected; Kraken's bad signature has
# no class of its own): recognised by the exchange's code in the answer ccxt quotes.
_KEY_REFUSED: dict[ExchangeId, tuple[str, ...]] = {
    ExchangeId.BINANCE: ('"code":-2014', '"code":-2015', '"code":-1022'),
    ExchangeId.KRAKEN: ("EAPI:Invalid signature",),
}
_ORIGIN = re.compile(r"^https?://[^/]+")
_WS_ORIGIN = re.compile(r"^wss?://[^/]+")
# The exchanges whose candles endpoint answers the latest candles up to its end (Bybit):
# told the end (ccxt's ``until``), so that a fetch from ``since`` starts there. (ccxt
# bounds OKX's and Coinbase's requests by ``since`` and the limit itself; Binance and
# Kraken count from the start.)
_OHLCV_UNTIL = frozenset({ExchangeId.BYBIT})
# ccxt's calls for the ended orders where its ``fetch_closed_orders`` asks for filled
# ones only (Bybit's ``orderStatus=Filled``, Coinbase's ``FILLED``): canceled orders are
# read too, so that a canceled order is found by the list-and-match lookup
# (``FETCH_BY_CLIENT_ID``).
# Binance's ``fetch_orders`` (allOrders: every state, read whole, where its
# ``fetch_closed_orders`` drops the canceled ones after the read) and OKX's canceled
# orders (its closed ones are ``state=filled``) are read for the same reason, and so
# that every ended order's final state is read, not looked up one by one.
_ENDED_ORDERS: dict[ExchangeId, tuple[str, ...]] = {
    ExchangeId.BINANCE: ("fetch_orders",),
    ExchangeId.OKX: ("fetch_closed_orders", "fetch_canceled_orders"),
    ExchangeId.BYBIT: ("fetch_canceled_and_closed_orders",),
    ExchangeId.COINBASE: ("fetch_closed_orders", "fetch_canceled_orders"),
}
# --- paging the account's history --------------------------------------------------------


def _from_id(param: str, size: int) -> Callable[[Sequence[Any], Mapping[str, Any]], Any]:
    """Oldest first, by id (Binance's ``fromId``, ``orderId``: that id and on): the page
    after one of ``size`` starts past its highest id."""
    return lambda page, _: (
        {param: max(int(r["id"]) for r in page) + 1} if len(page) >= size else None
    )


def _offset(size: int) -> Callable[[Sequence[Any], Mapping[str, Any]], Any]:
    """Newest first, by offset (Kraken's ``ofs``): a full page is followed by the next."""
    return lambda page, params: (
        {**params, "ofs": int(params.get("ofs", 0)) + len(page)} if len(page) >= size else None
    )


def _older_than(key: str, size: int) -> Callable[[Sequence[Any], Mapping[str, Any]], Any]:
    """Newest first, by id (OKX's ``after``: the records older than that id)."""
    return lambda page, params: (
        {**params, "after": str(min(int(r["info"][key]) for r in page))}
        if len(page) >= size else None
    )  # fmt: skip


def _cursor(key: str) -> Callable[[Sequence[Any], Mapping[str, Any]], Any]:
    """By the exchange's cursor (Bybit's ``nextPageCursor``, Coinbase's ``cursor``), which
    ccxt leaves in one record's ``info``; none (or empty) after the last page."""

    def following(page: Sequence[Any], params: Mapping[str, Any]) -> Any:
        cursors = [(r.get("info") or {}).get(key) for r in page]
        cursor = next((c for c in cursors if c), None)
        return None if cursor is None else {**params, "cursor": cursor}

    return following


@dataclass(frozen=True, slots=True)
class _Paging:
    """How one call of an exchange's private history (orders ended, the account's
    trades) pages: ``limit`` asked for (the exchange's most per page), ``next`` gives the
    parameters of the page after one (None: it was the last), ``params`` go with every
    page. ``since_once``: the start goes with the first page only (the next are asked by
    id). ``start``: the start as the exchange's own parameter, ccxt told no start and no
    symbol (Kraken's lists hold every market's: ccxt would filter a page before it could
    be counted), the market filtered here."""

    limit: int | None
    next: Callable[[Sequence[Any], Mapping[str, Any]], Mapping[str, Any] | None]
    params: Mapping[str, Any] = field(default_factory=dict)
    since_once: bool = False
    start: Callable[[int], dict[str, Any]] | None = None


_KRAKEN_PAGE = _Paging(None, _offset(50), start=lambda ms: {"start": ms // 1000})
_OKX_ORDERS = _Paging(100, _older_than("ordId", 100))
_COINBASE_ORDERS = _Paging(1000, _cursor("cursor"))
# Per exchange, the paging of each history call reconciliation makes (documented limits:
# Binance 1000, oldest first from the start; Kraken 50, newest first; OKX 100, newest
# first; Bybit 100 trades and 50 orders; Coinbase 250 fills and 1000 orders, with a
# cursor). OKX answers a trade read with a start by its default page, so the limit goes
# as its own parameter (ccxt sends it only without a start).
_PAGING: dict[ExchangeId, dict[str, _Paging]] = {
    ExchangeId.BINANCE: {
        "fetch_my_trades": _Paging(1000, _from_id("fromId", 1000), since_once=True),
        "fetch_orders": _Paging(1000, _from_id("orderId", 1000), since_once=True),
    },
    ExchangeId.KRAKEN: {"fetch_my_trades": _KRAKEN_PAGE, "fetch_closed_orders": _KRAKEN_PAGE},
    ExchangeId.OKX: {
        "fetch_my_trades": _Paging(100, _older_than("billId", 100), {"limit": "100"}),
        "fetch_closed_orders": _OKX_ORDERS,
        "fetch_canceled_orders": _OKX_ORDERS,
    },
    ExchangeId.BYBIT: {
        "fetch_my_trades": _Paging(100, _cursor("nextPageCursor")),
        "fetch_canceled_and_closed_orders": _Paging(50, _cursor("nextPageCursor")),
    },
    ExchangeId.COINBASE: {
        "fetch_my_trades": _Paging(250, _cursor("cursor")),
        "fetch_closed_orders": _COINBASE_ORDERS,
        "fetch_canceled_orders": _COINBASE_ORDERS,
    },
}
# the pages one history call reads in one run at most (then the next run goes on there)
HISTORY_MAX_PAGES = 100


# The exchange's own parameter for our client order id where ccxt's ``clientOrderId``
# is not sent (ccxt's Coinbase createOrder makes its own "ccxt-<uuid>" and drops ours).
_CLIENT_ID_PARAM: dict[ExchangeId, str] = {ExchangeId.COINBASE: "client_order_id"}


async def _bybit_ready(exchange: Any) -> Any:
    """Bybit: the v5 private WebSocket's ``auth``, acknowledged (its URL is the unified
    account's, which ccxt learns from the REST account info first)."""
    url = await exchange.get_url_by_market_type(None, True, "watchOrders", {})
    return await exchange.authenticate(url)


def _kraken_trade_order(exchange: Any, trade: Mapping[str, Any]) -> ReportedOrder | None:
    """Kraken v2 ``executions``: a trade's execution carries its order's state
    (``order_status``, ``cum_qty``), which ccxt routes to watch_my_trades only."""
    info = trade.get("info") or {}
    if info.get("order_id") is None:
        return None
    order = {"id": info["order_id"], "clientOrderId": info.get("cl_ord_id"),
             "status": exchange.parse_order_status(info.get("order_status")),
             "filled": info.get("cum_qty"), "symbol": trade["symbol"]}  # fmt: skip
    return to_order(order, trade["symbol"])


@dataclass(frozen=True, slots=True)
class _OrderStreamSpec:
    """How ``ccxt.pro`` follows one exchange's account orders. ``ready``: the call that
    authenticates the account's private stream and returns once the exchange
    acknowledged it (so that a reconciliation started after it misses nothing; the
    order channels themselves are subscribed by the first watch_orders /
    watch_my_trades, whose acknowledgement ccxt does not surface: the stream's watchers
    start before the reconciliation, and the periodic one covers the moment between).
    ``trade_order``: where a streamed trade carries its order's state that the order
    updates do not (read from the trade)."""

    ready: Callable[[Any], Awaitable[Any]]
    trade_order: Callable[[Any, Mapping[str, Any]], ReportedOrder | None] | None = None


# The exchanges whose account order stream (``ccxt.pro``'s watch_orders, and
# watch_my_trades where ``has`` says so) the platform follows. Binance: the WebSocket
# API's ``userDataStream.subscribe.signature``. OKX: the login (then its ``orders``
# channel). Bybit: the v5 private ``auth`` (then its ``order`` and ``execution``
# topics). Kraken: a token from REST ``GetWebSocketsToken`` (then the v2 ``executions``
# channel, subscribed with it: ccxt.pro's kraken speaks v2 for the account's orders and
# trades, not v1's openOrders / ownTrades). Coinbase: the advanced trade ``user``
# channel (orders only: ccxt.pro has no watch_my_trades there, the fills are read when
# an order is reported filled further).
_ORDER_STREAMS: dict[ExchangeId, _OrderStreamSpec] = {
    ExchangeId.BINANCE: _OrderStreamSpec(lambda ex: ex.authenticate({"type": "spot"})),
    ExchangeId.OKX: _OrderStreamSpec(lambda ex: ex.authenticate()),
    ExchangeId.BYBIT: _OrderStreamSpec(_bybit_ready),
    ExchangeId.KRAKEN: _OrderStreamSpec(lambda ex: ex.authenticate(), _kraken_trade_order),
    # the subscription is the login (HMAC-signed for a legacy key, a JWT for a CDP key);
    # the ``user`` channel's first message, its snapshot, comes once it is accepted
    ExchangeId.COINBASE: _OrderStreamSpec(lambda ex: ex.watch_orders()),
}


@dataclass(frozen=True)
class _PublicStreams:
    """How an exchange's public market data is followed over its WebSocket (``ccxt.pro``)
    here; None: polled over REST (app/exchanges/book_polling.py, triggers.py)."""

    book: Mapping[str, Any] | None = None  # watch_order_book's params
    # the checksum its book updates carry, where ccxt.pro does not check it: of our book
    # (the top levels a side) after each update, compared with the exchange's
    book_checksum: Callable[[tuple[Level, ...], tuple[Level, ...]], int] | None = None
    trades: Mapping[str, Any] | None = None  # watch_trades' params


# Adding an exchange's stream is a row here (and ccxt.pro's support for it).
_PUBLIC_STREAMS: dict[ExchangeId, _PublicStreams] = {
    # ccxt.pro syncs the diff depth stream with a REST snapshot and checks its update
    # ids; the aggregate trades stream, whose ids are the REST trades' (aggTrades)
    ExchangeId.BINANCE: _PublicStreams(book={}, trades={"name": "aggTrade"}),
    # the ``books`` channel (400 levels): ccxt.pro 4.5 checks seqId / prevSeqId, and
    # ignores the checksum (of the top 25 levels): checked here
    ExchangeId.OKX: _PublicStreams(
        book={"depth": "books"}, book_checksum=okx_book_checksum, trades={}
    ),
}
_POLLED = _PublicStreams()


class _Nonces:
    """Strictly increasing nonces (microseconds) for the whole process: Kraken refuses a
    nonce not above the key's last, and ccxt's own (milliseconds, per instance) repeats
    when two requests of one key fall in the same millisecond (an order and the poller)."""

    def __init__(self) -> None:
        self.last = 0

    def __call__(self) -> int:
        self.last = max(self.last + 1, time.time_ns() // 1000)
        return self.last


_NONCE = _Nonces()
_NONCED: frozenset[ExchangeId] = frozenset({ExchangeId.KRAKEN})


def preload(*, streams: bool = True) -> None:
    """Import ccxt now (its REST classes, and ``ccxt.pro``'s with ``streams``) rather
    than at the first request: a worker's start, or a benchmark measuring the cost."""
    import ccxt.async_support

    if streams:
        import ccxt.pro  # noqa: F401


def _decimal(value: Any) -> Decimal | None:
    """ccxt's number (a float, int or str) as a Decimal, through its shortest repr."""
    return None if value is None else Decimal(str(value))


def _step(value: Any, precision_mode: int) -> Decimal:
    """A precision as a step: ccxt's TICK_SIZE mode (4) gives the step itself, the
    DECIMAL_PLACES mode (2) the number of places."""
    number = _decimal(value)
    if number is None:
        raise InvariantViolation("a market without a price or amount precision")
    return number if precision_mode == 4 else Decimal(1).scaleb(-int(number))


def to_market(market: Mapping[str, Any], precision_mode: int) -> ExchangeMarket:
    limits = market.get("limits") or {}
    return ExchangeMarket(
        symbol=market["symbol"],
        exchange_symbol=str(market["id"]),
        base=market["base"],
        quote=market["quote"],
        tick_size=_step(market["precision"]["price"], precision_mode),
        lot_size=_step(market["precision"]["amount"], precision_mode),
        min_amount=_decimal((limits.get("amount") or {}).get("min")),
        min_notional=_decimal((limits.get("cost") or {}).get("min")),
        maker_fee=_decimal(market.get("maker")) or Decimal(0),
        taker_fee=_decimal(market.get("taker")) or Decimal(0),
        active=market.get("active") is not False,
    )


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def to_ticker(raw: Mapping[str, Any], symbol: str, now: datetime) -> ExchangeTicker:
    return ExchangeTicker(
        symbol=symbol,
        last=_decimal(raw.get("last")),
        bid=_decimal(raw.get("bid")),
        ask=_decimal(raw.get("ask")),
        high=_decimal(raw.get("high")),
        low=_decimal(raw.get("low")),
        base_volume=_decimal(raw.get("baseVolume")),
        quote_volume=_decimal(raw.get("quoteVolume")),
        at=timestamp(raw.get("timestamp"), now),
    )


def _levels(raw: Any) -> tuple[Level, ...]:
    """ccxt's ``[price, amount, ...]`` levels (Kraken adds a time, OKX a count)."""
    levels = []
    for level in raw or ():
        price, quantity = _decimal(level[0]), _decimal(level[1])
        if price is not None and quantity is not None and price > 0 and quantity > 0:
            levels.append((price, quantity))
    return tuple(levels)


def to_book(raw: Mapping[str, Any], symbol: str, now: datetime) -> ExchangeBook:
    nonce = raw.get("nonce")
    return ExchangeBook(
        symbol=symbol,
        bids=_levels(raw.get("bids")),
        asks=_levels(raw.get("asks")),
        nonce=int(nonce) if isinstance(nonce, int | str) and str(nonce).isdigit() else None,
        at=timestamp(raw.get("timestamp"), now),
    )


def to_trade(raw: Mapping[str, Any]) -> Trade | None:
    """ccxt's trade, or None for one the store could not hold (no time, no positive price
    or amount): an exchange's oddity is left out, not a failure."""
    try:
        price, quantity = _decimal(raw.get("price")), _decimal(raw.get("amount"))
    except InvalidOperation:
        return None
    if raw.get("timestamp") is None or price is None or quantity is None:
        return None
    if price <= 0 or quantity <= 0 or out_of_range(price) or out_of_range(quantity):
        return None
    side = str(raw.get("side") or "").upper()
    trade_id = raw.get("id")
    return Trade(
        time=timestamp(raw["timestamp"], datetime.now(UTC)),
        price=price,
        amount=quantity,
        side="BUY" if side == "BUY" else "SELL" if side == "SELL" else None,
        trade_id=None if trade_id is None else str(trade_id)[:128],
    )


def to_candle(raw: Any, interval: str) -> Candle | None:
    """ccxt's ``[ms, open, high, low, close, volume]``, or None for a row that is no valid
    candle of ``interval`` (off its grid, high below low, out of the store's range ...)."""
    try:
        prices = [_decimal(v) for v in raw[1:5]]
        volume = _decimal(raw[5]) or Decimal(0)
        at = timestamp(raw[0], datetime.now(UTC))
    except (InvalidOperation, TypeError, IndexError, ValueError, OverflowError):
        return None
    if any(p is None or not p.is_finite() for p in prices) or not volume.is_finite():
        return None
    open_, high, low, close = (p for p in prices if p is not None)
    candle = Candle(at, open_, high, low, close, volume, None, None)
    if problems(candle, interval_named(interval)) or any(
        map(out_of_range, (open_, high, low, close, volume))
    ):
        return None
    return candle


def to_balances(balance: Mapping[str, Any]) -> list[Balance]:
    found = []
    for currency, total in sorted((balance.get("total") or {}).items()):
        amount = _decimal(total) or Decimal(0)
        if amount == 0:
            continue
        free = _decimal(balance["free"].get(currency)) or Decimal(0)
        used = _decimal(balance["used"].get(currency))
        found.append(Balance(currency, free, amount - free if used is None else used, amount))
    return found


def _converted(error: Exception, exchange: ExchangeId) -> AppError:
    import ccxt

    if isinstance(error, ccxt.ExchangeError) and any(
        marker in str(error) for marker in _KEY_REFUSED.get(exchange, ())
    ):
        return ExchangeKeyInvalid()
    table: tuple[tuple[type[Exception], type[AppError]], ...] = (
        (ccxt.BadSymbol, ExchangeSymbolUnknown),
        (ccxt.PermissionDenied, ExchangePermissionDenied),
        (ccxt.AuthenticationError, ExchangeKeyInvalid),
        (ccxt.InsufficientFunds, ExchangeInsufficientFunds),
        (ccxt.DDoSProtection, ExchangeRateLimited),
        (ccxt.RateLimitExceeded, ExchangeRateLimited),
        (ccxt.NetworkError, ExchangeUnavailable),
        (ccxt.BadResponse, ExchangeUnavailable),
        (ccxt.OrderNotFound, ExchangeOrderNotFound),
        (ccxt.NotSupported, InvariantViolation),
        (ccxt.ArgumentsRequired, InvariantViolation),
        (ccxt.ExchangeError, ExchangeRejected),
    )
    for vendor, ours in table:
        if isinstance(error, vendor):
            return ours()
    return ExchangeUnavailable()


# ccxt's order statuses; an open order with fills is PARTIALLY_FILLED (``to_order``)
_STATUSES = {"open": "OPEN", "closed": "FILLED", "canceled": "CANCELED",
             "cancelled": "CANCELED", "expired": "CANCELED", "rejected": "REJECTED"}  # fmt: skip


def to_order(order: Mapping[str, Any], symbol: str) -> ReportedOrder:
    """ccxt's order (a placement's answer may hold little more than the ids: no status
    there means it is open)."""
    from app.exchanges.domain.orders import ExchangeOrderStatus

    filled = _decimal(order.get("filled")) or Decimal(0)
    status = ExchangeOrderStatus(_STATUSES.get(order.get("status") or "open", "OPEN"))
    if status is ExchangeOrderStatus.OPEN and filled > 0:
        status = ExchangeOrderStatus.PARTIALLY_FILLED
    return ReportedOrder(
        exchange_order_id=str(order["id"]),
        client_order_id=order.get("clientOrderId"),
        symbol=order.get("symbol") or symbol,
        status=status,
        filled=filled,
    )


def to_my_trade(trade: Mapping[str, Any]) -> ReportedTrade:
    fee = trade.get("fee") or {}
    return ReportedTrade(
        trade_id=str(trade["id"]),
        exchange_order_id=str(trade["order"]),
        symbol=trade["symbol"],
        price=_decimal(trade["price"]) or Decimal(0),
        quantity=_decimal(trade["amount"]) or Decimal(0),
        fee=_decimal(fee.get("cost")) or Decimal(0),
        fee_currency=fee.get("currency"),
        at=datetime.fromtimestamp((trade.get("timestamp") or 0) / 1000, UTC),
    )


def _order_types(exchange: ExchangeId, instance: Any) -> tuple[OrderTypeSupport, ...]:
    """ccxt's capability data (a spot stop-loss in ``features``), corrected by ours."""
    spot = (instance.features or {}).get("spot") or {}
    native = bool((spot.get("createOrder") or {}).get("stopLossPrice"))
    return order_types(exchange, ccxt_native_stop=native)


def _outcome_unknown(error: Exception) -> bool:
    """A write's failure after which the exchange may have done it."""
    return _retryable(error)


def _retryable(error: Exception) -> bool:
    import ccxt

    limited = isinstance(error, ccxt.RateLimitExceeded | ccxt.DDoSProtection)
    return not limited and isinstance(error, ccxt.NetworkError | ccxt.BadResponse)


class CcxtOrderStream:
    """One account's order stream (a ``ccxt.pro`` instance of its own): ``orders`` and
    ``trades`` each wait for the next updates; a dropped connection raises
    ``ExchangeUnavailable`` (the caller reconnects and reconciles the gap)."""

    def __init__(self, connector: CcxtConnector, exchange_id: ExchangeId, exchange: Any) -> None:
        self._session = CcxtSession(connector, exchange_id, exchange)
        self.exchange_id = exchange_id
        self._exchange = exchange
        self.has_trades = bool(exchange.has.get("watchMyTrades"))

    async def open(self) -> None:
        """Subscribe the account's private stream (acknowledged by the exchange)."""
        await self._session._load_markets()
        ready = _ORDER_STREAMS[self.exchange_id].ready
        await self._watch("subscribe", lambda: ready(self._exchange))

    async def orders(self) -> list[ReportedOrder]:
        raw = await self._watch("watch_orders", self._exchange.watch_orders)
        return [to_order(order, order["symbol"]) for order in raw]

    async def trades(self) -> StreamedTrades:
        raw = await self._watch("watch_my_trades", self._exchange.watch_my_trades)
        reader = _ORDER_STREAMS[self.exchange_id].trade_order
        ex = self._exchange
        orders = [] if reader is None else [o for t in raw if (o := reader(ex, t)) is not None]
        return StreamedTrades(orders, [to_my_trade(trade) for trade in raw])

    async def _watch(self, call: str, operation: Callable[[], Awaitable[T]]) -> T:
        """``operation``, its failure converted (a network one: ``ExchangeUnavailable``)."""
        return await self._session._once(call, operation)


class _PublicStream:
    """A ``ccxt.pro`` instance without credentials and its watch call's params
    (``_PUBLIC_STREAMS``)."""

    def __init__(
        self,
        connector: CcxtConnector,
        exchange_id: ExchangeId,
        exchange: Any,
        params: Mapping[str, Any],
    ) -> None:
        self._session = CcxtSession(connector, exchange_id, exchange)
        self._exchange = exchange
        self._params = params
        self._last: dict[str, Any] = {}  # per symbol, the last item returned (trades)

    async def _watch(self, call: str, symbol: str) -> Any:
        """ccxt's ``call`` on ``symbol``, its failure converted."""
        await self._session._load_markets()
        method = getattr(self._exchange, call)
        return await self._session._once(call, lambda: method(symbol, params=dict(self._params)))


class CcxtBookStream(_PublicStream):
    """An exchange's public order books over its WebSocket (``ccxt.pro``
    watch_order_book: its snapshot, then its sequenced deltas applied); a dropped
    connection, a gap in the sequence or a wrong checksum raises ``ExchangeUnavailable``
    (the book was dropped: the caller opens the stream again, on a new snapshot)."""

    async def book(self, symbol: str, depth: int) -> ExchangeBook:
        """The book once it changed (the first call: once subscribed and synchronised)."""
        raw = await self._watch("watch_order_book", symbol)
        return to_book(raw, symbol, datetime.now(UTC)).top(depth)


def _check_book_checksums(
    instance: Any, checksum: Callable[[tuple[Level, ...], tuple[Level, ...]], int]
) -> None:
    """Make ``instance`` check the checksum each book message carries once ccxt applied
    it (``handle_order_book_message``: OKX's): a mismatch drops the book and fails its
    watch with ``ChecksumError``, as ccxt's own sequence check does on a gap."""
    import ccxt

    handle = instance.handle_order_book_message

    def checked(client: Any, message: Any, book: Any, message_hash: str, market: Any = None) -> Any:
        result = handle(client, message, book, message_hash, market)
        expected = message.get("checksum") if isinstance(message, dict) else None
        if expected is None or message_hash not in client.subscriptions:  # gap: dropped
            return result
        top = _CHECKSUM_LEVELS
        if checksum(_levels(book["bids"][:top]), _levels(book["asks"][:top])) != int(expected):
            del client.subscriptions[message_hash]
            instance.orderbooks.pop(book.get("symbol"), None)
            client.reject(ccxt.ChecksumError(f"{instance.id} order book checksum"), message_hash)
        return result

    instance.handle_order_book_message = checked


_CHECKSUM_LEVELS = 25  # the most levels a side a book checksum covers (OKX's: 25)


class CcxtTradeStream(_PublicStream):
    """An exchange's public trades over its WebSocket (``ccxt.pro`` watch_trades); a
    dropped connection raises ``ExchangeUnavailable`` (what the gap held is read over
    REST by the caller)."""

    async def trades(self, symbol: str) -> list[Trade]:
        """The market's trades since the last call, oldest first (the first call
        subscribes, and returns with the first trades). Read from ccxt's cache of the
        market's trades after the last one returned: ccxt.pro wakes a watch only for a
        message that arrives while it waits, so a trade that came between two calls
        would otherwise wait for the next trade."""
        await self._session._load_markets()
        raw = self._unreturned(symbol)
        if not raw:
            await self._watch("watch_trades", symbol)
            raw = self._unreturned(symbol)
        if raw:
            self._last[symbol] = raw[-1]
        found = [t for t in (to_trade(r) for r in raw) if t is not None]
        return sorted(found, key=lambda t: t.time)

    def _unreturned(self, symbol: str) -> list[Any]:
        cached = list((self._exchange.trades or {}).get(symbol) or ())
        last = self._last.get(symbol)
        for n in range(len(cached) - 1, -1, -1):
            if cached[n] is last:
                return cached[n + 1 :]
        return cached  # the first call, or more trades than ccxt keeps came since

    async def subscribed(self) -> None:
        """Once a subscription was sent on a connected WebSocket (ccxt.pro surfaces no
        acknowledgement of a public one)."""
        while not self._subscription_sent():  # noqa: ASYNC110 (ccxt.pro has no event for it)
            await asyncio.sleep(0.005)

    def _subscription_sent(self) -> bool:
        clients = self._exchange.clients or {}  # ccxt.pro replaces an empty dict
        return any(c.subscriptions and c.connected.done() for c in list(clients.values()))


class _MarketsCache:
    """Each exchange's markets, shared by this process's sessions for a while."""

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._entries: dict[ExchangeId, tuple[float, Any, Any]] = {}

    def get(self, exchange: ExchangeId) -> tuple[Any, Any] | None:
        entry = self._entries.get(exchange)
        if entry is None or time.monotonic() - entry[0] > self.ttl:
            return None
        return entry[1], entry[2]

    def put(self, exchange: ExchangeId, markets: Any, currencies: Any) -> None:
        self._entries[exchange] = (time.monotonic(), markets, currencies)


_Resumes = dict[tuple[str, str], Mapping[str, Any]]


class CcxtSession:
    """``resumes``: where each history call (by call and market) of the account stopped
    at its page bound in an earlier run; ``resumed`` is this session's news of them
    (None: read to the end), kept by the connector when the session ends well."""

    def __init__(
        self,
        connector: CcxtConnector,
        exchange_id: ExchangeId,
        exchange: Any,
        resumes: _Resumes | None = None,
    ) -> None:
        self._connector = connector
        self.exchange_id = exchange_id
        self._exchange = exchange
        self.resumes: _Resumes = {} if resumes is None else resumes
        self.resumed: dict[tuple[str, str], Mapping[str, Any] | None] = {}

    def keep_resumes(self) -> None:
        """The session ended well (what it read was recorded): its stops are kept."""
        for at, params in self.resumed.items():
            if params is None:
                self.resumes.pop(at, None)
            else:
                self.resumes[at] = params

    async def markets(self) -> list[ExchangeMarket]:
        await self._load_markets()
        mode = self._exchange.precisionMode
        markets = self._exchange.markets.values()
        return [to_market(m, mode) for m in markets if m.get("spot")]

    async def balances(self) -> list[Balance]:
        await self._load_markets()
        raw = await self._read("fetch_balance", self._exchange.fetch_balance)
        return to_balances(raw)

    async def permissions(self) -> KeyPermissions:
        method = getattr(self._exchange, _PERMISSIONS[self.exchange_id])
        raw = await self._read("permissions", method)
        return PERMISSION_READERS[self.exchange_id](raw)

    async def ticker(self, symbol: str) -> ExchangeTicker:
        await self._load_markets()
        raw = await self._read("fetch_ticker", lambda: self._exchange.fetch_ticker(symbol))
        return to_ticker(raw, symbol, datetime.now(UTC))

    async def order_book(self, symbol: str, depth: int) -> ExchangeBook:
        await self._load_markets()
        limit = min(depth, BOOK_MAX[self.exchange_id])
        raw = await self._read(
            "fetch_order_book", lambda: self._exchange.fetch_order_book(symbol, limit)
        )
        return to_book(raw, symbol, datetime.now(UTC)).top(depth)

    async def trades(self, symbol: str, limit: int) -> list[Trade]:
        await self._load_markets()
        raw = await self._read(
            "fetch_trades", lambda: self._exchange.fetch_trades(symbol, None, limit)
        )
        found = [t for t in (to_trade(r) for r in raw) if t is not None]
        return sorted(found, key=lambda t: t.time)[-limit:]

    async def candles(
        self, symbol: str, interval: str, since: datetime, limit: int
    ) -> list[Candle]:
        await self._load_markets()
        if interval not in (self._exchange.timeframes or {}):
            raise ValidationFailed(
                f"{self._exchange.name} has no {interval} candles", field="interval"
            )
        since_ms = _ms(since)
        params = {}
        if self.exchange_id in _OHLCV_UNTIL:  # the candles from since on, not the latest
            params["until"] = _ms(interval_named(interval).shift(since, limit)) - 1
        raw = await self._read(
            "fetch_ohlcv",
            lambda: self._exchange.fetch_ohlcv(symbol, interval, since_ms, limit, params),
        )
        found = {c.open_time: c for c in (to_candle(r, interval) for r in raw) if c is not None}
        return [found[t] for t in sorted(found) if t >= since][:limit]

    # --- orders ---------------------------------------------------------------------------

    def order_types(self) -> tuple[OrderTypeSupport, ...]:
        return _order_types(self.exchange_id, self._exchange)

    async def create_order(self, submission: OrderSubmission) -> ReportedOrder:
        """Place it (never retried: a lost answer is ``ExchangeOutcomeUnknown``)."""
        await self._load_markets()
        kind = submission.type
        client_id = _CLIENT_ID_PARAM.get(self.exchange_id, "clientOrderId")
        params: dict[str, Any] = {client_id: submission.client_order_id}
        if submission.stop_price is not None:
            params["stopLossPrice"] = str(submission.stop_price)
        price = None if submission.price is None else str(submission.price)
        ex = self._exchange
        raw = await self._write("create_order", lambda: ex.create_order(
            submission.symbol, "limit" if kind.has_limit else "market",
            submission.side.value.lower(), str(submission.quantity), price, params,
        ))  # fmt: skip
        return to_order(raw, submission.symbol)

    async def cancel_order(self, *, exchange_order_id: str, symbol: str) -> None:
        """Cancel it (never retried; ``ExchangeOrderNotFound``: the exchange has no such
        open order)."""
        await self._load_markets()
        ex = self._exchange
        await self._write("cancel_order", lambda: ex.cancel_order(exchange_order_id, symbol))

    async def find_order(self, *, symbol: str, client_order_id: str) -> ReportedOrder | None:
        """The order with our ``client_order_id``, or None when the exchange has none."""
        await self._load_markets()
        ex = self._exchange
        if FETCH_BY_CLIENT_ID[self.exchange_id]:
            try:
                raw = await self._read("fetch_order", lambda: ex.fetch_order(
                    None, symbol, {"clientOrderId": client_order_id}))  # fmt: skip
            except ExchangeOrderNotFound:
                return None
            return to_order(raw, symbol)
        for order in await self.recent_orders(symbol=symbol, since=None):
            if order.client_order_id == client_order_id:
                return order
        return None

    async def recent_orders(
        self, *, symbol: str, since: datetime | None
    ) -> Sequence[ReportedOrder]:
        """The open orders on ``symbol`` and those ended since ``since`` (every page of
        them, up to the bound; without ``since``: the first), once each."""
        await self._load_markets()
        ex = self._exchange
        opened = await self._read("fetch_open_orders", lambda: ex.fetch_open_orders(symbol))
        found = {str(o["id"]): o for o in opened}
        for call in _ENDED_ORDERS.get(self.exchange_id, ("fetch_closed_orders",)):
            found |= {str(o["id"]): o for o in await self._history(call, symbol, since)}
        return [to_order(o, symbol) for o in found.values()]

    async def my_trades(self, *, symbol: str, since: datetime | None) -> Sequence[ReportedTrade]:
        """The account's trades on ``symbol`` since ``since`` (every page, up to the
        bound; without ``since``: the first), once each."""
        await self._load_markets()
        return [to_my_trade(t) for t in await self._history("fetch_my_trades", symbol, since)]

    async def _history(self, call: str, symbol: str, since: datetime | None) -> list[Any]:
        """``call``'s records on ``symbol`` since ``since``, page after page (``_PAGING``),
        once each by id, starting where the last run stopped at its bound. A page that
        brings nothing new ends the read (an exchange answering the same page again)."""
        ex = self._exchange
        paging = _PAGING.get(self.exchange_id, {}).get(call)
        if paging is None or since is None:
            start = None if since is None else _ms(since)
            return list(await self._read(call, lambda: getattr(ex, call)(symbol, start)))
        start, at = _ms(since), (call, symbol)
        params: Mapping[str, Any] = self.resumes.get(at) or {}
        found: dict[str, Any] = {}
        for _ in range(self._connector.history_max_pages):
            page = await self._read(call, self._page_of(call, paging, symbol, start, params))
            fresh = [r for r in page if str(r["id"]) not in found]
            found |= {str(r["id"]): r for r in page}
            following = paging.next(page, params) if fresh else None
            if page and not fresh:
                log.warning("exchange answered the same page again: read ends there",
                            extra={"exchange": self.exchange_id.value, "call": call})  # fmt: skip
            if following is None:
                self.resumed[at] = None
                break
            params = following
        else:
            self.resumed[at] = params
            log.warning("exchange history bound reached: the next run goes on from there",
                        extra={"exchange": self.exchange_id.value, "call": call,
                               "pages": self._connector.history_max_pages})  # fmt: skip
        records = list(found.values())
        return records if paging.start is None else [r for r in records if r["symbol"] == symbol]

    def _page_of(
        self, call: str, paging: _Paging, symbol: str, start: int, params: Mapping[str, Any]
    ) -> Callable[[], Awaitable[Any]]:
        """The request of one page: ``call`` from ``start``, with ``params``."""
        method = getattr(self._exchange, call)
        sent = {**paging.params, **params}
        if paging.start is not None:
            sent = {**paging.start(start), **sent}
            return lambda: method(None, None, paging.limit, sent)
        since = None if paging.since_once and params else start
        return lambda: method(symbol, since, paging.limit, sent)

    async def _write(self, call: str, operation: Callable[[], Awaitable[T]]) -> T:
        """``operation`` once: a write is never repeated here."""
        return await self._once(call, operation, write=True)

    async def _once(
        self, call: str, operation: Callable[[], Awaitable[T]], *, write: bool = False
    ) -> T:
        """``operation`` once, its failure converted (a write's network failure:
        ``ExchangeOutcomeUnknown``)."""
        import ccxt

        try:
            return await _isolated(operation)
        except ccxt.BaseError as error:
            failure = error
        unknown = write and _outcome_unknown(failure)
        converted = ExchangeOutcomeUnknown() if unknown else _converted(failure, self.exchange_id)
        self._log_failure(call, failure, converted)
        raise converted from None

    def _log_failure(self, call: str, failure: Exception, converted: AppError) -> None:
        log.warning(
            "exchange call failed",
            extra={"exchange": self.exchange_id.value, "call": call,
                   "error": type(failure).__name__, "as": converted.code},
        )  # fmt: skip

    async def _load_markets(self) -> None:
        if self._exchange.markets:
            return
        cache = self._connector.markets_cache
        cached = cache.get(self.exchange_id)
        if cached is not None:
            self._exchange.set_markets(*cached)
            return
        await self._read("load_markets", self._exchange.load_markets)
        cache.put(self.exchange_id, self._exchange.markets, self._exchange.currencies)

    async def _read(self, call: str, operation: Callable[[], Awaitable[T]]) -> T:
        """``operation`` (a read: safe to repeat), network failures retried with backoff."""
        import ccxt

        connector = self._connector
        for attempt in range(connector.network_retries + 1):
            try:
                return await _isolated(operation)
            except ccxt.BaseError as error:
                failure = error
                last = attempt == connector.network_retries
                if not _retryable(error) or last:
                    break
                await asyncio.sleep(connector.backoff_seconds * 2**attempt)
        converted = _converted(failure, self.exchange_id)
        self._log_failure(call, failure, converted)
        raise converted from None


async def _isolated(operation: Callable[[], Awaitable[T]]) -> T:
    """``operation`` (a call into ccxt) in a copy of the current decimal context. ccxt's
    number formatting (``decimal_to_precision``, used by every order it sends) sets the
    current context's rounding to ROUND_HALF_UP and traps Underflow: in the caller's
    context that would change how every Decimal of the process rounds from then on. The
    tasks ccxt.pro starts during the call (its WebSocket handlers) inherit the copy."""
    with decimal.localcontext():
        return await operation()


def key_version(sealed: SealedSecret) -> str:
    """A stored key's version: its sealed secret's digest (a new key, a new seal; a
    re-wrap under another master key leaves the sealed secret, and this, unchanged)."""
    return hashlib.sha256(sealed.ciphertext).hexdigest()[:16]


class _Kept:
    """One account's ccxt instance, with its key version and how many use it now."""

    __slots__ = ("instance", "used_at", "users", "version")

    def __init__(self, instance: Any, version: str) -> None:
        self.instance, self.version, self.users, self.used_at = instance, version, 0, 0.0


class _Instances:
    """ccxt instances kept per stored account (``Binding``) and key version: building one
    costs about 16 ms (and the key is opened only then). A new key version, ``forget``
    (a disconnect), or ``idle_seconds`` unused drops the old one; it is closed once its
    last user is done."""

    def __init__(self, idle_seconds: float, release: Callable[[Any], None]) -> None:
        self.idle_seconds = idle_seconds
        self._release = release
        self._kept: dict[Binding, _Kept] = {}
        self._dropped: list[_Kept] = []

    def take(self, binding: Binding, version: str, build: Callable[[], Any]) -> _Kept:
        self._sweep()
        kept = self._kept.get(binding)
        if kept is None or kept.version != version:
            self.drop(binding)
            kept = self._kept[binding] = _Kept(build(), version)
        kept.users += 1
        return kept

    def give_back(self, kept: _Kept) -> None:
        kept.users -= 1
        kept.used_at = time.monotonic()
        self._close_dropped()

    def drop(self, binding: Binding) -> None:
        kept = self._kept.pop(binding, None)
        if kept is not None:
            self._dropped.append(kept)
            self._close_dropped()

    def forget(self, connection_id: int) -> None:
        for binding in [b for b in self._kept if b.connection_id == connection_id]:
            self.drop(binding)

    def drop_all(self) -> None:
        for binding in list(self._kept):
            self.drop(binding)

    def _sweep(self) -> None:
        idle = time.monotonic() - self.idle_seconds
        for binding, kept in list(self._kept.items()):
            if kept.users == 0 and kept.used_at < idle:
                self.drop(binding)

    def _close_dropped(self) -> None:
        for kept in [k for k in self._dropped if k.users == 0]:
            self._dropped.remove(kept)
            self._release(kept.instance)

    def __len__(self) -> int:
        return len(self._kept)


class CcxtConnector:
    def __init__(
        self,
        *,
        ring: KeyRing,
        api_bases: Mapping[str, str] | None = None,
        timeout_seconds: float = 10,
        network_retries: int = 2,
        backoff_seconds: float = 0.25,
        rate_limit: bool = True,
        markets_ttl_seconds: float = MARKETS_TTL_SECONDS,
        instance_idle_seconds: float = INSTANCE_IDLE_SECONDS,
        history_max_pages: int = HISTORY_MAX_PAGES,
    ) -> None:
        self._ring = ring
        self.history_max_pages = history_max_pages
        # per stored account, where its history reads stopped at their bound
        self._resumes: dict[Binding, _Resumes] = {}
        self.api_bases = dict(api_bases or {})
        self.timeout_seconds = timeout_seconds
        self.network_retries = network_retries
        self.backoff_seconds = backoff_seconds
        self.rate_limit = rate_limit
        self.markets_cache = _MarketsCache(markets_ttl_seconds)
        self._closing: set[asyncio.Task[None]] = set()
        self._ssl_context: ssl.SSLContext | None = None
        self._order_types: dict[ExchangeId, tuple[OrderTypeSupport, ...]] = {}
        self.instances = _Instances(instance_idle_seconds, self._release)

    @classmethod
    def from_settings(cls, settings: Settings, ring: KeyRing) -> CcxtConnector:
        return cls(
            ring=ring,
            api_bases=settings.exchange_api_bases,
            timeout_seconds=settings.exchange_request_timeout_seconds,
            network_retries=settings.exchange_network_retries,
            instance_idle_seconds=settings.exchange_instance_idle_seconds,
            history_max_pages=settings.exchange_history_max_pages,
        )

    @asynccontextmanager
    async def session(
        self, exchange: ExchangeId, credentials: Credentials
    ) -> AsyncIterator[CcxtSession]:
        instance = self._new(exchange, credentials)
        try:
            yield CcxtSession(self, exchange, instance)
        finally:
            self._release(instance)

    def _release(self, instance: Any) -> None:
        """Close ``instance`` without making the caller wait: ccxt's ``close`` sleeps 250 ms
        after closing its HTTP session (for TLS connections to shut down cleanly), which
        would add that to every order. The close runs on; ``aclose`` waits for them all."""
        task = asyncio.create_task(instance.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def order_types(self, exchange: ExchangeId) -> tuple[OrderTypeSupport, ...]:
        """Each order type at ``exchange`` (no credentials, no request: ccxt's data)."""
        found = self._order_types.get(exchange)
        if found is None:
            import ccxt.async_support as ccxt_async

            instance = getattr(ccxt_async, exchange.value)({"options": _OPTIONS[exchange]})
            found = self._order_types[exchange] = _order_types(exchange, instance)
        return found

    def book_streamed(self, exchange: ExchangeId) -> bool:
        """Whether ``exchange``'s order books are followed over its WebSocket here."""
        return _PUBLIC_STREAMS.get(exchange, _POLLED).book is not None

    @asynccontextmanager
    async def book_stream(self, exchange: ExchangeId) -> AsyncIterator[CcxtBookStream]:
        feed = _PUBLIC_STREAMS[exchange]
        assert feed.book is not None
        async with self._public_stream(exchange, "watchOrderBook") as instance:
            if feed.book_checksum is not None:
                _check_book_checksums(instance, feed.book_checksum)
            yield CcxtBookStream(self, exchange, instance, feed.book)

    def trades_streamed(self, exchange: ExchangeId) -> bool:
        """Whether ``exchange``'s public trades are followed over its WebSocket here."""
        return _PUBLIC_STREAMS.get(exchange, _POLLED).trades is not None

    @asynccontextmanager
    async def trade_stream(self, exchange: ExchangeId) -> AsyncIterator[CcxtTradeStream]:
        params = _PUBLIC_STREAMS[exchange].trades
        assert params is not None
        async with self._public_stream(exchange, "watchTrades") as instance:
            yield CcxtTradeStream(self, exchange, instance, params)

    @asynccontextmanager
    async def _public_stream(self, exchange: ExchangeId, call: str) -> AsyncIterator[Any]:
        """A ``ccxt.pro`` instance without credentials, closed when the ``async with`` ends."""
        instance = self._new(exchange, None, pro=True)
        try:
            if not instance.has.get(call):
                raise InvariantViolation(f"ccxt.pro has no {call} at {exchange.value}")
            yield instance
        finally:
            await asyncio.shield(instance.close())

    def streamed(self, exchange: ExchangeId) -> bool:
        """Whether an account at ``exchange`` is followed by an order stream here."""
        return exchange in _ORDER_STREAMS

    @asynccontextmanager
    async def order_stream(
        self, exchange: ExchangeId, sealed: SealedSecret, binding: Binding
    ) -> AsyncIterator[CcxtOrderStream]:
        """The account's order stream, subscribed; closed when the ``async with`` ends."""
        credentials = Credentials.from_bytes(self._ring.unseal(sealed, binding))
        instance = self._new(exchange, credentials, pro=True)
        del credentials
        try:
            if not instance.has.get("watchOrders"):
                raise InvariantViolation(f"ccxt.pro has no watch_orders at {exchange.value}")
            stream = CcxtOrderStream(self, exchange, instance)
            await stream.open()
            yield stream
        finally:
            await asyncio.shield(instance.close())

    def forget(self, connection_id: int) -> None:
        """Drop the account's kept instances (it was disconnected, or its key replaced)
        and where its history reads stopped."""
        self.instances.forget(connection_id)
        for binding in [b for b in self._resumes if b.connection_id == connection_id]:
            del self._resumes[binding]

    async def aclose(self) -> None:
        """Close the kept instances and wait for the sessions still closing."""
        self.instances.drop_all()
        while self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    @asynccontextmanager
    async def public_session(self, exchange: ExchangeId) -> AsyncIterator[CcxtSession]:
        instance = self._new(exchange, None)
        try:
            yield CcxtSession(self, exchange, instance)
        finally:
            await instance.close()

    @asynccontextmanager
    async def sealed_session(
        self, exchange: ExchangeId, sealed: SealedSecret, binding: Binding
    ) -> AsyncIterator[CcxtSession]:
        def build() -> Any:
            return self._new(exchange, Credentials.from_bytes(self._ring.unseal(sealed, binding)))

        kept = self.instances.take(binding, key_version(sealed), build)
        try:
            session = CcxtSession(self, exchange, kept.instance,
                                  self._resumes.setdefault(binding, {}))  # fmt: skip
            yield session
            session.keep_resumes()
        finally:
            self.instances.give_back(kept)

    def _new(
        self, exchange: ExchangeId, credentials: Credentials | None, *, pro: bool = False
    ) -> Any:
        if pro:
            import ccxt.pro as ccxt_async
        else:
            import ccxt.async_support as ccxt_async

        config: dict[str, Any] = {
            "enableRateLimit": self.rate_limit,
            "timeout": int(self.timeout_seconds * 1000),
            "options": _OPTIONS[exchange],
            "logger": _CCXT_LOGGER,
        }
        if credentials is not None:
            config["apiKey"], config["secret"] = credentials.api_key, credentials.secret
        if credentials is not None and credentials.passphrase is not None:
            config["password"] = credentials.passphrase
        instance = getattr(ccxt_async, exchange.value)(config)
        instance.ssl_context = self._tls()  # else ccxt loads the CA bundle per instance
        if exchange in _NONCED:
            instance.nonce = _NONCE
        instance.has["fetchCurrencies"] = False  # markets and balances need none
        base = self.api_bases.get(exchange.value)
        if base:
            instance.urls["api"] = _rebased(instance.urls["api"], base.rstrip("/"))
        return instance

    def _tls(self) -> ssl.SSLContext:
        """One TLS context (ccxt's: certifi's CA bundle) for every session: building one
        reads the bundle, about 30 ms, which ccxt would do for each session."""
        if self._ssl_context is None:
            import certifi

            self._ssl_context = ssl.create_default_context(cafile=certifi.where())
        return self._ssl_context


def _rebased(urls: Any, base: str) -> Any:
    """ccxt's API URLs with their scheme and host replaced by ``base`` (its WebSocket
    URLs, ``ccxt.pro``'s, by ``base`` with the ws scheme: ws://, wss://)."""
    if isinstance(urls, str):
        ws_base = "ws" + base.removeprefix("http")
        return _ORIGIN.sub(lambda _: base, _WS_ORIGIN.sub(lambda _: ws_base, urls))
    if isinstance(urls, dict):
        return {name: _rebased(url, base) for name, url in urls.items()}
    return urls
