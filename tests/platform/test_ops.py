"""Operational behaviour over HTTP: health probes, metrics, request ids, security headers,
compression, transport-level errors, GET rules, GraphiQL, and masking of unexpected errors."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import text

from app.asgi import create_app
from app.background import PeriodicJobs
from app.core.settings import Environment
from app.embedded import with_database
from app.events.pubsub import PubSubHub
from app.http.middleware import STRICT_CSP
from app.runtime import Runtime, build_runtime
from tests.support import _free_port
from tests.support.documents import signed_in
from tests.support.partner import client_with

GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")
INTROSPECTION = "{ __schema { types { name fields { name } } } }"
SERVER_CLOCK = "query ServerClock { serverTime }"
NODE = '{ node(id: "VXNlcjox") { id } }'  # User:1, read through a DataLoader


def _client_for(runtime: Runtime, *, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    app = create_app(runtime=runtime)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@dataclasses.dataclass
class BrokenDependency:
    """A second runtime on the test settings whose PostgreSQL or Redis cannot be reached:
    a database that does not exist, a Redis port nobody listens on."""

    dependency: str
    runtime: Runtime
    http: httpx.AsyncClient


@pytest.fixture
async def broken(rt: Runtime, request: pytest.FixtureRequest) -> AsyncIterator[BrokenDependency]:
    dependency = request.param
    assert rt.settings.database_url and rt.settings.redis_url
    database_url = rt.settings.database_url
    redis_url = rt.settings.redis_url
    if dependency == "postgres":
        database_url = with_database(database_url, "co_test_does_not_exist")
    else:
        redis_url = f"redis://127.0.0.1:{_free_port()}/0"
    runtime = build_runtime(rt.settings, database_url=database_url, redis_url=redis_url)
    async with _client_for(runtime, raise_app_exceptions=False) as http:
        yield BrokenDependency(dependency, runtime, http)
    await runtime.aclose()


@pytest.fixture
async def wire_client(rt: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """Like ``client``, but an exception in the app becomes what goes over the wire."""
    async with _client_for(rt, raise_app_exceptions=False) as http:
        yield http


def _with_env(rt: Runtime, env: Environment) -> Runtime:
    return dataclasses.replace(rt, settings=rt.settings.model_copy(update={"env": env}))


async def _post(client: httpx.AsyncClient, query: str, **kw: Any) -> httpx.Response:
    return await client.post("/graphql", json={"query": query}, **kw)


async def _samples(client: httpx.AsyncClient) -> dict[tuple[str, frozenset], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _only_error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert "Traceback" not in response.text
    [error] = body["errors"]
    return error


# health probes


async def test_livez_and_startupz_answer_ok(client):
    for path in ("/livez", "/startupz"):
        response = await client.get(path)
        assert (response.status_code, response.json()) == (200, {"status": "ok"}), path


async def test_readyz_checks_postgres_and_redis(client):
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"postgres": "ok", "redis": "ok"}}


@pytest.mark.parametrize("broken", ["redis", "postgres"], indirect=True)
async def test_readyz_is_503_when_a_dependency_is_unreachable(broken):
    response = await broken.http.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    [healthy] = {"postgres", "redis"} - {broken.dependency}
    assert body["checks"][healthy] == "ok"
    assert re.fullmatch(r"error: \w+", body["checks"][broken.dependency])  # no details


# metrics


async def test_metrics_count_named_operations_errors_and_expose_gauges(client, rt):
    before = await _samples(client)
    assert (await _post(client, SERVER_CLOCK)).status_code == 200
    assert (await _post(client, "query Broken { noSuchField }")).status_code == 200
    assert (await _post(client, NODE)).json() == {"data": {"node": None}}  # uses the pool
    after = await _samples(client)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("graphql_requests_total", operation="ServerClock", type="query") == 1
    assert delta("graphql_errors_total", code="GRAPHQL_VALIDATION_FAILED") == 1
    assert delta("graphql_request_duration_seconds_count", operation="ServerClock") == 1
    assert delta("http_requests_total", path="/graphql", status="200") == 3
    assert ("websocket_connections_open", frozenset()) in after  # counted in test_websocket
    assert _value(after, "db_pool_connections_checked_out") == 0  # nothing leaked
    assert _value(after, "db_pool_connections_size") == rt.settings.db_pool_size


# request ids


@pytest.mark.parametrize("path", ["/livez", "/graphql?query=%7BserverTime%7D", "/nowhere"])
async def test_every_response_has_a_generated_request_id(client, path):
    response = await client.get(path)
    assert GENERATED_ID.match(response.headers["x-request-id"]), response.headers


async def test_a_sane_incoming_request_id_is_echoed_and_reaches_error_extensions(client):
    incoming = "edge-7f3a.b:c_9"
    response = await _post(client, "{ noSuchField }", headers={"x-request-id": incoming})
    assert response.headers["x-request-id"] == incoming
    assert _only_error(response)["extensions"]["requestId"] == incoming


@pytest.mark.parametrize(
    "incoming",
    [b"x" * 129, b"", b"id with spaces", b"<script>", "id\u00e9".encode(), b"a/b", b"a\tb"],
    ids=["too-long", "empty", "spaces", "markup", "non-ascii", "slash", "control"],
)
async def test_an_insane_incoming_request_id_is_replaced(client, incoming):
    response = await _post(client, "{ noSuchField }", headers={"x-request-id": incoming})
    request_id = response.headers["x-request-id"]
    assert GENERATED_ID.match(request_id), request_id
    assert _only_error(response)["extensions"]["requestId"] == request_id


# security headers and compression


@pytest.mark.parametrize("path", ["/livez", "/graphql?query=%7BserverTime%7D", "/metrics"])
async def test_security_headers_are_set(client, path):
    headers = (await client.get(path)).headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["content-security-policy"] == STRICT_CSP
    assert "strict-transport-security" not in headers  # HTTPS is the proxy's job outside prod


async def test_hsts_only_in_production(rt):
    async with _client_for(_with_env(rt, Environment.PRODUCTION)) as http:
        response = await http.get("/livez")
    assert response.headers["strict-transport-security"].startswith("max-age=")


async def test_a_large_response_is_gzipped_and_a_tiny_one_is_not(client):
    gzip = {"accept-encoding": "gzip"}
    large = await _post(client, INTROSPECTION, headers=gzip)
    assert large.headers["content-encoding"] == "gzip"
    assert int(large.headers["content-length"]) < len(large.content)
    assert "Query" in {t["name"] for t in large.json()["data"]["__schema"]["types"]}
    tiny = await _post(client, "{ serverTime }", headers=gzip)
    assert "content-encoding" not in tiny.headers
    assert "serverTime" in tiny.json()["data"]


# transport-level and document errors


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2", b"\xff\xfe", b"", b'"a string"', b"42", b"null"],
    ids=["broken", "truncated", "not-utf8", "empty", "string", "number", "null"],
)
async def test_a_malformed_json_body_is_a_clean_400(wire_client, body):
    response = await wire_client.post(
        "/graphql", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    error = _only_error(response)
    assert set(error) == {"message", "extensions"}
    assert isinstance(error["message"], str) and error["message"]
    assert error["extensions"] == {
        "code": "BAD_REQUEST",
        "requestId": response.headers["x-request-id"],
    }


async def test_a_syntax_error_is_graphql_parse_failed(client):
    response = await _post(client, "{ serverTime")
    error = _only_error(response)
    assert error["message"].startswith("Syntax Error")
    assert error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert error["extensions"]["requestId"] == response.headers["x-request-id"]


async def test_an_unknown_field_is_validation_failed_without_suggestions(client):
    response = await _post(client, "{ serverTim }")
    assert response.status_code == 200
    error = _only_error(response)
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "serverTim" in error["message"]
    assert "Did you mean" not in error["message"]
    assert "serverTime" not in error["message"]
    assert response.json().get("data") is None


# GET, GraphiQL


async def test_a_query_over_get_works(client):
    response = await client.get("/graphql", params={"query": "{ serverTime }"})
    assert response.status_code == 200
    assert set(response.json()) == {"data"}
    assert response.json()["data"]["serverTime"]


async def test_a_mutation_over_get_is_405(client):
    mutation = "mutation { logout { __typename } }"
    response = await client.get("/graphql", params={"query": mutation})
    assert response.status_code == 405
    assert _only_error(response)["extensions"]["code"] == "METHOD_NOT_ALLOWED"


async def test_graphiql_is_served_to_browsers_in_development(rt):
    async with _client_for(_with_env(rt, Environment.DEVELOPMENT)) as http:
        response = await http.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()
    assert "content-security-policy" not in response.headers  # its scripts come from a CDN


@pytest.mark.parametrize("env", [Environment.TEST, Environment.PRODUCTION])
async def test_graphiql_is_not_served_outside_development(rt, env):
    async with _client_for(_with_env(rt, env)) as http:
        response = await http.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert "graphiql" not in response.text.lower()
    assert _only_error(response)["extensions"]["code"] == "NOT_FOUND"


# unexpected errors


@pytest.mark.parametrize("broken", ["postgres"], indirect=True)
async def test_an_unexpected_exception_is_masked_and_logged(broken, caplog):
    """A resolver that needs PostgreSQL while the database is missing: a real failure
    inside execution (``node`` loads users through a DataLoader)."""
    caplog.set_level(logging.ERROR, logger="graphql")
    response = await _post(broken.http, NODE)
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    body = response.json()
    assert body["data"] == {"node": None}
    assert body["errors"] == [
        {
            "message": f"Unexpected error (request {request_id})",
            "locations": [{"line": 1, "column": 3}],
            "path": ["node"],
            "extensions": {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
        }
    ]
    assert "co_test_does_not_exist" not in response.text
    [record] = [r for r in caplog.records if r.name == "graphql"]
    assert record.levelno == logging.ERROR and record.exc_info is not None


@pytest.mark.parametrize("broken", ["postgres", "redis"], indirect=True)
async def test_a_dependency_failure_while_authenticating_is_a_json_error(broken, gql, caplog):
    """Authentication (in get_context, before GraphQL execution) reads Redis and PostgreSQL.
    When one is down the client still gets a JSON error with a code and the request id,
    the usual headers, and nothing about the failure. A database that does not exist is
    a bug (500, logged with its traceback); Redis unreachable is a retryable 503
    (tests/events/test_redis_outage.py), logged as a warning."""
    auth = await signed_in(gql)
    caplog.set_level(logging.ERROR)
    response = await _post(
        broken.http, "{ me { email } }", headers={"authorization": f"Bearer {auth['accessToken']}"}
    )
    assert response.status_code == (503 if broken.dependency == "redis" else 500)
    assert response.headers["content-type"] == "application/json", response.text
    request_id = response.headers["x-request-id"]
    assert response.headers["x-content-type-options"] == "nosniff"
    error = _only_error(response)
    expected = "TRY_AGAIN" if broken.dependency == "redis" else "INTERNAL_SERVER_ERROR"
    assert error["extensions"]["code"] == expected
    assert error["extensions"]["requestId"] == request_id
    assert "co_test_does_not_exist" not in response.text
    assert "Connect" not in response.text
    logged_traceback = any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)
    assert logged_traceback == (broken.dependency == "postgres")


def test_json_log_lines_carry_no_terminal_colour_codes():
    """uvicorn logs its start-up lines with a ``color_message`` extra holding ANSI escapes
    (and a proxy's bad request line may carry escapes of its own)."""
    import io
    import json

    from app.core.logs import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        logger.warning(
            "Started server process [%d] %s",
            42,
            "\x1b[31mred\x1b[0m",
            extra={
                "color_message": "Started server process [\x1b[36m%d\x1b[0m]",
                "job": "\x1b[1mx",
            },
        )
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue().strip()
    assert "\x1b" not in line and "\\u001b" not in line
    entry = json.loads(line)
    assert "color_message" not in entry
    assert entry["message"] == "Started server process [42] red"
    assert entry["job"] == "x"


# metrics an operator watches


async def test_metrics_report_engine_lag_per_market_and_the_outbox_backlog(client, rt):
    async with rt.engine.begin() as connection:
        await connection.execute(
            text("UPDATE markets SET next_seq = applied_seq + 3 WHERE symbol = 'BTC/USDT'")
        )
        await connection.execute(
            text(
                "INSERT INTO outbox (topic, payload, created_at) VALUES"
                " ('ops-test', '{}', now() - interval '90 seconds'),"
                " ('ops-test', '{}', now() - interval '5 seconds')"
            )
        )
    samples = await _samples(client)
    assert _value(samples, "engine_lag_commands", market="BTC/USDT") == 3
    assert _value(samples, "engine_lag_commands", market="ETH/USDT") == 0
    assert _value(samples, "outbox_backlog") == 2
    assert 90 <= _value(samples, "outbox_oldest_age_seconds") < 150


async def test_metrics_report_each_background_jobs_last_success_and_failures(client, rt):
    runs = 0
    third_run = asyncio.Event()

    async def flaky(_: Runtime) -> None:
        nonlocal runs
        runs += 1
        if runs == 3:
            third_run.set()
        if runs == 1:
            raise RuntimeError("first run fails")

    before = await _samples(client)
    jobs = PeriodicJobs(rt)
    jobs.add("ops-test-flaky", 0.01, flaky)
    started = time.time()
    jobs.start()
    async with asyncio.timeout(5):
        await third_run.wait()
    await jobs.stop()
    after = await _samples(client)
    failures = "background_job_failures_total"
    assert (
        _value(after, failures, job="ops-test-flaky")
        - _value(before, failures, job="ops-test-flaky")
        == 1
    )
    last = _value(after, "background_job_last_success_timestamp_seconds", job="ops-test-flaky")
    assert started <= last <= time.time()


async def test_metrics_report_the_hubs_channels_and_subscribers(rt):
    app = create_app(runtime=rt)
    assert rt.settings.redis_url
    app.state.hub = PubSubHub.from_url(rt.settings.redis_url, client_name=rt.redis_key("ops"))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            book, fills = rt.redis_key("ops-book"), rt.redis_key("ops-fills")
            async with (
                app.state.hub.subscribe(book),
                app.state.hub.subscribe(book),
                app.state.hub.subscribe(fills),
            ):
                samples = await _samples(http)
            assert _value(samples, "pubsub_hub_channels") == 2
            assert _value(samples, "pubsub_hub_subscribers") == 3
            assert ("pubsub_hub_events", frozenset({("kind", "delivered")})) in samples
    finally:
        await app.state.hub.aclose()


async def test_metrics_count_orders_placed_and_refused_by_code(client, gql, rt, engines):
    from tests.support.trading import trader
    from tests.trading.test_trading_api import place

    _, token = await trader(gql, rt, "metrics@example.com", USDT="1000")
    before = await _samples(client)
    assert (await place(gql, token, quantity="0.001"))["__typename"] == "OrderPayload"
    assert (await place(gql, token, quantity="1"))["code"] == "INSUFFICIENT_FUNDS"
    assert (await place(gql, token, symbol="DOGE/USDT"))["code"] == "UNKNOWN_MARKET"
    after = await _samples(client)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("orders_placed_total") == 1
    assert delta("orders_refused_total", code="INSUFFICIENT_FUNDS") == 1
    assert delta("orders_refused_total", code="UNKNOWN_MARKET") == 1


async def test_metrics_in_production_need_the_bearer_token(rt):
    token = "m" * 40
    production = {"env": Environment.PRODUCTION, "metrics_token": SecretStr(token)}
    async with client_with(rt, **production) as http:
        assert (await http.get("/metrics")).status_code == 401
        wrong = await http.get("/metrics", headers={"authorization": "Bearer " + "x" * 40})
        assert wrong.status_code == 401
        right = await http.get("/metrics", headers={"authorization": f"Bearer {token}"})
        assert right.status_code == 200 and "outbox_backlog" in right.text
    async with client_with(rt, env=Environment.PRODUCTION) as http:
        assert (await http.get("/metrics")).status_code == 403  # no token: never public


async def test_metrics_need_the_token_whenever_one_is_set(rt):
    async with client_with(rt, metrics_token=SecretStr("t" * 40)) as http:
        assert (await http.get("/metrics")).status_code == 401
