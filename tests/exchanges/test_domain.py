"""The pure parts: sealing (envelope encryption, bindings, rotation), the key ring from
settings, permissions as each exchange reports them, markets as ``MarketSpec``."""

from __future__ import annotations

import base64
import zlib
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from app.core.errors import ValidationFailed
from app.core.settings import Settings
from app.exchanges.domain.accounts import (
    Credentials,
    KeyPermissions,
    binance_permissions,
    bybit_permissions,
    coinbase_permissions,
    credentials_for,
    kraken_permissions,
    okx_permissions,
)
from app.exchanges.domain.catalogue import ExchangeId, parse_exchange
from app.exchanges.domain.errors import (
    ExchangeKeyAllowsWithdrawals,
    ExchangePermissionDenied,
    PassphraseRequired,
    UnsupportedExchange,
)
from app.exchanges.domain.marketdata import okx_book_checksum
from app.exchanges.domain.markets import ExchangeMarket, market_spec
from app.exchanges.domain.sealing import Binding, KeyRing, SecretUnreadable

RING = KeyRing({"k1": b"\x01" * 32, "k2": b"\x02" * 32}, active="k1")
BINDING = Binding(user_id=1, exchange="binance", connection_id=10)


@given(st.binary(max_size=512), st.integers(1, 2**63 - 1), st.integers(1, 2**63 - 1))
def test_a_sealed_secret_opens_with_its_binding_only(plaintext, user_id, connection_id):
    binding = Binding(user_id, "okx", connection_id)
    sealed = RING.seal(plaintext, binding)
    assert RING.unseal(sealed, binding) == plaintext
    for other in (Binding(user_id + 1, "okx", connection_id),
                  Binding(user_id, "bybit", connection_id),
                  Binding(user_id, "okx", connection_id + 1)):  # fmt: skip
        with pytest.raises(SecretUnreadable):
            RING.unseal(sealed, other)


def test_every_secret_has_its_own_data_key_and_nonces():
    one, two = RING.seal(b"secret", BINDING), RING.seal(b"secret", BINDING)
    assert one.ciphertext != two.ciphertext and one.wrapped_key != two.wrapped_key
    assert b"secret" not in one.ciphertext
    assert "secret" not in repr(one) and "\\x01" not in repr(RING)


def test_rotation_rewraps_the_data_key_and_keeps_the_ciphertext():
    sealed = RING.seal(b"secret", BINDING)
    rotated_ring = KeyRing({"k1": b"\x01" * 32, "k2": b"\x02" * 32}, active="k2")
    rotated = rotated_ring.rewrap(sealed, BINDING)
    assert rotated.key_id == "k2" and rotated.ciphertext == sealed.ciphertext
    assert rotated.wrapped_key != sealed.wrapped_key
    assert rotated_ring.unseal(rotated, BINDING) == b"secret"
    assert rotated_ring.rewrap(rotated, BINDING) is rotated
    retired = KeyRing({"k2": b"\x02" * 32}, active="k2")  # k1 gone: the old one is lost
    assert retired.unseal(rotated, BINDING) == b"secret"
    with pytest.raises(SecretUnreadable):
        retired.unseal(sealed, BINDING)


def test_a_tampered_secret_does_not_open():
    sealed = RING.seal(b"secret", BINDING)
    flipped = bytes([sealed.ciphertext[-1] ^ 1])
    tampered = type(sealed)(sealed.key_id, sealed.wrapped_key, sealed.ciphertext[:-1] + flipped)
    with pytest.raises(SecretUnreadable):
        RING.unseal(tampered, BINDING)


def _key(byte: int) -> str:
    return base64.b64encode(bytes(range(byte, byte + 32))).decode()


def test_the_key_ring_comes_from_settings():
    settings = Settings(exchange_master_keys=f"old:{_key(0)}, new:{_key(40)}",
                        exchange_master_key_id="new")  # fmt: skip
    active, keys = settings.exchange_key_ring()
    assert active == "new" and set(keys) == {"old", "new"} and len(keys["old"]) == 32
    assert _key(0) not in repr(settings)
    local, derived = Settings().exchange_key_ring()  # development: derived from SECRET_KEY
    assert local == "local" and len(derived["local"]) == 32


@pytest.mark.parametrize(
    ("ring", "active"),
    [
        ("nocolon", None),
        (f"a:{_key(0)},a:{_key(1)}", None),  # the same id twice
        ("a:" + base64.b64encode(b"short").decode(), None),
        ("a:not base64!", None),
        (f"a:{_key(0)}", "b"),  # the active id names no key
    ],
)
def test_a_malformed_key_ring_is_refused(ring, active):
    with pytest.raises(ValidationError):
        Settings(exchange_master_keys=ring, exchange_master_key_id=active)


PRODUCTION = {
    "env": "production", "jwt_secret": "j" * 40, "secret_key": "s" * 40,
    "database_url": "postgresql://db/x", "redis_url": "redis://r:6379/0",
    "seed_demo_data": False, "stripe_api_key": "sk_live_" + "k" * 24,
    "stripe_webhook_secret": "whsec_" + "w" * 32, "smtp_url": "smtps://mail.example.com:465",
}  # fmt: skip


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # no key ring: production never derives one
        {"exchange_master_keys": "a:" + base64.b64encode(b"\x00" * 32).decode()},
        {
            "exchange_master_keys": f"a:{_key(0)}",
            "exchange_api_bases": {"binance": "http://127.0.0.1:9"},
        },
    ],
)
def test_production_refuses_a_missing_or_placeholder_key_ring(overrides):
    with pytest.raises(ValidationError):
        Settings(**{**PRODUCTION, **overrides})


def test_production_starts_with_a_real_key_ring():
    assert Settings(**PRODUCTION, exchange_master_keys=f"a:{_key(0)}").is_production


@pytest.mark.parametrize(
    ("reader", "raw", "expected"),
    [
        (binance_permissions, {"enableReading": True, "enableSpotAndMarginTrading": False,
                               "enableWithdrawals": True, "ipRestrict": False},
         KeyPermissions(True, False, True, False)),
        (kraken_permissions, {"result": {"permissions": ["query-funds", "modify-trades"],
                                         "ipAllowlist": []}},
         KeyPermissions(True, True, False, False)),
        (okx_permissions, {"data": [{"perm": "read_only,withdraw", "ip": "1.2.3.4"}]},
         KeyPermissions(True, False, True, True)),
        (bybit_permissions, {"result": {"readOnly": 1, "ips": ["*"],
                                        "permissions": {"Wallet": ["AccountTransfer"]}}},
         KeyPermissions(True, False, False, False)),
        (coinbase_permissions, {"can_view": True, "can_trade": True, "can_transfer": True},
         KeyPermissions(True, True, True, None)),
        (binance_permissions, {}, KeyPermissions(None, None, None, None)),
    ],
)  # fmt: skip
def test_permissions_as_each_exchange_reports_them(reader, raw, expected):
    assert reader(raw) == expected


def test_a_key_that_may_withdraw_or_may_not_read_is_refused():
    assert isinstance(KeyPermissions(True, True, True, True).refusal(),
                      ExchangeKeyAllowsWithdrawals)  # fmt: skip
    assert isinstance(KeyPermissions(False, True, False, True).refusal(),
                      ExchangePermissionDenied)  # fmt: skip
    assert KeyPermissions(None, None, None, None).refusal() is None  # unknown: the read decides


def test_the_allow_list_and_the_credentials_shape():
    assert parse_exchange(" OKX ") is ExchangeId.OKX
    with pytest.raises(UnsupportedExchange):
        parse_exchange("ftx")
    with pytest.raises(PassphraseRequired):
        credentials_for(ExchangeId.OKX, api_key="k", secret="s", passphrase="")
    with pytest.raises(ValidationFailed):
        credentials_for(ExchangeId.KRAKEN, api_key="", secret="s", passphrase=None)
    credentials = credentials_for(ExchangeId.KRAKEN, api_key="k", secret="s3cr3t", passphrase=None)
    assert "s3cr3t" not in repr(credentials) and "s3cr3t" not in str(credentials)
    assert Credentials.from_bytes(credentials.to_bytes()) == credentials


@given(st.integers(0, 8), st.integers(0, 8), st.booleans())
def test_a_market_maps_to_a_valid_market_spec(tick_places, lot_places, active):
    tick, lot = Decimal(1).scaleb(-tick_places), Decimal(5).scaleb(-lot_places)
    market = ExchangeMarket(
        symbol="BTC/USDT", exchange_symbol="BTCUSDT", base="BTC", quote="USDT",
        tick_size=tick, lot_size=lot, min_amount=lot, min_notional=None,
        maker_fee=Decimal("0.001"), taker_fee=Decimal("0.002"), active=active,
    )  # fmt: skip
    spec = market_spec(market)
    assert (spec.tick_size, spec.lot_size, spec.min_notional) == (tick, lot, 0)
    assert spec.base_scale == lot_places and spec.status.value == ("OPEN" if active else "HALTED")


# --- market data (pure) -----------------------------------------------------------------


def test_a_delta_between_two_books_names_what_changed_and_what_left():
    from app.exchanges.domain.marketdata import changed_levels

    before = ((Decimal(10), Decimal(1)), (Decimal(9), Decimal(2)), (Decimal(8), Decimal(3)))
    after = ((Decimal(11), Decimal(1)), (Decimal(10), Decimal(1)), (Decimal(9), Decimal(5)))
    assert changed_levels(before, after) == [
        (Decimal(11), Decimal(1)), (Decimal(9), Decimal(5)), (Decimal(8), Decimal(0))]  # fmt: skip
    assert changed_levels(after, after) == []


@given(st.integers(1, 500), st.sampled_from([200, 400, 500, 5000]))
def test_a_book_is_fetched_at_a_tier_that_covers_the_depth(depth, exchange_max):
    from app.exchanges.domain.marketdata import BOOK_TIERS, book_tier

    tier = book_tier(depth, exchange_max)
    assert tier in (*BOOK_TIERS, exchange_max)
    assert tier >= depth or tier == exchange_max


def test_tickers_and_books_survive_the_cache_as_decimals():
    from datetime import UTC, datetime

    from app.exchanges.domain.marketdata import ExchangeBook, ExchangeTicker

    at = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    ticker = ExchangeTicker("BTC/USDT", Decimal("90000.10"), Decimal("1E-8"), None,
                            Decimal(1), Decimal(0), Decimal("12.50"), None, at)  # fmt: skip
    assert ExchangeTicker.from_json(ticker.to_json()) == ticker
    book = ExchangeBook("BTC/USDT", ((Decimal("1.10"), Decimal("2")),), (), 7, at)
    again = ExchangeBook.from_json(book.to_json())
    assert again == book and str(again.bids[0][0]) == "1.10"


@pytest.mark.parametrize(
    ("entry", "name"),
    [("binance:BTC/USDT:1m", "binance:BTC/USDT:1m"), (" OKX:ETH/USDT:1h ", "okx:ETH/USDT:1h"),
     ("kraken:BTC/USD:1M", "kraken:BTC/USD:1M")],
)  # fmt: skip
def test_synced_series_are_read_from_the_setting(entry, name):
    from app.exchanges.domain.marketdata import parse_synced

    assert parse_synced(entry).name == name


@pytest.mark.parametrize("entry", ["binance:BTC/USDT", "ftx:BTC/USDT:1m", "okx:BTC\x00/USDT:1m",
                                   "okx:BTC/USDT:7m", "okx:btc-usdt:1m", ""])  # fmt: skip
def test_malformed_synced_series_are_refused(entry):
    from app.core.errors import UserError
    from app.exchanges.domain.marketdata import parse_synced

    with pytest.raises(UserError):
        parse_synced(entry)


@pytest.mark.parametrize(
    "row",
    [
        [1_700_000_040_000, 1.0, 2.0, 0.5, 1.5, 3.0],  # fine
        [1_700_000_070_000, 1.0, 2.0, 0.5, 1.5, 3.0],  # off the minute grid
        [1_700_000_040_000, 1.0, 0.9, 0.5, 1.5, 3.0],  # high below close
        [1_700_000_040_000, None, 2.0, 0.5, 1.5, 3.0],
        [1_700_000_040_000, float("nan"), 2.0, 0.5, 1.5, 3.0],
        [1_700_000_040_000, 1e30, 1e30, 1e30, 1e30, 3.0],  # too many digits to store
        [1_700_000_040_000, 1.0],
        ["x", 1.0, 2.0, 0.5, 1.5, 3.0],
    ],
)
def test_ccxt_candles_that_are_no_candles_are_left_out(row):
    from app.exchanges.ccxt_edge import to_candle

    candle = to_candle(row, "1m")
    assert (candle is not None) is (row == [1_700_000_040_000, 1.0, 2.0, 0.5, 1.5, 3.0])
    if candle is not None:
        assert (candle.open, candle.high, candle.volume) == (Decimal(1), Decimal(2), Decimal(3))


def test_ccxt_trades_become_store_trades_or_are_left_out():
    from app.exchanges.ccxt_edge import to_trade

    trade = to_trade({"timestamp": 1_700_000_000_123, "price": 0.1, "amount": 3,
                      "side": "sell", "id": 42})  # fmt: skip
    assert trade is not None
    assert (trade.price, trade.amount, trade.side, trade.trade_id) == (
        Decimal("0.1"), Decimal(3), "SELL", "42")  # fmt: skip
    assert to_trade({"timestamp": None, "price": 1, "amount": 1}) is None
    assert to_trade({"timestamp": 1, "price": -1, "amount": 1}) is None
    assert to_trade({"timestamp": 1, "price": 1, "amount": 1, "side": None}).side is None


def _signed_crc(text: str) -> int:
    crc = zlib.crc32(text.encode())
    return crc - 2**32 if crc >= 2**31 else crc


def test_okx_s_book_checksum_interleaves_the_top_25_levels_of_each_side():
    d = Decimal
    bids = ((d("3366.1"), d("7")), (d("3366"), d("6")), (d("3365.50"), d("1E+1")))
    asks = ((d("3366.8"), d("9")), (d("3368"), d("8")))
    # OKX's rule: bid:ask pairs in turn while both sides last, then the longer side's rest
    assert okx_book_checksum(bids, asks) == _signed_crc("3366.1:7:3366.8:9:3366:6:3368:8"
                                                       ":3365.5:10")  # fmt: skip
    deep = tuple((d(100 - n), d(1)) for n in range(30))
    expected = ":".join(f"{100 - n}:1:{100 - n}:1" for n in range(25))
    assert okx_book_checksum(deep, deep) == _signed_crc(expected)
    assert okx_book_checksum((), ()) == _signed_crc("")
