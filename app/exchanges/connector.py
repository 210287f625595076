"""The exchanges as the rest of the code sees them (no ccxt here):
``app.exchanges.ccxt_edge.CcxtConnector`` is the implementation.

A session is one exchange account's (or, without credentials, public) connection for
a few calls; it is closed when the ``async with`` ends. Every method raises only the
errors of ``app.exchanges.domain.errors`` (or ``InvariantViolation`` for a bug)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from app.exchanges.domain.accounts import Balance, Credentials, KeyPermissions
from app.exchanges.domain.catalogue import ExchangeId
from app.exchanges.domain.marketdata import ExchangeBook, ExchangeTicker
from app.exchanges.domain.markets import ExchangeMarket
from app.exchanges.domain.orders import (
    OrderSubmission,
    OrderTypeSupport,
    ReportedOrder,
    ReportedTrade,
    StreamedTrades,
)
from app.exchanges.domain.sealing import Binding, SealedSecret
from app.marketdata.domain.candles import Candle
from app.marketdata.domain.trades import Trade


class ExchangeSession(Protocol):
    async def markets(self) -> list[ExchangeMarket]:
        """The exchange's spot markets (cached per process for a while)."""
        ...

    async def balances(self) -> list[Balance]:
        """The account's non-zero balances, by currency."""
        ...

    async def permissions(self) -> KeyPermissions:
        """What the key may do, as the exchange reports it."""
        ...

    def order_types(self) -> tuple[OrderTypeSupport, ...]:
        """Each order type, native here or to be emulated (ccxt's data, corrected)."""
        ...

    async def create_order(self, submission: OrderSubmission) -> ReportedOrder:
        """Place it, once: ``ExchangeOutcomeUnknown`` when the answer was lost."""
        ...

    async def cancel_order(self, *, exchange_order_id: str, symbol: str) -> None:
        """Cancel it, once (``ExchangeOrderNotFound``: no such open order)."""
        ...

    async def find_order(self, *, symbol: str, client_order_id: str) -> ReportedOrder | None:
        """The order with our client order id; None: the exchange has none."""
        ...

    async def recent_orders(
        self, *, symbol: str, since: datetime | None
    ) -> Sequence[ReportedOrder]:
        """Open orders on ``symbol``, and those closed since ``since``."""
        ...

    async def my_trades(self, *, symbol: str, since: datetime | None) -> Sequence[ReportedTrade]:
        """The account's trades on ``symbol`` since ``since``."""
        ...

    async def ticker(self, symbol: str) -> ExchangeTicker:
        """The market's ticker (last price, best bid and ask, the day's range)."""
        ...

    async def order_book(self, symbol: str, depth: int) -> ExchangeBook:
        """The top ``depth`` levels a side (fewer where the exchange serves fewer)."""
        ...

    async def trades(self, symbol: str, limit: int) -> list[Trade]:
        """The latest ``limit`` trades at most, oldest first."""
        ...

    async def candles(
        self, symbol: str, interval: str, since: datetime, limit: int
    ) -> list[Candle]:
        """At most ``limit`` candles opening at ``since`` or later, oldest first (the last
        may still be open). An interval the exchange has not is ``ValidationFailed``."""
        ...


class OrderStream(Protocol):
    """One account's order stream, subscribed (``ccxt.pro``). Each method waits for the
    next updates; a dropped connection raises ``ExchangeUnavailable``."""

    has_trades: bool  # whether ``trades`` streams (else fills are read by reconciliation)

    async def orders(self) -> list[ReportedOrder]:
        """The next updated orders (each as the exchange reports it now)."""
        ...

    async def trades(self) -> StreamedTrades:
        """The account's next trades (and the orders they moved, where the trade
        events say it)."""
        ...


class BookStream(Protocol):
    async def book(self, symbol: str, depth: int) -> ExchangeBook:
        """The market's book (top ``depth``) once it changed; ``ExchangeUnavailable``
        when the connection dropped."""
        ...


class TradeStream(Protocol):
    async def trades(self, symbol: str) -> list[Trade]:
        """The market's public trades since the last call, oldest first (the first call
        subscribes); ``ExchangeUnavailable`` when the connection dropped."""
        ...

    async def subscribed(self) -> None:
        """Once the subscription of the first ``trades`` call is on its way."""
        ...


class ExchangeConnector(Protocol):
    def session(
        self, exchange: ExchangeId, credentials: Credentials
    ) -> AbstractAsyncContextManager[ExchangeSession]:
        """A session with credentials given in the clear (connecting a new account)."""
        ...

    def public_session(self, exchange: ExchangeId) -> AbstractAsyncContextManager[ExchangeSession]:
        """A session without credentials, for public market data."""
        ...

    def sealed_session(
        self, exchange: ExchangeId, sealed: SealedSecret, binding: Binding
    ) -> AbstractAsyncContextManager[ExchangeSession]:
        """A session with a stored account's credentials: they are opened here, for the
        signing of its requests, and nowhere else."""
        ...

    def order_types(self, exchange: ExchangeId) -> tuple[OrderTypeSupport, ...]:
        """Each order type at ``exchange``, native or to be emulated (no request)."""
        ...

    def book_streamed(self, exchange: ExchangeId) -> bool:
        """Whether ``exchange``'s order books are followed over its WebSocket."""
        ...

    def book_stream(self, exchange: ExchangeId) -> AbstractAsyncContextManager[BookStream]:
        """The exchange's public book stream, closed when the ``async with`` ends."""
        ...

    def trades_streamed(self, exchange: ExchangeId) -> bool:
        """Whether ``exchange``'s public trades are followed over its WebSocket."""
        ...

    def trade_stream(self, exchange: ExchangeId) -> AbstractAsyncContextManager[TradeStream]:
        """The exchange's public trade stream, closed when the ``async with`` ends."""
        ...

    def streamed(self, exchange: ExchangeId) -> bool:
        """Whether accounts at ``exchange`` are followed by an order stream."""
        ...

    def order_stream(
        self, exchange: ExchangeId, sealed: SealedSecret, binding: Binding
    ) -> AbstractAsyncContextManager[OrderStream]:
        """A stored account's order stream, subscribed when the ``async with`` enters (the
        credentials opened here, for the signing of its login)."""
        ...

    def forget(self, connection_id: int) -> None:
        """Drop what is kept for the account (its ccxt instance): it was disconnected."""
        ...

    async def aclose(self) -> None:
        """Wait for sessions still closing (at shutdown)."""
        ...
