"""Connecting exchange accounts over GraphQL, with the real ccxt talking to the
stand-ins: the key checked on connect (typed errors for every refusal, nothing stored),
the viewer's accounts with balances read from the exchange, disconnecting erases the
secret, the daily re-check."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app.exchanges.accounts import balances, recheck_due, rewrap_secrets
from app.exchanges.domain.sealing import KeyRing
from db.models import ExchangeConnection
from tests.exchanges.conftest import EXCHANGES, connector_for
from tests.support import gid
from tests.support.documents import ERROR_FIELDS, signed_in
from tests.support.exchanges.keys import new_account, other_secret

CONNECT = (
    "mutation($input: ConnectExchangeAccountInput!) { connectExchangeAccount(input: $input) {"
    " __typename ... on ConnectExchangeAccountPayload { ipAllowlistGuidance"
    " balances { currency free used total }"
    " exchangeAccount { id exchange exchangeName label status lastCheckCode"
    " permissions { canRead canTrade canWithdraw ipRestricted } } }"
    f" {ERROR_FIELDS} ... on Error {{ field }} }} }}"
)
DISCONNECT = (
    "mutation($id: ID!) { disconnectExchangeAccount(id: $id) { __typename"
    " ... on ExchangeAccountPayload { exchangeAccount { id status } }"
    f" {ERROR_FIELDS} ... on Error {{ field }} }} }}"
)
MINE = (
    "{ me { exchangeAccounts { id exchange label status lastCheckCode"
    " balances { __typename ... on ExchangeBalances { balances { currency total } }"
    f" {ERROR_FIELDS} }} }} }} }}"
)
NODE = "query($id: ID!) { node(id: $id) { __typename ... on ExchangeAccount { id label } } }"


def _input(exchange: str, account, **changes) -> dict:
    fields = {"exchange": exchange, "label": f"my {exchange}", "apiKey": account.api_key,
              "secret": account.secret, "passphrase": account.passphrase}  # fmt: skip
    return {**fields, **changes}


async def _connect(gql, token: str, exchange: str, account, **changes) -> dict:
    data = await gql.data(CONNECT, {"input": _input(exchange, account, **changes)}, token=token)
    return data["connectExchangeAccount"]


async def _rows(rt) -> list[ExchangeConnection]:
    async with rt.sessions() as session:
        return list(await session.scalars(select(ExchangeConnection)))


@pytest.mark.parametrize("exchange", EXCHANGES)
async def test_connect_checks_the_key_and_lists_the_account(gql, rt, exchanges, exchange):
    carol = await signed_in(gql)
    account = exchanges[exchange].add(new_account(exchange))
    result = await _connect(gql, carol["accessToken"], exchange, account)
    assert result["__typename"] == "ConnectExchangeAccountPayload", result
    node = result["exchangeAccount"]
    assert (node["exchange"], node["label"], node["status"]) == (exchange, f"my {exchange}",
                                                                 "ACTIVE")  # fmt: skip
    assert node["permissions"]["canWithdraw"] is False
    assert "IP" in result["ipAllowlistGuidance"]
    assert {b["currency"]: b["total"] for b in result["balances"]} == {
        "BTC": "0.75", "USDT": "1234.5"}  # fmt: skip
    mine = (await gql.data(MINE, token=carol["accessToken"]))["me"]["exchangeAccounts"]
    assert [m["id"] for m in mine] == [node["id"]]
    assert mine[0]["balances"]["__typename"] == "ExchangeBalances"
    assert {b["currency"] for b in mine[0]["balances"]["balances"]} == {"BTC", "USDT"}
    assert exchanges[exchange].refused == []


@pytest.mark.parametrize(
    ("exchange", "options", "changes", "typename", "field"),
    [
        ("binance", {"can_withdraw": True}, {}, "ExchangeKeyAllowsWithdrawals", "apiKey"),
        ("kraken", {"can_withdraw": True}, {}, "ExchangeKeyAllowsWithdrawals", "apiKey"),
        ("okx", {"can_withdraw": True}, {}, "ExchangeKeyAllowsWithdrawals", "apiKey"),
        ("bybit", {"can_withdraw": True}, {}, "ExchangeKeyAllowsWithdrawals", "apiKey"),
        ("coinbase", {"can_withdraw": True}, {}, "ExchangeKeyAllowsWithdrawals", "apiKey"),
        ("binance", {"can_read": False}, {}, "ExchangePermissionDenied", "apiKey"),
        ("kraken", {}, {"secret": "WRONG"}, "ExchangeKeyInvalid", None),
        ("okx", {}, {"passphrase": "not-the-passphrase"}, "ExchangeKeyInvalid", None),
        ("okx", {}, {"passphrase": None}, "PassphraseRequired", "passphrase"),
        ("bitmex", {}, {}, "UnsupportedExchange", "exchange"),
        ("coinbase", {}, {"label": "  "}, "ValidationFailed", "label"),
        ("coinbase", {}, {"label": "x" * 65}, "ValidationFailed", "label"),
        ("bybit", {}, {"apiKey": " key-with-spaces "}, "ValidationFailed", "apiKey"),
        ("bybit", {}, {"secret": ""}, "ValidationFailed", "secret"),
        ("bybit", {}, {"secret": "s" * 5000}, "ValidationFailed", "secret"),
    ],
)
async def test_a_refused_connection_stores_nothing(
    gql, rt, exchanges, exchange, options, changes, typename, field
):
    carol = await signed_in(gql)
    server = exchanges.get(exchange) or exchanges["binance"]
    account = server.add(new_account(server.exchange, **options))
    if changes.get("secret") == "WRONG":
        changes = {**changes, "secret": other_secret(exchange)}
    result = await _connect(gql, carol["accessToken"], exchange, account, **changes)
    assert result["__typename"] == typename, result
    assert result["field"] == field
    assert await _rows(rt) == []


async def test_an_unavailable_exchange_is_a_typed_error(gql, rt, exchanges):
    carol = await signed_in(gql)
    account = exchanges["binance"].add(new_account("binance"))
    exchanges["binance"].fail_next(503, 503, 503)
    result = await _connect(gql, carol["accessToken"], "binance", account)
    assert result["__typename"] == "ExchangeUnavailable"
    exchanges["binance"].fail_next(429)
    result = await _connect(gql, carol["accessToken"], "binance", account)
    assert result["__typename"] == "ExchangeRateLimited"
    assert await _rows(rt) == []


async def test_disconnect_erases_the_secret_and_only_the_owner_may(gql, rt, exchanges):
    carol = await signed_in(gql)
    dave = await signed_in(gql, "dave@example.com")
    account = exchanges["okx"].add(new_account("okx"))
    node = (await _connect(gql, carol["accessToken"], "okx", account))["exchangeAccount"]
    by_dave = await gql.data(DISCONNECT, {"id": node["id"]}, token=dave["accessToken"])
    assert by_dave["disconnectExchangeAccount"]["__typename"] == "NotFound"
    seen = await gql.data(NODE, {"id": node["id"]}, token=dave["accessToken"])
    assert seen["node"] is None
    own = await gql.data(NODE, {"id": node["id"]}, token=carol["accessToken"])
    assert own["node"]["label"] == "my okx"
    done = await gql.data(DISCONNECT, {"id": node["id"]}, token=carol["accessToken"])
    assert done["disconnectExchangeAccount"]["exchangeAccount"]["status"] == "DISCONNECTED"
    [row] = await _rows(rt)
    assert (row.key_id, row.wrapped_key, row.sealed_secret) == (None, None, None)
    again = await gql.data(DISCONNECT, {"id": node["id"]}, token=carol["accessToken"])
    assert again["disconnectExchangeAccount"]["__typename"] == "NotFound"
    mine = await gql.data(MINE, token=carol["accessToken"])
    assert mine["me"]["exchangeAccounts"] == []


@pytest.mark.parametrize("bad_id", ["", "nonsense", gid("ExchangeAccount", 0),
                                    gid("User", 1), gid("ExchangeAccount", 2**63)])  # fmt: skip
async def test_bad_ids_are_typed_errors(gql, rt, exchanges, bad_id):
    carol = await signed_in(gql)
    body = await gql(DISCONNECT, {"id": bad_id}, token=carol["accessToken"])
    result = body["data"]["disconnectExchangeAccount"]
    assert result["__typename"] in {"ValidationFailed", "NotFound"}


async def test_anonymous_callers_are_refused(gql, rt, exchanges):
    account = exchanges["binance"].add(new_account("binance"))
    body = await gql(CONNECT, {"input": _input("binance", account)})
    assert body["data"]["connectExchangeAccount"]["__typename"] == "NotAuthenticated"
    assert exchanges["binance"].requests == []


async def test_balances_show_the_exchange_s_refusal_typed(gql, rt, exchanges):
    carol = await signed_in(gql)
    account = exchanges["kraken"].add(new_account("kraken"))
    await _connect(gql, carol["accessToken"], "kraken", account)
    exchanges["kraken"].accounts.clear()  # the key was deleted at the exchange
    mine = (await gql.data(MINE, token=carol["accessToken"]))["me"]["exchangeAccounts"]
    assert mine[0]["balances"]["__typename"] == "ExchangeKeyInvalid"


async def test_the_recheck_suspends_a_key_that_now_allows_withdrawals(gql, rt, exchanges):
    carol = await signed_in(gql)
    keys = {name: exchanges[name].add(new_account(name)) for name in ("bybit", "coinbase")}
    for name, account in keys.items():
        await _connect(gql, carol["accessToken"], name, account)
    assert await recheck_due(rt) == 0  # checked just now
    keys["bybit"].can_withdraw = True  # the user edited the key at the exchange
    async with rt.sessions() as session, session.begin():
        await session.execute(update(ExchangeConnection).values(
            last_checked_at=ExchangeConnection.last_checked_at - timedelta(days=2)))  # fmt: skip
    assert await recheck_due(rt) == 2
    status = {row.exchange: (row.status, row.last_check_code) for row in await _rows(rt)}
    assert status == {"bybit": ("SUSPENDED", "EXCHANGE_KEY_ALLOWS_WITHDRAWALS"),
                      "coinbase": ("ACTIVE", None)}  # fmt: skip
    keys["bybit"].can_withdraw = False
    async with rt.sessions() as session, session.begin():
        await session.execute(update(ExchangeConnection).values(
            last_checked_at=ExchangeConnection.last_checked_at - timedelta(days=2)))  # fmt: skip
    exchanges["coinbase"].fail_next(503, 503, 503)
    assert await recheck_due(rt) == 2
    status = {row.exchange: (row.status, row.last_check_code) for row in await _rows(rt)}
    assert status == {"bybit": ("ACTIVE", None),
                      "coinbase": ("ACTIVE", "EXCHANGE_UNAVAILABLE")}  # fmt: skip


async def test_rotation_rewraps_every_stored_secret_and_they_still_open(gql, rt, exchanges):
    carol = await signed_in(gql)
    for name in ("binance", "okx"):
        account = exchanges[name].add(new_account(name))
        await _connect(gql, carol["accessToken"], name, account)
    before = {row.id: row.sealed_secret for row in await _rows(rt)}
    old_id = rt.exchange_keys.active
    _, keys = rt.settings.exchange_key_ring()
    ring = KeyRing({**keys, "next": b"\x07" * 32}, active="next")
    rotated = dataclasses.replace(rt, exchange_keys=ring)
    rotated.exchanges = connector_for(rotated, exchanges)
    assert await rewrap_secrets(rotated) == 2
    assert await rewrap_secrets(rotated) == 0
    rows = await _rows(rt)
    assert {row.key_id for row in rows} == {"next"} != {old_id}
    assert {row.id: row.sealed_secret for row in rows} == before  # only the data keys
    for row in rows:
        assert await balances(rotated, row)
    await rotated.exchanges.aclose()
