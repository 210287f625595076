"""Coinbase Advanced Trade (v3): ``/api/v3/brokerage/market/products``,
``/api/v3/brokerage/transaction_summary``, ``/api/v3/brokerage/accounts`` and
``/api/v3/brokerage/key_permissions``. Private calls with a legacy (HMAC) key carry
``CB-ACCESS-KEY``, ``CB-ACCESS-TIMESTAMP`` (seconds, within 30 s) and ``CB-ACCESS-SIGN``
= hex HMAC-SHA256(secret, timestamp + method + path without the query + body);
refusals are HTTP 401 ``Unauthorized``. (Cloud keys sign JWTs instead: not served.)
Public market data: ``/api/v3/brokerage/market/product_book`` and
``/api/v3/brokerage/market/products/{id}/ticker`` (recent trades and the best bid and
ask) and ``.../candles`` (seconds, newest first, at most 350)."""

from __future__ import annotations

import hashlib
import hmac
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse

from tests.support.exchanges import (
    Account,
    MarketDef,
    Refused,
    StandIn,
    Tape,
    amount,
    query_int,
)


def _unauthorized(_reason: str = "") -> PlainTextResponse:
    return PlainTextResponse("Unauthorized\n", 401)


class CoinbaseStandIn(StandIn):
    exchange = "coinbase"

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


def _iso(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


_MINUTE = 60_000
_GRANULARITIES_MS = {"ONE_MINUTE": _MINUTE, "FIVE_MINUTE": 5 * _MINUTE,
                     "FIFTEEN_MINUTE": 15 * _MINUTE, "THIRTY_MINUTE": 30 * _MINUTE,
                     "ONE_HOUR": 60 * _MINUTE, "TWO_HOUR": 120 * _MINUTE,
                     "SIX_HOUR": 360 * _MINUTE, "ONE_DAY": 1440 * _MINUTE}  # fmt: skip
