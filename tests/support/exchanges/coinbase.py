"""Coinbase Advanced Trade (v3): ``/api/v3/brokerage/market/products``,
``/api/v3/brokerage/transaction_summary``, ``/api/v3/brokerage/accounts`` and
``/api/v3/brokerage/key_permissions``. Private calls with a legacy (HMAC) key carry
``CB-ACCESS-KEY``, ``CB-ACCESS-TIMESTAMP`` (seconds, within 30 s) and ``CB-ACCESS-SIGN``
= hex HMAC-SHA256(secret, timestamp + method + path without the query + body);
refusals are HTTP 401 ``Unauthorized``. (Cloud keys sign JWTs instead: not served.)
Public market data: ``/api/v3/brokerage/market/product_book`` and
``/api/v3/brokerage/market/products/{id}/ticker`` (recent trades and the best bid and
ask) and ``.../candles`` (seconds, newest first, at most 350).
Orders: ``POST /api/v3/brokerage/orders`` (HTTP 200 either way: ``success`` and
``success_response``, or ``error_response`` with INSUFFICIENT_FUND...; a client order id
already used answers its order, as Coinbase does), ``POST .../orders/batch_cancel``
(``results[].success``), ``GET .../orders/historical/{order_id}``,
``.../orders/historical/batch`` (``order_status`` OPEN, FILLED, CANCELLED; newest first,
created since ``start_date``) and ``.../orders/historical/fills``.
Its advanced trade WebSocket (``/``) serves the ``user`` channel: a subscription signed
with a legacy key (``api_key``, ``timestamp`` in seconds, ``signature`` = hex
HMAC-SHA256(secret, timestamp + channel + the product ids joined by commas)) is
verified and acknowledged (``subscriptions``), then the account's open orders come as a
snapshot and each change of its orders as an update (no trades on this channel). A CDP
key's JWT is not served here."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse

from tests.support.exchanges import (
    Account,
    MarketDef,
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
    orders_of,
    place,
    query_int,
    trades_of,
)


def _unauthorized(_reason: str = "") -> PlainTextResponse:
    return PlainTextResponse("Unauthorized\n", 401)


class CoinbaseStandIn(StandIn):
    exchange = "coinbase"

    def __init__(self) -> None:
        super().__init__()
        self.sequences: dict[int, int] = {}  # per stream (id): its last sequence_num

    def too_many_requests(self) -> JSONResponse:
        return JSONResponse({"error": "rate_limit_exceeded", "message": "Too many requests"},
                            429)  # fmt: skip

    def routes(self):  # type: ignore[no-untyped-def]
        return [
            ("GET", "/api/v3/brokerage/market/products", self.products),
            ("GET", "/api/v3/brokerage/transaction_summary", self.transaction_summary),
            ("GET", "/api/v3/brokerage/accounts", self.accounts_list),
            ("GET", "/api/v3/brokerage/key_permissions", self.key_permissions),
            ("GET", "/api/v3/brokerage/market/product_book", self.product_book),
            ("GET", "/api/v3/brokerage/market/products/{product_id}/ticker", self.ticker),
            ("GET", "/api/v3/brokerage/market/products/{product_id}/candles", self.candles),
            ("POST", "/api/v3/brokerage/orders", self.create_order),
            ("POST", "/api/v3/brokerage/orders/batch_cancel", self.batch_cancel),
            ("GET", "/api/v3/brokerage/orders/historical/batch", self.orders_batch),
            ("GET", "/api/v3/brokerage/orders/historical/fills", self.fills),
            ("GET", "/api/v3/brokerage/orders/historical/{order_id}", self.get_order),
        ]

    def signed(self, request: Request, body: bytes) -> Account:
        headers = request.headers
        account = self.account(headers.get("cb-access-key"), _unauthorized)
        timestamp = headers.get("cb-access-timestamp", "")
        prehash = f"{timestamp}{request.method}{request.url.path}".encode() + body
        expected = hmac.new(account.secret.encode(), prehash, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, headers.get("cb-access-sign", "")):
            raise Refused(_unauthorized())
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 30:
            raise Refused(_unauthorized())
        return account

    def products(self, request: Request, body: bytes) -> dict:
        if request.query_params.get("product_type", "SPOT") != "SPOT":
            return {"products": [], "num_products": 0}
        products = [
            {"product_id": f"{m.base}-{m.quote}", "price": "100", "base_increment": m.lot,
             "quote_increment": m.tick, "price_increment": m.tick,
             "quote_min_size": m.min_notional, "quote_max_size": "150000000",
             "base_min_size": m.min_qty, "base_max_size": "3400", "base_name": m.base,
             "quote_name": m.quote, "watched": False, "is_disabled": False, "new": False,
             "status": "online", "cancel_only": False, "limit_only": False,
             "post_only": False, "trading_disabled": False, "auction_mode": False,
             "product_type": "SPOT", "quote_currency_id": m.quote,
             "base_currency_id": m.base, "fcm_trading_session_details": None,
             "mid_market_price": "", "alias": "", "alias_to": [],
             "base_display_symbol": m.base, "quote_display_symbol": m.quote,
             "view_only": False, "display_name": f"{m.base}-{m.quote}",
             "product_venue": "CBE"}
            for m in self.markets
        ]  # fmt: skip
        return {"products": products, "num_products": len(products)}

    def transaction_summary(self, request: Request, body: bytes) -> dict:
        self.signed(request, body)
        return {"total_volume": 0, "total_fees": 0, "fee_tier": {
            "pricing_tier": "Advanced 1", "usd_from": "0", "usd_to": "1000",
            "taker_fee_rate": "0.008", "maker_fee_rate": "0.006", "aop_from": "",
            "aop_to": ""}, "margin_rate": None, "goods_and_services_tax": None,
            "advanced_trade_only_volume": 0, "advanced_trade_only_fees": 0,
            "coinbase_pro_volume": 0, "coinbase_pro_fees": 0}  # fmt: skip

    def accounts_list(self, request: Request, body: bytes) -> dict:
        account = self.signed(request, body)
        if not account.can_read:
            raise Refused(_unauthorized())
        listed = [
            {"uuid": f"acct-{currency.lower()}", "name": f"{currency} Wallet",
             "currency": currency, "available_balance": {"value": amount(free),
             "currency": currency}, "default": True, "active": True,
             "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
             "deleted_at": None, "type": "ACCOUNT_TYPE_CRYPTO", "ready": True,
             "hold": {"value": amount(used), "currency": currency},
             "retail_portfolio_id": "portfolio-1"}
            for currency, (free, used) in account.balances.items()
        ]  # fmt: skip
        return {"accounts": listed, "has_next": False, "cursor": "", "size": len(listed)}

    def key_permissions(self, request: Request, body: bytes) -> dict:
        account = self.signed(request, body)
        return {"can_view": account.can_read, "can_trade": account.can_trade,
                "can_transfer": account.can_withdraw, "portfolio_uuid": "portfolio-1",
                "portfolio_type": "DEFAULT"}  # fmt: skip

    # --- orders (``/api/v3/brokerage/orders...``) ---------------------------------------

    def unified(self, product: str) -> str:
        for m in self.markets:
            if f"{m.base}-{m.quote}" == product:
                return f"{m.base}/{m.quote}"
        raise Refused(_failure("INVALID_ARGUMENT", "ProductID is invalid"))

    def create_order(self, request: Request, body: bytes) -> object:
        account = self.signed(request, body)
        p = json.loads(body)
        if not account.can_trade:
            raise Refused(JSONResponse({"error": "PERMISSION_DENIED", "code": 7,
                                        "message": "Missing required scopes"}, 403))  # fmt: skip
        kind, config = _configuration(p.get("order_configuration") or {})
        if kind is None:  # a market buy by quote size, a GTD or IOC limit: not served
            raise Refused(_failure("UNSUPPORTED_ORDER_CONFIGURATION",
                                   "Unsupported order configuration"))  # fmt: skip
        client = p.get("client_order_id", "")
        known = find(self, account, client_order_id=client) if client else None
        if known is not None:  # Coinbase answers the order that has this id
            return _created(known)
        try:
            order = place(
                self, account, client_order_id=client, symbol=self.unified(p["product_id"]),
                side=p["side"].lower(), type=kind, quantity=Decimal(config["base_size"]),
                price=Decimal(config["limit_price"]) if "limit_price" in config else None,
                stop_price=Decimal(config["stop_price"]) if "stop_price" in config else None,
                order_id=lambda n: f"11111111-0000-4000-8000-{n:012d}",
            )  # fmt: skip
        except OrderRefused:
            raise Refused(
                _failure("INSUFFICIENT_FUND", "Insufficient balance in source account")
            ) from None
        return _created(order)

    def batch_cancel(self, request: Request, body: bytes) -> dict:
        account = self.signed(request, body)
        results = []
        for order_id in json.loads(body).get("order_ids", []):
            order = find(self, account, order_id=order_id)
            done = order is not None and cancel(self, order)
            reason = "UNKNOWN_CANCEL_FAILURE_REASON" if done else "UNKNOWN_CANCEL_ORDER"
            results.append({"success": done, "failure_reason": reason, "order_id": order_id})
        return {"results": results}

    def get_order(self, request: Request, body: bytes) -> object:
        account = self.signed(request, body)
        order = find(self, account, order_id=request.path_params["order_id"])
        if order is None:
            return JSONResponse({"error": "NOT_FOUND", "error_details": "order with this"
                                 " orderID was not found", "message": "order with this"
                                 " orderID was not found"}, 404)  # fmt: skip
        return {"order": self.order_json(order)}

    def orders_batch(self, request: Request, body: bytes) -> dict:
        """Newest first, ``limit`` (at most 1000) a page, then ``cursor`` while
        ``has_next``; ``order_status`` (repeatable) narrows them, ``start_date`` and
        ``end_date`` bound their creation."""
        account = self.signed(request, body)
        q = request.query_params
        product = q.get("product_id")
        statuses = set(q.getlist("order_status"))
        start, end = _ms(q.get("start_date")), _ms(q.get("end_date")) or 2**63
        mine = orders_of(self, account, self.unified(product) if product else None)
        found = [o for o in mine if start <= o.created <= end
                 and (not statuses or self.status(o) in statuses)]  # fmt: skip
        page, cursor = _page(found, q, *ORDERS_PAGE)
        return {"orders": [self.order_json(o) for o in page], "sequence": "0",
                "has_next": bool(cursor), "cursor": cursor}  # fmt: skip

    def fills(self, request: Request, body: bytes) -> dict:
        """Newest first, ``limit`` (at most 250) a page, then ``cursor``;
        ``start_sequence_timestamp`` and ``end_sequence_timestamp`` bound their time."""
        account = self.signed(request, body)
        q = request.query_params
        product = q.get("product_id")
        start = _ms(q.get("start_sequence_timestamp"))
        end = _ms(q.get("end_sequence_timestamp")) or 2**63
        trades = [t for t in trades_of(self, account, self.unified(product) if product else None)
                  if start <= t.at <= end]  # fmt: skip
        page, cursor = _page(trades, q, *FILLS_PAGE)
        return {"fills": [
            {"entry_id": f"entry-{t.id}", "trade_id": t.id, "order_id": t.order.id,
             "trade_time": _iso(t.at / 1000), "trade_type": "FILL", "price": amount(t.price),
             "size": amount(t.quantity), "commission": amount(t.fee),
             "product_id": t.order.symbol.replace("/", "-"),
             "sequence_timestamp": _iso(t.at / 1000),
             "liquidity_indicator": "TAKER" if t.order.type == "market" else "MAKER",
             "size_in_quote": False, "user_id": "user-1", "side": t.order.side.upper(),
             "retail_portfolio_id": "portfolio-1"}
            for t in page
        ], "cursor": cursor}  # fmt: skip

    @staticmethod
    def status(o: Order) -> str:
        return {"open": "OPEN", "closed": "FILLED", "canceled": "CANCELLED"}[o.status]

    def order_json(self, o: Order) -> dict:
        fees = (o.cost * Decimal("0.001")).quantize(Decimal("0.00000001"))
        return {
            "order_id": o.id, "product_id": o.symbol.replace("/", "-"), "user_id": "user-1",
            "order_configuration": _config_of(o), "side": o.side.upper(),
            "client_order_id": o.client_order_id, "status": self.status(o),
            "time_in_force": "IMMEDIATE_OR_CANCEL" if o.type == "market"
            else "GOOD_UNTIL_CANCELLED",
            "created_time": _iso(o.created / 1000),
            "completion_percentage": amount(o.filled / o.quantity * 100),
            "filled_size": amount(o.filled),
            "average_filled_price": amount(o.average) if o.filled else "0",
            "fee": "", "number_of_fills": "0", "filled_value": amount(o.cost),
            "pending_cancel": False, "size_in_quote": False, "total_fees": amount(fees),
            "size_inclusive_of_fees": False, "total_value_after_fees": amount(o.cost + fees),
            "trigger_status": "STOP_PENDING" if o.stop_price and o.status == "open"
            else "INVALID_ORDER_TYPE",
            "order_type": {"market": "MARKET", "limit": "LIMIT"}.get(o.type, "STOP_LIMIT"),
            "reject_reason": "", "settled": o.status != "open", "product_type": "SPOT",
            "reject_message": "", "cancel_message": "",
            "order_placement_source": "RETAIL_ADVANCED", "outstanding_hold_amount": "0",
            "is_liquidation": False, "last_fill_time": None, "edit_history": [],
            "leverage": "", "margin_type": "UNKNOWN_MARGIN_TYPE",
            "retail_portfolio_id": "portfolio-1",
        }  # fmt: skip

    # --- advanced trade WebSocket: the user channel -----------------------------------

    def ws_paths(self) -> list[str]:
        return ["/"]

    def on_stream_message(self, stream: Stream, message: dict) -> list[dict]:
        channel = str(message.get("channel"))
        if message.get("type") != "subscribe" or channel != "user":
            return [{"type": "error", "message": "Failure to subscribe"}]
        products = [str(p) for p in message.get("product_ids") or ()]
        with self.lock:
            account = self.accounts.get(str(message.get("api_key")))
        timestamp = str(message.get("timestamp", ""))
        prehash = f"{timestamp}{channel}{','.join(products)}".encode()
        expected = "" if account is None else hmac.new(
            account.secret.encode(), prehash, hashlib.sha256).hexdigest()  # fmt: skip
        if account is None or not hmac.compare_digest(expected, str(message.get("signature"))):
            return [{"type": "error", "message": "authentication failure"}]
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 30:
            return [{"type": "error", "message": "authentication failure"}]
        with self.lock:
            stream.api_key = account.api_key
            stream.topics.add("user")
            self.stream_auths.append(account.api_key)
        opened = [self.ws_order(o) for o in orders_of(self, account, None, open=True)]
        subscribed = [{"subscriptions": {"user": [account.api_key]}}]
        return [
            self.ws_message(stream, "subscriptions", subscribed),
            self.ws_message(stream, "user", [{"type": "snapshot", "orders": opened}]),
        ]

    def ws_message(self, stream: Stream, channel: str, events: list[dict]) -> dict:
        with self.lock:
            number = self.sequences[id(stream)] = self.sequences.get(id(stream), -1) + 1
        return {"channel": channel, "client_id": "", "timestamp": _iso(time.time()),
                "sequence_num": number, "events": events}  # fmt: skip

    def ws_order(self, o: Order) -> dict:
        state = self.order_json(o)
        return {
            "order_id": o.id, "client_order_id": o.client_order_id,
            "cumulative_quantity": amount(o.filled),
            "leaves_quantity": amount(o.remaining) if o.status == "open" else "0",
            "avg_price": state["average_filled_price"], "total_fees": state["total_fees"],
            "status": state["status"], "product_id": state["product_id"],
            "creation_time": state["created_time"], "order_side": state["side"],
            "order_type": state["order_type"].capitalize(), "filled_value": amount(o.cost),
            "limit_price": amount(o.price) if o.price is not None else "",
            "stop_price": amount(o.stop_price) if o.stop_price is not None else "",
            "number_of_fills": str(sum(1 for t in self.trades if t.order is o)),
            "cancel_reason": "User requested cancel" if o.status == "canceled" else "",
            "reject_Reason": "", "outstanding_hold_amount": "0",
        }  # fmt: skip

    def stream_events(self, stream: Stream, order: Order, trade: Trade | None) -> list[dict]:
        if "user" not in stream.topics:
            return []
        return [self.ws_message(stream, "user", [{"type": "update",
                                                  "orders": [self.ws_order(order)]}])]  # fmt: skip

    # --- public market data ----------------------------------------------------------

    def symbol_ids(self, market: MarketDef) -> tuple[str, ...]:
        return (f"{market.base}-{market.quote}",)

    def _tape(self, product: str) -> Tape:
        unknown = lambda: JSONResponse(  # noqa: E731
            {"error": "NOT_FOUND", "error_details": "ProductID is invalid",
             "message": "ProductID is invalid"}, 404)  # fmt: skip
        return self.tape(product, unknown)

    def product_book(self, request: Request, body: bytes) -> dict:
        product = request.query_params.get("product_id", "")
        tape = self._tape(product)
        limit = min(query_int(request, "limit", 500) or 500, 500)
        return {"pricebook": {
            "product_id": product,
            "bids": [{"price": amount(p), "size": amount(q)} for p, q in tape.bids[:limit]],
            "asks": [{"price": amount(p), "size": amount(q)} for p, q in tape.asks[:limit]],
            "time": _iso(time.time()),
        }, "last": "", "mid_market": "", "spread_bps": "", "spread_absolute": ""}  # fmt: skip

    def ticker(self, request: Request, body: bytes) -> dict:
        product = request.path_params["product_id"]
        tape = self._tape(product)
        limit = min(query_int(request, "limit", 100) or 100, 1000)
        t = tape.ticker()
        trades = [
            {"trade_id": str(x.trade_id), "product_id": product, "price": amount(x.price),
             "size": amount(x.amount), "time": _iso(x.time_ms / 1000),
             "side": x.side.upper(), "bid": "", "ask": "", "exchange": ""}
            for x in reversed(tape.trades[-limit:])
        ]  # fmt: skip
        return {"trades": trades, "best_bid": amount(t["bid"]), "best_ask": amount(t["ask"])}

    def candles(self, request: Request, body: bytes) -> dict:
        tape = self._tape(request.path_params["product_id"])
        step = _GRANULARITIES_MS.get(request.query_params.get("granularity", ""))
        start, end = query_int(request, "start"), query_int(request, "end")
        if step is None or start is None or end is None:
            return JSONResponse({"error": "INVALID_ARGUMENT", "message": "bad candles request"},
                                400)  # type: ignore[return-value]  # fmt: skip
        found = tape.candles(step, start * 1000, end * 1000, 350)
        return {"candles": [
            {"start": str(c.open_ms // 1000), "low": amount(c.low), "high": amount(c.high),
             "open": amount(c.open), "close": amount(c.close), "volume": amount(c.volume)}
            for c in reversed(found)
        ]}  # fmt: skip


ORDERS_PAGE = (100, 1000)  # orders/historical/batch's ``limit``: by default, at most
FILLS_PAGE = (100, 250)  # orders/historical/fills'


def _page(items: list, q: Any, default: int, most: int) -> tuple[list, str]:
    """Coinbase's page of ``items`` (as created): newest first, ``limit`` of them from
    the ``cursor`` on, and the next page's cursor ("" after the last)."""
    limit = max(1, min(query_int_of(q, "limit") or default, most))
    newest = list(reversed(items))
    cursor = q.get("cursor") or ""
    if cursor.isdigit():  # how many of the oldest are left: what came since shifts nothing
        newest = newest[len(newest) - min(int(cursor), len(newest)) :]
    more = len(newest) > limit
    return newest[:limit], str(len(newest) - limit) if more else ""


def query_int_of(q: Any, name: str) -> int | None:
    value = q.get(name)
    return int(value) if value and value.isdigit() else None


def _failure(error: str, message: str) -> JSONResponse:
    """A placement refused: HTTP 200, ``success`` false, the reason in ``error_response``."""
    return JSONResponse({"success": False, "failure_reason": "UNKNOWN_FAILURE_REASON",
                         "order_id": "", "error_response": {
                             "error": error, "message": message, "error_details": "",
                             "preview_failure_reason": f"PREVIEW_{error}",
                             "new_order_failure_reason": error},
                         "order_configuration": None})  # fmt: skip


def _created(order: Order) -> dict:
    return {"success": True, "failure_reason": "UNKNOWN_FAILURE_REASON",
            "order_id": order.id, "success_response": {
                "order_id": order.id, "product_id": order.symbol.replace("/", "-"),
                "side": order.side.upper(), "client_order_id": order.client_order_id},
            "order_configuration": _config_of(order)}  # fmt: skip


def _configuration(config: dict) -> tuple[str | None, dict]:
    """The stand-in's order type of Coinbase's ``order_configuration``, and its fields."""
    for key, kind in (("limit_limit_gtc", "limit"), ("market_market_ioc", "market"),
                      ("stop_limit_stop_limit_gtc", "stop_loss_limit")):  # fmt: skip
        if key in config and "base_size" in config[key]:
            return kind, config[key]
    return None, {}


def _config_of(o: Order) -> dict:
    size = amount(o.quantity)
    if o.type == "market":
        return {"market_market_ioc": {"base_size": size}}
    if o.stop_price is None:
        return {"limit_limit_gtc": {"base_size": size, "limit_price": amount(o.price or 0),
                                    "post_only": False}}  # fmt: skip
    direction = "STOP_DIRECTION_STOP_DOWN" if o.side == "sell" else "STOP_DIRECTION_STOP_UP"
    return {"stop_limit_stop_limit_gtc": {"base_size": size, "limit_price": amount(o.price or 0),
            "stop_price": amount(o.stop_price), "stop_direction": direction}}  # fmt: skip


def _ms(iso: str | None) -> int:
    from datetime import datetime

    if not iso:
        return 0
    try:
        return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return 0


def _iso(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


_MINUTE = 60_000
_GRANULARITIES_MS = {"ONE_MINUTE": _MINUTE, "FIVE_MINUTE": 5 * _MINUTE,
                     "FIFTEEN_MINUTE": 15 * _MINUTE, "THIRTY_MINUTE": 30 * _MINUTE,
                     "ONE_HOUR": 60 * _MINUTE, "TWO_HOUR": 120 * _MINUTE,
                     "SIX_HOUR": 360 * _MINUTE, "ONE_DAY": 1440 * _MINUTE}  # fmt: skip
