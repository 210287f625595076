"""An open WebSocket keeps only the authority its credential has now: every operation is
checked against the credential's current state; logout, logout everywhere, a password
reset and an API key's revocation close the affected sockets on every server process
(two real servers on one PostgreSQL and Redis here); an expired token closes its socket
with a code of its own. Both protocols time out a missing ``connection_init``, and a
client may hold only so many sockets open. Real uvicorn servers, real clients."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from sqlalchemy import func, select, update
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from app.asgi import create_app
from app.core.settings import Settings
from app.events.outbox import channel
from db.models import ApiKey, Order, User
from tests.gateway.test_websocket import (
    LEGACY_WS,
    TRANSPORT_WS,
    LiveServer,
    _open,
    _receive,
    _send,
    _token,
)
from tests.support import GraphQLClient
from tests.support.documents import LOGOUT, REQUEST_RESET, RESET_PASSWORD, login, signed_in
from tests.support.partner import CREATE_API_KEY, ME_EMAIL, REVOKE_API_KEY, create_key

EXPIRED = 4440
REVOKED = 4403
TOO_MANY = 4430
INIT_TIMEOUT = 4408
CLOSE_WITHIN = 5.0  # seconds a revocation may take to close a socket
CLOCK = "subscription { serverTime(everySeconds: 1, count: 1) }"
MY_FILLS = "subscription { myFills { tradeId } }"
USERS = "{ users(first: 5) { edges { node { email } } } }"
PLACE = """mutation { placeOrder(input: {symbol: "BTC/USDT", side: BUY, type: LIMIT,
  quantity: "0.001", price: "50000"}) { __typename } }"""


class Server(LiveServer):
    def __init__(self, app: Starlette) -> None:
        super().__init__(app)
        self.app = app


def _server(settings: Settings, **overrides: Any) -> Server:
    # The periodic re-check is far away: what closes a socket here is the broadcast.
    changed = {"trading_engine_enabled": False, "ws_auth_recheck_seconds": 300, **overrides}
    return Server(create_app(settings.model_copy(update=changed)))


@pytest.fixture(scope="module")
def servers(settings: Settings) -> Iterator[tuple[Server, Server]]:
    """Two server processes' worth of app (each its own runtime and pub/sub hub) on the
    same PostgreSQL and Redis."""
    pair = (_server(settings), _server(settings))
    for server in pair:
        server.start()
    yield pair
    for server in pair:
        server.stop()


@pytest.fixture
def live(servers: tuple[Server, Server]) -> Server:
    return servers[0]


@pytest.fixture
def other(servers: tuple[Server, Server]) -> Server:
    return servers[1]


@pytest.fixture(scope="module")
def strict(settings: Settings) -> Iterator[Server]:
    """A server with a short connection_init timeout, few sockets per client and a
    frequent periodic re-check."""
    server = _server(
        settings,
        ws_connection_init_timeout_seconds=1,
        ws_max_connections_per_client=3,
        ws_auth_recheck_seconds=1,
    )
    server.start()
    yield server
    server.stop()


async def _authed(server: LiveServer, payload: dict[str, Any], protocol=TRANSPORT_WS):
    ws = await _open(server, protocol)
    await _send(ws, {"type": "connection_init", "payload": payload})
    ack = await _receive(ws)
    assert ack["type"] == "connection_ack" and ack["payload"] == {"authenticated": True}, ack
    return ws


async def _subscribed(server: Server, token: str, user_id: int) -> ClientConnection:
    """A socket with an active myFills subscription, confirmed by the server's hub."""
    ws = await _authed(server, {"authToken": token})
    await _send(ws, {"id": "fills", "type": "subscribe", "payload": {"query": MY_FILLS}})
    await _until(lambda: _fill_subscribers(server, user_id) == 1)
    return ws


def _fill_subscribers(server: Server, user_id: int) -> int:
    name = channel(server.app.state.rt.settings.redis_prefix, "fills", user_id)
    return server.app.state.hub.local_subscribers(name)


async def _until(condition, within: float = CLOSE_WITHIN) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def _closed(ws: ClientConnection, within: float = CLOSE_WITHIN) -> tuple[int, str]:
    """Wait for the server's close frame (ignoring messages before it): (code, reason)."""
    deadline = time.monotonic() + within
    try:
        while True:
            await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "the connection dropped without a close frame"
        return closed.rcvd.code, closed.rcvd.reason
    except TimeoutError:
        raise AssertionError(f"the socket is still open after {within} s") from None


async def _still_open(ws: ClientConnection) -> None:
    """The socket answers an operation."""
    await _send(ws, {"id": "probe", "type": "subscribe", "payload": {"query": ME_EMAIL}})
    message = await _receive(ws)
    assert message["type"] == "next" and message["payload"]["data"]["me"], message


def _user_id(token: str) -> int:
    return int(jwt.decode(token, options={"verify_signature": False})["sub"])


def _expiring_token(settings: Settings, *, user_id: int, seconds: float) -> str:
    now = time.time()
    claims = {
        "sub": str(user_id),
        "iat": now,
        "exp": int(now + seconds),
        "jti": uuid.uuid4().hex,
        "iss": settings.jwt_issuer,
        "aud": "access",
        "role": "USER",
    }
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


@pytest.fixture
def gql(live_gql: GraphQLClient) -> GraphQLClient:
    """GraphQL over HTTP to the first server (conftest's ``live_gql``)."""
    return live_gql


# revocations close sockets, with their subscriptions, on every process


async def test_logout_closes_the_sessions_socket_and_ends_its_subscription(live, gql):
    auth = await signed_in(gql)
    token, uid = auth["accessToken"], _user_id(auth["accessToken"])
    second = (await login(gql))["accessToken"]  # another session of the same user
    ws = await _subscribed(live, token, uid)
    kept = await _authed(live, {"authToken": second})
    out = await gql.data(LOGOUT, {"t": auth["refreshToken"]}, token=token)
    assert out["logout"]["revoked"] is True

    code, reason = await _closed(ws)
    assert (code, reason) == (REVOKED, "Session revoked: sign in again")
    await _until(lambda: _fill_subscribers(live, uid) == 0)
    await _still_open(kept)  # logout (not everywhere) ends only this session
    await kept.close()


async def test_logout_everywhere_closes_every_session_on_every_process(live, other, gql):
    auth = await signed_in(gql)
    uid = _user_id(auth["accessToken"])
    second = (await login(gql))["accessToken"]
    here = await _subscribed(live, auth["accessToken"], uid)
    there = await _subscribed(other, second, uid)  # another process, another session
    variables = {"t": auth["refreshToken"], "everywhere": True}
    assert (await gql.data(LOGOUT, variables, token=auth["accessToken"]))["logout"]["revoked"]

    assert (await _closed(here))[0] == REVOKED
    assert (await _closed(there))[0] == REVOKED
    await _until(lambda: _fill_subscribers(other, uid) == 0)


async def test_a_logout_through_one_process_closes_the_socket_on_another(live, other, gql):
    auth = await signed_in(gql)
    uid = _user_id(auth["accessToken"])
    there = await _subscribed(other, auth["accessToken"], uid)
    # the logout goes to the first server; the socket is served by the second
    await gql.data(LOGOUT, {"t": auth["refreshToken"]}, token=auth["accessToken"])
    assert await _closed(there) == (REVOKED, "Session revoked: sign in again")
    await _until(lambda: _fill_subscribers(other, uid) == 0)


async def test_a_password_reset_closes_the_accounts_sockets(live, other, gql, mailbox):
    auth = await signed_in(gql)
    uid = _user_id(auth["accessToken"])
    here = await _subscribed(live, auth["accessToken"], uid)
    legacy = await _authed(other, {"authToken": auth["accessToken"]}, LEGACY_WS)
    await gql.data(REQUEST_RESET, {"email": "carol@example.com"})
    link = mailbox.last_link("carol@example.com", "/reset-password")
    token = parse_qs(urlsplit(link).query)["token"][0]
    done = await gql.data(RESET_PASSWORD, {"t": token, "p": "another horse battery 99"})
    assert done["resetPassword"]["__typename"] == "UserPayload", done

    assert (await _closed(here))[0] == REVOKED
    assert (await _closed(legacy))[0] == REVOKED  # the legacy protocol too


async def test_revoking_an_api_key_closes_its_sockets(live, other, gql):
    auth = await signed_in(gql)
    secret, key = await create_key(gql, auth["accessToken"], ["READ_ACCOUNT"])
    here = await _authed(live, {"apiKey": secret})
    there = await _authed(other, {"apiKey": secret})
    session_socket = await _authed(other, {"authToken": auth["accessToken"]})
    revoked = await gql.data(REVOKE_API_KEY, {"id": key["id"]}, token=auth["accessToken"])
    assert revoked["revokeApiKey"]["apiKey"]["revokedAt"]

    assert await _closed(here) == (REVOKED, "API key revoked: use a valid key")
    assert (await _closed(there))[0] == REVOKED
    await _still_open(session_socket)  # the owner's session is not the key
    await session_socket.close()


# every operation is checked against the credential's current state


async def _revoke_silently(rt, user_id: int) -> None:
    """Revoke every token of the user in PostgreSQL only: no broadcast, so what refuses
    the next operation is its own check."""
    async with rt.sessions() as session, session.begin():
        await session.execute(
            update(User).where(User.id == user_id).values(tokens_valid_after=func.now())
        )


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_new_mutation_on_a_revoked_socket_is_refused(live, gql, rt, protocol):
    auth = await signed_in(gql)
    uid = _user_id(auth["accessToken"])
    ws = await _authed(live, {"authToken": auth["accessToken"]}, protocol)
    await asyncio.sleep(0.05)  # issued_at < tokens_valid_after, whatever the clocks' grain
    await _revoke_silently(rt, uid)
    start = "subscribe" if protocol == TRANSPORT_WS else "start"
    variables = {"name": "stolen", "scopes": ["TRADE"]}
    payload = {"query": CREATE_API_KEY, "variables": variables}
    await _send(ws, {"id": "key", "type": start, "payload": payload})

    assert (await _closed(ws))[0] == REVOKED
    async with rt.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(ApiKey)) == 0


async def test_place_order_on_a_revoked_socket_is_refused(live, gql, rt):
    auth = await signed_in(gql)
    ws = await _authed(live, {"authToken": auth["accessToken"]})
    await asyncio.sleep(0.05)
    await _revoke_silently(rt, _user_id(auth["accessToken"]))
    await _send(ws, {"id": "order", "type": "subscribe", "payload": {"query": PLACE}})

    assert (await _closed(ws))[0] == REVOKED
    async with rt.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Order)) == 0


async def test_a_demoted_admin_loses_admin_operations_on_an_open_socket(live, gql, rt):
    auth = await signed_in(gql, "root@example.com")
    async with rt.sessions() as session, session.begin():
        await session.execute(
            update(User).where(User.email == "root@example.com").values(role="ADMIN")
        )
    ws = await _authed(live, {"authToken": auth["accessToken"]})
    await _send(ws, {"id": "1", "type": "subscribe", "payload": {"query": USERS}})
    allowed = await _receive(ws)
    assert "errors" not in allowed["payload"], allowed
    async with rt.sessions() as session, session.begin():
        await session.execute(
            update(User).where(User.email == "root@example.com").values(role="USER")
        )

    await _receive(ws)  # complete
    await _send(ws, {"id": "2", "type": "subscribe", "payload": {"query": USERS}})
    refused = await _receive(ws)
    assert refused["payload"]["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    await ws.close()


async def test_the_periodic_recheck_closes_a_socket_revoked_without_a_signal(strict, rt):
    async with httpx.AsyncClient(base_url=strict.url, timeout=10) as http:
        auth = await signed_in(GraphQLClient(http))
    uid = _user_id(auth["accessToken"])
    ws = await _subscribed(strict, auth["accessToken"], uid)
    await asyncio.sleep(0.05)
    await _revoke_silently(rt, uid)  # no broadcast: only the periodic re-check finds it

    assert await _closed(ws, within=3) == (REVOKED, "Session revoked: sign in again")
    await _until(lambda: _fill_subscribers(strict, uid) == 0)


# expiry


async def test_an_expired_token_closes_its_socket_with_the_refresh_code(live, gql, settings):
    auth = await signed_in(gql)
    uid = _user_id(auth["accessToken"])
    token = _expiring_token(settings, user_id=uid, seconds=2)
    ws = await _subscribed(live, token, uid)
    started = time.monotonic()

    assert await _closed(ws) == (EXPIRED, "Token expired: refresh and reconnect")
    assert time.monotonic() - started < 4
    await _until(lambda: _fill_subscribers(live, uid) == 0)


# connection_init timeout and sockets per client


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_socket_without_connection_init_is_closed(strict, protocol):
    async with await _open(strict, protocol) as ws:
        started = time.monotonic()
        code, _ = await _closed(ws, within=3)
        assert code == INIT_TIMEOUT
        assert 0.8 < time.monotonic() - started < 3
    async with await _open(strict, protocol) as ws:  # an initialised one stays open
        await _send(ws, {"type": "connection_init", "payload": {}})
        assert (await _receive(ws))["type"] == "connection_ack"
        await asyncio.sleep(1.3)
        start = "subscribe" if protocol == TRANSPORT_WS else "start"
        await _send(ws, {"id": "1", "type": start, "payload": {"query": CLOCK}})
        answer = await _receive(ws)
        while answer["type"] == "ka":  # the legacy protocol's keep-alive
            answer = await _receive(ws)
        assert answer["payload"]["data"]["serverTime"], answer


async def test_a_client_may_hold_only_so_many_sockets(strict):
    first = [await _open(strict, TRANSPORT_WS), await _open(strict, LEGACY_WS)]
    first.append(await _open(strict, TRANSPORT_WS))
    for ws in first:
        await _send(ws, {"type": "connection_init", "payload": {}})
        assert (await _receive(ws))["type"] == "connection_ack"
    extra = await _open(strict, LEGACY_WS)
    assert await _closed(extra, within=2) == (TOO_MANY, "Too many open sockets from this client")

    await first.pop().close()
    await asyncio.sleep(0.2)  # the server's handler ends after the close handshake
    again = await _open(strict, TRANSPORT_WS)
    await _send(again, {"type": "connection_init", "payload": {}})
    assert (await _receive(again))["type"] == "connection_ack"
    for ws in (*first, again):
        await ws.close()


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_an_expired_token_at_connection_init_says_refresh_not_sign_in(
    live, gql, settings, protocol
):
    """A genuine token past its exp is told apart from a revoked or forged one at
    connection_init too: 4440 (refresh and reconnect), not 4403 (sign in again)."""
    auth = await signed_in(gql)
    expired = _token(settings, user_id=_user_id(auth["accessToken"]), age=3600)
    ws = await _open(live, protocol)
    await _send(ws, {"type": "connection_init", "payload": {"authToken": expired}})
    assert await _closed(ws) == (EXPIRED, "Token expired: refresh and reconnect")
