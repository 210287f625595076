"""TradingView alert bodies parsed: JSON and KEY=VALUE lines, under either content type;
aliases; decimals never floats; times; the alert id (given, or a digest); refusals naming
the key; the gate (repeats and stale alerts); symbols in TradingView's spellings; the
webhook's secret (read, hashed, never part of the alert); any bytes at all give an alert or
``InvalidWebhook``, never another exception."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.bots.domain.alerts import (
    MAX_BODY_BYTES,
    Alert,
    AlertAction,
    SeenAlert,
    admit,
    hash_secret,
    parse_alert,
    read_body,
    secret_matches,
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
        (b"[" * 5000, JSON, "body"),
        (b'{"a":' * 1500 + b"1" + b"}" * 1500, JSON, "body"),
        (b"action=buy\ntime=9999-12-31T23:59:59-23:59", TEXT, "time"),
        (b"action=buy\ntime=0001-01-01T00:00:00+23:59", TEXT, "time"),
        (b'{"action": "buy", "symbol": ["BTC", "USDT"]}', JSON, "symbol"),
        (b'{"action": "buy", "id": {"a": 1}}', JSON, "id"),
        (b'{"action": true}', JSON, "action"),
        (b'{"action": "buy", "quantity": 1e999999999}', JSON, "quantity"),
        (b'{"action": "buy", "amount": ' + b"9" * 5000 + b"}", JSON, "amount"),
        (b"action=buy\nprice=" + b"9" * 5000, TEXT, "price"),
        (b"action=buy\x00", TEXT, "action"),
        (b'{"action": "buy", "ticker": "BTC\\u0000USDT"}', JSON, "symbol"),
        (b'{"action": "buy", "id": "\\ud800"}', JSON, "id"),
        (b"action=buy\nsecret=a\nsecret=b", TEXT, "secret"),
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


# the webhook's secret


def test_the_secret_is_read_from_json_or_a_line_and_is_not_part_of_the_alert():
    in_json = read_body(b'{"secret": "s3cret", "action": "buy", "ticker": "BTCUSDT"}', JSON)
    in_lines = read_body(b"secret=s3cret\naction=buy\nticker=BTCUSDT", TEXT)
    without = parse_alert(b'{"action": "buy", "ticker": "BTCUSDT"}', JSON)
    assert in_json.secret == in_lines.secret == "s3cret"
    assert in_json.alert() == in_lines.alert() == without  # same digest, no secret in it
    assert "secret" not in in_json.fields and "s3cret" not in repr(in_json)


def test_another_secret_gives_the_same_alert_id():
    one = read_body(b"secret=one\naction=buy\ntime=1704110400", TEXT).alert()
    two = read_body(b"secret=two\naction=buy\ntime=1704110400", TEXT).alert()
    assert one.alert_id == two.alert_id


@pytest.mark.parametrize("body", [b'{"action": "buy"}', b'{"action": "buy", "secret": 12}'])
def test_a_missing_or_non_text_secret_is_none(body):
    assert read_body(body, JSON).secret is None


def test_the_secret_is_compared_by_its_sha256():
    stored = hash_secret("s3cret")
    assert len(stored) == 64 and int(stored, 16) >= 0
    assert secret_matches("s3cret", stored)
    assert not secret_matches("s3cret ", stored)
    assert not secret_matches(None, stored)
    assert not secret_matches("\ud800", stored)  # not encodable as UTF-8: no exception


NASTY = st.sampled_from(
    [b"", b"=", b"\x00", b"\xff", b"{", b"}", b"[", b"]", b'"', b"\n", b"\r", b"\\u0000",
     b"\\ud800", b"action", b"buy", b"secret", b"ticker", b"quantity", b"time", b"id",
     b"1e999999", b"9" * 40, b"-1", b"0", b"NaN", b":", b",", b"T", b"Z", b"+23:59", b"0001",
     b"9999", b"\xc3\x28", b"\xe2\x80\xa8"]
)  # fmt: skip


@given(
    body=st.one_of(st.binary(max_size=300), st.lists(NASTY, max_size=40).map(b"".join)),
    content_type=st.sampled_from([JSON, TEXT, "text/plain", "application/octet-stream"]),
)
def test_any_body_is_an_alert_or_refused_naming_a_key(body, content_type):
    try:
        read = read_body(body, content_type)
        alert = read.alert()
    except InvalidWebhook as refused:
        assert refused.field
        return
    assert alert.alert_id and alert.action in AlertAction


@pytest.mark.parametrize(
    "body", [b"10e999999999999999999", b'{"action": "buy", "amount": 1e9999999999999999999}']
)
def test_a_json_number_beyond_decimal_is_refused_naming_the_body(body):
    # found by the property above: Decimal cannot hold it (InvalidOperation, not a 400)
    with pytest.raises(InvalidWebhook) as refused:
        parse_alert(body, "application/json")
    assert refused.value.field == "body"
