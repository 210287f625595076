"""Binance spot: ``/api/v3/exchangeInfo``, ``/api/v3/account`` and
``/sapi/v1/account/apiRestrictions``; public market data ``/api/v3/ticker/24hr``,
``/api/v3/depth``, ``/api/v3/aggTrades`` and ``/api/v3/klines``.
Signed requests (SIGNED endpoints) carry the key
in ``X-MBX-APIKEY`` and ``signature`` = hex HMAC-SHA256(secret, the query string before
it); ``timestamp`` must be within ``recvWindow`` (5000 ms by default) of the server's
clock."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse

from tests.support.exchanges import Account, Refused, StandIn, Tape, amount, now_ms, query_int


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
                    "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
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
        return [
            {"a": t.trade_id, "p": amount(t.price), "q": amount(t.amount), "f": t.trade_id,
             "l": t.trade_id, "T": t.time_ms, "m": t.side == "sell", "M": True}
            for t in tape.trades[-limit:]
        ]  # fmt: skip

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


_MINUTE = 60_000
_STEPS_MS = {"1m": _MINUTE, "3m": 3 * _MINUTE, "5m": 5 * _MINUTE, "15m": 15 * _MINUTE,
             "30m": 30 * _MINUTE, "1h": 60 * _MINUTE, "2h": 120 * _MINUTE,
             "4h": 240 * _MINUTE, "6h": 360 * _MINUTE, "8h": 480 * _MINUTE,
             "12h": 720 * _MINUTE, "1d": 1440 * _MINUTE, "1w": 10080 * _MINUTE}  # fmt: skip
