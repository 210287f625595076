"""One contract every exchange passes, through the real ccxt against its stand-in: the
markets as the platform's ``MarketSpec``, balances, the key's permissions, signatures
verified (a wrong secret, an unknown key refused as the exchange refuses them), network
failures retried with backoff, rate limits never retried."""

from __future__ import annotations

from decimal import Decimal

import pytest

from app.exchanges.domain.accounts import Credentials
from app.exchanges.domain.catalogue import ExchangeId
from app.exchanges.domain.errors import (
    ExchangeKeyInvalid,
    ExchangePermissionDenied,
    ExchangeRateLimited,
    ExchangeUnavailable,
)
from app.exchanges.domain.markets import market_spec
from app.exchanges.domain.sealing import Binding
from tests.exchanges.conftest import EXCHANGES, connector_for
from tests.support.exchanges import Account
from tests.support.exchanges.keys import new_account, other_secret

pytestmark = pytest.mark.parametrize("name", EXCHANGES)
MARKET_PATHS = {"/api/v3/exchangeInfo", "/0/public/AssetPairs", "/api/v5/public/instruments",
                "/v5/market/instruments-info", "/api/v3/brokerage/market/products"}  # fmt: skip


def _credentials(account: Account, **changes: str) -> Credentials:
    fields = {"api_key": account.api_key, "secret": account.secret,
              "passphrase": account.passphrase, **changes}  # fmt: skip
    return Credentials(**fields)  # type: ignore[arg-type]


async def test_markets_become_market_specs_in_decimals(rt, exchanges, name):
    account = exchanges[name].add(new_account(name))
    async with rt.exchanges.session(ExchangeId(name), _credentials(account)) as session:
        markets = {m.symbol: m for m in await session.markets()}
    assert set(markets) == {"BTC/USDT", "ETH/USDT"}
    spec = market_spec(markets["BTC/USDT"])
    assert (spec.base, spec.quote) == ("BTC", "USDT")
    assert spec.tick_size == Decimal("0.01") and spec.lot_size == Decimal("0.00001")
    assert (spec.base_scale, spec.quote_scale) == (5, 7)
    assert all(isinstance(v, Decimal) for v in (spec.maker_fee, spec.taker_fee))
    assert 0 < spec.maker_fee <= spec.taker_fee < 1
    if name != "okx":  # OKX states no minimum notional for spot
        assert spec.min_notional == Decimal(5)


async def test_balances_are_read_with_the_key(rt, exchanges, name):
    account = exchanges[name].add(new_account(name))
    async with rt.exchanges.session(ExchangeId(name), _credentials(account)) as session:
        balances = {b.currency: b for b in await session.balances()}
    assert set(balances) == {"BTC", "USDT"}
    btc = balances["BTC"]
    assert (btc.free, btc.used, btc.total) == (Decimal("0.5"), Decimal("0.25"), Decimal("0.75"))
    assert balances["USDT"].total == Decimal("1234.5")
    signed = [r for r in exchanges[name].requests if r.method == "POST" or r.query or r.headers]
    assert signed and exchanges[name].refused == []


@pytest.mark.parametrize("withdraw", [False, True])
async def test_the_key_s_permissions_are_the_exchange_s(rt, exchanges, name, withdraw):
    account = exchanges[name].add(new_account(name, can_withdraw=withdraw, can_trade=False))
    async with rt.exchanges.session(ExchangeId(name), _credentials(account)) as session:
        permissions = await session.permissions()
    assert permissions.can_withdraw is withdraw
    assert permissions.can_read is True
    if name != "okx":  # OKX's "perm" has no read-only-without-trade distinction to test
        assert permissions.can_trade is False
    assert permissions.ip_restricted is (None if name == "coinbase" else True)
    assert (permissions.refusal() is not None) is withdraw


async def test_a_wrong_secret_is_refused_by_the_signature_check(rt, exchanges, name):
    account = exchanges[name].add(new_account(name))
    credentials = _credentials(account, secret=other_secret(name))
    async with rt.exchanges.session(ExchangeId(name), credentials) as session:
        with pytest.raises(ExchangeKeyInvalid):
            await session.balances()
    assert exchanges[name].refused  # and never retried: no private path asked twice
    private = [r.path for r in exchanges[name].requests if r.path not in MARKET_PATHS]
    assert private and len(private) == len(set(private))


async def test_an_unknown_key_is_refused(rt, exchanges, name):
    stranger = new_account(name)  # never added to the exchange
    async with rt.exchanges.session(ExchangeId(name), _credentials(stranger)) as session:
        with pytest.raises(ExchangeKeyInvalid):
            await session.permissions()


async def test_network_failures_are_retried_then_reported(rt, exchanges, name):
    server = exchanges[name]
    account = server.add(new_account(name))
    server.fail_next(503, 503)  # the connector tries three times
    async with rt.exchanges.session(ExchangeId(name), _credentials(account)) as session:
        assert await session.permissions()
    server.fail_next(503, 503, 503)
    async with rt.exchanges.session(ExchangeId(name), _credentials(account)) as session:
        with pytest.raises(ExchangeUnavailable):
            await session.permissions()
    assert server.failures == []


async def test_a_rate_limit_is_never_retried(rt, exchanges, name):
    server = exchanges[name]
    account = server.add(new_account(name))
    server.fail_next(429)
    before = len(server.requests)
    async with rt.exchanges.session(ExchangeId(name), _credentials(account)) as session:
        with pytest.raises(ExchangeRateLimited):
            await session.permissions()
    assert len(server.requests) == before + 1


async def test_a_key_that_may_not_read_cannot_read_balances(rt, exchanges, name):
    if name in ("okx", "bybit"):
        pytest.skip("every OKX and Bybit key may read")
    account = exchanges[name].add(new_account(name, can_read=False))
    async with rt.exchanges.session(ExchangeId(name), _credentials(account)) as session:
        permissions = await session.permissions()
        assert permissions.can_read is False
        assert isinstance(permissions.refusal(), ExchangePermissionDenied)
        with pytest.raises((ExchangePermissionDenied, ExchangeKeyInvalid)):
            await session.balances()


async def test_a_sealed_key_opens_only_in_the_connector_for_its_binding(
    rt, exchanges, stand_ins, name
):
    account = exchanges[name].add(new_account(name))
    binding = Binding(user_id=7, exchange=name, connection_id=11)
    sealed = rt.exchange_keys.seal(_credentials(account).to_bytes(), binding)
    assert account.secret.encode() not in sealed.ciphertext + sealed.wrapped_key
    async with rt.exchanges.sealed_session(ExchangeId(name), sealed, binding) as session:
        assert await session.balances()
    connector = connector_for(rt, stand_ins)
    with pytest.raises(Exception, match="does not open"):
        async with connector.sealed_session(
            ExchangeId(name), sealed, Binding(8, name, 11)
        ) as session:
            pass
