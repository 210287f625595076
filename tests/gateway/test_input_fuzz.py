"""Hostile input never ends as a 5xx or an INTERNAL_SERVER_ERROR (issue 17.12).

The schema drives the fuzz: every argument of every Query and Mutation field (and of the
fields of ``me``), and every field of an input object, gets hostile values of its type
while the other arguments keep plausible ones. The calls of one field share a request
(aliases, each with its own variables), so the whole schema costs a few dozen requests.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    get_named_type,
    is_leaf_type,
)
from sqlalchemy import update

from app.asgi import create_app
from app.core.settings import Environment
from db.models import User
from graphql_schema.schema import schema
from tests.gateway.test_websocket import TRANSPORT_WS, LiveServer, _init, _open, _receive, _send
from tests.support import GraphQLClient
from tests.support.money import fund, user_id, verified_user
from tests.support.partner import client_with

SCHEMA = schema._schema
NODE_TYPES = sorted(
    t.name
    for t in SCHEMA.type_map.values()
    if isinstance(t, GraphQLObjectType) and any(i.name == "Node" for i in t.interfaces)
)
BEYOND_INT64 = 2**63
ALIASES_PER_REQUEST = 30
NO_LIMITS = {
    "rate_limit_anonymous": 10**9,
    "rate_limit_authenticated": 10**9,
    "rate_limit_orders": 10**9,
    "max_query_cost": 10**9,
}


def gid(type_name: str, key: object) -> str:
    return base64.b64encode(f"{type_name}:{key}".encode()).decode()


HOSTILE_STRINGS = ["nul\x00byte", "x" * 5000, "lone \ud800 surrogate", ""]
HOSTILE_IDS = [
    "not base64 at all!",
    gid("NoSuchType", 1),
    "nul\x00byte",
    "\udfff",
    *(gid("User", key) for key in (-1, 0, "abc", "１", 10**40)),
]
HOSTILE = {
    "String": HOSTILE_STRINGS,
    "ID": HOSTILE_IDS,
    "Int": [2**31 - 1, -(2**31)],
    "Decimal": ["9" * 60, "-1", "0.000000000000000000000000001", "1E+30"],
    "DateTime": ["9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00+00:00"],
    "Date": ["0001-01-01", "9999-12-31"],
}
# Plausible values for arguments by name, so that calls get past the first checks.
PLAUSIBLE_BY_NAME = {
    "symbol": "BTC/USDT",
    "currency": "USDT",
    "asset": "USDT",
    "email": "someone@example.com",
    "quantity": "0.01",
    "price": "100",
    "amount": "1",
    "interval": "1m",
}
PLAUSIBLE_BY_TYPE = {
    "String": "x",
    "ID": gid("User", 1),
    "Int": 1,
    "Float": 1.0,
    "Decimal": "1",
    "Boolean": False,
    "DateTime": "2026-01-01T00:00:00+00:00",
    "Date": "2000-01-01",
}


def plausible(type_: GraphQLInputType, name: str = "") -> Any:
    if isinstance(type_, GraphQLNonNull):
        return plausible(type_.of_type, name)
    if isinstance(type_, GraphQLList):
        return [plausible(type_.of_type, name)]
    if isinstance(type_, GraphQLInputObjectType):
        return {
            key: plausible(field.type, key)
            for key, field in type_.fields.items()
            if isinstance(field.type, GraphQLNonNull) and field.default_value is None
        }
    if isinstance(type_, GraphQLEnumType):
        return next(iter(type_.values))
    assert isinstance(type_, GraphQLScalarType)
    return PLAUSIBLE_BY_NAME.get(name, PLAUSIBLE_BY_TYPE[type_.name])


def node_types_for(field: str, argument: str) -> list[str]:
    """The node types an ID argument may take, guessed from the names (``cancelOrder(id)``,
    ``stake(productId)``); every type when the names tell nothing (``node(id)``)."""
    stem = argument.lower().removesuffix("ids").removesuffix("id")
    named = [
        t
        for t in NODE_TYPES
        if t.lower() in f"{field}{argument}".lower() or (stem and t.lower().endswith(stem))
    ]
    return named or NODE_TYPES


def hostile(type_: GraphQLInputType, name: str, field: str) -> Iterator[tuple[str, Any]]:
    """(where, value): a value of ``type_`` with one hostile leaf."""
    if isinstance(type_, GraphQLNonNull):
        yield from hostile(type_.of_type, name, field)
    elif isinstance(type_, GraphQLList):
        for where, value in hostile(type_.of_type, name, field):
            yield f"[{where}]", [value]
    elif isinstance(type_, GraphQLInputObjectType):
        base = plausible(type_)
        for key, input_field in type_.fields.items():
            for where, value in hostile(input_field.type, key, field):
                yield f".{key}{where}", {**base, key: value}
    elif isinstance(type_, GraphQLScalarType):
        values = list(HOSTILE.get(type_.name, ()))
        if type_.name == "ID":  # a number beyond BIGINT in an id of the right type
            values += [gid(t, BEYOND_INT64) for t in node_types_for(field, name)]
        for value in values:
            yield f"={value!r:.40}", value


@dataclass(frozen=True)
class Call:
    alias: str
    field: str
    document_field: str  # the aliased field with its arguments
    variables: dict[str, Any]
    definitions: list[str]
    described: str


def _selection(field: GraphQLField) -> str:
    return "" if is_leaf_type(get_named_type(field.type)) else " { __typename }"


def calls_of(name: str, field: GraphQLField, number: int) -> Iterator[Call]:
    for fuzzed, argument in field.args.items():
        for where, value in hostile(argument.type, fuzzed, name):
            alias = f"c{number}"
            number += 1
            arguments, definitions, variables = [], [], {}
            for arg_name, arg in field.args.items():
                required = isinstance(arg.type, GraphQLNonNull) and arg.default_value is None
                if arg_name != fuzzed and not required:
                    continue
                variable = f"{alias}_{arg_name}"
                arguments.append(f"{arg_name}: ${variable}")
                definitions.append(f"${variable}: {arg.type}")
                variables[variable] = value if arg_name == fuzzed else plausible(arg.type, arg_name)
            yield Call(
                alias=alias,
                field=name,
                document_field=f"{alias}: {name}({', '.join(arguments)}){_selection(field)}",
                variables=variables,
                definitions=definitions,
                described=f"{name}({fuzzed}{where})",
            )


def all_calls() -> Iterator[tuple[str, str, list[Call]]]:
    """(operation, wrapper of the fields, the calls of one field) for every field with
    arguments of Query, Mutation and User (through ``me``)."""
    roots = (
        ("query", "{}", SCHEMA.query_type),
        ("mutation", "{}", SCHEMA.mutation_type),
        ("query", "me {{ {} }}", SCHEMA.type_map["User"]),
    )
    for operation, wrapper, type_ in roots:
        assert type_ is not None
        for name, field in type_.fields.items():
            if field.args:
                yield operation, wrapper, list(calls_of(name, field, 0))


def _refused_whole(call: Call) -> bool:
    """Unsafe text refuses the whole operation: such calls share requests only with
    each other, so that they do not keep the other calls from running."""
    text = json.dumps(call.variables)
    return any(marker in text for marker in ("\\u0000", "\\ud800", "\\udfff"))


def _chunks(calls: list[Call]) -> Iterator[list[Call]]:
    for group in (
        [c for c in calls if _refused_whole(c)],
        [c for c in calls if not _refused_whole(c)],
    ):
        for start in range(0, len(group), ALIASES_PER_REQUEST):
            yield group[start : start + ALIASES_PER_REQUEST]


def documents() -> Iterator[tuple[str, dict[str, Any], dict[str, Call]]]:
    for operation, wrapper, calls in all_calls():
        for chunk in _chunks(calls):
            definitions = ", ".join(d for call in chunk for d in call.definitions)
            fields = wrapper.format(" ".join(call.document_field for call in chunk))
            variables = {k: v for call in chunk for k, v in call.variables.items()}
            header = f"{operation}({definitions})" if definitions else operation
            yield f"{header} {{ {fields} }}", variables, {call.alias: call for call in chunk}


async def _admin(gql: GraphQLClient, rt) -> str:
    auth = await verified_user(gql, rt, "fuzz-admin@example.com", handle="fuzzadmin")
    async with rt.sessions() as session, session.begin():
        await session.execute(
            update(User).where(User.email == "fuzz-admin@example.com").values(role="ADMIN")
        )
    return auth["accessToken"]


def _failures(response: Any, calls: dict[str, Call]) -> list[str]:
    if response.status_code >= 500:
        return [f"HTTP {response.status_code} for {sorted(c.described for c in calls.values())}"]
    failures = []
    for error in response.json().get("errors") or ():
        if (error.get("extensions") or {}).get("code") != "INTERNAL_SERVER_ERROR":
            continue
        path = error.get("path") or []
        alias = next((p for p in path if isinstance(p, str) and p in calls), None)
        failures.append(calls[alias].described if alias else f"{error} in {list(calls)}")
    return failures


async def test_no_argument_of_the_schema_ends_as_an_internal_error(rt, gql):
    token = await _admin(gql, rt)
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    failures: list[str] = []
    async with client_with(rt, **NO_LIMITS, max_query_aliases=ALIASES_PER_REQUEST) as http:
        for document, variables, calls in documents():
            body = json.dumps({"query": document, "variables": variables})  # ASCII: \ud800
            response = await http.post("/graphql", content=body, headers=headers)
            failures += _failures(response, calls)
    assert not failures, "\n".join(failures)


# the classes the fuzz found, each with the answer a client gets

MARKET = "query($s: String!) { market(symbol: $s) { symbol } }"
CANCEL = (
    "mutation($id: ID!) { cancelOrder(id: $id) { __typename ... on Error { code message field } } }"
)


def _raw(body: bytes) -> dict[str, Any]:
    return {"content": body, "headers": {"content-type": "application/json"}}


@pytest.mark.parametrize("text", ["BTC\x00/USDT", "BTC\ud800"])
async def test_text_with_a_nul_byte_or_a_lone_surrogate_is_validation_failed(client, text):
    variable = json.dumps({"query": MARKET, "variables": {"s": text}}).encode()
    literal_text = json.dumps(text)  # the same text as a GraphQL string literal
    literal = json.dumps({"query": f"{{ market(symbol: {literal_text}) {{ symbol }} }}"})
    for body, field in ((variable, "s"), (literal.encode(), "symbol")):
        response = await client.post("/graphql", **_raw(body))
        assert response.status_code == 200, response.text
        answer = response.json()
        if "\ud800" in text and field == "symbol":
            # a lone surrogate escape is no GraphQL string: the parser refuses it
            assert answer["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
            continue
        [error] = answer["errors"]
        assert error["extensions"]["code"] == "VALIDATION_FAILED", answer
        assert error["extensions"].get("field") == field, answer
        assert error["message"] == "Text may not contain NUL bytes or unpaired surrogates"
        assert answer.get("data") is None


async def test_an_id_beyond_bigint_is_a_typed_error_and_spoils_no_other_id(gql, rt):
    auth = await verified_user(gql, rt, "carol@example.com")
    token = auth["accessToken"]
    beyond = gid("Order", BEYOND_INT64)
    cancel = await gql.data(CANCEL, {"id": beyond}, token=token)
    refused = cancel["cancelOrder"]
    assert (refused["__typename"], refused["code"], refused["field"]) == (
        "ValidationFailed",
        "VALIDATION_FAILED",
        "id",
    )
    # node: null for ids that name nothing, batched with one that does
    nodes = await gql.data(
        "query($a: ID!, $b: ID!, $c: ID!) { a: node(id: $a) { id } b: node(id: $b) { id }"
        " c: node(id: $c) { id } }",
        {"a": gid("User", BEYOND_INT64), "b": auth["user"]["id"], "c": gid("User", "１")},
        token=token,
    )
    assert nodes == {"a": None, "b": {"id": auth["user"]["id"]}, "c": None}


@pytest.mark.parametrize(
    "body",
    [
        b'{"query": "{ serverTime }", "variables": {"a": "\xff\xfe"}}',
        b'\xff{"query": "{ serverTime }"}',
        b'{"query": "{ serverTime }", "variables": {"a": "\xed\xa0\x80"}}',  # a surrogate
    ],
)
async def test_a_body_that_is_not_utf8_is_a_400_with_a_json_error(client, body):
    response = await client.post("/graphql", **_raw(body))
    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert error["message"] == "The request body is not valid UTF-8"


@pytest.mark.parametrize("name", [["q"], 5, {"a": 1}, True])
async def test_a_non_string_operation_name_is_a_400(client, name):
    body = json.dumps({"query": "query q { serverTime }", "operationName": name}).encode()
    response = await client.post("/graphql", **_raw(body))
    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert error["message"] == "operationName must be a string"


async def test_a_subscription_over_http_is_405_use_websocket(client):
    query = "subscription { serverTime(count: 1) }"
    posted = await client.post("/graphql", json={"query": query})
    got = await client.get("/graphql", params={"query": query})
    for response in (posted, got):
        assert response.status_code == 405, response.text
        [error] = response.json()["errors"]
        assert error["extensions"]["code"] == "METHOD_NOT_ALLOWED"
        assert "use WebSocket" in error["message"]


async def test_every_error_has_field_through_the_error_interface(gql):
    """``... on Error { code message field }`` validates (issue 18.6) and carries it."""
    answer = await gql.data(
        'mutation { register(email: "not an email", password: "x", displayName: "C") {'
        " __typename ... on Error { code message field } } }"
    )
    assert answer["register"]["__typename"] == "ValidationFailed"
    assert answer["register"]["field"] == "email"


# production errors name nothing the client did not send (issue 17.10)

SUGGESTED = [
    ("{ users(fist: 1) { edges { cursor } } }", None),  # an unknown argument
    ("{ leaderboard(period: AL) { edges { cursor } } }", None),  # an enum value
    ("query($x: Strin) { serverTime }", None),  # a type
    (  # an input field
        'mutation { placeOrder(input: {symbl: "BTC/USDT", side: BUY, type: MARKET,'
        ' quantity: "1"}) { __typename } }',
        None,
    ),
    (  # an enum value in variables
        "query($p: LeaderboardPeriod!) { leaderboard(period: $p) { edges { cursor } } }",
        {"p": "AL"},
    ),
    (  # an input field in variables
        "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { __typename } }",
        {
            "i": {
                "symbl": "BTC/USDT",
                "symbol": "BTC/USDT",
                "side": "BUY",
                "type": "MARKET",
                "quantity": "1",
            }
        },
    ),
    ("{ serverTim }", None),  # a field
]


@pytest.mark.parametrize(("query", "variables"), SUGGESTED)
async def test_production_errors_suggest_no_schema_names(rt, query, variables):
    async with client_with(rt, env=Environment.PRODUCTION) as production:
        response = await production.post(
            "/graphql", json={"query": query, "variables": variables or {}}
        )
    errors = response.json()["errors"]
    assert errors
    for error in errors:
        assert error["extensions"]["code"] in {"GRAPHQL_VALIDATION_FAILED", "BAD_USER_INPUT"}
        assert "Did you mean" not in error["message"]


# cursors are bound to their list (issue 18.7)


async def test_a_cursor_of_another_list_is_refused(gql, rt):
    auth = await verified_user(gql, rt, "carol@example.com")
    token = auth["accessToken"]
    await fund(rt, await user_id(rt, "carol@example.com"), "USDT", "10")
    await fund(rt, await user_id(rt, "carol@example.com"), "USDT", "20")
    page = await gql.data(
        "{ transactions(first: 1) { edges { cursor } pageInfo { endCursor } } }", token=token
    )
    cursor = page["transactions"]["pageInfo"]["endCursor"]
    transactions_after = (
        "query($a: String) { transactions(first: 5, after: $a) { edges { cursor } } }"
    )
    orders_after = "query($a: String) { me { orders(first: 5, after: $a) { edges { cursor } } } }"
    assert (
        len(
            (await gql.data(transactions_after, {"a": cursor}, token=token))["transactions"][
                "edges"
            ]
        )
        == 1
    )
    for after, message in (
        (cursor, "The cursor belongs to another list"),
        (base64.urlsafe_b64encode(f"orders:{BEYOND_INT64}".encode()).decode(), "Invalid cursor"),
        ("not a cursor", "Invalid cursor"),
    ):
        answer = await gql(orders_after, {"a": after}, token=token)
        [error] = answer["errors"]
        assert error["extensions"]["code"] == "VALIDATION_FAILED"
        assert error["extensions"]["field"] == "after"
        assert error["message"] == message


async def test_a_subscriptions_variables_with_a_nul_byte_are_refused_over_websocket(settings, rt):
    """A subscription does not pass the check before execution: the socket's admission
    refuses it (each WebSocket operation passes there)."""
    server = LiveServer(create_app(settings))
    await asyncio.to_thread(server.start)
    try:
        async with await _open(server, TRANSPORT_WS) as ws:
            assert (await _init(ws))["type"] == "connection_ack"
            query = "subscription($s: String!) { trades(symbol: $s) { price } }"
            await _send(
                ws,
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": query, "variables": {"s": "BTC\x00/USDT"}},
                },
            )
            answer = await _receive(ws)
    finally:
        await asyncio.to_thread(server.stop)
    assert answer["type"] == "error" and answer["id"] == "1"
    [error] = answer["payload"]
    assert error["extensions"]["code"] == "VALIDATION_FAILED"
    assert error["extensions"]["field"] == "s"
