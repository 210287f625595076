"""API keys: created by a signed-in user (the secret shown once, only its hash stored),
listed, revoked; ``X-API-Key`` authenticates; every scope is enforced; account security,
money movement and administration are never possible with a key; last use is recorded
at most once per interval."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from app.accounts.api_keys import ApiKeyAuth
from app.accounts.domain.api_keys import Scope
from app.asgi import create_app
from app.core.settings import Settings
from db.models import ApiKey, User
from graphql_schema.gateway.access import field_access
from graphql_schema.gateway.context import Context
from resolvers.loaders import build_loaders
from tests.gateway.test_websocket import (
    TRANSPORT_WS,
    LiveServer,
    _close_code,
    _init,
    _open,
    _receive,
    _send,
)
from tests.support.documents import ENABLE_2FA, ME, login, register, signed_in
from tests.support.partner import (
    API_KEYS,
    CREATE_API_KEY,
    CURRENCIES,
    ME_EMAIL,
    REVOKE_API_KEY,
    SECURITY_EVENTS,
    client_with,
    create_key,
    key_header,
    trading_client,
    trading_schema,
)

TRANSFER = (
    'mutation { transfer(recipient: "dave@example.com", currency: "USD", amount: "1",'
    ' idempotencyKey: "k1") { __typename } }'
)


def _code(response) -> str:
    return response.json()["errors"][0]["extensions"]["code"]


async def _keyed(client, query: str, secret: str, variables: dict | None = None):
    return await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=key_header(secret)
    )


async def test_the_secret_is_returned_once_and_only_its_hash_is_stored(gql, rt):
    auth = await signed_in(gql)
    secret, key = await create_key(gql, auth["accessToken"], ["READ_ACCOUNT"], name="  My   bot ")
    assert secret.startswith("co_") and len(secret) >= 40
    assert key["name"] == "My bot"
    assert key["prefix"] == secret[:9]
    assert key["scopes"] == ["READ_ACCOUNT"]

    listed = (await gql.data(API_KEYS, token=auth["accessToken"]))["apiKeys"]["edges"]
    assert [e["node"]["id"] for e in listed] == [key["id"]]
    assert secret not in str(listed)
    async with rt.sessions() as session:
        row = await session.scalar(select(ApiKey))
    assert row.secret_hash == hashlib.sha256(secret.encode()).digest()
    stored = [str(getattr(row, c.key)) for c in ApiKey.__table__.columns]
    assert not any(secret in value or secret[9:] in value for value in stored)


async def test_an_api_key_authenticates_and_each_scope_is_enforced(gql, client):
    auth = await signed_in(gql)
    account, _ = await create_key(gql, auth["accessToken"], ["READ_ACCOUNT"])
    market, _ = await create_key(gql, auth["accessToken"], ["READ_MARKET_DATA"])

    me = await _keyed(client, ME_EMAIL, account)
    assert me.json() == {"data": {"me": {"email": "carol@example.com"}}}
    refused = await _keyed(client, CURRENCIES, account)
    assert (refused.status_code, _code(refused)) == (403, "INSUFFICIENT_SCOPE")
    assert "READ_MARKET_DATA" in refused.json()["errors"][0]["message"]

    prices = await _keyed(client, CURRENCIES, market)
    assert {"code": "BTC"} in prices.json()["data"]["currencies"]
    refused = await _keyed(client, ME_EMAIL, market)
    assert (refused.status_code, _code(refused)) == (403, "INSUFFICIENT_SCOPE")
    public = await _keyed(client, "{ serverTime }", market)
    assert public.json()["data"]["serverTime"]


async def test_the_trade_scope_guards_trading_fields(gql, rt):
    auth = await signed_in(gql)
    trader, _ = await create_key(gql, auth["accessToken"], ["TRADE"])
    reader, _ = await create_key(gql, auth["accessToken"], ["READ_ACCOUNT", "READ_MARKET_DATA"])
    order = "mutation { placeOrder }"
    async with trading_client(rt) as http:
        placed = await _keyed(http, order, trader)
        refused = await _keyed(http, order, reader)
        session = await http.post(
            "/graphql",
            json={"query": order},
            headers={"authorization": f"Bearer {auth['accessToken']}"},
        )
        undeclared = await _keyed(http, "{ undeclared }", trader)
    assert placed.json() == {"data": {"placeOrder": "placed"}}
    assert (refused.status_code, _code(refused)) == (403, "INSUFFICIENT_SCOPE")
    assert session.json() == {"data": {"placeOrder": "placed"}}
    assert (undeclared.status_code, _code(undeclared)) == (403, "INSUFFICIENT_SCOPE")


async def test_the_field_extension_checks_scopes_without_the_transport(gql, rt):
    """schema.execute skips admission: the field itself still refuses."""
    auth = await signed_in(gql)
    await create_key(gql, auth["accessToken"], ["READ_ACCOUNT"])
    async with rt.sessions() as session:
        key = await session.scalar(select(ApiKey))
        user = await session.get(User, key.user_id)
    context = Context(
        rt=rt,
        request=None,  # type: ignore[arg-type]
        response=None,
        loaders=build_loaders(rt),
        request_id="direct",
        api_key=ApiKeyAuth(key=key, user=user),
    )
    result = await trading_schema.execute("mutation { placeOrder }", context_value=context)
    assert result.data is None
    assert result.errors[0].extensions["code"] == "INSUFFICIENT_SCOPE"


@pytest.mark.parametrize(
    "document",
    [
        TRANSFER,
        'mutation { createApiKey(name: "x", scopes: [TRADE]) { __typename } }',
        "mutation { logout { __typename } }",
        ENABLE_2FA,
        'mutation { requestPasswordReset(email: "carol@example.com") { __typename } }',
        "{ apiKeys { edges { cursor } } }",
        "{ securityEvents { edges { cursor } } }",
        "{ users { edges { cursor } } }",
        '{ depositAddress(currency: "BTC") { __typename } }',
    ],
    ids=[
        "transfer",
        "createApiKey",
        "logout",
        "enableTwoFactor",
        "passwordReset",
        "apiKeys",
        "securityEvents",
        "adminUsers",
        "depositAddress",
    ],
)
async def test_security_money_and_admin_fields_are_never_possible_with_a_key(
    gql, client, rt, document
):
    auth = await signed_in(gql)
    secret, _ = await create_key(
        gql, auth["accessToken"], ["READ_ACCOUNT", "READ_MARKET_DATA", "TRADE"]
    )
    response = await _keyed(client, document, secret)
    assert (response.status_code, _code(response)) == (403, "INSUFFICIENT_SCOPE")
    assert "not available with an API key" in response.json()["errors"][0]["message"]
    async with rt.sessions() as session:
        keys = (await session.scalars(select(ApiKey))).all()
        user = await session.scalar(select(User))
    assert len(keys) == 1 and user.totp_pending_secret is None  # nothing happened


async def test_a_refused_root_field_refuses_the_whole_operation(gql, client, rt):
    auth = await signed_in(gql)
    secret, _ = await create_key(gql, auth["accessToken"], ["READ_ACCOUNT"])
    both = "mutation { a: enableTwoFactor { __typename } b: logout { __typename } }"
    response = await _keyed(client, both, secret)
    assert response.status_code == 403
    through_fragment = "query { ...F } fragment F on Query { me { email } currencies { code } }"
    assert _code(await _keyed(client, through_fragment, secret)) == "INSUFFICIENT_SCOPE"


async def test_an_admins_key_has_no_admin_powers(gql, client, rt):
    await register(gql, "admin@example.com")
    async with rt.sessions() as session, session.begin():
        await session.execute(
            update(User).where(User.email == "admin@example.com").values(role="ADMIN")
        )
    admin = await login(gql, "admin@example.com")
    dave = await signed_in(gql, "dave@example.com")
    secret, _ = await create_key(gql, admin["accessToken"], ["READ_ACCOUNT"])
    node = "query($id: ID!) { node(id: $id) { id } }"
    as_key = await _keyed(client, node, secret, {"id": dave["user"]["id"]})
    assert as_key.json() == {"data": {"node": None}}
    as_admin = await gql.data(node, {"id": dave["user"]["id"]}, token=admin["accessToken"])
    assert as_admin["node"] == {"id": dave["user"]["id"]}


# refusals: 401 with a stable code, like a bad bearer token


async def test_a_revoked_key_is_refused(gql, client):
    auth = await signed_in(gql)
    secret, key = await create_key(gql, auth["accessToken"], ["READ_ACCOUNT"])
    revoked = await gql.data(REVOKE_API_KEY, {"id": key["id"]}, token=auth["accessToken"])
    assert revoked["revokeApiKey"]["apiKey"]["revokedAt"]
    again = await gql.data(REVOKE_API_KEY, {"id": key["id"]}, token=auth["accessToken"])
    assert (
        again["revokeApiKey"]["apiKey"]["revokedAt"]
        == revoked["revokeApiKey"]["apiKey"]["revokedAt"]
    )
    response = await _keyed(client, ME_EMAIL, secret)
    assert (response.status_code, _code(response)) == (401, "API_KEY_REVOKED")
    assert response.headers["www-authenticate"].startswith("ApiKey")


async def test_only_the_owner_revokes_a_key(gql):
    carol = await signed_in(gql)
    _, key = await create_key(gql, carol["accessToken"], ["READ_ACCOUNT"])
    dave = await signed_in(gql, "dave@example.com")
    answer = await gql.data(REVOKE_API_KEY, {"id": key["id"]}, token=dave["accessToken"])
    assert answer["revokeApiKey"]["code"] == "NOT_FOUND"


async def test_an_expired_key_is_refused(gql, client, rt):
    auth = await signed_in(gql)
    expires = (rt.now() + timedelta(minutes=5)).isoformat()
    secret, _ = await create_key(gql, auth["accessToken"], ["READ_ACCOUNT"], expiresAt=expires)
    assert (await _keyed(client, ME_EMAIL, secret)).status_code == 200
    later = rt.now() + timedelta(minutes=6)
    rt.clock = lambda: later
    response = await _keyed(client, ME_EMAIL, secret)
    assert (response.status_code, _code(response)) == (401, "API_KEY_EXPIRED")


async def test_a_key_is_refused_outside_its_ip_allowlist(gql, client):
    auth = await signed_in(gql)
    elsewhere, key = await create_key(
        gql, auth["accessToken"], ["READ_ACCOUNT"], allowedIps=["10.0.0.7/8", "2001:db8::/32"]
    )
    assert key["allowedIps"] == ["10.0.0.0/8", "2001:db8::/32"]
    here, _ = await create_key(gql, auth["accessToken"], ["READ_ACCOUNT"], allowedIps=["127.0.0.1"])
    response = await _keyed(client, ME_EMAIL, elsewhere)
    assert (response.status_code, _code(response)) == (401, "API_KEY_IP_NOT_ALLOWED")
    assert (await _keyed(client, ME_EMAIL, here)).json()["data"]["me"]


@pytest.mark.parametrize(
    "secret", ["co_" + "x" * 43, "nonsense", ""], ids=["unknown", "junk", "empty"]
)
async def test_an_unknown_key_is_refused(client, secret):
    response = await _keyed(client, ME_EMAIL, secret)
    assert (response.status_code, _code(response)) == (401, "INVALID_API_KEY")


async def test_a_token_and_a_key_together_are_refused(gql, client):
    auth = await signed_in(gql)
    secret, _ = await create_key(gql, auth["accessToken"], ["READ_ACCOUNT"])
    response = await client.post(
        "/graphql",
        json={"query": ME},
        headers={**key_header(secret), "authorization": f"Bearer {auth['accessToken']}"},
    )
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"scopes": []}, "scopes"),
        ({"scopes": ["READ_ACCOUNT"], "name": "   "}, "name"),
        ({"scopes": ["READ_ACCOUNT"], "allowedIps": ["not-an-ip"]}, "allowedIps"),
        ({"scopes": ["READ_ACCOUNT"], "expiresAt": "2001-01-01T00:00:00+00:00"}, "expiresAt"),
    ],
    ids=["no-scopes", "no-name", "bad-ip", "past-expiry"],
)
async def test_invalid_key_requests_are_typed_errors(gql, variables, field):
    auth = await signed_in(gql)
    data = await gql.data(CREATE_API_KEY, {"name": "bot", **variables}, token=auth["accessToken"])
    assert data["createApiKey"]["code"] == "VALIDATION_FAILED"
    assert data["createApiKey"]["field"] == field


async def test_creating_a_key_needs_a_signed_in_user(gql):
    data = await gql.data(CREATE_API_KEY, {"name": "bot", "scopes": ["TRADE"]})
    assert data["createApiKey"]["code"] == "UNAUTHENTICATED"


async def test_last_use_is_recorded_at_most_once_per_interval(gql, rt):
    auth = await signed_in(gql)
    secret, _ = await create_key(gql, auth["accessToken"], ["READ_ACCOUNT"])
    moment = [datetime.now(UTC)]
    rt.clock = lambda: moment[0]

    async def last_used() -> datetime | None:
        async with rt.sessions() as session:
            return await session.scalar(select(ApiKey.last_used_at))

    async with client_with(rt, api_key_last_used_interval_seconds=1) as http:
        await _keyed(http, ME_EMAIL, secret)
        first = moment[0]
        assert await last_used() == first
        moment[0] = first + timedelta(seconds=0.5)
        await _keyed(http, ME_EMAIL, secret)
        assert await last_used() == first  # no write within the interval
        await asyncio.sleep(1.1)  # the interval is kept in Redis (a key with a TTL)
        await _keyed(http, ME_EMAIL, secret)
        assert await last_used() == first + timedelta(seconds=0.5)
    listed = (await gql.data(API_KEYS, token=auth["accessToken"]))["apiKeys"]["edges"][0]["node"]
    assert listed["lastUsedIp"] == "127.0.0.1"


async def test_api_key_changes_are_security_events(gql):
    auth = await signed_in(gql)
    _, key = await create_key(gql, auth["accessToken"], ["TRADE"])
    await gql.data(REVOKE_API_KEY, {"id": key["id"]}, token=auth["accessToken"])
    events = (await gql.data(SECURITY_EVENTS, token=auth["accessToken"]))["securityEvents"]
    kinds = [e["node"]["kind"] for e in events["edges"]]
    assert kinds[:2] == ["API_KEY_REVOKED", "API_KEY_CREATED"]
    assert events["edges"][1]["node"]["details"]["scopes"] == ["TRADE"]


# over WebSocket


@pytest.fixture(scope="module")
def live(settings: Settings) -> Iterator[LiveServer]:
    server = LiveServer(create_app(settings))
    server.start()
    yield server
    server.stop()


async def test_an_api_key_in_connection_init_authenticates_with_its_scopes(live, live_gql):
    auth = await signed_in(live_gql)
    secret, _ = await create_key(live_gql, auth["accessToken"], [Scope.READ_ACCOUNT.value])
    async with await _open(live, TRANSPORT_WS) as ws:
        ack = await _init(ws, {"apiKey": secret})
        assert ack == {"type": "connection_ack", "payload": {"authenticated": True}}
        await _send(ws, {"id": "me", "type": "subscribe", "payload": {"query": ME_EMAIL}})
        me = await _receive(ws)
        await _receive(ws)  # complete
        await _send(ws, {"id": "prices", "type": "subscribe", "payload": {"query": CURRENCIES}})
        refused = await _receive(ws)
    assert me["payload"] == {"data": {"me": {"email": "carol@example.com"}}}
    assert (refused["id"], refused["type"]) == ("prices", "error")
    assert refused["payload"][0]["extensions"]["code"] == "INSUFFICIENT_SCOPE"


async def test_a_bad_api_key_closes_the_socket_with_4403(live, live_gql):
    async with await _open(live, TRANSPORT_WS) as ws:
        await _send(ws, {"type": "connection_init", "payload": {"apiKey": "co_" + "y" * 43}})
        assert await _close_code(ws) == 4403


# declarations


def _root_fields():
    from graphql_schema.schema import schema

    graphql = schema._schema
    for root in (graphql.query_type, graphql.mutation_type, graphql.subscription_type):
        for name, field in root.fields.items():
            yield f"{root.name}.{name}", field_access(field)


def test_every_root_field_declares_what_an_api_key_needs():
    undeclared = [name for name, access in _root_fields() if access is None]
    assert undeclared == [], "add extensions=requires_scope(...)/public()/session_only()"


def test_no_mutation_but_trading_is_possible_with_a_key():
    """Account security and money movement must stay session-only; trading takes TRADE."""
    open_to_keys = [
        name
        for name, access in _root_fields()
        if name.startswith("Mutation.")
        and access is not None
        and not access.session_only
        and access.scope is not Scope.TRADE
    ]
    assert open_to_keys == []
