"""TradingView alert bodies parsed: JSON and KEY=VALUE lines, under either content type;
aliases; decimals never floats; times; the alert id (given, or a digest); refusals naming
the key; the gate (repeats and stale alerts); symbols in TradingView's spellings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from app.bots.domain.alerts import (
    MAX_BODY_BYTES,
    Alert,
    AlertAction,
    SeenAlert,
    admit,
    parse_alert,
    symbol_matches,
)
from app.core.errors import InvalidWebhook

NOON = datetime(2024, 1, 1, 12, tzinfo=UTC)
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


def test_a_json_alert():
    body = (
        b'{"id": "tv-42", "action": "buy", "ticker": "BINANCE:BTCUSDT",'
        b' "amount": "100", "price": 42000.5, "time": "2024-01-01T12:00:00Z"}'
    )
    assert parse_alert(body, JSON) == Alert(
        alert_id="tv-42",
        action=AlertAction.BUY,
        symbol="BINANCE:BTCUSDT",
        amount=D(100),
        price=D("42000.5"),
        time=NOON,
    )


def test_key_value_lines_as_text_with_aliases_and_any_case():
    body = b"ACTION=Sell\n\n  qty = 0.25 \nSymbol=BTC/USDT\ntimestamp=1704110400000\n"
    alert = parse_alert(body, TEXT)
    assert (alert.action, alert.quantity, alert.symbol, alert.time) == (
        AlertAction.SELL,
        D("0.25"),
        "BTC/USDT",
        NOON,
    )


def test_a_text_body_that_is_json_is_read_as_json():
    assert parse_alert(b'{"action": "exit"}', "text/plain").action is AlertAction.CLOSE


def test_json_numbers_are_decimals_exactly():
    alert = parse_alert(b'{"action": "buy", "quantity": 0.1}', JSON)
    assert alert.quantity == D("0.1") and isinstance(alert.quantity, D)


def test_epoch_seconds_and_offsets_are_utc():
    assert parse_alert(b"action=buy\ntime=1704110400", TEXT).time == NOON
    moment = parse_alert(b"action=buy\ntime=2024-01-01T14:00:00+02:00", TEXT).time
    assert moment == NOON and moment.tzinfo is UTC


def test_without_an_id_the_same_alert_gets_the_same_digest():
    one = parse_alert(
        b'{"action": "buy", "ticker": "BTCUSDT", "time": "2024-01-01T12:00:00Z"}', JSON
    )
    two = parse_alert(b"time=2024-01-01T12:00:00Z\nticker=BTCUSDT\naction=BUY", TEXT)
    other = parse_alert(b"time=2024-01-01T12:00:01Z\nticker=BTCUSDT\naction=BUY", TEXT)
    assert one.alert_id == two.alert_id and one.alert_id.startswith("sha256:")
    assert other.alert_id != one.alert_id


@pytest.mark.parametrize(
    ("body", "content_type", "field"),
    [
        (b'{"action": "buy"}', "application/xml", "contentType"),
        (b"{not json", JSON, "body"),
        (b"[1, 2]", JSON, "body"),
        (b"\xff\xfe", TEXT, "body"),
        (b"just words", TEXT, "body"),
        (b"action=buy\naction=sell", TEXT, "action"),
        (b"action=hold", TEXT, "action"),
        (b"quantity=1", TEXT, "action"),
        (b"action=buy\nqty=1\nquantity=2", TEXT, "qty"),
        (b"action=buy\nquantity=-1", TEXT, "quantity"),
        (b"action=buy\nquantity=1e3", TEXT, "quantity"),
        (b"action=buy\namount=0", TEXT, "amount"),
        (b'{"action": "buy", "price": NaN}', JSON, "body"),
        (b"action=buy\ntime=yesterday", TEXT, "time"),
        (b"action=buy\ntime=2024-01-01T12:00:00", TEXT, "time"),
        (b"action=buy\nid=" + b"x" * 129, TEXT, "id"),
        (b"action=buy\nx=" + b"y" * MAX_BODY_BYTES, TEXT, "body"),
    ],
)
def test_what_is_not_an_alert_is_refused_naming_the_key(body, content_type, field):
    with pytest.raises(InvalidWebhook) as refused:
        parse_alert(body, content_type)
    assert refused.value.field == field


def test_the_gate_lets_an_id_through_once_and_forgets_it_after_a_while():
    alert = Alert("a", AlertAction.BUY)
    lag, day = timedelta(minutes=1), timedelta(days=1)
    seen, dropped = admit((), alert, at=NOON, max_lag=lag, remember=day)
    assert dropped is None and seen == (SeenAlert("a", NOON),)
    seen, dropped = admit(seen, alert, at=NOON + timedelta(hours=23), max_lag=lag, remember=day)
    assert dropped == "alert a was already received"
    seen, dropped = admit(seen, alert, at=NOON + timedelta(days=2), max_lag=lag, remember=day)
    assert dropped is None


def test_the_gate_drops_stale_and_future_alerts():
    lag, day = timedelta(seconds=5), timedelta(days=1)
    late = Alert("a", AlertAction.BUY, time=NOON - timedelta(seconds=6))
    seen, dropped = admit((), late, at=NOON, max_lag=lag, remember=day)
    assert dropped == "alert is 6 s old, over the 5 s allowed" and seen == ()
    on_time = Alert("b", AlertAction.BUY, time=NOON - timedelta(seconds=5))
    assert admit((), on_time, at=NOON, max_lag=lag, remember=day)[1] is None
    ahead = Alert("c", AlertAction.BUY, time=NOON + timedelta(seconds=6))
    assert "ahead" in (admit((), ahead, at=NOON, max_lag=lag, remember=day)[1] or "")


@pytest.mark.parametrize(
    ("symbol", "matches"),
    [
        ("BTCUSDT", True),
        ("BINANCE:BTCUSDT", True),
        ("btc/usdt", True),
        ("BTC-USDT", True),
        ("BTCUSDT.P", True),
        ("ETHUSDT", False),
        ("BTCUSD", False),
    ],
)
def test_tradingview_spellings_of_a_market(symbol, matches):
    assert symbol_matches(symbol, base="BTC", quote="USDT") is matches
