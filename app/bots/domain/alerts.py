"""TradingView alerts, parsed (pure): what a signal webhook receives, as an ``Alert``.

TradingView posts the alert's message as the body: ``application/json`` when the message
is valid JSON, ``text/plain`` otherwise. Both shapes are read, whatever the content type
says (a ``text/plain`` body that starts with ``{`` is read as JSON):

    {"id": "{{timenow}}-{{ticker}}", "action": "buy", "ticker": "{{ticker}}",
     "amount": "100", "time": "{{timenow}}"}

    action=buy
    ticker=BTCUSDT
    quantity=0.01

Keys are case-insensitive and have aliases (``KEYS``); other keys are ignored. Values:
``action`` buy, sell, close (or exit: sell everything); ``quantity`` in the base,
``amount`` in the quote currency, ``price`` (``{{close}}``): positive decimals in plain
notation (JSON numbers are read as decimals, never floats); ``time`` ISO 8601 with a
zone (``{{timenow}}``: ``2024-01-01T12:00:00Z``) or epoch seconds / milliseconds.

The alert id (idempotency) is the body's ``id``; without one it is a digest of what the
alert says (action, symbol, sizes, price, time), so a delivery repeated N times is one
alert. Two genuine alerts that say the same thing at the same ``time`` are one too:
give an ``id`` or a ``time`` to tell them apart.

A body that is not an alert is refused with ``InvalidWebhook`` naming the key at fault
(any bytes at all: bad UTF-8, NUL bytes, huge numbers, deep nesting, dates out of range).
``admit`` is the gate every bot applies to an alert: a repeated id or a stale alert
(older than the bot's maximum lag) gives nothing.

The webhook's secret rides in the body (TradingView cannot set headers): the key
``secret``, in JSON or as a ``secret=...`` line. ``read_body`` takes it out of the fields
before anything else reads them, so it is never part of an alert, of its id's digest, or
of what is stored; ``AlertBody``'s repr leaves it out. The bot keeps its SHA-256 only
(``hash_secret``); ``secret_matches`` compares digests in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from app.core.errors import InvalidWebhook
from app.trading.domain.orders import EPOCH

MAX_BODY_BYTES = 10_000
MAX_ID_LENGTH = 128
NUMBER = re.compile(r"[0-9]{1,30}(\.[0-9]{1,18})?")
EPOCH_DIGITS = re.compile(r"[0-9]{9,13}")
SECRET_KEY = "secret"


class AlertAction(StrEnum):
    BUY = "BUY"
    SELL = "SELL"
    CLOSE = "CLOSE"  # sell everything the bot holds


ACTIONS: Mapping[str, AlertAction] = {
    "buy": AlertAction.BUY,
    "sell": AlertAction.SELL,
    "close": AlertAction.CLOSE,
    "exit": AlertAction.CLOSE,
}
# field -> the keys that give it (lower case)
KEYS: Mapping[str, tuple[str, ...]] = {
    "id": ("id", "alert_id", "alertid"),
    "action": ("action", "side", "signal"),
    "symbol": ("ticker", "symbol"),
    "quantity": ("quantity", "qty", "contracts"),
    "amount": ("amount", "quote_amount"),
    "price": ("price", "close"),
    "time": ("time", "timestamp", "timenow"),
}


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str
    action: AlertAction
    symbol: str | None = None  # as TradingView writes it: BTCUSDT, BINANCE:BTCUSDT, BTC/USDT
    quantity: Decimal | None = None  # in the base currency
    amount: Decimal | None = None  # in the quote currency
    price: Decimal | None = None  # the price the alert saw
    time: datetime | None = None  # when TradingView fired it (UTC)


@dataclass(frozen=True, slots=True)
class SeenAlert:
    alert_id: str
    at: datetime  # when it was admitted


@dataclass(frozen=True, slots=True)
class AlertBody:
    """A webhook body read: its fields (keys in lower case, the secret taken out) and the
    secret (None when missing or not text). ``alert()`` reads the alert from the fields."""

    fields: Mapping[str, Any]
    secret: str | None = field(default=None, repr=False)

    def alert(self) -> Alert:
        """The alert the fields say; ``InvalidWebhook`` naming the key when they say none."""
        return _alert(self.fields)


def read_body(body: bytes, content_type: str) -> AlertBody:
    """The fields of ``body`` and its secret; ``InvalidWebhook`` when it is neither a JSON
    object nor KEY=VALUE lines."""
    media = content_type.split(";")[0].strip().lower()
    if media not in ("application/json", "text/plain"):
        raise InvalidWebhook("Send application/json or text/plain", field="contentType")
    if len(body) > MAX_BODY_BYTES:
        raise InvalidWebhook(f"An alert is at most {MAX_BODY_BYTES} bytes", field="body")
    try:
        text = body.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InvalidWebhook("The body is not UTF-8 text", field="body") from None
    fields = _json_fields(text) if media == "application/json" or text.startswith("{") else None
    if fields is None:
        fields = _line_fields(text)
    secret = fields.pop(SECRET_KEY, None)
    return AlertBody(fields, secret if isinstance(secret, str) else None)


def parse_alert(body: bytes, content_type: str) -> Alert:
    """The alert in ``body``; ``InvalidWebhook`` when it is none."""
    return read_body(body, content_type).alert()


def hash_secret(secret: str) -> str:
    """The SHA-256 of a webhook secret, in hex (what a bot stores). The secret has 256
    bits of entropy (``secrets.token_urlsafe(32)``): a plain hash is safe to keep."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def secret_matches(given: str | None, secret_hash: str) -> bool:
    """Whether ``given`` is the secret whose hash is ``secret_hash``, in constant time."""
    same = hmac.compare_digest(hash_secret(given or "").encode(), secret_hash.encode())
    return same and given is not None


def _refuse_constant(name: str) -> Any:
    raise InvalidWebhook(f"{name} is not a number", field="body")


def _json_fields(text: str) -> dict[str, Any]:
    try:
        data = json.loads(
            text, parse_float=Decimal, parse_int=Decimal, parse_constant=_refuse_constant
        )
    except json.JSONDecodeError:
        raise InvalidWebhook("The body is not valid JSON", field="body") from None
    except RecursionError:
        raise InvalidWebhook("The JSON body is nested too deeply", field="body") from None
    except ArithmeticError:  # a number Decimal cannot hold (10e999999999999999999)
        raise InvalidWebhook("A number in the JSON body is out of range", field="body") from None
    if not isinstance(data, dict):
        raise InvalidWebhook("The JSON body is not an object", field="body")
    return {str(key).strip().lower(): value for key, value in data.items()}


def _line_fields(text: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise InvalidWebhook("Each line is KEY=VALUE", field="body")
        if key in fields:
            raise InvalidWebhook(f"{key} is given twice", field=key)
        fields[key] = value.strip()
    return fields


def _pick(fields: Mapping[str, Any], name: str) -> Any:
    given = [key for key in KEYS[name] if fields.get(key) not in (None, "")]
    if len(given) > 1:
        raise InvalidWebhook(f"Give one of {', '.join(given)}", field=given[1])
    if not given:
        return None
    value = fields[given[0]]
    if isinstance(value, bool | dict | list):
        raise InvalidWebhook(f"{name} is a string or a number", field=name)
    return value


def _alert(fields: Mapping[str, Any]) -> Alert:
    raw_action = _pick(fields, "action")
    action = ACTIONS.get(str(raw_action).strip().lower()) if raw_action is not None else None
    if action is None:
        raise InvalidWebhook("action is buy, sell or close", field="action")
    symbol = _pick(fields, "symbol")
    alert = Alert(
        alert_id="",
        action=action,
        symbol=None if symbol is None else _text(symbol, "symbol"),
        quantity=_decimal(_pick(fields, "quantity"), "quantity"),
        amount=_decimal(_pick(fields, "amount"), "amount"),
        price=_decimal(_pick(fields, "price"), "price"),
        time=_time(_pick(fields, "time")),
    )
    given_id = _pick(fields, "id")
    alert_id = _text(given_id, "id") if given_id is not None else _digest(alert)
    return Alert(
        alert_id, alert.action, alert.symbol, alert.quantity, alert.amount, alert.price, alert.time
    )


def _text(value: Any, key: str) -> str:
    text = str(value).strip()
    if not text or len(text) > MAX_ID_LENGTH or not text.isprintable():
        raise InvalidWebhook(f"{key} is 1 to {MAX_ID_LENGTH} printable characters", field=key)
    return text


def _decimal(value: Any, key: str) -> Decimal | None:
    if value is None:
        return None
    text = str(value).strip()
    if not NUMBER.fullmatch(text) or Decimal(text) == 0:
        raise InvalidWebhook(f"{key} is a positive number in plain notation", field=key)
    return Decimal(text)


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    text = str(value).strip()
    if EPOCH_DIGITS.fullmatch(text):
        milliseconds = int(text) if len(text) == 13 else int(text) * 1000
        return EPOCH + timedelta(milliseconds=milliseconds)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidWebhook("time is ISO 8601 or epoch seconds", field="time") from None
    if moment.tzinfo is None:
        raise InvalidWebhook("time needs a zone (Z for UTC)", field="time")
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59-01:00
        raise InvalidWebhook("time is out of range", field="time") from None


def _digest(alert: Alert) -> str:
    said = "|".join(
        "" if value is None else str(value)
        for value in (
            alert.action.value,
            alert.symbol,
            alert.quantity,
            alert.amount,
            alert.price,
            None if alert.time is None else alert.time.isoformat(),
        )
    )
    return "sha256:" + hashlib.sha256(said.encode()).hexdigest()[:32]


def symbol_matches(alert_symbol: str, *, base: str, quote: str) -> bool:
    """Whether TradingView's ticker names the market: ``BINANCE:BTCUSDT``, ``BTCUSDT``,
    ``BTC/USDT``, ``btc-usdt`` all name BTC/USDT (a ``.P`` perpetual suffix is dropped)."""
    name = alert_symbol.rsplit(":", 1)[-1].upper().removesuffix(".P")
    return re.sub(r"[/\-_ ]", "", name) == f"{base}{quote}".upper()


def admit(
    seen: tuple[SeenAlert, ...],
    alert: Alert,
    *,
    at: datetime,
    max_lag: timedelta,
    remember: timedelta,
) -> tuple[tuple[SeenAlert, ...], str | None]:
    """The gate: (the ids remembered after it, why the alert is dropped or None).

    Ids are remembered for ``remember`` (at least ``max_lag``: an older repeat is stale
    anyway when the alert has a time). An alert whose ``time`` is more than ``max_lag``
    before ``at`` is stale, more than ``max_lag`` after it is from a skewed clock."""
    kept = tuple(s for s in seen if s.at > at - max(remember, max_lag))
    if any(s.alert_id == alert.alert_id for s in kept):
        return kept, f"alert {alert.alert_id} was already received"
    if alert.time is not None:
        lag = at - alert.time
        if lag > max_lag:
            return kept, f"alert is {_seconds(lag)} s old, over the {_seconds(max_lag)} s allowed"
        if -lag > max_lag:
            return kept, f"alert is dated {_seconds(-lag)} s ahead: check the sender's clock"
    return (*kept, SeenAlert(alert.alert_id, at)), None


def _seconds(span: timedelta) -> str:
    return f"{Decimal(span // timedelta(milliseconds=1)).scaleb(-3).normalize():f}"
