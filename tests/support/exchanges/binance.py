"""Binance spot: ``/api/v3/exchangeInfo``, ``/api/v3/account`` and
``/sapi/v1/account/apiRestrictions``. Signed requests (SIGNED endpoints) carry the key
in ``X-MBX-APIKEY`` and ``signature`` = hex HMAC-SHA256(secret, the query string before
it); ``timestamp`` must be within ``recvWindow`` (5000 ms by default) of the server's
clock."""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse

from tests.support.exchanges import (
    Account,
    Order,
    OrderRefused,
    Refused,
    StandIn,
    amount,
    cancel,
    find,
    now_ms,
    orders_of,
    place,
    trades_of,
)


def _error(code: int, msg: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"code": code, "msg": msg}, status)


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
        account, p = self.params(request, body)
        start = int(p.get("startTime", 0))
        orders = orders_of(self, account, self.unified(p["symbol"]))
        return [self.order_json(o) for o in orders if o.created >= start]

    def my_trades(self, request: Request, body: bytes) -> list:
        account, p = self.params(request, body)
        start = int(p.get("startTime", 0))
        return [
            {"symbol": p["symbol"], "id": int(t.id), "orderId": int(t.order.id),
             "orderListId": -1, "price": amount(t.price), "qty": amount(t.quantity),
             "quoteQty": amount(t.price * t.quantity), "commission": amount(t.fee),
             "commissionAsset": t.order.symbol.split("/")[1], "time": t.at,
             "isBuyer": t.order.side == "buy", "isMaker": t.order.type != "market",
             "isBestMatch": True}
            for t in trades_of(self, account, self.unified(p["symbol"])) if t.at >= start
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
