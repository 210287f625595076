"""Binance spot: ``/api/v3/exchangeInfo``, ``/api/v3/account`` and
``/sapi/v1/account/apiRestrictions``; public market data ``/api/v3/ticker/24hr``,
``/api/v3/depth``, ``/api/v3/aggTrades`` and ``/api/v3/klines``.
Signed requests (SIGNED endpoints) carry the key
in ``X-MBX-APIKEY`` and ``signature`` = hex HMAC-SHA256(secret, the query string before
it); ``timestamp`` must be within ``recvWindow`` (5000 ms by default) of the server's
clock.

Its WebSocket API (``/ws-api/v3``) serves the account's user data stream: the client's
``userDataStream.subscribe.signature`` (``apiKey``, ``timestamp`` and ``signature`` =
hex HMAC-SHA256(secret, the other params sorted by name as ``k=v&...``)) is verified
like a signed request and answered with a ``subscriptionId``; from then on each change of
the account's orders is pushed as an ``executionReport`` event (``x``: NEW, TRADE with
the trade's ``t``/``l``/``L``/``n``, CANCELED). Its market streams (``/ws/...``,
``SUBSCRIBE``): ``<symbol>@depth`` (the diff depth stream) and ``<symbol>@aggTrade``
(each public trade as ``aggTrades`` serves it)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse

from tests.support.exchanges import (
    Account,
    Order,
    OrderRefused,
    Refused,
    StandIn,
    Stream,
    Tape,
    TapeTrade,
    Trade,
    amount,
    cancel,
    find,
    now_ms,
    orders_of,
    place,
    query_int,
    trades_of,
)


def _error(code: int, msg: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"code": code, "msg": msg}, status)


def _ws_error(request_id: object, code: int, msg: str, status: int = 400) -> dict:
    return {"id": request_id, "status": status, "error": {"code": code, "msg": msg}}


class BinanceStandIn(StandIn):
    exchange = "binance"

    def too_many_requests(self) -> JSONResponse:
        return _error(-1003, "Too much request weight used; current limit is 6000 request"
                      " weight per 1 MINUTE.", 429)  # fmt: skip

    def routes(self):  # type: ignore[no-untyped-def]
        return [
            ("GET", "/api/v3/exchangeInfo", self.exchange_info),
            ("GET", "/api/v3/account", self.account_info),
            ("GET", "/sapi/v1/account/apiRestrictions", self.api_restrictions),
            ("POST", "/api/v3/order", self.new_order),
            ("GET", "/api/v3/order", self.query_order),
            ("DELETE", "/api/v3/order", self.cancel_order),
            ("GET", "/api/v3/openOrders", self.open_orders),
            ("GET", "/api/v3/allOrders", self.all_orders),
            ("GET", "/api/v3/myTrades", self.my_trades),
            ("GET", "/api/v3/ticker/24hr", self.ticker),
            ("GET", "/api/v3/depth", self.depth),
            ("GET", "/api/v3/aggTrades", self.agg_trades),
            ("GET", "/api/v3/klines", self.klines),
        ]

    def signed(self, request: Request, body: bytes) -> Account:
        account = self.account(
            request.headers.get("x-mbx-apikey"),
            lambda _: _error(-2015, "Invalid API-key, IP, or permissions for action.", 401),
        )
        payload = request.url.query if request.method in ("GET", "DELETE") else body.decode()
        unsigned, _, signature = payload.rpartition("&signature=")
        expected = hmac.new(account.secret.encode(), unsigned.encode(), hashlib.sha256)
        if not hmac.compare_digest(expected.hexdigest(), signature):
            raise Refused(_error(-1022, "Signature for this request is not valid."))
        params = dict(parse_qsl(unsigned))
        window = int(params.get("recvWindow", 5000))
        sent = int(params.get("timestamp", 0))
        if not (sent < now_ms() + 1000 and now_ms() - sent <= window):
            raise Refused(_error(-1021, "Timestamp for this request is outside of the recvWindow."))
        return account

    def exchange_info(self, request: Request, body: bytes) -> dict:
        return {
            "timezone": "UTC",
            "serverTime": now_ms(),
            "rateLimits": [],
            "exchangeFilters": [],
            "symbols": [
                {
                    "symbol": m.base + m.quote,
                    "status": "TRADING",
                    "baseAsset": m.base,
                    "baseAssetPrecision": 8,
                    "quoteAsset": m.quote,
                    "quotePrecision": 8,
                    "quoteAssetPrecision": 8,
                    "orderTypes": [
                        "LIMIT",
                        "LIMIT_MAKER",
                        "MARKET",
                        "STOP_LOSS",
                        "STOP_LOSS_LIMIT",
                        "TAKE_PROFIT",
                        "TAKE_PROFIT_LIMIT",
                    ],
                    "isSpotTradingAllowed": True,
                    "isMarginTradingAllowed": False,
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "minPrice": m.tick,
                            "maxPrice": "1000000.00",
                            "tickSize": m.tick,
                        },
                        {
                            "filterType": "LOT_SIZE",
                            "minQty": m.min_qty,
                            "maxQty": "9000",
                            "stepSize": m.lot,
                        },
                        {
                            "filterType": "NOTIONAL",
                            "minNotional": m.min_notional,
                            "applyMinToMarket": True,
                            "maxNotional": "9000000",
                            "applyMaxToMarket": False,
                            "avgPriceMins": 5,
                        },
                    ],
                    "permissions": [],
                    "permissionSets": [["SPOT"]],
                }
                for m in self.markets
            ],
        }

    def account_info(self, request: Request, body: bytes) -> dict:
        account = self.signed(request, body)
        if not account.can_read:
            raise Refused(_error(-2015, "Invalid API-key, IP, or permissions for action.", 401))
        return {
            "makerCommission": 10, "takerCommission": 10, "canTrade": account.can_trade,
            "canWithdraw": True, "canDeposit": True, "updateTime": now_ms(),
            "accountType": "SPOT", "permissions": ["SPOT"],
            "balances": [{"asset": currency, "free": amount(free), "locked": amount(used)}
                         for currency, (free, used) in account.balances.items()],
        }  # fmt: skip

    def api_restrictions(self, request: Request, body: bytes) -> dict:
        account = self.signed(request, body)
        return {
            "ipRestrict": bool(account.ip_allowlist),
            "createTime": 1_700_000_000_000,
            "enableReading": account.can_read,
            "enableSpotAndMarginTrading": account.can_trade,
            "enableWithdrawals": account.can_withdraw,
            "enableInternalTransfer": False,
            "enableMargin": False,
            "enableFutures": False,
            "permitsUniversalTransfer": False,
            "enableVanillaOptions": False,
            "enablePortfolioMarginTrading": False,
        }

    # --- orders (``/api/v3/order``, ``openOrders``, ``allOrders``, ``myTrades``) ---------

    def params(self, request: Request, body: bytes) -> tuple[Account, dict[str, str]]:
        account = self.signed(request, body)
        payload = request.url.query if request.method in ("GET", "DELETE") else body.decode()
        return account, dict(parse_qsl(payload))

    def unified(self, exchange_symbol: str) -> str:
        for m in self.markets:
            if m.base + m.quote == exchange_symbol:
                return f"{m.base}/{m.quote}"
        raise Refused(_error(-1121, "Invalid symbol."))

    def new_order(self, request: Request, body: bytes) -> dict:
        account, p = self.params(request, body)
        if not account.can_trade:
            raise Refused(_error(-2015, "Invalid API-key, IP, or permissions for action.", 401))
        kind = p["type"].lower()
        price = p.get("price")
        stop = p.get("stopPrice")
        try:
            order = place(
                self, account, client_order_id=p.get("newClientOrderId", ""),
                symbol=self.unified(p["symbol"]), side=p["side"].lower(), type=kind,
                quantity=Decimal(p["quantity"]), price=Decimal(price) if price else None,
                stop_price=Decimal(stop) if stop else None,
            )  # fmt: skip
        except OrderRefused as refused:
            message = {
                "duplicate": "Duplicate order sent.",
                "insufficient": "Account has insufficient balance for requested action.",
            }
            raise Refused(_error(-2010, message.get(refused.reason, "Rejected"))) from None
        return {**self.order_json(order), "transactTime": order.created, "fills": []}

    def lookup(self, account: Account, p: dict[str, str]) -> Order | None:
        return find(self, account, order_id=p.get("orderId"),
                    client_order_id=p.get("origClientOrderId"))  # fmt: skip

    def query_order(self, request: Request, body: bytes) -> dict:
        account, p = self.params(request, body)
        order = self.lookup(account, p)
        if order is None:
            raise Refused(_error(-2013, "Order does not exist."))
        return self.order_json(order)

    def cancel_order(self, request: Request, body: bytes) -> dict:
        account, p = self.params(request, body)
        order = self.lookup(account, p)
        if order is None or not cancel(self, order):
            raise Refused(_error(-2011, "Unknown order sent."))
        return {**self.order_json(order), "origClientOrderId": order.client_order_id}

    def open_orders(self, request: Request, body: bytes) -> list:
        account, p = self.params(request, body)
        symbol = self.unified(p["symbol"]) if "symbol" in p else None
        return [self.order_json(o) for o in orders_of(self, account, symbol, open=True)]

    def all_orders(self, request: Request, body: bytes) -> list:
        """Oldest first, at most ``limit`` (500 by default, 1000 at most): from
        ``orderId`` (orders >= it) or ``startTime``, else the most recent."""
        account, p = self.params(request, body)
        orders = orders_of(self, account, self.unified(p["symbol"]))
        return [self.order_json(o) for o in _page(orders, p, "orderId", lambda o: o.created)]

    def my_trades(self, request: Request, body: bytes) -> list:
        """Oldest first, at most ``limit`` (500 by default, 1000 at most): from ``fromId``
        (trades >= it) or ``startTime``, else the most recent; ``fromId`` with a time is
        refused, as Binance refuses it."""
        account, p = self.params(request, body)
        if "fromId" in p and ("startTime" in p or "endTime" in p):
            raise Refused(_error(-1128, "Combination of optional parameters invalid."))
        trades = trades_of(self, account, self.unified(p["symbol"]))
        return [
            {"symbol": p["symbol"], "id": int(t.id), "orderId": int(t.order.id),
             "orderListId": -1, "price": amount(t.price), "qty": amount(t.quantity),
             "quoteQty": amount(t.price * t.quantity), "commission": amount(t.fee),
             "commissionAsset": t.order.symbol.split("/")[1], "time": t.at,
             "isBuyer": t.order.side == "buy", "isMaker": t.order.type != "market",
             "isBestMatch": True}
            for t in _page(trades, p, "fromId", lambda t: t.at)
        ]  # fmt: skip

    def order_json(self, o: Order) -> dict:
        if o.status == "canceled":
            status = "CANCELED"
        elif o.status == "closed":
            status = "FILLED"
        else:
            status = "PARTIALLY_FILLED" if o.filled else "NEW"
        return {
            "symbol": o.symbol.replace("/", ""), "orderId": int(o.id), "orderListId": -1,
            "clientOrderId": o.client_order_id, "price": amount(o.price or Decimal(0)),
            "origQty": amount(o.quantity), "executedQty": amount(o.filled),
            "cummulativeQuoteQty": amount(o.cost), "status": status, "timeInForce": "GTC",
            "type": o.type.upper(), "side": o.side.upper(),
            "stopPrice": amount(o.stop_price or Decimal(0)), "icebergQty": "0",
            "time": o.created, "updateTime": o.updated, "isWorking": True,
            "workingTime": o.created, "origQuoteOrderQty": "0",
            "selfTradePreventionMode": "NONE",
        }  # fmt: skip

    # --- WebSocket API: the user data stream -----------------------------------------

    def ws_paths(self) -> list[str]:
        return ["/ws-api/v3", "/ws/{stream}"]

    def on_stream_message(self, stream: Stream, message: dict) -> list[dict]:
        request_id = message.get("id")
        if message.get("method") == "SUBSCRIBE":  # market streams (``btcusdt@depth@100ms``)
            with self.lock:
                stream.topics |= {str(p) for p in message.get("params") or ()}
            return [{"result": None, "id": request_id}]
        if message.get("method") != "userDataStream.subscribe.signature":
            return [_ws_error(request_id, -1100, "Unknown method.", 400)]
        params = {k: str(v) for k, v in (message.get("params") or {}).items()}
        signature = params.pop("signature", "")
        with self.lock:
            account = self.accounts.get(params.get("apiKey", ""))
        if account is None:
            return [_ws_error(request_id, -2015, "Invalid API-key, IP, or permissions"
                              " for action.", 401)]  # fmt: skip
        unsigned = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
        expected = hmac.new(account.secret.encode(), unsigned.encode(), hashlib.sha256)
        if not hmac.compare_digest(expected.hexdigest(), signature):
            return [_ws_error(request_id, -1022, "Signature for this request is not valid.")]
        sent = int(params.get("timestamp", 0))
        if not (sent < now_ms() + 1000 and now_ms() - sent <= int(params.get("recvWindow", 5000))):
            return [_ws_error(request_id, -1021, "Timestamp for this request is outside of"
                              " the recvWindow.")]  # fmt: skip
        with self.lock:
            stream.api_key = account.api_key
            self.stream_auths.append(account.api_key)
        return [{"id": request_id, "status": 200, "result": {"subscriptionId": 0}}]

    def stream_events(self, stream: Stream, order: Order, trade: Trade | None) -> list[dict]:
        state = self.order_json(order)
        kind = "TRADE" if trade else "CANCELED" if order.status == "canceled" else "NEW"
        event = {
            "e": "executionReport", "E": now_ms(), "s": state["symbol"],
            "c": order.client_order_id, "S": state["side"], "o": state["type"], "f": "GTC",
            "q": state["origQty"], "p": state["price"], "P": state["stopPrice"], "F": "0",
            "g": -1, "C": "", "x": kind, "X": state["status"], "r": "NONE", "i": int(order.id),
            "l": amount(trade.quantity) if trade else "0",
            "z": state["executedQty"], "L": amount(trade.price) if trade else "0",
            "n": amount(trade.fee) if trade else "0",
            "N": order.symbol.split("/")[1] if trade else None,
            "T": trade.at if trade else order.updated, "t": int(trade.id) if trade else -1,
            "I": 1, "w": order.status == "open", "m": order.type != "market", "M": False,
            "O": order.created, "Z": state["cummulativeQuoteQty"],
            "Y": amount(trade.price * trade.quantity) if trade else "0", "Q": "0",
        }  # fmt: skip
        return [{"subscriptionId": 0, "event": event}]

    def book_events(self, stream: Stream, symbol: str, tape: Tape, bids: list,
                    asks: list) -> list[dict]:  # fmt: skip
        """The diff depth stream: the levels before at 0, then the tape's (``U`` = ``u``:
        one update id per move)."""
        exchange_symbol = symbol.replace("/", "")
        if not any(t.startswith(f"{exchange_symbol.lower()}@depth") for t in stream.topics):
            return []
        return [{
            "e": "depthUpdate", "E": now_ms(), "s": exchange_symbol, "U": tape.update_id,
            "u": tape.update_id,
            "b": [[amount(p), "0"] for p, _ in bids] + [[amount(p), amount(q)]
                                                        for p, q in tape.bids],
            "a": [[amount(p), "0"] for p, _ in asks] + [[amount(p), amount(q)]
                                                        for p, q in tape.asks],
        }]  # fmt: skip

    def trade_events(self, stream: Stream, symbol: str, trade: TapeTrade) -> list[dict]:
        """The aggregate trade stream (``<symbol>@aggTrade``): the REST ``aggTrades``'
        trade, its ``a`` the same id."""
        exchange_symbol = symbol.replace("/", "")
        if f"{exchange_symbol.lower()}@aggTrade" not in stream.topics:
            return []
        return [{"e": "aggTrade", "E": now_ms(), "s": exchange_symbol, **self.agg(trade)}]

    @staticmethod
    def agg(t: TapeTrade) -> dict:
        return {"a": t.trade_id, "p": amount(t.price), "q": amount(t.amount), "f": t.trade_id,
                "l": t.trade_id, "T": t.time_ms, "m": t.side == "sell", "M": True}  # fmt: skip

    # --- public market data ----------------------------------------------------------

    def _tape(self, request: Request) -> Tape:
        return self.tape(request.query_params.get("symbol", ""),
                         lambda: _error(-1121, "Invalid symbol."))  # fmt: skip

    def ticker(self, request: Request, body: bytes) -> dict:
        t = self._tape(request).ticker()
        return {
            "symbol": request.query_params["symbol"], "priceChange": amount(t["last"] - t["open"]),
            "priceChangePercent": "0.000", "weightedAvgPrice": amount(t["open"]),
            "prevClosePrice": amount(t["open"]), "lastPrice": amount(t["last"]),
            "lastQty": amount(t["last_size"]), "bidPrice": amount(t["bid"]),
            "bidQty": amount(t["bid_size"]), "askPrice": amount(t["ask"]),
            "askQty": amount(t["ask_size"]), "openPrice": amount(t["open"]),
            "highPrice": amount(t["high"]), "lowPrice": amount(t["low"]),
            "volume": amount(t["volume"]), "quoteVolume": amount(t["quote_volume"]),
            "openTime": now_ms() - 86_400_000, "closeTime": now_ms(), "firstId": 1,
            "lastId": 529, "count": 529,
        }  # fmt: skip

    def depth(self, request: Request, body: bytes) -> dict:
        tape = self._tape(request)
        limit = min(query_int(request, "limit", 100) or 100, 5000)
        return {
            "lastUpdateId": tape.update_id,
            "bids": [[amount(p), amount(q)] for p, q in tape.bids[:limit]],
            "asks": [[amount(p), amount(q)] for p, q in tape.asks[:limit]],
        }

    def agg_trades(self, request: Request, body: bytes) -> list:
        tape = self._tape(request)
        limit = min(query_int(request, "limit", 500) or 500, 1000)
        return [self.agg(t) for t in tape.trades[-limit:]]

    def klines(self, request: Request, body: bytes) -> list:
        tape = self._tape(request)
        step = _STEPS_MS.get(request.query_params.get("interval", ""))
        if step is None:
            raise Refused(_error(-1120, "Invalid interval."))
        limit = min(query_int(request, "limit", 500) or 500, 1000)
        found = tape.candles(step, query_int(request, "startTime"),
                             query_int(request, "endTime"), limit)  # fmt: skip
        return [
            [c.open_ms, amount(c.open), amount(c.high), amount(c.low), amount(c.close),
             amount(c.volume), c.open_ms + step - 1, amount(c.quote_volume), 7, "0", "0", "0"]
            for c in found
        ]  # fmt: skip


PAGE_DEFAULT, PAGE_MAX = 500, 1000  # allOrders' and myTrades' ``limit``


def _page(items: list, p: dict[str, str], from_id: str, at: Callable[[Any], int]) -> list:
    """Binance's page of ``items`` (ids ascending, as created): ``from_id`` and on, else
    from ``startTime`` (to ``endTime``), oldest first; with neither, the most recent."""
    limit = max(1, min(int(p.get("limit", PAGE_DEFAULT)), PAGE_MAX))
    if from_id in p:
        return [i for i in items if int(i.id) >= int(p[from_id])][:limit]
    start, end = int(p.get("startTime", 0)), int(p.get("endTime", 2**63))
    found = [i for i in items if start <= at(i) <= end]
    return found[:limit] if "startTime" in p else found[-limit:]


_MINUTE = 60_000
_STEPS_MS = {"1m": _MINUTE, "3m": 3 * _MINUTE, "5m": 5 * _MINUTE, "15m": 15 * _MINUTE,
             "30m": 30 * _MINUTE, "1h": 60 * _MINUTE, "2h": 120 * _MINUTE,
             "4h": 240 * _MINUTE, "6h": 360 * _MINUTE, "8h": 480 * _MINUTE,
             "12h": 720 * _MINUTE, "1d": 1440 * _MINUTE, "1w": 10080 * _MINUTE}  # fmt: skip
