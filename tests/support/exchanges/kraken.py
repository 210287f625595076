"""Kraken spot: ``/0/public/AssetPairs``, ``/0/private/BalanceEx`` and
``/0/private/GetApiKeyInfo``; public market data ``/0/public/Ticker``, ``Depth``,
``Trades`` and ``OHLC`` (times in seconds, intervals in minutes, pairs by Kraken's name).
Private calls are form-encoded POSTs with a ``nonce`` that
must grow per key, the key in ``API-Key`` and ``API-Sign`` = base64(HMAC-SHA512(
base64-decoded secret, URI path + SHA256(nonce + POST data))). Errors come with HTTP 200
in ``{"error": [...]}``. Kraken's own asset ids: XXBT, XETH, USDT.

Its v2 WebSocket (``/v2``) serves the account's ``executions`` channel: the client takes
a token from ``/0/private/GetWebSocketsToken`` (a signed call: the token is the key's)
and subscribes with it; a token not issued here is refused. The open orders follow as a
snapshot, then each change as an execution report: ``new``, ``trade`` (the fill, with
its order's ``order_status`` and ``cum_qty``), ``filled``, ``canceled``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import parse_qsl

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

ASSET_IDS = {"BTC": "XXBT", "ETH": "XETH", "USDT": "USDT", "USD": "ZUSD"}


def _error(message: str) -> JSONResponse:
    return JSONResponse({"error": [message]})


def order_id(n: int) -> str:
    return f"O{n:05d}-KRAKN-STANDI"


def trade_id(n: int) -> str:
    return f"T{n:05d}-KRAKN-TRADES"


PAGE = 50  # ClosedOrders' and TradesHistory's results per request


def _window(p: dict[str, str]) -> tuple[float, float]:
    """``start`` and ``end`` (unix seconds, both exclusive of ``start``) in ms."""
    return float(p.get("start", -1)) * 1000, float(p.get("end", 2**40)) * 1000


def _page(items: list, p: dict[str, str]) -> list:
    """Kraken's page: newest first, ``PAGE`` from the offset ``ofs``."""
    offset = max(0, int(p.get("ofs", 0)))
    return list(reversed(items))[offset : offset + PAGE]


def _ok(result: object) -> dict:
    return {"error": [], "result": result}


class KrakenStandIn(StandIn):
    exchange = "kraken"

    def __init__(self) -> None:
        super().__init__()
        self.nonces: dict[str, int] = {}
        self.ws_tokens: dict[str, str] = {}  # GetWebSocketsToken's tokens: their keys
        self.sequences: dict[int, int] = {}  # per stream (id): its last sequence

    def too_many_requests(self) -> JSONResponse:
        return _error("EAPI:Rate limit exceeded")

    def routes(self):  # type: ignore[no-untyped-def]
        return [
            ("GET", "/0/public/AssetPairs", self.asset_pairs),
            ("POST", "/0/private/BalanceEx", self.balance_ex),
            ("POST", "/0/private/GetApiKeyInfo", self.api_key_info),
            ("POST", "/0/private/AddOrder", self.add_order),
            ("POST", "/0/private/CancelOrder", self.cancel_order),
            ("POST", "/0/private/QueryOrders", self.query_orders),
            ("POST", "/0/private/OpenOrders", self.open_orders),
            ("POST", "/0/private/ClosedOrders", self.closed_orders),
            ("POST", "/0/private/TradesHistory", self.trades_history),
            ("POST", "/0/private/GetWebSocketsToken", self.websockets_token),
            ("GET", "/0/public/Ticker", self.ticker),
            ("GET", "/0/public/Depth", self.depth),
            ("GET", "/0/public/Trades", self.public_trades),
            ("GET", "/0/public/OHLC", self.ohlc),
        ]

    def signed(self, request: Request, body: bytes) -> Account:
        account = self.account(request.headers.get("api-key"),
                               lambda _: _error("EAPI:Invalid key"))  # fmt: skip
        nonce = dict(parse_qsl(body.decode())).get("nonce", "")
        digest = hashlib.sha256((nonce + body.decode()).encode()).digest()
        try:
            secret = base64.b64decode(account.secret, validate=True)
        except ValueError:
            raise Refused(_error("EAPI:Invalid key")) from None
        expected = hmac.new(secret, request.url.path.encode() + digest, hashlib.sha512)
        if not hmac.compare_digest(
            base64.b64encode(expected.digest()).decode(), request.headers.get("api-sign", "")
        ):
            raise Refused(_error("EAPI:Invalid signature"))
        with self.lock:
            if not nonce.isdigit() or int(nonce) <= self.nonces.get(account.api_key, 0):
                raise Refused(_error("EAPI:Invalid nonce"))
            self.nonces[account.api_key] = int(nonce)
        return account

    def asset_pairs(self, request: Request, body: bytes) -> dict:
        pairs = {}
        for m in self.markets:
            base, quote = ASSET_IDS[m.base], ASSET_IDS[m.quote]
            name = base + quote if len(base) == 4 else m.base + m.quote
            altname = m.base.replace("BTC", "XBT") + m.quote
            pairs[name] = {
                "altname": altname, "wsname": f"{m.base.replace('BTC', 'XBT')}/{m.quote}",
                "aclass_base": "currency", "base": base, "aclass_quote": "currency",
                "quote": quote, "lot": "unit", "cost_decimals": 5,
                "pair_decimals": len(m.tick.partition(".")[2]),
                "lot_decimals": len(m.lot.partition(".")[2]), "lot_multiplier": 1,
                "leverage_buy": [], "leverage_sell": [],
                "fees": [[0, 0.4], [10000, 0.35]], "fees_maker": [[0, 0.25], [10000, 0.2]],
                "fee_volume_currency": "ZUSD", "margin_call": 80, "margin_stop": 40,
                "ordermin": m.min_qty, "costmin": m.min_notional, "tick_size": m.tick,
                "status": "online",
            }  # fmt: skip
        return _ok(pairs)

    def balance_ex(self, request: Request, body: bytes) -> dict:
        account = self.signed(request, body)
        if not account.can_read:
            raise Refused(_error("EGeneral:Permission denied"))
        return _ok({
            ASSET_IDS[currency]: {"balance": amount(free + used), "hold_trade": amount(used)}
            for currency, (free, used) in account.balances.items()
        })  # fmt: skip

    def api_key_info(self, request: Request, body: bytes) -> dict:
        account = self.signed(request, body)
        granted = ["query-open-trades", "query-closed-trades"]
        granted += ["query-funds"] if account.can_read else []
        granted += ["modify-trades", "cancel-trades"] if account.can_trade else []
        granted += ["withdraw-funds"] if account.can_withdraw else []
        return _ok({
            "apiKeyName": "platform", "apiKey": account.api_key, "nonce": "0",
            "nonceWindow": 0, "permissions": granted, "iban": "AA88 N84G WOAK NMOI",
            "validUntil": "0", "queryFrom": "0", "queryTo": "0",
            "createdTime": "1772542900", "modifiedTime": "1772543095",
            "ipAllowlist": list(account.ip_allowlist), "lastUsed": "0",
        })  # fmt: skip

    # --- orders (AddOrder, CancelOrder, QueryOrders, Open/ClosedOrders, TradesHistory) ---

    def params(self, request: Request, body: bytes) -> tuple[Account, dict[str, str]]:
        return self.signed(request, body), dict(parse_qsl(body.decode()))

    def pair_names(self) -> dict[str, str]:
        """Kraken's pair name (XXBTUSDT) of each unified symbol."""
        names = {}
        for m in self.markets:
            base = ASSET_IDS[m.base]
            names[f"{m.base}/{m.quote}"] = base + ASSET_IDS[m.quote] if len(base) == 4 \
                else m.base + m.quote  # fmt: skip
        return names

    def unified(self, pair: str) -> str:
        for symbol, name in self.pair_names().items():
            if pair in (name, symbol.replace("/", "").replace("BTC", "XBT")):
                return symbol
        raise Refused(_error("EQuery:Unknown asset pair"))

    def add_order(self, request: Request, body: bytes) -> dict:
        account, p = self.params(request, body)
        if not account.can_trade:
            raise Refused(_error("EGeneral:Permission denied"))
        kind = p["ordertype"]
        stop = Decimal(p["price"]) if kind.startswith("stop-loss") else None
        limit = p.get("price2") if kind.startswith("stop-loss") else p.get("price")
        try:
            order = place(
                self, account, client_order_id=p.get("cl_ord_id", ""),
                symbol=self.unified(p["pair"]), side=p["type"], type=kind.replace("-", "_"),
                quantity=Decimal(p["volume"]), price=Decimal(limit) if limit else None,
                stop_price=stop, order_id=order_id,
            )  # fmt: skip
        except OrderRefused as refused:
            message = {"insufficient": "EOrder:Insufficient funds"}
            raise Refused(_error(message.get(refused.reason, "EGeneral:Invalid arguments"))) \
                from None  # fmt: skip
        return _ok({"descr": {"order": self.description(order)}, "txid": [order.id]})

    def description(self, o: Order) -> str:
        """Kraken's text of an order: "buy 0.01000000 XBTUSDT @ limit 40000.0", "@ market",
        "@ stop loss 45000.0 -> limit 44000.0"."""
        head = f"{o.side} {o.quantity:.8f} {self.pair_names()[o.symbol]} @"
        if o.stop_price is not None:
            tail = f" -> limit {amount(o.price)}" if o.price is not None else ""
            return f"{head} stop loss {amount(o.stop_price)}{tail}"
        return f"{head} limit {amount(o.price)}" if o.price is not None else f"{head} market"

    def cancel_order(self, request: Request, body: bytes) -> dict:
        account, p = self.params(request, body)
        order = find(self, account, order_id=p.get("txid"), client_order_id=p.get("cl_ord_id"))
        if order is None or not cancel(self, order):
            raise Refused(_error("EOrder:Unknown order"))
        return _ok({"count": 1})

    def query_orders(self, request: Request, body: bytes) -> dict:
        account, p = self.params(request, body)
        found = [find(self, account, order_id=txid) for txid in p.get("txid", "").split(",")]
        return _ok({o.id: self.order_json(o) for o in found if o is not None})

    def _listed(self, account: Account, p: dict[str, str], *, open: bool) -> list[Order]:
        start, end = _window(p)
        client = p.get("cl_ord_id")
        return [o for o in orders_of(self, account, None, open=open)
                if start < o.updated <= end and client in (None, o.client_order_id)]  # fmt: skip

    def open_orders(self, request: Request, body: bytes) -> dict:
        account, p = self.params(request, body)
        return _ok({"open": {o.id: self.order_json(o)
                             for o in self._listed(account, p, open=True)}})  # fmt: skip

    def closed_orders(self, request: Request, body: bytes) -> dict:
        """Every pair's, newest first, 50 from ``ofs``; ``count`` is how many match."""
        account, p = self.params(request, body)
        closed = self._listed(account, p, open=False)
        page = _page(closed, p)
        return _ok({"closed": {o.id: self.order_json(o) for o in page}, "count": len(closed)})

    def trades_history(self, request: Request, body: bytes) -> dict:
        """Every pair's, newest first, 50 from ``ofs``; ``count`` is how many match."""
        account, p = self.params(request, body)
        start, end = _window(p)
        names = self.pair_names()
        found = [t for t in trades_of(self, account, None) if start < t.at <= end]
        trades = {
            t.id: {"ordertxid": t.order.id, "postxid": "TKH2SE-M7IF5-CFI7LT",
                   "pair": names[t.order.symbol], "time": t.at / 1000, "type": t.order.side,
                   "ordertype": t.order.type.replace("_", "-"), "price": amount(t.price),
                   "cost": amount(t.price * t.quantity), "fee": amount(t.fee),
                   "vol": amount(t.quantity), "margin": "0.00000", "misc": ""}
            for t in _page(found, p)
        }  # fmt: skip
        return _ok({"trades": trades, "count": len(found)})

    def order_json(self, o: Order) -> dict:
        kind = o.type.replace("_", "-")
        trigger = o.stop_price if o.stop_price is not None else o.price
        shown = trigger if trigger is not None else Decimal(0)
        return {
            "refid": None, "userref": None, "cl_ord_id": o.client_order_id,
            "status": o.status, "opentm": o.created / 1000, "starttm": 0, "expiretm": 0,
            **({"closetm": o.updated / 1000} if o.status != "open" else {}),
            "descr": {"pair": self.pair_names()[o.symbol], "type": o.side, "ordertype": kind,
                      "price": amount(shown),
                      "price2": amount(o.price if o.stop_price is not None and o.price
                                       else Decimal(0)),
                      "leverage": "none", "close": "",
                      "order": self.description(o)},
            "vol": amount(o.quantity), "vol_exec": amount(o.filled), "cost": amount(o.cost),
            "fee": amount(o.cost * Decimal("0.001")), "price": amount(o.average),
            "stopprice": "0", "limitprice": "0", "misc": "", "oflags": "fciq",
        }  # fmt: skip

    # --- v2 WebSocket: the executions channel ----------------------------------------

    def websockets_token(self, request: Request, body: bytes) -> dict:
        account = self.signed(request, body)
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.ws_tokens[token] = account.api_key
        return _ok({"token": token, "expires": 900})

    def ws_paths(self) -> list[str]:
        return ["/v2"]

    def on_stream_message(self, stream: Stream, message: dict) -> list[dict]:
        method, params = message.get("method"), message.get("params") or {}
        stamps = {"time_in": _iso(now_ms()), "time_out": _iso(now_ms())}
        answer = {"method": method, "req_id": message.get("req_id"), **stamps}
        if method == "ping":
            return [{**answer, "method": "pong"}]
        if method != "subscribe" or params.get("channel") != "executions":
            return [{**answer, "success": False, "error": "EGeneral:Invalid arguments"}]
        with self.lock:
            api_key = self.ws_tokens.get(str(params.get("token")))
            if api_key is not None:
                stream.api_key = api_key
                stream.topics.add("executions")
                self.stream_auths.append(api_key)
        if api_key is None:
            return [{**answer, "success": False, "error": "EAccount:Invalid permissions"}]
        result = {"channel": "executions", "maxratecount": 180, "snapshot": True}
        replies = [{**answer, "success": True, "result": result}]
        if params.get("snap_orders", True):
            opened = orders_of(self, self.accounts[api_key], None, open=True)
            replies.append({"channel": "executions", "type": "snapshot",
                            "data": [self.execution(o, None, "new") for o in opened],
                            "sequence": self.sequence(stream)})  # fmt: skip
        return replies

    def sequence(self, stream: Stream) -> int:
        number = self.sequences[id(stream)] = self.sequences.get(id(stream), 0) + 1
        return number

    def stream_events(self, stream: Stream, order: Order, trade: Trade | None) -> list[dict]:
        if "executions" not in stream.topics:
            return []
        kinds = ["trade"] if trade is not None else []
        if order.status == "closed":
            kinds.append("filled")
        elif order.status == "canceled":
            kinds.append("canceled")
        elif trade is None:
            kinds.append("new")
        return [{"channel": "executions", "type": "update",
                 "data": [self.execution(order, trade if kind == "trade" else None, kind)],
                 "sequence": self.sequence(stream)} for kind in kinds]  # fmt: skip

    def execution(self, o: Order, trade: Trade | None, kind: str) -> dict:
        """An execution report of ``o`` (``kind``: its exec_type)."""
        status = {"open": "partially_filled" if o.filled else "new", "closed": "filled",
                  "canceled": "canceled"}[o.status]  # fmt: skip
        report = {
            "order_id": o.id, "cl_ord_id": o.client_order_id, "order_userref": 0,
            "symbol": o.symbol, "side": o.side, "order_type": o.type.replace("_", "-"),
            "order_qty": float(o.quantity), "time_in_force": "GTC",
            "limit_price": float(o.price) if o.price is not None else 0.0,
            "stop_price": float(o.stop_price) if o.stop_price is not None else 0.0,
            "exec_type": kind, "order_status": status, "cum_qty": float(o.filled),
            "cum_cost": float(o.cost), "avg_price": float(o.average),
            "fee_usd_equiv": 0.0, "fee_ccy_pref": "fciq",
            "timestamp": _iso(trade.at if trade else o.updated),
        }  # fmt: skip
        if kind == "canceled":
            report |= {"reason": "User requested", "cancel_reason": "User requested"}
        if trade is not None:
            report |= {
                "exec_id": trade.id, "trade_id": int(trade.id), "last_qty": float(trade.quantity),
                "last_price": float(trade.price), "cost": float(trade.price * trade.quantity),
                "liquidity_ind": "t" if o.type == "market" else "m",
                "fees": [{"asset": o.symbol.split("/")[1], "qty": float(trade.fee)}],
            }  # fmt: skip
        return report

    # --- public market data ----------------------------------------------------------

    def symbol_ids(self, market: MarketDef) -> tuple[str, ...]:
        base, quote = ASSET_IDS[market.base], ASSET_IDS[market.quote]
        name = base + quote if len(base) == 4 else market.base + market.quote
        return (name, market.base.replace("BTC", "XBT") + market.quote)

    def _tape(self, request: Request) -> tuple[str, Tape]:
        pair = request.query_params.get("pair", "")
        return pair, self.tape(pair, lambda: _error("EQuery:Unknown asset pair"))

    def ticker(self, request: Request, body: bytes) -> dict:
        pair, tape = self._tape(request)
        t = tape.ticker()
        return _ok({pair: {
            "a": [amount(t["ask"]), "1", amount(t["ask_size"])],
            "b": [amount(t["bid"]), "1", amount(t["bid_size"])],
            "c": [amount(t["last"]), amount(t["last_size"])],
            "v": [amount(t["volume"]), amount(t["volume"])],
            "p": [amount(t["open"]), amount(t["open"])], "t": [529, 529],
            "l": [amount(t["low"]), amount(t["low"])], "h": [amount(t["high"]), amount(t["high"])],
            "o": amount(t["open"]),
        }})  # fmt: skip

    def depth(self, request: Request, body: bytes) -> dict:
        pair, tape = self._tape(request)
        count = min(query_int(request, "count", 100) or 100, 500)
        seconds = now_ms() // 1000
        return _ok({pair: {
            "asks": [[amount(p), amount(q), seconds] for p, q in tape.asks[:count]],
            "bids": [[amount(p), amount(q), seconds] for p, q in tape.bids[:count]],
        }})  # fmt: skip

    def public_trades(self, request: Request, body: bytes) -> dict:
        pair, tape = self._tape(request)
        count = min(query_int(request, "count", 1000) or 1000, 1000)
        trades = [
            [amount(t.price), amount(t.amount), t.time_ms / 1000, t.side[0], "l", "",
             t.trade_id]
            for t in tape.trades[-count:]
        ]  # fmt: skip
        return _ok({pair: trades, "last": str(tape.trades[-1].time_ms * 1_000_000)})

    def ohlc(self, request: Request, body: bytes) -> dict:
        pair, tape = self._tape(request)
        minutes = query_int(request, "interval", 1) or 1
        if minutes not in (1, 5, 15, 30, 60, 240, 1440, 10080, 21600):
            return _error("EGeneral:Invalid arguments")
        since = query_int(request, "since")
        step = minutes * 60_000
        # Kraken answers the candles after ``since`` (seconds), at most 720
        start = None if since is None else since * 1000 + 1
        found = tape.candles(step, start, None, 720)
        rows = [
            [c.open_ms // 1000, amount(c.open), amount(c.high), amount(c.low), amount(c.close),
             amount(c.close), amount(c.volume), 7]
            for c in found
        ]  # fmt: skip
        return _ok({pair: rows, "last": found[-1].open_ms // 1000 if found else 0})


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
