"""OKX: ``/api/v5/public/instruments``, ``/api/v5/account/balance`` and
``/api/v5/account/config``. Private calls carry ``OK-ACCESS-KEY``,
``OK-ACCESS-PASSPHRASE``, ``OK-ACCESS-TIMESTAMP`` (ISO, within 30 s) and
``OK-ACCESS-SIGN`` = base64(HMAC-SHA256(secret, timestamp + method + request path with
its query + body)). Every answer is ``{"code", "msg", "data"}``; refusals come with
HTTP 401 and OKX's codes (50111 key, 50113 signature, 50105 passphrase)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse

from tests.support.exchanges import Account, Refused, StandIn, amount, now_ms


def _error(code: str, msg: str, status: int = 401) -> JSONResponse:
    return JSONResponse({"code": code, "msg": msg, "data": []}, status)


def _ok(data: list) -> dict:
    return {"code": "0", "msg": "", "data": data}


class OkxStandIn(StandIn):
    exchange = "okx"

    def too_many_requests(self) -> JSONResponse:
        return _error("50011", "Too Many Requests", 429)

    def routes(self):  # type: ignore[no-untyped-def]
        return [
            ("GET", "/api/v5/public/instruments", self.instruments),
            ("GET", "/api/v5/account/balance", self.balance),
            ("GET", "/api/v5/account/config", self.config),
        ]

    def signed(self, request: Request, body: bytes) -> Account:
        headers = request.headers
        account = self.account(headers.get("ok-access-key"),
                               lambda _: _error("50111", "Invalid OK-ACCESS-KEY"))  # fmt: skip
        timestamp = headers.get("ok-access-timestamp", "")
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        prehash = f"{timestamp}{request.method}{path}".encode() + body
        expected = hmac.new(account.secret.encode(), prehash, hashlib.sha256).digest()
        if not hmac.compare_digest(
            base64.b64encode(expected).decode(), headers.get("ok-access-sign", "")
        ):
            raise Refused(_error("50113", "Invalid Sign"))
        if headers.get("ok-access-passphrase") != account.passphrase:
            raise Refused(_error("50105", "Invalid OK-ACCESS-PASSPHRASE"))
        try:
            sent = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
        except ValueError:
            raise Refused(_error("50112", "Invalid OK-ACCESS-TIMESTAMP")) from None
        if abs((datetime.now(UTC) - sent).total_seconds()) > 30:
            raise Refused(_error("50102", "Timestamp request expired"))
        return account

    def instruments(self, request: Request, body: bytes) -> dict:
        if request.query_params.get("instType") != "SPOT":
            return _ok([])
        return _ok([
            {"instType": "SPOT", "instId": f"{m.base}-{m.quote}", "instFamily": "",
             "uly": "", "baseCcy": m.base, "quoteCcy": m.quote, "settleCcy": "",
             "ctVal": "", "ctMult": "", "ctValCcy": "", "optType": "", "stk": "",
             "listTime": "1606468572000", "expTime": "", "lever": "10",
             "tickSz": m.tick, "lotSz": m.lot, "minSz": m.min_qty, "ctType": "",
             "alias": "", "state": "live", "maxLmtSz": "9999999999", "maxMktSz": "1000000",
             "maxLmtAmt": "20000000", "maxMktAmt": "1000000", "ruleType": "normal"}
            for m in self.markets
        ])  # fmt: skip

    def balance(self, request: Request, body: bytes) -> dict:
        account = self.signed(request, body)
        details = [
            {"ccy": currency, "eq": amount(free + used), "cashBal": amount(free + used),
             "availBal": amount(free), "frozenBal": amount(used), "ordFrozen": amount(used),
             "uTime": str(now_ms())}
            for currency, (free, used) in account.balances.items()
        ]  # fmt: skip
        return _ok([{"totalEq": "0", "uTime": str(now_ms()), "details": details}])

    def config(self, request: Request, body: bytes) -> dict:
        account = self.signed(request, body)
        granted = ["read_only"] + (["trade"] if account.can_trade else [])
        granted += ["withdraw"] if account.can_withdraw else []
        return _ok([{
            "uid": "44705892343619584", "mainUid": "44705892343619584", "acctLv": "1",
            "posMode": "net_mode", "autoLoan": False, "greeksType": "PA", "level": "Lv1",
            "perm": ",".join(granted), "ip": ",".join(account.ip_allowlist),
            "label": "platform", "roleType": "0", "type": "0",
        }])  # fmt: skip
