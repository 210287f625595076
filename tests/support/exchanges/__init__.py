"""Local stand-ins for the five exchanges at their HTTP boundary, for the real ccxt.

Each speaks the part of its exchange's REST API the platform uses (markets, balances,
the key's permissions), with the exchange's own paths, envelopes and error bodies, and
verifies every signed request the way its exchange does, with the secret of the API
key it names: an unknown key, a bad signature, a stale timestamp or nonce, or a wrong
passphrase is refused as the exchange refuses it. ccxt is pointed at one through its
``urls`` (``CcxtConnector(api_bases=...)``), its rate limiter off.

``stand_in(exchange)`` builds one; ``start()`` serves it on 127.0.0.1 (a random port) in
a thread, ``url`` is its base."""

from __future__ import annotations

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
from starlette.routing import Route


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


class StandIn:
    """The server and state every stand-in shares; subclasses give ``routes``."""

    exchange = ""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accounts: dict[str, Account] = {}
        self.markets = MARKETS
        self.requests: list[Recorded] = []
        self.refused: list[str] = []  # why each refused request was refused
        self.failures: list[int] = []  # HTTP statuses for the next requests
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        host, port = self.socket.getsockname()
        self.url = f"http://{host}:{port}"
        app = Starlette(routes=[Route(p, self._wrap(h), methods=[m]) for m, p, h in self.routes()])
        config = uvicorn.Config(app, log_config=None, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    def routes(self) -> list[tuple[str, str, Callable[[Request, bytes], Any]]]:
        raise NotImplementedError

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
            return result if isinstance(result, Response) else JSONResponse(result)

        return endpoint

    def account(self, api_key: str | None, refuse: Callable[[str], Response]) -> Account:
        with self.lock:
            account = self.accounts.get(api_key or "")
        if account is None:
            raise Refused(refuse("unknown key"))
        return account


def amount(value: Decimal) -> str:
    return format(value.normalize(), "f")


def now_ms() -> int:
    return int(time.time() * 1000)


def stand_in(exchange: str) -> StandIn:
    import importlib

    module = importlib.import_module(f"tests.support.exchanges.{exchange}")
    classes = [v for v in vars(module).values() if isinstance(v, type)
               and issubclass(v, StandIn) and v.exchange == exchange]  # fmt: skip
    return classes[0]()
