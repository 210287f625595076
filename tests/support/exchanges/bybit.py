"""Bybit v5: ``/v5/market/instruments-info``, ``/v5/user/query-api``,
``/v5/account/info`` and ``/v5/account/wallet-balance`` (a unified trading account);
public market data ``/v5/market/tickers``, ``orderbook``, ``recent-trade`` and ``kline``
(newest first, the latest ``limit`` in [start, end]); spot orders: ``/v5/order/create``,
``cancel``, ``realtime`` (open), ``history`` (ended, newest first) and
``/v5/execution/list`` (the account's trades), by ``orderId`` or ``orderLinkId``.
Private calls carry ``X-BAPI-API-KEY``, ``X-BAPI-TIMESTAMP`` (ms, within
``X-BAPI-RECV-WINDOW``) and ``X-BAPI-SIGN`` = hex HMAC-SHA256(secret, timestamp + key +
recv window + query string, or the JSON body of a POST). Answers are ``{"retCode",
"retMsg", "result"}``: 10003 unknown key, 10004 bad signature, 10002 stale timestamp;
an order refused is HTTP 200 with 170131 (balance), 170141 (duplicate orderLinkId) or
170213 (no such open order to cancel).

Its v5 private WebSocket (``/v5/private``): the client's ``{"op": "auth", "args": [key,
expires, signature]}`` (``signature`` = hex HMAC-SHA256(secret, "GET/realtime" +
expires), ``expires`` in ms and still ahead) is verified and acknowledged; then the
``order`` and ``execution`` topics it subscribes get each change of the account's orders
(the order as ``/v5/order/realtime`` shows it, ``category: spot``) and each trade (as
``/v5/execution/list`` shows it)."""

from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal
from typing import Any

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


def _error(code: int, msg: str, status: int = 401) -> JSONResponse:
    return JSONResponse({"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {},
                         "time": now_ms()}, status)  # fmt: skip


ORDERS_PAGE = (20, 50)  # order/history's ``limit``: by default, at most
TRADES_PAGE = (50, 100)  # execution/list's


def _page(items: list, q: Any, default: int, most: int) -> tuple[list, str]:
    """Bybit's page of ``items`` (ids ascending): newest first, ``limit`` of them from
    the ``cursor`` on, and the cursor of the next page ("" after the last)."""
    limit = max(1, min(int(q.get("limit") or default), most))
    newest = list(reversed(items))
    cursor = q.get("cursor") or ""
    if cursor.startswith("next:"):
        below = int(cursor.removeprefix("next:"))
        newest = [i for i in newest if int(i.id) <= below]
    more = len(newest) > limit
    return newest[:limit], f"next:{newest[limit].id}" if more else ""


def _ok(result: dict) -> dict:
    return {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": now_ms()}


class BybitStandIn(StandIn):
    exchange = "bybit"

    def too_many_requests(self) -> JSONResponse:
        return _error(10006, "Too many visits!", 200)

    def routes(self):  # type: ignore[no-untyped-def]
        return [
            ("GET", "/v5/market/instruments-info", self.instruments),
            ("GET", "/v5/user/query-api", self.query_api),
            ("GET", "/v5/account/info", self.account_info),
            ("GET", "/v5/account/wallet-balance", self.wallet_balance),
            ("GET", "/v5/market/tickers", self.tickers),
            ("GET", "/v5/market/orderbook", self.orderbook),
            ("GET", "/v5/market/recent-trade", self.recent_trade),
            ("GET", "/v5/market/kline", self.kline),
            ("POST", "/v5/order/create", self.create_order),
            ("POST", "/v5/order/cancel", self.cancel_order),
            ("GET", "/v5/order/realtime", self.open_orders),
            ("GET", "/v5/order/history", self.order_history),
            ("GET", "/v5/execution/list", self.executions),
        ]

    def signed(self, request: Request, body: bytes) -> Account:
        headers = request.headers
        account = self.account(headers.get("x-bapi-api-key"),
                               lambda _: _error(10003, "API key is invalid."))  # fmt: skip
        timestamp = headers.get("x-bapi-timestamp", "")
        window = headers.get("x-bapi-recv-window", "5000")
        payload = body.decode() if request.method == "POST" else request.url.query
        prehash = f"{timestamp}{account.api_key}{window}{payload}"
        expected = hmac.new(account.secret.encode(), prehash.encode(), hashlib.sha256)
        if not hmac.compare_digest(expected.hexdigest(), headers.get("x-bapi-sign", "")):
            raise Refused(_error(10004, "error sign! origin_string[...]"))
        if not timestamp.isdigit() or abs(now_ms() - int(timestamp)) > int(window):
            raise Refused(_error(10002, "invalid request, please check your server timestamp"))
        return account

    def instruments(self, request: Request, body: bytes) -> dict:
        category = request.query_params.get("category")
        markets = self.markets if category == "spot" else ()
        return _ok({"category": category, "nextPageCursor": "", "list": [
            {"symbol": m.base + m.quote, "baseCoin": m.base, "quoteCoin": m.quote,
             "innovation": "0", "status": "Trading", "marginTrading": "none",
             "stTag": "0", "lotSizeFilter": {"basePrecision": m.lot,
             "quotePrecision": "0.00000001", "minOrderQty": m.min_qty,
             "maxOrderQty": "9000", "minOrderAmt": m.min_notional, "maxOrderAmt": "2000000"},
             "priceFilter": {"tickSize": m.tick},
             "riskParameters": {"priceLimitRatioX": "0.05", "priceLimitRatioY": "0.05"}}
            for m in markets
        ]})  # fmt: skip

    def query_api(self, request: Request, body: bytes) -> dict:
        account = self.signed(request, body)
        wallet = ["AccountTransfer"] + (["Withdraw"] if account.can_withdraw else [])
        return _ok({
            "id": "13770661", "note": "platform", "apiKey": account.api_key,
            "readOnly": 0 if account.can_trade else 1, "secret": "",
            "permissions": {"ContractTrade": [], "Spot": ["SpotTrade"] if account.can_trade
                            else [], "Wallet": wallet, "Options": [], "Derivatives": [],
                            "CopyTrading": [], "BlockTrade": [], "Exchange": [], "NFT": [],
                            "Affiliate": []},
            "ips": list(account.ip_allowlist) or ["*"], "type": 1, "deadlineDay": 83,
            "expiredAt": "2027-01-01T00:00:00Z", "createdAt": "2026-01-01T00:00:00Z",
            "unified": 0, "uta": 1, "userID": 24617703, "inviterID": 0,
            "vipLevel": "No VIP", "mktMakerLevel": "0", "affiliateID": 0,
            "rsaPublicKey": "", "isMaster": True,
        })  # fmt: skip

    def account_info(self, request: Request, body: bytes) -> dict:
        self.signed(request, body)
        return _ok({"unifiedMarginStatus": 5, "marginMode": "REGULAR_MARGIN",
                    "isMasterTrader": False, "spotHedgingStatus": "OFF",
                    "updatedTime": str(now_ms()), "dcpStatus": "OFF", "timeWindow": 10,
                    "smpGroup": 0})  # fmt: skip

    def wallet_balance(self, request: Request, body: bytes) -> dict:
        account = self.signed(request, body)
        if request.query_params.get("accountType") != "UNIFIED":
            raise Refused(_error(10001, "accountType only support UNIFIED.", 200))
        coins = [
            {"coin": currency, "walletBalance": amount(free + used), "locked": amount(used),
             "equity": amount(free + used), "totalOrderIM": "0", "totalPositionIM": "0",
             "borrowAmount": "", "accruedInterest": ""}
            for currency, (free, used) in account.balances.items()
        ]  # fmt: skip
        return _ok({"list": [{"accountType": "UNIFIED", "totalEquity": "0", "coin": coins}]})

    # --- spot orders (``/v5/order/...``, ``/v5/execution/list``) ------------------------

    def unified(self, symbol: str) -> str:
        for m in self.markets:
            if m.base + m.quote == symbol:
                return f"{m.base}/{m.quote}"
        raise Refused(_error(170121, "Invalid symbol.", 200))

    def _symbol(self, request: Request) -> str | None:
        symbol = request.query_params.get("symbol")
        return self.unified(symbol) if symbol else None

    def create_order(self, request: Request, body: bytes) -> dict:
        account = self.signed(request, body)
        p = json.loads(body)
        if p.get("category") != "spot":
            raise Refused(_error(10001, "category only support spot here.", 200))
        if not account.can_trade:
            raise Refused(_error(10005, "Permission denied, please check your API key"
                                 " permissions.", 200))  # fmt: skip
        kind = p["orderType"].lower()
        stop = p.get("triggerPrice") if p.get("orderFilter") == "tpslOrder" else None
        if p.get("orderFilter") not in (None, "Order", "tpslOrder") or (
            kind == "market" and p["side"] == "Buy" and p.get("marketUnit") != "baseCoin"
        ):  # a market buy's quantity in the quote currency: not served
            raise Refused(_error(170130, "Data sent for paramter '%s' is not valid.", 200))
        try:
            order = place(
                self, account, client_order_id=p.get("orderLinkId", ""),
                symbol=self.unified(p["symbol"]), side=p["side"].lower(),
                type=(f"stop_loss_{kind}" if kind == "limit" else "stop_loss") if stop else kind,
                quantity=Decimal(p["qty"]), price=Decimal(p["price"]) if p.get("price") else None,
                stop_price=Decimal(stop) if stop else None,
            )  # fmt: skip
        except OrderRefused as refused:
            if refused.reason == "insufficient":
                raise Refused(_error(170131, "Insufficient balance.", 200)) from None
            raise Refused(_error(170141, "Duplicate clientOrderId.", 200)) from None
        return _ok({"orderId": order.id, "orderLinkId": order.client_order_id})

    def cancel_order(self, request: Request, body: bytes) -> dict:
        account = self.signed(request, body)
        p = json.loads(body)
        order = find(self, account, order_id=p.get("orderId"),
                     client_order_id=p.get("orderLinkId"))  # fmt: skip
        if order is None or not cancel(self, order):
            raise Refused(_error(170213, "Order does not exist.", 200))
        return _ok({"orderId": order.id, "orderLinkId": order.client_order_id})

    def _listed(self, request: Request, orders: list[Order], paged: bool = False) -> dict:
        """``orders`` (by ``orderId`` or ``orderLinkId``), newest first; ``paged``: a page
        of them (open orders: all at once here)."""
        q = request.query_params
        wanted = [o for o in orders
                  if q.get("orderId") in (None, o.id)
                  and q.get("orderLinkId") in (None, o.client_order_id)]  # fmt: skip
        page, cursor = _page(wanted, q, *ORDERS_PAGE) if paged else (wanted[::-1], "")
        return _ok({"category": "spot", "nextPageCursor": cursor,
                    "list": [self.order_json(o) for o in page]})  # fmt: skip

    def open_orders(self, request: Request, body: bytes) -> dict:
        account = self.signed(request, body)
        return self._listed(request, orders_of(self, account, self._symbol(request), open=True))

    def order_history(self, request: Request, body: bytes) -> dict:
        """Ended orders updated in [``startTime``, ``endTime``], newest first, ``limit``
        (20 by default, 50 at most) a page, then ``cursor``; ``orderStatus`` narrows them."""
        account = self.signed(request, body)
        start = query_int(request, "startTime", 0) or 0
        end = query_int(request, "endTime", 2**63) or 2**63
        status = request.query_params.get("orderStatus")
        ended = [o for o in orders_of(self, account, self._symbol(request), open=False)
                 if start <= o.updated <= end and status in (None, self.status(o))]  # fmt: skip
        return self._listed(request, ended, paged=True)

    def executions(self, request: Request, body: bytes) -> dict:
        """The trades in [``startTime``, ``endTime``], newest first, ``limit`` (50 by
        default, 100 at most) a page, then ``cursor``."""
        account = self.signed(request, body)
        start = query_int(request, "startTime", 0) or 0
        end = query_int(request, "endTime", 2**63) or 2**63
        trades = [t for t in trades_of(self, account, self._symbol(request))
                  if start <= t.at <= end]  # fmt: skip
        page, cursor = _page(trades, request.query_params, *TRADES_PAGE)
        listed = [self.execution_json(t) for t in page]
        return _ok({"category": "spot", "nextPageCursor": cursor, "list": listed})

    def execution_json(self, t: Trade) -> dict:
        return {
            "symbol": t.order.symbol.replace("/", ""), "orderId": t.order.id,
            "orderLinkId": t.order.client_order_id, "side": t.order.side.capitalize(),
            "orderPrice": amount(t.order.price or t.price), "orderQty": amount(t.order.quantity),
            "leavesQty": "0", "createType": "CreateByUser",
            "orderType": "Market" if t.order.type == "market" else "Limit",
            "stopOrderType": "", "execFee": amount(_fee(t)),
            "feeCurrency": _fee_currency(t), "execId": t.id,
            "execPrice": amount(t.price), "execQty": amount(t.quantity), "execType": "Trade",
            "execValue": amount(t.price * t.quantity), "feeRate": "0.001",
            "tradeIv": "", "markIv": "", "markPrice": "", "indexPrice": "",
            "underlyingPrice": "", "blockTradeId": "", "closedSize": "",
            "seq": int(t.id), "isMaker": t.order.type != "market", "execTime": str(t.at),
        }  # fmt: skip

    @staticmethod
    def status(o: Order) -> str:
        if o.status == "open":
            return "PartiallyFilled" if o.filled else ("Untriggered" if o.stop_price else "New")
        return "Filled" if o.status == "closed" else "Cancelled"

    def order_json(self, o: Order) -> dict:
        stop = o.stop_price is not None
        return {
            "orderId": o.id, "orderLinkId": o.client_order_id, "blockTradeId": "",
            "symbol": o.symbol.replace("/", ""),
            "price": amount(o.price) if o.price is not None else "0",
            "qty": amount(o.quantity), "side": o.side.capitalize(), "isLeverage": "0",
            "positionIdx": 0, "orderStatus": self.status(o), "cancelType": "UNKNOWN",
            "rejectReason": "EC_NoError", "avgPrice": amount(o.average) if o.filled else "",
            "leavesQty": amount(o.remaining) if o.status == "open" else "0",
            "leavesValue": "0", "cumExecQty": amount(o.filled),
            "cumExecValue": amount(o.cost), "cumExecFee": amount(o.cost * Decimal("0.001")),
            "timeInForce": "IOC" if o.type == "market" else "GTC",
            "orderType": "Limit" if o.price is not None else "Market",
            "stopOrderType": "tpslOrder" if stop else "", "orderIv": "",
            "marketUnit": "baseCoin" if o.type == "market" else "",
            "triggerPrice": amount(o.stop_price) if stop else "0",
            "takeProfit": "0", "stopLoss": "0", "tpTriggerBy": "", "slTriggerBy": "",
            "triggerDirection": (2 if o.side == "sell" else 1) if stop else 0,
            "triggerBy": "LastPrice" if stop else "", "lastPriceOnCreated": "",
            "reduceOnly": False, "closeOnTrigger": False, "smpType": "None",
            "smpGroup": 0, "smpOrderId": "", "tpslMode": "", "tpLimitPrice": "",
            "slLimitPrice": "", "placeType": "", "createdTime": str(o.created),
            "updatedTime": str(o.updated),
        }  # fmt: skip

    # --- v5 private WebSocket: auth, the order and execution topics -----------------

    def ws_paths(self) -> list[str]:
        return ["/v5/private"]

    def on_stream_message(self, stream: Stream, message: dict) -> list[dict]:
        op, args = message.get("op"), list(message.get("args") or [])
        answer = {"success": True, "ret_msg": "", "conn_id": "c1", "op": op}
        if "req_id" in message:
            answer["req_id"] = message["req_id"]
        if op == "ping":
            return [{**answer, "op": "pong", "args": [str(now_ms())]}]
        if op == "auth":
            refusal = self.auth(stream, args)
            if refusal is None:
                return [answer]
            return [{**answer, "success": False, "ret_msg": refusal,
                     "request": {"op": "auth", "args": args}}]  # fmt: skip
        if op != "subscribe":
            return [{**answer, "success": False, "ret_msg": f"error:invalid op {op}"}]
        if stream.api_key is None:
            return [{**answer, "success": False, "ret_msg": "Request not authorized"}]
        with self.lock:
            stream.topics |= {str(topic) for topic in args}
        return [answer]

    def auth(self, stream: Stream, args: list) -> str | None:
        """Verify ``[key, expires, signature]``: None when accepted, else why not."""
        if len(args) != 3:
            return "error:USVC1111"
        key, expires, signature = (str(a) for a in args)
        with self.lock:
            account = self.accounts.get(key)
        if account is None:
            return "error:USVC1111"
        prehash = f"GET/realtime{expires}".encode()
        expected = hmac.new(account.secret.encode(), prehash, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return "error:signature verification failed"
        if not expires.isdigit() or int(expires) <= now_ms():
            return "error:expires is in the past"
        with self.lock:
            stream.api_key = account.api_key
            self.stream_auths.append(account.api_key)
        return None

    def stream_events(self, stream: Stream, order: Order, trade: Trade | None) -> list[dict]:
        events = []
        if trade is not None and "execution" in stream.topics:
            execution = {"category": "spot", **self.execution_json(trade)}
            events.append({"id": f"exec-{trade.id}", "topic": "execution",
                           "creationTime": now_ms(), "data": [execution]})  # fmt: skip
        if "order" in stream.topics:
            state = {"category": "spot", **self.order_json(order)}
            events.append({"id": f"order-{order.id}-{order.updated}", "topic": "order",
                           "creationTime": now_ms(), "data": [state]})  # fmt: skip
        return events

    # --- public market data ----------------------------------------------------------

    def _tape(self, request: Request) -> tuple[str, Tape]:
        symbol = request.query_params.get("symbol", "")
        unknown = lambda: _error(10001, "Not supported symbols", 200)  # noqa: E731
        return symbol, self.tape(symbol, unknown)

    def tickers(self, request: Request, body: bytes) -> dict:
        symbol, tape = self._tape(request)
        t = tape.ticker()
        return _ok({"category": "spot", "list": [{
            "symbol": symbol, "bid1Price": amount(t["bid"]), "bid1Size": amount(t["bid_size"]),
            "ask1Price": amount(t["ask"]), "ask1Size": amount(t["ask_size"]),
            "lastPrice": amount(t["last"]), "prevPrice24h": amount(t["open"]),
            "price24hPcnt": "0", "highPrice24h": amount(t["high"]),
            "lowPrice24h": amount(t["low"]), "turnover24h": amount(t["quote_volume"]),
            "volume24h": amount(t["volume"]), "usdIndexPrice": amount(t["last"]),
        }]})  # fmt: skip

    def orderbook(self, request: Request, body: bytes) -> dict:
        symbol, tape = self._tape(request)
        limit = min(query_int(request, "limit", 1) or 1, 200)
        return _ok({
            "s": symbol, "b": [[amount(p), amount(q)] for p, q in tape.bids[:limit]],
            "a": [[amount(p), amount(q)] for p, q in tape.asks[:limit]],
            "ts": now_ms(), "u": tape.update_id, "seq": tape.update_id, "cts": now_ms(),
        })  # fmt: skip

    def recent_trade(self, request: Request, body: bytes) -> dict:
        symbol, tape = self._tape(request)
        limit = min(query_int(request, "limit", 60) or 60, 60)
        return _ok({"category": "spot", "list": [
            {"execId": str(t.trade_id), "symbol": symbol, "price": amount(t.price),
             "size": amount(t.amount), "side": t.side.capitalize(), "time": str(t.time_ms),
             "isBlockTrade": False, "isRPITrade": False}
            for t in reversed(tape.trades[-limit:])
        ]})  # fmt: skip

    def kline(self, request: Request, body: bytes) -> dict:
        symbol, tape = self._tape(request)
        step = _INTERVALS_MS.get(request.query_params.get("interval", ""))
        if step is None:
            return _error(10001, "Invalid period!", 200)
        limit = min(query_int(request, "limit", 200) or 200, 1000)
        found = tape.candles(step, query_int(request, "start"), query_int(request, "end"),
                             limit, newest=True)  # fmt: skip
        return _ok({"symbol": symbol, "category": "spot", "list": [
            [str(c.open_ms), amount(c.open), amount(c.high), amount(c.low), amount(c.close),
             amount(c.volume), amount(c.quote_volume)]
            for c in reversed(found)
        ]})  # fmt: skip


_MINUTE = 60_000
_INTERVALS_MS = {"1": _MINUTE, "3": 3 * _MINUTE, "5": 5 * _MINUTE, "15": 15 * _MINUTE,
                 "30": 30 * _MINUTE, "60": 60 * _MINUTE, "120": 120 * _MINUTE,
                 "240": 240 * _MINUTE, "360": 360 * _MINUTE, "720": 720 * _MINUTE,
                 "D": 1440 * _MINUTE}  # fmt: skip


def _fee(trade: Trade) -> Decimal:
    """A spot buy's fee is taken in the base at Bybit (ccxt reads it so): the quote fee
    at the trade's price."""
    if trade.order.side == "buy":
        return (trade.fee / trade.price).quantize(Decimal("1e-12"))
    return trade.fee


def _fee_currency(trade: Trade) -> str:
    base, quote = trade.order.symbol.split("/")
    return base if trade.order.side == "buy" else quote
