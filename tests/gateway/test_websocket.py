"""GraphQL over WebSocket against a real uvicorn server and a real client (``websockets``):
graphql-transport-ws and the legacy graphql-ws protocol, authentication in
``connection_init``, protocol violations, and closing open sockets on shutdown."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from app.asgi import create_app
from app.core.settings import Settings
from tests.support.documents import LOGOUT, VERIFY_EMAIL, signed_in

TRANSPORT_WS = Subprotocol("graphql-transport-ws")
LEGACY_WS = Subprotocol("graphql-ws")
TIMEOUT = 2.0
CLOCK = "subscription { serverTime(everySeconds: 1, count: 2) }"
ME_OVER_WS = "{ me { email } }"


class LiveServer:
    """A real uvicorn server for ``app`` in a background thread with its own event loop,
    listening on a pre-bound socket on 127.0.0.1 (no port race)."""

    def __init__(self, app: Starlette) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        host, port = self.socket.getsockname()
        self.url = f"http://{host}:{port}"
        self.ws_url = f"ws://{host}:{port}/graphql"
        config = uvicorn.Config(
            app, lifespan="on", log_config=None, log_level="warning", timeout_graceful_shutdown=5
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self.thread.is_alive(), "uvicorn exited during start-up"
            assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
            time.sleep(0.01)

    def request_shutdown(self) -> None:
        self.server.should_exit = True

    def stop(self) -> None:
        self.request_shutdown()
        self.thread.join(timeout=10)
        self.socket.close()
        assert not self.thread.is_alive(), "uvicorn did not shut down within 10 s"


def serving(settings: Settings) -> Iterator[LiveServer]:
    """A fixture's server for ``settings`` without trading engines (its outbox relay, hub
    and consumers running): the test's own engines, or none, move the book."""
    server = LiveServer(create_app(settings.model_copy(update={"trading_engine_enabled": False})))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def live(settings: Settings) -> Iterator[LiveServer]:
    """One server for the module; create_app(settings) builds its own runtime in lifespan,
    on the same test database and Redis database as the ``rt`` fixture."""
    server = LiveServer(create_app(settings))
    server.start()
    yield server
    server.stop()


async def _open(live: LiveServer, *subprotocols: Subprotocol) -> ClientConnection:
    return await connect(
        live.ws_url,
        subprotocols=list(subprotocols) or None,  # [] would send an empty header
        open_timeout=TIMEOUT,
        close_timeout=TIMEOUT,
    )


async def _send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(json.dumps(message))


async def _receive(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


async def _close_code(ws: ClientConnection) -> int:
    """The next thing from the server must be a close frame: return its code."""
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert closed.value.rcvd is not None, "the connection dropped without a close frame"
    return closed.value.rcvd.code


async def _init(ws: ClientConnection, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    await _send(ws, {"type": "connection_init", "payload": payload or {}})
    return await _receive(ws)


def _token(settings: Settings, *, user_id: int, key: str | None = None, age: int = 0) -> str:
    now = int(time.time()) - age
    claims = {
        "sub": str(user_id),
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "iss": settings.jwt_issuer,
        "aud": "access",
        "role": "USER",
    }
    return jwt.encode(claims, key or settings.jwt_secret.get_secret_value(), algorithm="HS256")


# graphql-transport-ws


async def test_anonymous_connection_is_acknowledged_and_streams_the_clock(live):
    async with await _open(live, TRANSPORT_WS) as ws:
        assert await _init(ws) == {"type": "connection_ack", "payload": {"authenticated": False}}
        await _send(ws, {"id": "1", "type": "subscribe", "payload": {"query": CLOCK}})
        ticks = [await _receive(ws), await _receive(ws)]
        assert await _receive(ws) == {"id": "1", "type": "complete"}
    assert [(m["id"], m["type"]) for m in ticks] == [("1", "next"), ("1", "next")]
    assert all(set(m["payload"]) == {"data"} for m in ticks), ticks
    times = [m["payload"]["data"]["serverTime"] for m in ticks]
    assert times[0] < times[1]


@pytest.mark.parametrize(
    "payload",
    [
        lambda token: {"authorization": f"Bearer {token}"},
        lambda token: {"Authorization": f"Bearer {token}"},
        lambda token: {"authToken": token},
    ],
    ids=["authorization-bearer", "Authorization-bearer", "authToken"],
)
async def test_a_valid_access_token_authenticates_the_connection(live, live_gql, payload):
    auth = await signed_in(live_gql)
    async with await _open(live, TRANSPORT_WS) as ws:
        ack = await _init(ws, payload(auth["accessToken"]))
        assert ack == {"type": "connection_ack", "payload": {"authenticated": True}}
        await _send(ws, {"id": "me", "type": "subscribe", "payload": {"query": ME_OVER_WS}})
        result = await _receive(ws)
        assert result == {
            "id": "me",
            "type": "next",
            "payload": {"data": {"me": {"email": "carol@example.com"}}},
        }
        assert await _receive(ws) == {"id": "me", "type": "complete"}


@pytest.mark.parametrize(
    "payload",
    [
        lambda s, uid: {"authToken": _token(s, user_id=uid, key="another-secret-" + "x" * 32)},
        lambda s, uid: {"authToken": _token(s, user_id=uid + 1000)},
        lambda s, uid: {"authToken": "not.a.jwt"},
        lambda s, uid: {"authorization": "Basic dXNlcjpwYXNz"},
        lambda s, uid: {"authorization": ""},
    ],
    ids=["forged", "unknown-user", "garbage", "not-bearer", "empty"],
)
async def test_a_bad_token_is_refused_with_4403(live, live_gql, settings, payload):
    auth = await signed_in(live_gql)
    user_id = int(jwt.decode(auth["accessToken"], options={"verify_signature": False})["sub"])
    async with await _open(live, TRANSPORT_WS) as ws:
        await _send(ws, {"type": "connection_init", "payload": payload(settings, user_id)})
        assert await _close_code(ws) == 4403


async def test_each_operation_on_a_connection_reads_fresh_data(live, live_gql, mailbox):
    """The context lives as long as the connection: its DataLoader cache must not."""
    auth = await signed_in(live_gql)
    query = {"query": "{ me { emailVerified } }"}
    async with await _open(live, TRANSPORT_WS) as ws:
        await _init(ws, {"authToken": auth["accessToken"]})
        await _send(ws, {"id": "before", "type": "subscribe", "payload": query})
        before = await _receive(ws)
        assert await _receive(ws) == {"id": "before", "type": "complete"}

        link = mailbox.last_link("carol@example.com", "/verify-email")
        token = parse_qs(urlsplit(link).query)["token"][0]
        verified = await live_gql.data(VERIFY_EMAIL, {"t": token})
        assert verified["verifyEmail"]["user"] == {"emailVerified": True}

        await _send(ws, {"id": "after", "type": "subscribe", "payload": query})
        after = await _receive(ws)
    assert before["payload"] == {"data": {"me": {"emailVerified": False}}}
    assert after["payload"] == {"data": {"me": {"emailVerified": True}}}


async def test_a_token_revoked_by_logout_is_refused_with_4403(live, live_gql):
    auth = await signed_in(live_gql)
    out = await live_gql.data(LOGOUT, {"t": auth["refreshToken"]}, token=auth["accessToken"])
    assert out["logout"] == {"__typename": "LogoutPayload", "revoked": True}
    async with await _open(live, TRANSPORT_WS) as ws:
        await _send(ws, {"type": "connection_init", "payload": {"authToken": auth["accessToken"]}})
        assert await _close_code(ws) == 4403


async def test_subscribe_before_connection_init_closes_with_4401(live):
    async with await _open(live, TRANSPORT_WS) as ws:
        await _send(ws, {"id": "1", "type": "subscribe", "payload": {"query": CLOCK}})
        assert await _close_code(ws) == 4401


async def test_a_second_connection_init_closes_with_4429(live):
    async with await _open(live, TRANSPORT_WS) as ws:
        assert (await _init(ws))["type"] == "connection_ack"
        await _send(ws, {"type": "connection_init", "payload": {}})
        assert await _close_code(ws) == 4429


@pytest.mark.parametrize("offered", [[Subprotocol("graphql-sse-ws")], []], ids=["unknown", "none"])
async def test_an_unsupported_subprotocol_closes_with_4406(live, offered):
    async with await _open(live, *offered) as ws:
        assert ws.subprotocol is None
        assert await _close_code(ws) == 4406


async def test_an_invalid_interval_is_an_error_with_a_code(live):
    async with await _open(live, TRANSPORT_WS) as ws:
        await _init(ws)
        query = "subscription { serverTime(everySeconds: 0, count: 1) }"
        await _send(ws, {"id": "bad", "type": "subscribe", "payload": {"query": query}})
        message = await _receive(ws)
        assert await _receive(ws) == {"id": "bad", "type": "complete"}
    assert (message["id"], message["type"], message["payload"]["data"]) == ("bad", "next", None)
    [error] = message["payload"]["errors"]
    assert error["message"] == "everySeconds must be between 1 and 60"
    assert error["extensions"]["code"] == "VALIDATION_FAILED"
    assert error["extensions"]["field"] == "everySeconds"
    assert error["extensions"]["requestId"]


# the legacy graphql-ws protocol (subscriptions-transport-ws)


async def test_legacy_protocol_streams_the_clock(live):
    async with await _open(live, LEGACY_WS) as ws:
        assert ws.subprotocol == LEGACY_WS
        assert await _init(ws) == {"type": "connection_ack", "payload": {"authenticated": False}}
        await _send(ws, {"id": "1", "type": "start", "payload": {"query": CLOCK}})
        ticks = [await _receive(ws), await _receive(ws)]
        assert await _receive(ws) == {"id": "1", "type": "complete"}
    assert [(m["id"], m["type"]) for m in ticks] == [("1", "data"), ("1", "data")]
    assert all(isinstance(m["payload"]["data"]["serverTime"], str) for m in ticks)


async def test_legacy_protocol_refuses_a_bad_token_with_connection_error(live, settings):
    async with await _open(live, LEGACY_WS) as ws:
        forged = _token(settings, user_id=1, key="another-secret-" + "x" * 32)
        message = await _init(ws, {"authToken": forged})
        assert message["type"] == "connection_error"
        assert "Invalid access token" in message["payload"]["message"]
        assert await _close_code(ws) == 1011


# gauges and shutdown


async def test_open_connections_are_counted(live):
    async def open_connections() -> float:
        async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as http:
            text = (await http.get("/metrics")).text
        families = text_string_to_metric_families(text)
        [gauge] = [f for f in families if f.name == "websocket_connections_open"]
        return gauge.samples[0].value

    before = await open_connections()
    async with await _open(live, TRANSPORT_WS) as ws:
        await _init(ws)
        assert await open_connections() == before + 1
    # the server's handler finishes just after the close handshake
    for _ in range(100):
        if (after := await open_connections()) == before:
            break
        await asyncio.sleep(0.01)
    assert after == before


async def test_shutdown_closes_open_websockets(settings):
    server = LiveServer(create_app(settings))
    await asyncio.to_thread(server.start)
    try:
        async with await _open(server, TRANSPORT_WS) as ws:
            await _init(ws)
            endless = "subscription { serverTime(everySeconds: 60) }"
            await _send(ws, {"id": "1", "type": "subscribe", "payload": {"query": endless}})
            assert (await _receive(ws))["type"] == "next"
            server.request_shutdown()
            assert await _close_code(ws) in (1001, 1012)
    finally:
        await asyncio.to_thread(server.stop)
