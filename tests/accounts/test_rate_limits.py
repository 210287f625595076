"""Rate limits in Redis: a burst is blocked (HTTP 429, Retry-After, RATE_LIMITED) and
recovers after the window; budgets are per IP, per user and per key; each request draws
its query cost; logins back off per account and are limited per IP; order placement has
its own budget; over WebSocket the refused operation gets an error; and two server
processes sharing Redis share one budget."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from app.accounts.rate_limits import Budget, Caller, draw, draw_request, orders_budget
from app.asgi import create_app
from app.core.settings import Settings
from app.runtime import Runtime
from bench.processes import Children, free_port, wait_until_serving
from tests.gateway.test_websocket import TRANSPORT_WS, LiveServer, _init, _open, _receive, _send
from tests.support import RedisCommands
from tests.support.documents import LOGIN, PASSWORD, register, signed_in
from tests.support.partner import client_with, create_key, key_header, trading_client, with_settings

CLOCK = "{ serverTime }"
THREE = "{ a: serverTime b: serverTime c: serverTime }"
LOGIN_RESULT = LOGIN  # its union includes RateLimited (an Error)


async def _reset(rt: Runtime) -> None:
    """Forget the budgets spent while setting a test up (on the default settings)."""
    keys = await rt.redis.keys(rt.redis_key("rl", "*"))
    if keys:
        await rt.redis.delete(*keys)


async def _post(http: httpx.AsyncClient, query: str, headers: dict | None = None, **variables):
    return await http.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers or {}
    )


def _bearer(auth: dict) -> dict[str, str]:
    return {"authorization": f"Bearer {auth['accessToken']}"}


def _error(response: httpx.Response) -> dict:
    return response.json()["errors"][0]


async def test_a_burst_is_blocked_with_429_and_retry_after(rt):
    async with client_with(rt, rate_limit_anonymous=5, rate_limit_window_seconds=60) as http:
        answers = [await _post(http, CLOCK) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert [a.headers["ratelimit-remaining"] for a in answers[:5]] == ["4", "3", "2", "1", "0"]
    assert answers[0].headers["ratelimit-limit"] == "5"
    assert answers[0].headers["ratelimit-policy"] == "5;w=60"
    refused = answers[-1]
    assert 1 <= int(refused.headers["retry-after"]) <= 12  # one unit refills in 12 s
    assert refused.headers["ratelimit-remaining"] == "0"
    error = _error(refused)
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert error["extensions"]["retryAfter"] == int(refused.headers["retry-after"])
    assert "data" not in refused.json()


async def test_the_budget_recovers_after_the_window(rt):
    async with client_with(rt, rate_limit_anonymous=3, rate_limit_window_seconds=1) as http:
        burst = [(await _post(http, CLOCK)).status_code for _ in range(4)]
        await asyncio.sleep(1.05)
        later = [(await _post(http, CLOCK)).status_code for _ in range(3)]
    assert burst == [200, 200, 200, 429]
    assert later == [200, 200, 200]


async def test_each_request_draws_its_query_cost(rt):
    async with client_with(rt, rate_limit_anonymous=10) as http:
        three = await _post(http, THREE)
        one = await _post(http, CLOCK)
        too_much = [await _post(http, THREE) for _ in range(3)]
    assert three.headers["ratelimit-remaining"] == "7"
    assert one.headers["ratelimit-remaining"] == "6"
    assert [r.status_code for r in too_much] == [200, 200, 429]


async def test_users_keys_and_addresses_have_their_own_budgets(gql, rt):
    carol = await signed_in(gql)
    dave = await signed_in(gql, "dave@example.com")
    secret, _ = await create_key(gql, carol["accessToken"], ["READ_ACCOUNT"])
    await _reset(rt)
    async with client_with(rt, rate_limit_authenticated=3, rate_limit_anonymous=3) as http:
        carols = [(await _post(http, CLOCK, _bearer(carol))).status_code for _ in range(4)]
        daves = [(await _post(http, CLOCK, _bearer(dave))).status_code for _ in range(3)]
        keys = [(await _post(http, CLOCK, key_header(secret))).status_code for _ in range(3)]
        anonymous = [(await _post(http, CLOCK)).status_code for _ in range(3)]
    assert carols == [200, 200, 200, 429]
    assert daves == keys == anonymous == [200, 200, 200]


# login attempts


async def _login(http: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await _post(http, LOGIN_RESULT, email=email, password=password, totp=None)


def _login_code(response: httpx.Response) -> str:
    result = response.json()["data"]["login"]
    return result.get("code") or result["__typename"]


async def test_login_backs_off_after_consecutive_failures(gql, rt):
    await register(gql)
    await _reset(rt)
    async with client_with(rt, login_backoff_after_failures=2) as http:
        failures = [await _login(http, "carol@example.com", "wrong password 1") for _ in range(2)]
        locked = await _login(http, "Carol@Example.com", PASSWORD)  # the right one
        await asyncio.sleep(1.05)  # 1 s after the 2nd failure, 2 s after the 3rd ...
        unlocked = await _login(http, "carol@example.com", PASSWORD)
        after_success = await _login(http, "carol@example.com", "wrong again")
        not_locked = await _login(http, "carol@example.com", PASSWORD)
    assert [_login_code(r) for r in failures] == ["INVALID_CREDENTIALS"] * 2
    assert locked.status_code == 429
    assert locked.headers["retry-after"] == "1"
    assert _login_code(locked) == "RATE_LIMITED"
    assert _login_code(unlocked) == "AuthPayload"
    assert _login_code(after_success) == "INVALID_CREDENTIALS"  # the count started over
    assert _login_code(not_locked) == "AuthPayload"


async def test_login_attempts_are_limited_per_ip_and_per_account(rt):
    limited = with_settings(rt, login_attempts_per_ip=3, login_attempts_per_account=2)
    app = create_app(runtime=limited)

    def client(ip: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(ip, 4321))
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")

    async with client("10.0.0.1") as first, client("10.0.0.2") as second:
        per_ip = [await _login(first, f"u{i}@example.com", "x" * 12) for i in range(4)]
        elsewhere = await _login(second, "v@example.com", "x" * 12)
        account = [await _login(second, "u0@example.com", "x" * 12) for _ in range(2)]
    assert [_login_code(r) for r in per_ip] == ["INVALID_CREDENTIALS"] * 3 + ["RATE_LIMITED"]
    assert _login_code(elsewhere) == "INVALID_CREDENTIALS"
    # u0 was tried once from the first address: one more attempt is left for the account
    assert [_login_code(r) for r in account] == ["INVALID_CREDENTIALS", "RATE_LIMITED"]


# order placement


async def test_order_placement_has_its_own_budget(gql, rt):
    auth = await signed_in(gql)
    secret, _ = await create_key(gql, auth["accessToken"], ["TRADE"])
    await _reset(rt)
    async with trading_client(rt, rate_limit_orders=2) as http:
        orders = [
            await _post(http, "mutation { placeOrder }", key_header(secret)) for _ in range(3)
        ]
        reads = await _post(http, CLOCK, key_header(secret))
    assert [r.status_code for r in orders] == [200, 200, 429]
    assert _error(orders[-1])["message"] == "Too many orders, slow down"
    assert reads.status_code == 200


# over WebSocket


@pytest.fixture
def tight_server(settings: Settings) -> Iterator[LiveServer]:
    server = LiveServer(create_app(settings.model_copy(update={"rate_limit_anonymous": 2})))
    server.start()
    yield server
    server.stop()


async def test_over_websocket_the_refused_operation_gets_an_error(tight_server, rt):
    query = {"query": "{ serverTime }"}
    async with await _open(tight_server, TRANSPORT_WS) as ws:
        await _init(ws)
        answers = []
        for n in range(3):
            await _send(ws, {"id": str(n), "type": "subscribe", "payload": query})
            answers.append(await _receive(ws))
            if answers[-1]["type"] == "next":
                assert (await _receive(ws))["type"] == "complete"
    assert [a["type"] for a in answers] == ["next", "next", "error"]
    [error] = answers[-1]["payload"]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert error["extensions"]["retryAfter"] >= 1


# two server processes, one Redis


@pytest.fixture
async def two_processes(settings: Settings, rt: Runtime, tmp_path) -> AsyncIterator[list[int]]:
    env = {
        **os.environ,
        "ENV": "test",
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "REDIS_PREFIX": settings.redis_prefix,
        "DATA_DIR": str(tmp_path),
        "SEED_DEMO_DATA": "false",
        "LOG_LEVEL": "WARNING",
        "LOG_JSON": "false",
        "WITHDRAWAL_WORKER_INTERVAL_SECONDS": "0",
        "RATE_LIMIT_ANONYMOUS": "6",
        "RATE_LIMIT_WINDOW_SECONDS": "60",
    }
    ports = [free_port(), free_port()]
    with Children() as children, (tmp_path / "servers.log").open("wb") as log:
        procs = [
            children.start(_uvicorn(port), env=env, stdout=log, stderr=subprocess.STDOUT)
            for port in ports
        ]
        for proc, port in zip(procs, ports, strict=True):
            await asyncio.to_thread(wait_until_serving, proc, port)
        yield ports


def _uvicorn(port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "app.asgi:create_app_from_env", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip


async def test_two_server_processes_share_one_budget(two_processes):
    first, second = two_processes
    async with (
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{first}", timeout=5) as a,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{second}", timeout=5) as b,
    ):
        statuses = []
        for n in range(8):
            response = await _post(a if n % 2 == 0 else b, CLOCK)
            statuses.append(response.status_code)
    assert statuses == [200] * 6 + [429, 429]


async def test_concurrent_draws_share_a_round_trip_and_spend_the_budget_exactly(rt):
    """Draws of the same moment go to Redis together (one pipeline): on one budget of 5,
    eight at once get exactly five yeses, in order; after Redis forgot the script (a
    restart, SCRIPT FLUSH) it is loaded again and the draws go on."""
    budget = Budget("test", 5, 60)
    decisions = await asyncio.gather(*(draw(rt, budget, "someone", 1) for _ in range(8)))
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    await rt.redis.script_flush()
    again = await asyncio.gather(*(draw(rt, budget, f"other{i}", 2) for i in range(3)))
    assert [(d.allowed, d.remaining) for d in again] == [(True, 3)] * 3


@pytest.fixture
async def counted(rt: Runtime) -> AsyncIterator[tuple[Runtime, RedisCommands]]:
    """The test runtime on a Redis client that records what it sends (its own draws
    coalescer, so the draws go through that client), with small budgets."""
    commands = RedisCommands()
    redis = commands.client(rt.redis)
    tight = with_settings(rt, rate_limit_authenticated=10, rate_limit_orders=3)
    yield dataclasses.replace(tight, redis=redis, _coalescers={}), commands
    await redis.aclose()


SOMEONE = Caller("user", "7")


async def _orders_left(rt: Runtime) -> int:
    """The orders budget's remaining units, read by drawing nothing from it."""
    return (await draw(rt, orders_budget(rt), f"{SOMEONE.kind}:{SOMEONE.id}", 0)).remaining


async def test_an_order_placement_draws_both_budgets_in_one_script_call(counted):
    """The api and orders budgets of a placeOrder request are one EVALSHA, one round
    trip (they were two, one after the other); after Redis forgot the script it is
    loaded and the call retried."""
    rt, commands = counted
    await draw(rt, Budget("warm-up", 1, 60), "someone", 1)  # connected, script loaded
    commands.sends.clear()
    decision = await draw_request(rt, caller=SOMEONE, cost=2, orders=1)
    assert commands.sent("EVALSHA", "EVAL") == [["EVALSHA"]]
    assert (decision.budget, decision.allowed, decision.remaining) == ("api", True, 8)
    assert await _orders_left(rt) == 2

    await rt.redis.script_flush()
    commands.sends.clear()
    again = await draw_request(rt, caller=SOMEONE, cost=2, orders=1)
    loaded = commands.sent("EVALSHA", "EVAL", "SCRIPT LOAD")
    assert loaded == [["EVALSHA"], ["SCRIPT LOAD"], ["EVALSHA"]]
    assert (again.budget, again.allowed, again.remaining) == ("api", True, 6)
    assert await _orders_left(rt) == 1


async def test_when_the_api_budget_refuses_the_orders_budget_is_not_charged(counted):
    rt, _ = counted
    first = await draw_request(rt, caller=SOMEONE, cost=9, orders=1)
    refused = await draw_request(rt, caller=SOMEONE, cost=5, orders=1)
    assert (first.budget, first.allowed) == ("api", True)
    assert (refused.budget, refused.allowed, refused.remaining) == ("api", False, 1)
    assert refused.retry_after > 0
    assert await _orders_left(rt) == 2  # only the first request's order


async def test_when_the_orders_budget_refuses_its_decision_is_returned(counted):
    rt, _ = counted
    placed = [await draw_request(rt, caller=SOMEONE, cost=1, orders=1) for _ in range(3)]
    refused = await draw_request(rt, caller=SOMEONE, cost=1, orders=1)
    read = await draw_request(rt, caller=SOMEONE, cost=1)
    assert [(d.budget, d.allowed) for d in placed] == [("api", True)] * 3
    assert [d.remaining for d in placed] == [9, 8, 7]
    assert (refused.budget, refused.allowed, refused.remaining, refused.limit) == (
        "orders",
        False,
        0,
        3,
    )
    assert refused.retry_after > 0
    # the refused request's cost was drawn from the api budget (as before: api first)
    assert (read.budget, read.allowed, read.remaining) == ("api", True, 5)


async def test_concurrent_placements_share_one_pipeline(counted):
    """Requests of the same moment, each with its two budgets, go to Redis together."""
    rt, commands = counted
    await draw(rt, Budget("warm-up", 1, 60), "someone", 1)
    commands.sends.clear()
    callers = [Caller("user", str(n)) for n in range(5)]
    decisions = await asyncio.gather(
        *(draw_request(rt, caller=c, cost=1, orders=1) for c in callers)
    )
    assert all(d.allowed and d.budget == "api" and d.remaining == 9 for d in decisions)
    sent = commands.sent("EVALSHA", "EVAL")
    assert sum(len(s) for s in sent) == 5  # one script call per request
    assert len(sent) <= 2  # the first alone, the others together behind it
