"""OKX: ``/api/v5/public/instruments``, ``/api/v5/account/balance`` and
``/api/v5/account/config``; public market data ``/api/v5/market/ticker``, ``books``,
``trades`` and ``candles`` (newest first; ``after``/``before`` bound the times, ms).
Private calls carry ``OK-ACCESS-KEY``,
``OK-ACCESS-PASSPHRASE``, ``OK-ACCESS-TIMESTAMP`` (ISO, within 30 s) and
``OK-ACCESS-SIGN`` = base64(HMAC-SHA256(secret, timestamp + method + request path with
its query + body)). Every answer is ``{"code", "msg", "data"}``; refusals come with
HTTP 401 and OKX's codes (50111 key, 50113 signature, 50105 passphrase).

Its private WebSocket (``/ws/v5/private``): ``{"op": "login", "args": [{apiKey,
passphrase, timestamp (s, within 30 s), sign = base64(HMAC-SHA256(secret, timestamp +
"GET/users/self/verify"))}]}``, then ``subscribe`` to the ``orders`` channel; each change
of the account's orders is pushed on it as the order (a trade's ``tradeId``,
``fillSz``, ``fillPx``, ``fillFee`` with it). A text ``ping`` is answered ``pong``.

Its public WebSocket (``/ws/v5/public``, no login): ``subscribe`` to ``books`` (an
instrument's book: a snapshot at once, then each move as an update of the levels that
changed, size 0 for a level gone, with ``seqId``, ``prevSeqId`` and the ``checksum``,
the signed CRC32 of the top 25 levels a side interleaved ``bid:size:ask:size:...``) and
to ``trades`` (each public trade). ``book_faults`` spoils the next moves' updates:
"checksum" (a size garbled in transit, the checksum the true book's), "gap" (the update
lost: the next one's ``prevSeqId`` names it)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from tests.support.exchanges import (
    Account,
    MarketDef,
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


def _error(code: str, msg: str, status: int = 401) -> JSONResponse:
    return JSONResponse({"code": code, "msg": msg, "data": []}, status)


def _failed(s_code: str, s_msg: str, client_order_id: str = "") -> JSONResponse:
    """A trade call refused per order: HTTP 200, the reason in ``data[].sCode``."""
    data = [{"clOrdId": client_order_id, "ordId": "", "sCode": s_code, "sMsg": s_msg,
             "tag": ""}]  # fmt: skip
    return JSONResponse({"code": "1", "msg": "All operations failed", "data": data})


PAGE_MAX = 100  # orders-history's and fills-history's ``limit``: 100 by default and at most


def _page(items: list, q: Any, at: Callable[[Any], int]) -> list:
    """OKX's page of ``items`` (ids ascending, as created): newest first, older than the
    id ``after``, newer than ``before``, at ``begin`` to ``end`` (ms), ``limit`` of them."""
    limit = max(1, min(int(q.get("limit") or PAGE_MAX), PAGE_MAX))
    after, before = q.get("after"), q.get("before")
    begin, end = int(q.get("begin") or 0), int(q.get("end") or 2**63)
    found = [i for i in reversed(items) if begin <= at(i) <= end
             and (after is None or int(i.id) < int(after))
             and (before is None or int(i.id) > int(before))]  # fmt: skip
    return found[:limit]


def _ok(data: list) -> dict:
    return {"code": "0", "msg": "", "data": data}


_PUBLIC = ("books", "trades")  # the public channels served (no login needed)


def _checksum(bids: list, asks: list) -> int:
    parts: list[str] = []
    for n in range(25):
        for side in (bids, asks):
            if n < len(side):
                parts += [amount(side[n][0]), amount(side[n][1])]
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def _changed(before: list, after: list) -> list[list[str]]:
    """The rows of an update: the levels gone at size 0, the new or resized ones."""
    now, was = {p for p, _ in after}, dict(before)
    rows = [[amount(p), "0", "0", "0"] for p, _ in before if p not in now]
    return rows + [[amount(p), amount(q), "0", "1"] for p, q in after if was.get(p) != q]


class OkxStandIn(StandIn):
    exchange = "okx"

    def __init__(self) -> None:
        super().__init__()
        self.book_faults: list[str] = []  # "checksum" or "gap", for the next moves
        self.book_snapshots: list[str] = []  # the instruments each book snapshot was of
        self._fault: str | None = None

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.book_faults.clear()
            self.book_snapshots.clear()

    def too_many_requests(self) -> JSONResponse:
        return _error("50011", "Too Many Requests", 429)

    def routes(self):  # type: ignore[no-untyped-def]
        return [
            ("GET", "/api/v5/public/instruments", self.instruments),
            ("GET", "/api/v5/account/balance", self.balance),
            ("GET", "/api/v5/account/config", self.config),
            ("POST", "/api/v5/trade/order", self.place_order),
            ("POST", "/api/v5/trade/batch-orders", self.place_order),  # ccxt's default
            ("GET", "/api/v5/trade/order", self.get_order),
            ("POST", "/api/v5/trade/cancel-order", self.cancel_order),
            ("GET", "/api/v5/trade/orders-pending", self.orders_pending),
            ("GET", "/api/v5/trade/orders-history", self.orders_history),
            ("GET", "/api/v5/trade/fills-history", self.fills_history),
            ("GET", "/api/v5/market/ticker", self.ticker),
            ("GET", "/api/v5/market/books", self.books),
            ("GET", "/api/v5/market/trades", self.public_trades),
            ("GET", "/api/v5/market/candles", self.candles),
            ("GET", "/api/v5/market/history-candles", self.candles),
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

    # --- orders (``/api/v5/trade/...``) ---------------------------------------------------

    def unified(self, inst_id: str) -> str:
        for m in self.markets:
            if f"{m.base}-{m.quote}" == inst_id:
                return f"{m.base}/{m.quote}"
        raise Refused(JSONResponse({"code": "51001", "msg": "Instrument ID does not exist",
                                    "data": []}))  # fmt: skip

    def place_order(self, request: Request, body: bytes) -> dict:
        account = self.signed(request, body)
        p = json.loads(body)
        p = p[0] if isinstance(p, list) else p  # batch-orders: a list (ccxt sends one)
        client = p.get("clOrdId", "")
        if not account.can_trade:
            raise Refused(_error("50120", "Api key doesn't have permission"))
        if p["ordType"] not in ("limit", "market"):
            raise Refused(_failed("51000", "Parameter ordType error", client))
        try:
            order = place(
                self, account, client_order_id=client, symbol=self.unified(p["instId"]),
                side=p["side"], type=p["ordType"], quantity=Decimal(p["sz"]),
                price=Decimal(p["px"]) if p.get("px") else None,
            )  # fmt: skip
        except OrderRefused as refused:
            if refused.reason == "insufficient":
                raise Refused(_failed("51008", "Order failed. Insufficient balance.", client)) \
                    from None  # fmt: skip
            raise Refused(_failed("51016", "Duplicated clOrdId", client)) from None
        return _ok([{"clOrdId": order.client_order_id, "ordId": order.id, "tag": "",
                     "ts": str(order.created), "sCode": "0", "sMsg": "Order placed"}])  # fmt: skip

    def get_order(self, request: Request, body: bytes) -> object:
        account = self.signed(request, body)
        q = request.query_params
        order = find(self, account, order_id=q.get("ordId"), client_order_id=q.get("clOrdId"))
        if order is None:
            return JSONResponse({"code": "51603", "msg": "Order does not exist", "data": []})
        return _ok([self.order_json(order)])

    def cancel_order(self, request: Request, body: bytes) -> dict:
        account = self.signed(request, body)
        p = json.loads(body)
        order = find(self, account, order_id=p.get("ordId"), client_order_id=p.get("clOrdId"))
        if order is None or not cancel(self, order):
            raise Refused(_failed("51400", "Cancellation failed as the order has been filled,"
                                  " canceled or does not exist", p.get("clOrdId", "")))  # fmt: skip
        return _ok([{"clOrdId": order.client_order_id, "ordId": order.id, "ts": str(now_ms()),
                     "sCode": "0", "sMsg": ""}])  # fmt: skip

    def _symbol(self, request: Request) -> str | None:
        inst = request.query_params.get("instId")
        return self.unified(inst) if inst else None

    def orders_pending(self, request: Request, body: bytes) -> dict:
        account = self.signed(request, body)
        orders = orders_of(self, account, self._symbol(request), open=True)
        return _ok([self.order_json(o) for o in reversed(orders)])

    def orders_history(self, request: Request, body: bytes) -> dict:
        """Ended orders, newest first, ``limit`` (100 at most); ``state`` narrows them
        (ccxt asks for filled, or canceled), ``begin``/``end`` bound their creation,
        ``after`` (an ``ordId``) pages to older ones."""
        account = self.signed(request, body)
        q = request.query_params
        state = q.get("state")
        orders = [o for o in orders_of(self, account, self._symbol(request), open=False)
                  if state in (None, self.state(o))]  # fmt: skip
        return _ok([self.order_json(o) for o in _page(orders, q, lambda o: o.created)])

    def fills_history(self, request: Request, body: bytes) -> dict:
        """Newest first, ``limit`` (100 at most); ``after`` (a ``billId``) pages to older
        ones, ``begin``/``end`` bound their time."""
        account = self.signed(request, body)
        trades = trades_of(self, account, self._symbol(request))
        return _ok([
            {"instType": "SPOT", "instId": t.order.symbol.replace("/", "-"), "tradeId": t.id,
             "ordId": t.order.id, "clOrdId": t.order.client_order_id, "billId": t.id,
             "tag": "", "fillPx": amount(t.price), "fillSz": amount(t.quantity),
             "side": t.order.side, "posSide": "net",
             "execType": "T" if t.order.type == "market" else "M",
             "feeCcy": t.order.symbol.split("/")[1], "fee": amount(-t.fee), "ts": str(t.at)}
            for t in _page(trades, request.query_params, lambda t: t.at)
        ])  # fmt: skip

    @staticmethod
    def state(o: Order) -> str:
        if o.status == "open":
            return "partially_filled" if o.filled else "live"
        return "filled" if o.status == "closed" else "canceled"

    def order_json(self, o: Order) -> dict:
        fee = o.cost * Decimal("0.001")
        return {
            "instType": "SPOT", "instId": o.symbol.replace("/", "-"), "ccy": "",
            "ordId": o.id, "clOrdId": o.client_order_id, "tag": "",
            "px": amount(o.price) if o.price is not None else "", "sz": amount(o.quantity),
            "pnl": "0", "ordType": o.type, "side": o.side, "posSide": "net",
            "tdMode": "cash", "accFillSz": amount(o.filled), "fillPx": "", "tradeId": "",
            "fillSz": "0", "fillTime": "", "avgPx": amount(o.average) if o.filled else "",
            "state": self.state(o), "lever": "", "tpTriggerPx": "", "tpOrdPx": "",
            "slTriggerPx": "", "slOrdPx": "", "feeCcy": o.symbol.split("/")[1],
            "fee": amount(-fee), "rebateCcy": "", "rebate": "0", "tgtCcy": "",
            "category": "normal", "uTime": str(o.updated), "cTime": str(o.created),
        }  # fmt: skip

    # --- private WebSocket: login, the orders channel -------------------------------

    def ws_paths(self) -> list[str]:
        return ["/ws/v5/private", "/ws/v5/public"]

    def on_stream_message(self, stream: Stream, message: dict) -> list[dict]:
        op, args = message.get("op"), message.get("args") or [{}]
        if op == "login":
            return [self.login(stream, args[0])]
        if op != "subscribe":
            return [{"event": "error", "code": "60012", "msg": "Illegal request"}]
        public = all(arg.get("channel") in _PUBLIC for arg in args)
        if stream.api_key is None and not public:
            return [{"event": "error", "code": "60011", "msg": "Please log in"}]
        answers: list[dict] = []
        with self.lock:
            for arg in args:
                channel = str(arg.get("channel"))
                inst = str(arg.get("instId"))
                stream.topics.add(f"{channel}:{inst}" if channel in _PUBLIC else channel)
                answers.append({"event": "subscribe", "arg": arg, "connId": "c1"})
                if channel == "books":
                    answers.append(self.book_snapshot(inst))
        return answers

    def book_snapshot(self, inst: str) -> dict:
        tape = self.tapes[inst.replace("-", "/")]
        self.book_snapshots.append(inst)
        data = {"asks": [[amount(p), amount(q), "0", "1"] for p, q in tape.asks],
                "bids": [[amount(p), amount(q), "0", "1"] for p, q in tape.bids],
                "ts": str(now_ms()), "checksum": _checksum(tape.bids, tape.asks),
                "prevSeqId": -1, "seqId": tape.update_id}  # fmt: skip
        return {"arg": {"channel": "books", "instId": inst}, "action": "snapshot",
                "data": [data]}  # fmt: skip

    def book_moved(self, symbol: str, tape: Tape, bids: list, asks: list) -> None:
        with self.lock:
            self._fault = self.book_faults.pop(0) if self.book_faults else None
        super().book_moved(symbol, tape, bids, asks)

    def book_events(self, stream: Stream, symbol: str, tape: Tape, bids: list,
                    asks: list) -> list[dict]:  # fmt: skip
        inst = symbol.replace("/", "-")
        if f"books:{inst}" not in stream.topics or self._fault == "gap":
            return []
        data = {"asks": _changed(asks, tape.asks), "bids": _changed(bids, tape.bids),
                "ts": str(now_ms()), "checksum": _checksum(tape.bids, tape.asks),
                "prevSeqId": tape.update_id - 1, "seqId": tape.update_id}  # fmt: skip
        if self._fault == "checksum":  # the best bid's size garbled on the way
            best = next(r for r in data["bids"] if r[0] == amount(tape.bids[0][0]))
            best[1] = amount(Decimal(best[1]) + 1)
        return [{"arg": {"channel": "books", "instId": inst}, "action": "update",
                 "data": [data]}]  # fmt: skip

    def trade_events(self, stream: Stream, symbol: str, trade: TapeTrade) -> list[dict]:
        inst = symbol.replace("/", "-")
        if f"trades:{inst}" not in stream.topics:
            return []
        return [{"arg": {"channel": "trades", "instId": inst}, "data": [_trade(inst, trade)]}]

    def login(self, stream: Stream, arg: dict) -> dict:
        with self.lock:
            account = self.accounts.get(str(arg.get("apiKey", "")))
        refused = {"event": "error", "code": "60009", "msg": "Login failed."}
        if account is None or arg.get("passphrase") != account.passphrase:
            return refused
        timestamp = str(arg.get("timestamp", ""))
        prehash = f"{timestamp}GET/users/self/verify".encode()
        expected = hmac.new(account.secret.encode(), prehash, hashlib.sha256).digest()
        if not hmac.compare_digest(base64.b64encode(expected).decode(), str(arg.get("sign"))):
            return refused
        if not timestamp.isdigit() or abs(now_ms() / 1000 - int(timestamp)) > 30:
            return {"event": "error", "code": "60006", "msg": "Timestamp request expired"}
        with self.lock:
            stream.api_key = account.api_key
            self.stream_auths.append(account.api_key)
        return {"event": "login", "code": "0", "msg": "", "connId": "c1"}

    def stream_events(self, stream: Stream, order: Order, trade: Trade | None) -> list[dict]:
        if "orders" not in stream.topics:
            return []
        data = self.order_json(order)
        if trade is not None:
            data |= {"tradeId": trade.id, "fillSz": amount(trade.quantity),
                     "fillPx": amount(trade.price), "fillTime": str(trade.at),
                     "fillFee": amount(-trade.fee), "fillFeeCcy": order.symbol.split("/")[1],
                     "execType": "M"}  # fmt: skip
        return [{"arg": {"channel": "orders", "instType": "ANY", "uid": "1"}, "data": [data]}]

    # --- public market data ----------------------------------------------------------

    def symbol_ids(self, market: MarketDef) -> tuple[str, ...]:
        return (f"{market.base}-{market.quote}",)

    def _tape(self, request: Request) -> tuple[str, Tape]:
        inst = request.query_params.get("instId", "")
        unknown = lambda: _error("51001", "Instrument ID does not exist", 200)  # noqa: E731
        return inst, self.tape(inst, unknown)

    def ticker(self, request: Request, body: bytes) -> dict:
        inst, tape = self._tape(request)
        t = tape.ticker()
        return _ok([{
            "instType": "SPOT", "instId": inst, "last": amount(t["last"]),
            "lastSz": amount(t["last_size"]), "askPx": amount(t["ask"]),
            "askSz": amount(t["ask_size"]), "bidPx": amount(t["bid"]),
            "bidSz": amount(t["bid_size"]), "open24h": amount(t["open"]),
            "high24h": amount(t["high"]), "low24h": amount(t["low"]),
            "volCcy24h": amount(t["quote_volume"]), "vol24h": amount(t["volume"]),
            "ts": str(now_ms()), "sodUtc0": amount(t["open"]), "sodUtc8": amount(t["open"]),
        }])  # fmt: skip

    def books(self, request: Request, body: bytes) -> dict:
        _, tape = self._tape(request)
        size = min(query_int(request, "sz", 1) or 1, 400)
        return _ok([{
            "asks": [[amount(p), amount(q), "0", "1"] for p, q in tape.asks[:size]],
            "bids": [[amount(p), amount(q), "0", "1"] for p, q in tape.bids[:size]],
            "ts": str(now_ms()), "seqId": tape.update_id,
        }])  # fmt: skip

    def public_trades(self, request: Request, body: bytes) -> dict:
        inst, tape = self._tape(request)
        limit = min(query_int(request, "limit", 100) or 100, 500)
        return _ok([_trade(inst, t) for t in reversed(tape.trades[-limit:])])

    def candles(self, request: Request, body: bytes) -> dict:
        _, tape = self._tape(request)
        step = _BARS_MS.get(request.query_params.get("bar", "1m"))
        if step is None:
            return _error("51000", "Parameter bar error", 200)
        limit = min(query_int(request, "limit", 100) or 100, 300)
        before, after = query_int(request, "before"), query_int(request, "after")
        start = None if before is None else before + 1
        end = None if after is None else after - 1
        found = tape.candles(step, start, end, limit, newest=True)
        return _ok([
            [str(c.open_ms), amount(c.open), amount(c.high), amount(c.low), amount(c.close),
             amount(c.volume), amount(c.quote_volume), amount(c.quote_volume), "1"]
            for c in reversed(found)
        ])  # fmt: skip


def _trade(inst: str, t: TapeTrade) -> dict:
    return {
        "instId": inst,
        "tradeId": str(t.trade_id),
        "px": amount(t.price),
        "sz": amount(t.amount),
        "side": t.side,
        "ts": str(t.time_ms),
        "count": "1",
    }


_MINUTE = 60_000
_BARS_MS = {"1m": _MINUTE, "3m": 3 * _MINUTE, "5m": 5 * _MINUTE, "15m": 15 * _MINUTE,
            "30m": 30 * _MINUTE, "1H": 60 * _MINUTE, "2H": 120 * _MINUTE,
            "4H": 240 * _MINUTE, "6Hutc": 360 * _MINUTE, "12Hutc": 720 * _MINUTE,
            "1Dutc": 1440 * _MINUTE}  # fmt: skip
