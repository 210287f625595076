"""Binance spot: ``/api/v3/exchangeInfo``, ``/api/v3/account`` and
``/sapi/v1/account/apiRestrictions``. Signed requests (SIGNED endpoints) carry the key
in ``X-MBX-APIKEY`` and ``signature`` = hex HMAC-SHA256(secret, the query string before
it); ``timestamp`` must be within ``recvWindow`` (5000 ms by default) of the server's
clock."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse

from tests.support.exchanges import Account, Refused, StandIn, amount, now_ms


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
