"""Local stand-ins for the five exchanges at their HTTP boundary, for the real ccxt.

Each speaks the part of its exchange's REST API the platform uses (markets, balances,
the key's permissions; the public market data: ticker, order book, recent trades,
candles, from the shared ``Tape``; orders too: place, cancel, fetch by id and by
client order id (or the lists ccxt matches them in), open and ended orders, the account's
trades, over the shared order state below: an order rests open until a test
``fill``s it, in parts or whole, or it is canceled), with the exchange's own paths,
envelopes and error bodies, and
verifies every signed request the way its exchange does, with the secret of the API
key it names: an unknown key, a bad signature, a stale timestamp or nonce, or a wrong
passphrase is refused as the exchange refuses it. ccxt is pointed at one through its
``urls`` (``CcxtConnector(api_bases=...)``), its rate limiter off.

``stand_in(exchange)`` builds one; ``start()`` serves it on 127.0.0.1 (a random port) in
a thread, ``url`` is its base."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


@dataclass
class Account:
    """One API key at the exchange, with what it may do and the account's balances
    (unified currency codes: BTC, USDT) as (free, used)."""

    api_key: str
    secret: str
    passphrase: str | None = None
    can_read: bool = True
    can_trade: bool = True
    can_withdraw: bool = False
    ip_allowlist: tuple[str, ...] = ("203.0.113.7",)
    balances: dict[str, tuple[Decimal, Decimal]] = field(
        default_factory=lambda: {
            "BTC": (Decimal("0.5"), Decimal("0.25")),
            "USDT": (Decimal("1234.5"), Decimal(0)),
        }
    )


@dataclass(frozen=True)
class MarketDef:
    base: str
    quote: str
    tick: str
    lot: str
    min_qty: str
    min_notional: str


MARKETS = (
    MarketDef("BTC", "USDT", "0.01", "0.00001", "0.00001", "5"),
    MarketDef("ETH", "USDT", "0.01", "0.0001", "0.0001", "5"),
)


@dataclass(frozen=True)
class TapeTrade:
    trade_id: int
    time_ms: int
    price: Decimal
    amount: Decimal
    side: str  # the taker's: "buy" or "sell"


@dataclass(frozen=True)
class TapeCandle:
    open_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal

    @property
    def quote_volume(self) -> Decimal:
        return self.volume * self.close


class Tape:
    """One market's public data, the same at every exchange (each serves it in its own
    shape): an order book of ``levels`` levels a side around ``mid``, the last trades
    (newest last), and candles on any grid from ``history_start_ms`` to now, each a
    function of its open time (so every exchange, and every fetch, gives the same)."""

    def __init__(self, mid: Decimal, tick: Decimal, levels: int = 50) -> None:
        self.mid, self.tick = mid, tick
        self.bids = [
            (mid - tick * (n + 1), Decimal("0.5") + Decimal(n) / 100) for n in range(levels)
        ]
        self.asks = [
            (mid + tick * (n + 1), Decimal("0.25") + Decimal(n) / 100) for n in range(levels)
        ]
        self.update_id = 1000
        start = now_ms() - 60_000
        self.trades = [
            TapeTrade(500 + n, start + n * 1000, mid + tick * (n % 7 - 3),
                      Decimal("0.001") * (n + 1), "buy" if n % 2 else "sell")
            for n in range(30)
        ]  # fmt: skip
        self.history_start_ms = 0
        self.on_move: Callable[[Tape, list, list], None] | None = None

    def move(self, by: Decimal) -> None:
        """The book moves: every price by ``by``, the best bid's size changes (told to
        ``on_move`` with the levels before: the stand-in's book streams)."""
        before = (self.bids, self.asks)
        self.bids = [(p + by, q) for p, q in self.bids]
        self.asks = [(p + by, q) for p, q in self.asks]
        price, quantity = self.bids[0]
        self.bids[0] = (price, quantity + Decimal("0.125"))
        self.update_id += 1
        if self.on_move is not None:
            self.on_move(self, *before)

    def candle(self, open_ms: int, step_ms: int) -> TapeCandle:
        n = open_ms // step_ms
        base = self.mid + self.tick * (n % 40)
        return TapeCandle(
            open_ms, base, base + self.tick * 5, base - self.tick * 3,
            base + self.tick * (n % 3), Decimal(n % 17 + 1) / 4,
        )  # fmt: skip

    def candles(self, step_ms: int, start_ms: int | None, end_ms: int | None,
                limit: int, newest: bool = False) -> list[TapeCandle]:  # fmt: skip
        """Up to ``limit`` candles opening in [start, end] (now's included: it is still
        open), oldest first; with no start, the latest (``newest``: from the end)."""
        last = (min(end_ms, now_ms()) if end_ms is not None else now_ms()) // step_ms * step_ms
        first = max(self.history_start_ms, start_ms or 0)
        first = -(-first // step_ms) * step_ms
        if start_ms is None or newest:
            first = max(first, last - (limit - 1) * step_ms)
        opens = range(first, last + 1, step_ms)
        return [self.candle(t, step_ms) for t in list(opens)[:limit]]

    def ticker(self) -> dict[str, Decimal]:
        last = self.trades[-1]
        return {"bid": self.bids[0][0], "bid_size": self.bids[0][1], "ask": self.asks[0][0],
                "ask_size": self.asks[0][1], "last": last.price, "last_size": last.amount,
                "open": self.mid, "high": self.mid + self.tick * 10,
                "low": self.mid - self.tick * 10, "volume": Decimal("12.5"),
                "quote_volume": Decimal("12.5") * self.mid}  # fmt: skip


def tapes() -> dict[str, Tape]:
    return {
        "BTC/USDT": Tape(Decimal("90000.00"), Decimal("0.01")),
        "ETH/USDT": Tape(Decimal("3000.00"), Decimal("0.01")),
    }


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


class Refused(Exception):
    """Raised by a verifier: the exchange's answer to a request it refuses."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


@dataclass
class Order:
    """An order at the stand-in: ``symbol`` unified (BTC/USDT), ``side`` buy or sell,
    ``type`` limit, market, stop_loss or stop_loss_limit; ``status`` open, closed
    (filled) or canceled; times in ms."""

    id: str
    client_order_id: str
    api_key: str
    symbol: str
    side: str
    type: str
    quantity: Decimal
    price: Decimal | None
    stop_price: Decimal | None
    created: int
    filled: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)
    status: str = "open"
    updated: int = 0

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled

    @property
    def average(self) -> Decimal:
        return self.cost / self.filled if self.filled else Decimal(0)


@dataclass
class Trade:
    id: str
    order: Order
    price: Decimal
    quantity: Decimal
    fee: Decimal
    at: int


class OrderRefused(Exception):
    """``place`` refuses: ``reason`` is duplicate, insufficient or unknown_symbol."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


FEE_RATE = Decimal("0.001")


class Stream:
    """One WebSocket connection to a stand-in; ``api_key`` once it authenticated."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.api_key: str | None = None
        self.topics: set[str] = set()  # the channels it subscribed (where they are asked for)
        self.loop = asyncio.get_running_loop()
        self.outbox: asyncio.Queue[dict | str | None] = asyncio.Queue()

    def send(self, message: dict | str | None) -> None:
        """Queue ``message`` from any thread (None: close the connection)."""
        self.loop.call_soon_threadsafe(self.outbox.put_nowait, message)


class StandIn:
    """The server and state every stand-in shares; subclasses give ``routes``."""

    exchange = ""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accounts: dict[str, Account] = {}
        self.markets = MARKETS
        self.tapes = self.watched(tapes())
        self.requests: list[Recorded] = []
        self.refused: list[str] = []  # why each refused request was refused
        self.failures: list[int] = []  # HTTP statuses for the next requests
        # order paths whose next request is done but answered 504 (the answer lost)
        self.lose_answers: list[str] = []
        self.after_lost: list[int] = []  # statuses for the requests after a lost answer
        self.orders: list[Order] = []
        self.trades: list[Trade] = []
        self.last_price = {"BTC/USDT": Decimal("50000"), "ETH/USDT": Decimal("3000")}
        self.ids = 1000
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        host, port = self.socket.getsockname()
        self.url = f"http://{host}:{port}"
        self.streams: list[Stream] = []  # the open WebSocket connections
        self.refuse_streams = False  # close new WebSocket connections at once (an outage)
        self.stream_auths: list[str] = []  # the keys each accepted stream login named
        routes: list[Any] = [Route(p, self._wrap(h), methods=[m]) for m, p, h in self.routes()]
        routes += [WebSocketRoute(p, self._serve_stream) for p in self.ws_paths()]
        app = Starlette(routes=routes)
        config = uvicorn.Config(app, log_config=None, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    def routes(self) -> list[tuple[str, str, Callable[[Request, bytes], Any]]]:
        raise NotImplementedError

    # --- WebSocket: the account's order stream ---------------------------------------

    def ws_paths(self) -> list[str]:
        """The paths of the exchange's WebSocket endpoints served here (none: polled)."""
        return []

    def on_stream_message(self, stream: Stream, message: dict) -> list[dict]:
        """The answers to a client's message (a login sets ``stream.api_key``)."""
        raise NotImplementedError

    def stream_events(self, stream: Stream, order: Order, trade: Trade | None) -> list[dict]:
        """What the exchange pushes to one of the order's account's streams when
        ``order`` changed (``trade``: by that trade)."""
        raise NotImplementedError

    def watched(self, found: dict[str, Tape]) -> dict[str, Tape]:
        """``found`` with each tape's moves pushed to the book streams."""
        for symbol, tape in found.items():
            tape.on_move = lambda t, bids, asks, symbol=symbol: self.book_moved(
                symbol, t, bids, asks
            )
        return found

    def book_events(self, stream: Stream, symbol: str, tape: Tape, bids: list,
                    asks: list) -> list[dict]:  # fmt: skip
        """What the exchange pushes to ``stream`` when ``symbol``'s book moved from
        ``bids``/``asks`` to the tape's (none: no book stream here)."""
        return []

    def trade_events(self, stream: Stream, symbol: str, trade: TapeTrade) -> list[dict]:
        """What the exchange pushes to ``stream`` when ``trade`` happened on ``symbol``
        (none: no public trade stream here)."""
        return []

    def traded(self, symbol: str, trade: TapeTrade) -> None:
        """A public trade: pushed to the streams subscribed to the market's trades."""
        with self.lock:
            streams = list(self.streams)
        for stream in streams:
            for event in self.trade_events(stream, symbol, trade):
                stream.send(event)

    def book_moved(self, symbol: str, tape: Tape, bids: list, asks: list) -> None:
        with self.lock:
            streams = list(self.streams)
        for stream in streams:
            for event in self.book_events(stream, symbol, tape, bids, asks):
                stream.send(event)

    def changed(self, order: Order, trade: Trade | None = None) -> None:
        """``order`` changed: pushed to its account's authenticated streams."""
        with self.lock:
            streams = [s for s in self.streams if s.api_key == order.api_key]
        for stream in streams:
            for event in self.stream_events(stream, order, trade):
                stream.send(event)

    def drop_streams(self) -> None:
        """Close every open WebSocket connection (a dropped stream)."""
        with self.lock:
            streams = list(self.streams)
        for stream in streams:
            stream.send(None)

    def stream_count(self, api_key: str | None = None) -> int:
        """Open streams (of ``api_key``'s account, authenticated)."""
        with self.lock:
            return sum(1 for s in self.streams if api_key is None or s.api_key == api_key)

    async def _serve_stream(self, websocket: WebSocket) -> None:
        await websocket.accept()
        if self.refuse_streams:
            await websocket.close(1013)
            return
        stream = Stream(websocket)
        with self.lock:
            self.streams.append(stream)
        sender = asyncio.create_task(self._send_stream(stream))
        try:
            while True:
                text = await websocket.receive_text()
                if text == "ping":  # OKX's, Bitget's keepalive as text
                    stream.send("pong")
                    continue
                for answer in self.on_stream_message(stream, json.loads(text)):
                    stream.send(answer)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            with self.lock:
                self.streams.remove(stream)
            sender.cancel()

    async def _send_stream(self, stream: Stream) -> None:
        while (message := await stream.outbox.get()) is not None:
            text = message if isinstance(message, str) else json.dumps(message)
            await stream.websocket.send_text(text)
        await stream.websocket.close()

    def too_many_requests(self) -> Response:
        """The exchange's own answer to a client over its rate limit."""
        raise NotImplementedError

    def start(self) -> StandIn:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()

    def reset(self) -> None:
        with self.lock:
            self.accounts.clear()
            self.requests.clear()
            self.refused.clear()
            self.failures.clear()
            self.lose_answers.clear()
            self.after_lost.clear()
            self.orders.clear()
            self.trades.clear()
            self.tapes = self.watched(tapes())
            self.refuse_streams = False
            self.stream_auths.clear()

    def add(self, account: Account) -> Account:
        with self.lock:
            self.accounts[account.api_key] = account
        return account

    def set_balances(self, account: Account, balances: dict[str, tuple[Decimal, Decimal]]) -> None:
        """What the account holds from now on, by currency as (free, used): a deposit, a
        trade or a withdrawal at the exchange, as the next balance read will see it."""
        with self.lock:
            account.balances = dict(balances)

    def fail_next(self, *statuses: int) -> None:
        """Answer the next requests with these HTTP statuses, whatever they ask (503:
        down; 429: over the rate limit, as the exchange says it)."""
        with self.lock:
            self.failures.extend(statuses)

    def _wrap(self, handler: Callable[[Request, bytes], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            body = await request.body()
            with self.lock:
                recorded = Recorded(
                    request.method, request.url.path, request.url.query,
                    dict(request.headers), body,
                )  # fmt: skip
                self.requests.append(recorded)
                status = self.failures.pop(0) if self.failures else None
            if status == 429:
                return self.too_many_requests()
            if status is not None:
                return PlainTextResponse("unavailable", status)
            try:
                result = handler(request, body)
            except Refused as refused:
                with self.lock:
                    self.refused.append(refused.response.body.decode())
                return refused.response
            with self.lock:
                lost = request.url.path in self.lose_answers
                if lost:
                    self.lose_answers.remove(request.url.path)
                    self.failures.extend(self.after_lost)
                    self.after_lost.clear()
            if lost:
                return PlainTextResponse("gateway timeout", 504)
            return result if isinstance(result, Response) else JSONResponse(result)

        return endpoint

    def public_count(self, path_part: str) -> int:
        """How many requests asked a path containing ``path_part``."""
        with self.lock:
            return sum(1 for r in self.requests if path_part in r.path)

    def tape(self, exchange_symbol: str, unknown: Callable[[], Response]) -> Tape:
        """The tape of the market the exchange names ``exchange_symbol``; ``unknown()``'s
        answer (the exchange's own) for another."""
        for market in self.markets:
            if exchange_symbol in self.symbol_ids(market):
                return self.tapes[f"{market.base}/{market.quote}"]
        raise Refused(unknown())

    def symbol_ids(self, market: MarketDef) -> tuple[str, ...]:
        return (market.base + market.quote,)

    def account(self, api_key: str | None, refuse: Callable[[str], Response]) -> Account:
        with self.lock:
            account = self.accounts.get(api_key or "")
        if account is None:
            raise Refused(refuse("unknown key"))
        return account


# The stand-ins' shared order state (``StandIn.orders``, ``trades``): orders rest until a
# test fills them (``fill``); market orders fill at ``last_price`` on arrival.


def _next_id(stand_in: StandIn) -> int:
    stand_in.ids += 1
    return stand_in.ids


def place(
    stand_in: StandIn, account: Account, *, client_order_id: str, symbol: str, side: str,
    type: str, quantity: Decimal, price: Decimal | None, stop_price: Decimal | None = None,
    order_id: Callable[[int], str] = str,
) -> Order:  # fmt: skip
    with stand_in.lock:
        if symbol not in stand_in.last_price:
            raise OrderRefused("unknown_symbol")
        mine = [o for o in stand_in.orders if o.api_key == account.api_key]
        if client_order_id and any(o.client_order_id == client_order_id for o in mine):
            raise OrderRefused("duplicate")
        base, quote = symbol.split("/")
        reference = price or stop_price or stand_in.last_price[symbol]
        needed = (quote, quantity * reference) if side == "buy" else (base, quantity)
        if account.balances.get(needed[0], (Decimal(0), Decimal(0)))[0] < needed[1]:
            raise OrderRefused("insufficient")
        order = Order(order_id(_next_id(stand_in)), client_order_id, account.api_key, symbol,
                      side, type, quantity, price, stop_price, now_ms())  # fmt: skip
        order.updated = order.created
        stand_in.orders.append(order)
    stand_in.changed(order)
    if type == "market":
        fill(stand_in, order, quantity, stand_in.last_price[symbol])
    return order


def fill(
    stand_in: StandIn, order: Order, quantity: Decimal, price: Decimal | None = None,
    trade_id: Callable[[int], str] = str,
) -> Trade:  # fmt: skip
    """A trade of ``order`` (at its limit price by default)."""
    with stand_in.lock:
        assert order.status == "open" and 0 < quantity <= order.remaining
        at = price or order.price or stand_in.last_price[order.symbol]
        fee = (at * quantity * FEE_RATE).quantize(Decimal("0.00000001"))
        trade = Trade(trade_id(_next_id(stand_in)), order, at, quantity, fee, now_ms())
        order.filled += quantity
        order.cost += at * quantity
        order.updated = trade.at
        if order.remaining == 0:
            order.status = "closed"
        stand_in.trades.append(trade)
    stand_in.changed(order, trade)
    return trade


def trade_at(stand_in: StandIn, symbol: str, price: Decimal, *, age_ms: int = 0) -> TapeTrade:
    """A public trade on ``symbol`` at ``price`` (``age_ms`` ago), as the market's recent
    trades will show it (and its trade streams push it); market orders fill at that
    price from now on."""
    with stand_in.lock:
        tape = stand_in.tapes[symbol]
        trade = TapeTrade(tape.trades[-1].trade_id + 1, now_ms() - age_ms, price,
                          Decimal("0.002"), "sell")  # fmt: skip
        tape.trades.append(trade)
        stand_in.last_price[symbol] = price
    stand_in.traded(symbol, trade)
    return trade


def find(stand_in: StandIn, account: Account, *, order_id: str | None = None,
         client_order_id: str | None = None) -> Order | None:  # fmt: skip
    with stand_in.lock:
        for order in stand_in.orders:
            if order.api_key != account.api_key:
                continue
            if (order_id and order.id == order_id) or (
                client_order_id and order.client_order_id == client_order_id
            ):
                return order
    return None


def cancel(stand_in: StandIn, order: Order) -> bool:
    """Cancel ``order`` if it is open; whether it was."""
    with stand_in.lock:
        if order.status != "open":
            return False
        order.status, order.updated = "canceled", now_ms()
    stand_in.changed(order)
    return True


def orders_of(stand_in: StandIn, account: Account, symbol: str | None, *,
              open: bool | None = None) -> list[Order]:  # fmt: skip
    with stand_in.lock:
        return [o for o in stand_in.orders if o.api_key == account.api_key
                and (symbol is None or o.symbol == symbol)
                and (open is None or (o.status == "open") is open)]  # fmt: skip


def trades_of(stand_in: StandIn, account: Account, symbol: str | None) -> list[Trade]:
    with stand_in.lock:
        return [t for t in stand_in.trades if t.order.api_key == account.api_key
                and (symbol is None or t.order.symbol == symbol)]  # fmt: skip


def amount(value: Decimal) -> str:
    return format(value.normalize(), "f")


def now_ms() -> int:
    return int(time.time() * 1000)


def query_int(request: Request, name: str, default: int | None = None) -> int | None:
    value = request.query_params.get(name)
    return default if value is None or not value.lstrip("-").isdigit() else int(value)


def stand_in(exchange: str) -> StandIn:
    import importlib

    module = importlib.import_module(f"tests.support.exchanges.{exchange}")
    classes = [v for v in vars(module).values() if isinstance(v, type)
               and issubclass(v, StandIn) and v.exchange == exchange]  # fmt: skip
    return classes[0]()
