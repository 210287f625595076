"""Query limits: depth, aliases, tokens and cost (with list multipliers from first/last
and variables) are refused with stable codes before anything runs; the maximum page
size; introspection off in production; the execution timeout; WebSocket limits
(operations per connection, allowed origins, init timeout)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from graphql import DocumentNode, GraphQLError, Node, SelectionSetNode, parse, validate
from graphql.validation.rules import overlapping_fields_can_be_merged as overlapping
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from app.asgi import create_app
from app.core.settings import Environment, Settings
from app.http.webhooks import MAX_BODY_BYTES
from bench.scenarios import SCENARIOS
from graphql_schema.gateway.limits import (
    CostCache,
    QueryTooComplex,
    check_merging,
    limit_rules,
    query_cost,
)
from graphql_schema.gateway.view import GraphQLView
from graphql_schema.schema import schema
from tests.gateway.test_websocket import (
    TRANSPORT_WS,
    LiveServer,
    _close_code,
    _init,
    _open,
    _receive,
    _send,
)
from tests.support import documents, withdrawing
from tests.support.documents import signed_in
from tests.support.partner import client_with, trading_client

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


# admission work: linear in the document, however fragments nest


def _nested_fragments(levels: int) -> str:
    """Each fragment spreads the one below it twice: ``levels`` lines that expand to
    2**levels aliased fields."""
    lines = [f"query {{ ...F{levels} }}", "fragment F0 on Query { a: serverTime }"]
    lines += [f"fragment F{i} on Query {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, levels + 1)]
    return "\n".join(lines)


class _CountedSelections(tuple):
    """A selection list that counts how often a walk goes through it."""

    visits = 0

    def __iter__(self):
        type(self).visits += 1
        return super().__iter__()


def _counted(document: DocumentNode) -> DocumentNode:
    for node in _selection_sets(document):
        object.__setattr__(node, "selections", _CountedSelections(node.selections))  # frozen
    return document


def _selection_sets(node: Any) -> Iterator[SelectionSetNode]:
    if isinstance(node, SelectionSetNode):
        yield node
    for key in getattr(node, "keys", ()):
        value = getattr(node, key, None)
        for child in value if isinstance(value, tuple | list) else (value,):
            if isinstance(child, Node):
                yield from _selection_sets(child)


def _work(levels: int) -> dict[str, int]:
    """Selection lists walked by the depth rule, the alias rule and the cost."""
    document = _counted(parse(_nested_fragments(levels)))
    depth, aliases = limit_rules(max_depth=12, max_aliases=30, introspection=True)
    work = {}
    for name, measure in (
        ("depth", lambda: validate(schema._schema, document, [depth])),
        ("aliases", lambda: validate(schema._schema, document, [aliases])),
        ("cost", lambda: query_cost(schema._schema, document, None, {})),
    ):
        _CountedSelections.visits = 0
        measure()
        work[name] = _CountedSelections.visits
    return work


def test_the_admission_walks_are_linear_in_fragment_nesting():
    work = {levels: _work(levels) for levels in range(4, 13)}
    for walk in ("depth", "aliases", "cost"):
        steps = {work[n + 1][walk] - work[n][walk] for n in range(4, 12)}
        assert len(steps) == 1, (walk, [work[n][walk] for n in sorted(work)])  # a straight line
        assert steps.pop() <= 4, walk  # each new fragment is walked a bounded number of times


def test_nested_fragments_are_measured_exactly():
    document = parse(_nested_fragments(40))
    assert query_cost(schema._schema, document, None, {}) == 2**40
    [error] = validate(
        schema._schema,
        document,
        list(limit_rules(max_depth=12, max_aliases=30, introspection=True)),
    )
    assert error.message == f"The query uses {2**40} aliases; the limit is 30"


async def test_a_document_of_nested_fragments_does_not_stall_the_server(settings):
    """The document that took seconds of the event loop (twice as long per level) is
    refused while /livez, asked meanwhile, still answers."""
    body = json.dumps({"query": _nested_fragments(20)}).encode()
    request = (
        b"POST /graphql HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    async with _serving(settings) as server, httpx.AsyncClient(base_url=server.url) as http:
        host, port = server.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(request)
        await writer.drain()  # sent in full before /livez is asked
        livez = await http.get("/livez", timeout=5)
        status, _, answer = await _read_response(reader)
        writer.close()
    assert livez.json() == {"status": "ok"}
    assert status == 200
    assert [e["extensions"]["code"] for e in json.loads(answer)["errors"]] == ["QUERY_TOO_COMPLEX"]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines if line)
    body = await reader.readexactly(int(headers.get("content-length", 0)))
    return int(status_line.split()[1]), headers, body


# cost with variables


@pytest.mark.parametrize(
    ("query", "variables", "cost"),
    [
        ("query($n: Int! = 100) { users(first: $n) { edges { node { id } } } }", {}, 201),
        ("query($n: Int = 3) { users(first: $n) { edges { node { id } } } }", {}, 7),
        ("query($n: Int = 3) { users(first: $n) { edges { node { id } } } }", {"n": 50}, 101),
        ("query($n: Int) { users(first: $n) { edges { node { id } } } }", {}, 201),  # unknown
        ("query($n: Int = 3) { users(first: $n) { edges { node { id } } } }", {"n": None}, 201),
    ],
)
def test_the_cost_takes_a_variable_default_and_assumes_a_full_page_when_unknown(
    query, variables, cost
):
    assert _cost(query, variables) == cost


async def test_a_variable_default_does_not_bypass_the_cost_limit(client):
    query = (
        "query($n: Int! = 100) { "
        + " ".join(TRANSACTIONS.format(alias=f"t{i}", n="$n") for i in range(4))
        + " }"
    )
    response = await _post(client, query)
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert error["extensions"]["cost"] == 1204


def test_the_cost_cache_tells_a_missing_variable_from_null():
    query = "query($n: Int = 3) { users(first: $n) { edges { node { id } } } }"
    costs, document = CostCache(), parse(query)
    assert costs.cost(schema._schema, query, document, None, {}) == 7
    assert costs.cost(schema._schema, query, document, None, {"n": None}) == 201
    assert costs.cost(schema._schema, query, document, None, {}) == 7


@pytest.mark.parametrize("name", [{"a": 1}, ["Q"], 7])
async def test_an_operation_name_that_is_not_a_string_is_a_400(client, name):
    response = await client.post(
        "/graphql", json={"query": "query Q { serverTime }", "operationName": name}
    )
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert error["message"] == "operationName must be a string"


# request size


def _padded(size: int) -> bytes:
    """A JSON body of exactly ``size`` bytes running ``{ serverTime }`` (a long comment)."""
    empty = json.dumps({"query": "{ serverTime }\n#"}).encode()
    return json.dumps({"query": "{ serverTime }\n#" + "x" * (size - len(empty))}).encode()


async def test_a_request_body_over_the_limit_is_refused_with_413(rt):
    async with client_with(rt, max_request_bytes=4096) as http:
        headers = {"content-type": "application/json"}
        fits = await http.post("/graphql", content=_padded(4096), headers=headers)
        over = await http.post("/graphql", content=_padded(4097), headers=headers)
    assert fits.json()["data"]["serverTime"]
    assert over.status_code == 413
    [error] = over.json()["errors"]
    assert error["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    assert error["message"] == "The request body is larger than 4096 bytes"
    assert error["extensions"]["requestId"] == over.headers["x-request-id"]


async def test_the_stripe_webhook_keeps_its_own_larger_body_limit(client):
    unsigned = b'{"id": "evt_1", "pad": "' + b"x" * 100_000 + b'"}'
    read = await client.post("/webhooks/stripe", content=unsigned)
    too_large = await client.post("/webhooks/stripe", content=b"x" * (MAX_BODY_BYTES + 1))
    assert read.status_code == 400  # read, and refused for its missing signature
    assert too_large.status_code == 413


async def test_the_body_limit_does_not_wait_for_the_whole_body(settings):
    """Over a real socket: a Content-Length over the limit is answered before any body
    arrives, and a chunked body as soon as the bytes counted pass the limit (the rest
    is never sent)."""
    head = b"POST /graphql HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
    declared = head + b"content-length: 10000000\r\n\r\n" + b'{"query": "'
    chunk = b"#" * 1000
    chunked = head + b"transfer-encoding: chunked\r\n\r\n" + (b"3e8\r\n" + chunk + b"\r\n") * 5
    async with _serving(settings, max_request_bytes=4096) as server:
        host, port = server.url.removeprefix("http://").split(":")
        answers = []
        for request in (declared, chunked):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(request)
            await writer.drain()  # and no more: the body is never finished
            answers.append(await _read_response(reader))
            writer.close()
    for status, _, body in answers:
        assert status == 413
        assert json.loads(body)["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"


async def test_a_websocket_message_over_the_limit_closes_the_socket(settings):
    """Enforced by the app, whatever the ASGI server's own limit (the test server's is
    16 MiB): close code 1009 (message too big)."""
    query = "subscription { serverTime(everySeconds: 1, count: 1) }\n#"
    async with _serving(settings, ws_max_message_bytes=2048) as server:
        async with await _open(server, TRANSPORT_WS) as ws:
            await _init(ws)
            small = {"query": query + "x" * 1024}
            await _send(ws, {"id": "1", "type": "subscribe", "payload": small})
            assert (await _receive(ws))["type"] == "next"
            assert (await _receive(ws))["type"] == "complete"
            big = {"query": query + "x" * 2048}
            await _send(ws, {"id": "2", "type": "subscribe", "payload": big})
            code = await _close_code(ws)
    assert code == 1009


# validation's field merging: what graphql-core's OverlappingFieldsCanBeMergedRule compares


def _repeated_field(n: int) -> str:
    return "{ me { " + "email " * n + "} }"


def _spreads(n: int, field: str = "a{i}: email") -> str:
    """``n`` fragments spread side by side in one selection set."""
    spreads = " ".join(f"...F{i}" for i in range(n))
    fragments = " ".join(f"fragment F{i} on User {{ {field.format(i=i)} }}" for i in range(n))
    return f"{{ me {{ {spreads} }} }} {fragments}"


def _repeated_object(n: int) -> str:
    return "{ me { " + "wallets { currency } " * n + "} }"


def _tree(n: int) -> str:
    """``n`` repeats at each of three levels: n**3 leaves on one response path."""
    return "{ " + ("me { " + ("wallets { " + "currency " * n + "} ") * n + "} ") * n + "}"


def _inline(n: int) -> str:
    return "{ me { " + "... on User { email } " * n + "} }"


def _paired_fragments(n: int) -> str:
    """Two distinct fragments per level, each spreading both of the level below."""
    lines = ["{ me { ...A0 ...B0 } }"]
    for i in range(n):
        below = f"...A{i + 1} ...B{i + 1}" if i + 1 < n else "email"
        lines += [f"fragment A{i} on User {{ {below} }}", f"fragment B{i} on User {{ {below} }}"]
    return "\n".join(lines)


ATTACKS = {
    "repeated field": _repeated_field,
    "spreads of distinct fields": _spreads,
    "spreads of one field": lambda n: _spreads(n, "email"),
    "repeated object": _repeated_object,
    "repeated at three levels": _tree,
    "inline fragments": _inline,
    "nested fragment pairs": _paired_fragments,
}


@pytest.mark.parametrize(
    "document",
    [_repeated_field(2000), _spreads(240, "email")],
    ids=["one field 2000 times", "240 spreads in one selection"],
)
async def test_a_document_that_would_validate_slowly_is_refused_before_validation(
    client, caplog, document
):
    """Under the token limit, and validated for most of a second before."""
    assert len(parse(document, max_tokens=Settings().max_query_tokens).definitions) >= 1
    caplog.set_level(logging.ERROR)
    response = await _post(client, document)
    assert response.status_code == 200
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert error["message"].startswith("The query repeats fields or fragments too often")
    assert "ratelimit-remaining" not in response.headers  # refused before the budget
    assert not [r for r in caplog.records if r.exc_info]  # an answer, not a traceback


async def test_a_document_that_would_validate_slowly_is_refused_over_websocket(settings):
    async with _serving(settings) as server, await _open(server, TRANSPORT_WS) as ws:
        await _init(ws)
        payload = {"query": _repeated_field(2000)}
        await _send(ws, {"id": "1", "type": "subscribe", "payload": payload})
        refused = await _receive(ws)
        await _send(ws, {"id": "2", "type": "subscribe", "payload": {"query": "{ serverTime }"}})
        answered = await _receive(ws)
    assert (refused["id"], refused["type"]) == ("1", "error")
    assert [e["extensions"]["code"] for e in refused["payload"]] == ["QUERY_TOO_COMPLEX"]
    assert (answered["id"], answered["type"]) == ("2", "next")  # the socket stays open


async def test_the_merging_limits_follow_the_settings(rt):
    fields = "{ me { " + " ".join(f"f{i}: wallets {{ currency }}" for i in range(5)) + " } }"
    async with client_with(rt, max_merge_comparisons=10, max_query_fields=10) as http:
        repeated = await _post(http, _repeated_field(5))  # 10 comparisons
        too_many = await _post(http, _repeated_field(6))  # 15
        too_large = await _post(http, fields)  # 11 fields
    assert repeated.json() == {"data": {"me": None}}
    assert _codes(too_many) == ["QUERY_TOO_COMPLEX"]
    assert "more than 10 pairs" in too_many.json()["errors"][0]["message"]
    assert _codes(too_large) == ["QUERY_TOO_COMPLEX"]
    assert too_large.json()["errors"][0]["message"].startswith(
        "The query selects more than 10 fields"
    )


def _largest_admitted(shape: Callable[[int], str], settings: Settings) -> DocumentNode:
    admitted = None
    for n in range(1, 3000):
        try:
            document = parse(shape(n), max_tokens=settings.max_query_tokens)
            check_merging(
                document,
                max_fields=settings.max_query_fields,
                max_comparisons=settings.max_merge_comparisons,
            )
        except (GraphQLError, QueryTooComplex):
            break
        admitted = document
    assert admitted is not None
    return admitted


@pytest.mark.parametrize("shape", ATTACKS.values(), ids=ATTACKS.keys())
def test_what_validation_compares_stays_bounded_for_every_admitted_document(shape, monkeypatch):
    """Counted, not timed: the work units graphql-core's rule charges to its own budget
    (a library internal, used here only as a measuring device) for the largest document
    of each attack shape that admission lets through."""
    settings = Settings()
    document = _largest_admitted(shape, settings)
    spent = 0
    charge = overlapping.spend_complexity_budget

    def counted(rule_context: Any, cost: int) -> None:
        nonlocal spent
        spent += cost
        charge(rule_context, cost)

    monkeypatch.setattr(overlapping, "spend_complexity_budget", counted)
    validate(schema._schema, document, [overlapping.OverlappingFieldsCanBeMergedRule])
    assert 0 < spent <= 3 * settings.max_merge_comparisons


def _documents() -> Iterator[tuple[str, str]]:
    for module in (documents, withdrawing):
        for name, value in vars(module).items():
            if isinstance(value, str) and value.startswith(("{", "query", "mutation")):
                yield f"{module.__name__}.{name}", value
    for scenario in SCENARIOS:
        yield f"bench {scenario.name}", scenario.query


def test_ordinary_documents_pass_the_merging_limits():
    settings = Settings()
    checked = 0
    for name, query in _documents():
        comparisons = check_merging(
            parse(query),
            max_fields=settings.max_query_fields,
            max_comparisons=settings.max_merge_comparisons,
        )
        assert comparisons <= settings.max_merge_comparisons // 10, name  # far from it
        checked += 1
    assert checked > 20
