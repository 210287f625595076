"""Query limits: depth, aliases, tokens and cost (with list multipliers from first/last
and variables) are refused with stable codes before anything runs; the maximum page
size; introspection off in production; the execution timeout; WebSocket limits
(operations per connection, allowed origins, init timeout)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from graphql import parse
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from app.asgi import create_app
from app.settings import Environment, Settings
from graphql_schema.limits import query_cost
from graphql_schema.schema import schema
from graphql_schema.view import GraphQLView
from tests.documents import signed_in
from tests.partner import client_with, trading_client
from tests.test_websocket import TRANSPORT_WS, LiveServer, _init, _open, _receive, _send

TRANSACTIONS = (
    "{alias}: transactions(first: {n}) {{ edges {{ node {{ counterparty {{ handle }} }} }} }}"
)


async def _post(http, query: str, variables: dict | None = None, **headers: str):
    return await http.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )


def _codes(response) -> list[str]:
    return [e["extensions"]["code"] for e in response.json().get("errors", [])]


def _cost(query: str, variables: dict[str, Any] | None = None) -> int:
    return query_cost(schema._schema, parse(query), None, variables)


# cost model


@pytest.mark.parametrize(
    ("query", "cost"),
    [
        ("{ serverTime }", 1),
        ("{ __typename serverTime }", 1),
        ("{ me { email wallets { currency } } }", 2),
        ("{ users(first: 100) { edges { node { id } } } }", 201),
        ("{ users { edges { node { id } } } }", 41),  # first defaults to 20
        ("{ users(first: 5000) { edges { node { id } } } }", 201),  # capped at the page size
        ("{ " + TRANSACTIONS.format(alias="t", n=100) + " }", 301),
        ("mutation { logout { __typename } }", 10),
        ("{ ...F } fragment F on Query { me { wallets { currency } } }", 2),
    ],
)
def test_the_cost_model(query, cost):
    assert _cost(query) == cost


def test_the_cost_uses_the_variables():
    query = "query($n: Int!) { users(first: $n) { edges { node { id } } } }"
    assert _cost(query, {"n": 3}) == 7
    assert _cost(query, {"n": 50}) == 101


# attacks


async def test_a_costly_query_is_refused_before_it_runs(client):
    costly = "{ " + " ".join(TRANSACTIONS.format(alias=f"t{i}", n=100) for i in range(4)) + " }"
    response = await _post(client, costly)
    assert response.status_code == 200
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert (error["extensions"]["cost"], error["extensions"]["maxCost"]) == (1204, 1000)
    assert "ratelimit-remaining" not in response.headers  # refused before the budget


async def test_the_cost_limit_follows_the_variables(client, gql):
    auth = await signed_in(gql)
    query = (
        "query($n: Int!) { "
        + " ".join(TRANSACTIONS.format(alias=f"t{i}", n="$n") for i in range(4))
        + " }"
    )
    bearer = {"authorization": f"Bearer {auth['accessToken']}"}
    assert _codes(await _post(client, query, {"n": 100}, **bearer)) == ["QUERY_TOO_COMPLEX"]
    small = await _post(client, query, {"n": 10}, **bearer)
    assert small.json() == {"data": {f"t{i}": {"edges": []} for i in range(4)}}


async def test_a_deep_query_is_refused(rt):
    deep = "{ me { wallets { currency } } }"
    via_fragments = (
        "query { ...A } fragment A on Query { me { ...B } }"
        " fragment B on User { wallets { currency } }"
    )
    async with client_with(rt, max_query_depth=2) as http:
        shallow = await _post(http, "{ me { email } }")
        refused = [await _post(http, deep), await _post(http, via_fragments)]
    assert shallow.json() == {"data": {"me": None}}
    for response in refused:
        assert _codes(response) == ["QUERY_TOO_DEEP"]
        assert "limit is 2" in response.json()["errors"][0]["message"]


async def test_too_many_aliases_are_refused(client):
    def aliases(n: int) -> str:
        return "{ " + " ".join(f"a{i}: serverTime" for i in range(n)) + " }"

    assert (await _post(client, aliases(30))).json()["data"]["a29"]
    refused = await _post(client, aliases(31))
    assert _codes(refused) == ["TOO_MANY_ALIASES"]
    assert refused.json()["data"] is None


async def test_a_document_with_too_many_tokens_is_refused(client):
    huge = "{ serverTime " + "__typename " * 3000 + "}"
    response = await _post(client, huge)
    assert response.status_code == 200
    assert _codes(response) == ["QUERY_TOO_LARGE"]
    assert "3000 tokens" in response.json()["errors"][0]["message"]


async def test_the_maximum_page_size_holds(client, gql):
    auth = await signed_in(gql)
    query = "{ transactions(first: 101) { edges { cursor } } }"
    body = (await _post(client, query, authorization=f"Bearer {auth['accessToken']}")).json()
    [error] = body["errors"]
    assert error["extensions"]["code"] == "VALIDATION_FAILED"
    assert error["message"] == "first must be between 0 and 100"


# production


async def test_introspection_is_off_in_production(rt, client):
    introspection = "{ __schema { types { name } } }"
    single_type = '{ __type(name: "Query") { name } }'
    async with client_with(rt, env=Environment.PRODUCTION) as production:
        refused = [await _post(production, introspection), await _post(production, single_type)]
        typename = await _post(production, "{ __typename serverTime }")
        suggestion = await _post(production, "{ serverTim }")
    for response in refused:
        assert "INTROSPECTION_DISABLED" in _codes(response)
        assert response.json()["data"] is None
    assert typename.json()["data"]["__typename"] == "Query"
    assert "Did you mean" not in suggestion.text
    development = await _post(client, introspection)  # test settings: on
    assert development.json()["data"]["__schema"]["types"]


async def test_a_query_is_cut_off_at_the_execution_timeout(rt):
    async with trading_client(rt, execution_timeout_seconds=0.2) as http:
        started = time.monotonic()
        slow = await _post(http, "{ slow(seconds: 5) }")
        elapsed = time.monotonic() - started
        quick = await _post(http, "{ slow(seconds: 0.01) }")
    assert elapsed < 2
    assert slow.status_code == 200
    [error] = slow.json()["errors"]
    assert error["extensions"]["code"] == "EXECUTION_TIMEOUT"
    assert error["message"] == "The query did not finish within 0.2 s"
    assert quick.json() == {"data": {"slow": 0.01}}


# WebSocket


def test_the_websocket_init_timeout_is_at_most_ten_seconds(rt):
    view = GraphQLView(schema=schema, rt=rt)
    assert view.connection_init_wait_timeout <= timedelta(seconds=10)
    assert view.max_subscriptions_per_connection == rt.settings.ws_max_subscriptions


@contextlib.asynccontextmanager
async def _serving(settings: Settings, **overrides: Any) -> AsyncIterator[LiveServer]:
    server = LiveServer(create_app(settings.model_copy(update=overrides)))
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def test_operations_per_connection_are_capped(settings, rt):
    endless = {"query": "subscription { serverTime(everySeconds: 60) }"}
    async with _serving(settings, ws_max_subscriptions=1) as server:
        async with await _open(server, TRANSPORT_WS) as ws:
            await _init(ws)
            await _send(ws, {"id": "1", "type": "subscribe", "payload": endless})
            assert (await _receive(ws))["type"] == "next"
            await _send(ws, {"id": "2", "type": "subscribe", "payload": endless})
            second = await _receive(ws)
    assert (second["id"], second["type"]) == ("2", "error")
    assert second["payload"][0]["message"] == "Subscription limit reached"


async def test_only_allowed_origins_may_open_a_websocket(settings, rt):
    async with _serving(settings, ws_allowed_origins=["https://app.example"]) as server:
        with pytest.raises(InvalidStatus) as refused:
            await connect(server.ws_url, subprotocols=[TRANSPORT_WS], origin="https://evil.example")
        async with connect(
            server.ws_url, subprotocols=[TRANSPORT_WS], origin="https://app.example"
        ) as ws:
            assert (await _init(ws))["type"] == "connection_ack"
        async with await _open(server, TRANSPORT_WS) as ws:  # no Origin: not a browser
            assert (await _init(ws))["type"] == "connection_ack"
    assert refused.value.response.status_code == 403
