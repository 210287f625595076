"""Automatic persisted queries in Apollo's wire format (POST and GET), and trusted
documents (``documentId`` from a manifest) with the allowlist mode, over HTTP and
WebSocket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.asgi import create_app
from app.core.settings import Environment, Settings
from graphql_schema.gateway.persisted import InvalidManifest, TrustedDocuments
from graphql_schema.schema import schema
from tests.gateway.test_websocket import (
    LEGACY_WS,
    TRANSPORT_WS,
    LiveServer,
    _init,
    _open,
    _receive,
    _send,
)
from tests.support.documents import signed_in
from tests.support.partner import (
    apq_extensions,
    client_with,
    create_key,
    key_header,
    sha256,
    write_manifest,
)

CLOCK = "query Clock { serverTime }"
LOGOUT = "mutation Logout { logout { __typename } }"
TICKS = "subscription Ticks { serverTime(everySeconds: 1, count: 2) }"
ADHOC_TICKS = "subscription { serverTime(everySeconds: 1, count: 1) }"
NOT_FOUND = {"message": "PersistedQueryNotFound", "code": "PERSISTED_QUERY_NOT_FOUND"}


def _only_error(body: dict) -> dict:
    assert "data" not in body or body["data"] is None, body
    [error] = body["errors"]
    return {"message": error["message"], "code": error["extensions"]["code"]}


async def _post(http, **body):
    return await http.post("/graphql", json=body)


# automatic persisted queries: the Apollo flow over POST


async def test_an_unknown_hash_answers_persisted_query_not_found_with_200(client):
    response = await _post(client, extensions=apq_extensions(CLOCK))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"errors"}
    [error] = body["errors"]
    assert error["message"] == "PersistedQueryNotFound"
    assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


async def test_hash_and_query_register_the_document_then_the_hash_alone_runs_it(client, rt):
    assert _only_error((await _post(client, extensions=apq_extensions(CLOCK))).json()) == NOT_FOUND

    registered = await _post(client, query=CLOCK, extensions=apq_extensions(CLOCK))
    assert registered.status_code == 200
    assert registered.json()["data"]["serverTime"]
    key = rt.redis_key("apq", sha256(CLOCK))
    assert (await rt.redis.get(key)).decode() == CLOCK
    assert 0 < await rt.redis.ttl(key) <= rt.settings.persisted_query_ttl_seconds

    hit = await _post(client, extensions=apq_extensions(CLOCK), operationName="Clock")
    assert hit.status_code == 200
    assert set(hit.json()) == {"data"}
    assert hit.json()["data"]["serverTime"]


async def test_a_registered_hash_is_shared_by_every_server_process(client, rt):
    await _post(client, query=CLOCK, extensions=apq_extensions(CLOCK))
    async with client_with(rt) as other_process:  # another view: its own in-memory cache
        hit = await _post(other_process, extensions=apq_extensions(CLOCK))
    assert hit.json()["data"]["serverTime"]


async def test_variables_travel_with_the_hash(client):
    query = "query Page($first: Int!) { transactions(first: $first) { edges { cursor } } }"
    await _post(client, query=query, extensions=apq_extensions(query), variables={"first": 1})
    body = (await _post(client, extensions=apq_extensions(query), variables={"first": 2})).json()
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"  # ran: needs a user


async def test_a_hash_that_does_not_match_the_query_is_refused_and_stores_nothing(client, rt):
    wrong = apq_extensions("{ somethingElse }")
    response = await _post(client, query=CLOCK, extensions=wrong)
    assert response.status_code == 400
    assert _only_error(response.json()) == {
        "message": "provided sha does not match query",
        "code": "PERSISTED_QUERY_HASH_MISMATCH",
    }
    assert await rt.redis.keys(rt.redis_key("apq", "*")) == []


@pytest.mark.parametrize(
    "persisted",
    [{"version": 2, "sha256Hash": "a" * 64}, {"version": 1, "sha256Hash": "not-hex"}, "x"],
    ids=["version", "hash", "shape"],
)
async def test_a_malformed_persisted_query_extension_is_a_400(client, persisted):
    response = await _post(client, extensions={"persistedQuery": persisted})
    assert response.status_code == 400
    assert _only_error(response.json())["code"] in (
        "PERSISTED_QUERY_NOT_SUPPORTED",
        "PERSISTED_QUERY_HASH_MISMATCH",
    )


async def test_a_document_that_does_not_validate_is_not_stored(client, rt):
    broken = "{ noSuchField }"
    response = await _post(client, query=broken, extensions=apq_extensions(broken))
    assert response.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    again = await _post(client, extensions=apq_extensions(broken))
    assert _only_error(again.json()) == NOT_FOUND


# over GET


async def test_apq_over_get_miss_register_and_hit(client):
    params = {"extensions": json.dumps(apq_extensions(CLOCK))}
    miss = await client.get("/graphql", params=params)
    assert (miss.status_code, _only_error(miss.json())) == (200, NOT_FOUND)

    registered = await client.get("/graphql", params={**params, "query": CLOCK})
    assert registered.json()["data"]["serverTime"]

    hit = await client.get("/graphql", params={**params, "operationName": "Clock"})
    assert hit.status_code == 200
    assert set(hit.json()) == {"data"}


async def test_apq_over_get_passes_variables(client):
    query = "query Page($first: Int!) { transactions(first: $first) { edges { cursor } } }"
    await _post(client, query=query, extensions=apq_extensions(query), variables={"first": 1})
    params = {"extensions": json.dumps(apq_extensions(query)), "variables": '{"first": 3}'}
    body = (await client.get("/graphql", params=params)).json()
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_persisted_mutation_over_get_is_405(client):
    await _post(client, query=LOGOUT, extensions=apq_extensions(LOGOUT))
    response = await client.get(
        "/graphql", params={"extensions": json.dumps(apq_extensions(LOGOUT))}
    )
    assert response.status_code == 405
    assert _only_error(response.json())["code"] == "METHOD_NOT_ALLOWED"


async def test_a_get_with_extensions_never_renders_graphiql(rt):
    params = {"extensions": json.dumps(apq_extensions(CLOCK))}
    async with client_with(rt, env=Environment.DEVELOPMENT) as http:
        browser = {"accept": "text/html,*/*"}
        page = await http.get("/graphql", headers=browser)
        assert page.headers["content-type"].startswith("text/html")  # GraphiQL, as before
        response = await http.get("/graphql", params=params, headers=browser)
        assert response.headers["content-type"] == "application/json"
        assert _only_error(response.json()) == NOT_FOUND
        by_id = await http.get(
            "/graphql", params={"documentId": f"sha256:{sha256(CLOCK)}"}, headers=browser
        )
        assert by_id.headers["content-type"] == "application/json"


async def test_batching_is_off(client):
    response = await client.post("/graphql", json=[{"query": CLOCK}, {"query": CLOCK}])
    assert response.status_code == 400
    assert "Batching is not enabled" in response.json()["errors"][0]["message"]


# trusted documents


@pytest.fixture
def manifest(tmp_path) -> Path:
    operations = {"Clock": CLOCK, "Ticks": TICKS, "Me": "query Me { me { email } }"}
    return write_manifest(tmp_path / "manifest.json", operations)


async def test_a_trusted_document_runs_by_document_id_over_post_and_get(rt, manifest):
    document_id = f"sha256:{sha256(CLOCK)}"
    async with client_with(rt, trusted_documents_manifest=manifest) as http:
        posted = await http.post("/graphql", json={"documentId": document_id})
        got = await http.get("/graphql", params={"documentId": document_id})
    for response in (posted, got):
        assert response.status_code == 200, response.text
        assert response.json()["data"]["serverTime"]


async def test_an_unknown_document_id_is_refused(rt, manifest):
    async with client_with(rt, trusted_documents_manifest=manifest) as http:
        unknown = await http.post("/graphql", json={"documentId": f"sha256:{'0' * 64}"})
        malformed = await http.post("/graphql", json={"documentId": "md5:abc"})
    for response in (unknown, malformed):
        assert response.status_code == 400
        assert _only_error(response.json())["code"] == "TRUSTED_DOCUMENT_NOT_FOUND"


async def test_allowlist_mode_runs_trusted_documents_only(rt, manifest):
    async with client_with(
        rt, trusted_documents_manifest=manifest, trusted_documents_only=True
    ) as http:
        adhoc = await http.post("/graphql", json={"query": "{ serverTime }"})
        register = await http.post(
            "/graphql",
            json={"query": "{ serverTime }", "extensions": apq_extensions("{ serverTime }")},
        )
        by_id = await http.post("/graphql", json={"documentId": f"sha256:{sha256(CLOCK)}"})
        by_apq_hash = await http.post("/graphql", json={"extensions": apq_extensions(CLOCK)})
        same_text = await http.post("/graphql", json={"query": CLOCK})
    for refused in (adhoc, register):
        assert refused.status_code == 403
        assert _only_error(refused.json())["code"] == "TRUSTED_DOCUMENT_REQUIRED"
    for ran in (by_id, by_apq_hash, same_text):
        assert ran.status_code == 200, ran.text
        assert ran.json()["data"]["serverTime"]
    assert await rt.redis.keys(rt.redis_key("apq", "*")) == []


async def test_allowlist_mode_per_api_key(rt, gql, manifest):
    auth = await signed_in(gql)
    secret, key = await create_key(gql, auth["accessToken"], ["READ_ACCOUNT"], trusted=True)
    assert key["trustedDocumentsOnly"] is True
    me_id = f"sha256:{sha256('query Me { me { email } }')}"
    async with client_with(rt, trusted_documents_manifest=manifest) as http:
        adhoc = await http.post(
            "/graphql", json={"query": "{ me { email } }"}, headers=key_header(secret)
        )
        trusted = await http.post(
            "/graphql", json={"documentId": me_id}, headers=key_header(secret)
        )
        session = await http.post(
            "/graphql",
            json={"query": "{ me { email } }"},
            headers={"authorization": f"Bearer {auth['accessToken']}"},
        )
    assert adhoc.status_code == 403
    assert _only_error(adhoc.json())["code"] == "TRUSTED_DOCUMENT_REQUIRED"
    assert trusted.json() == {"data": {"me": {"email": "carol@example.com"}}}
    assert session.json() == {"data": {"me": {"email": "carol@example.com"}}}  # the user's session


def test_allowlist_mode_without_a_manifest_refuses_to_start():
    with pytest.raises(ValidationError, match="TRUSTED_DOCUMENTS_MANIFEST"):
        Settings(trusted_documents_only=True)


def test_a_manifest_whose_id_is_not_the_hash_of_its_body_refuses_to_load(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps(
            {
                "format": "apollo-persisted-query-manifest",
                "version": 1,
                "operations": [{"id": "0" * 64, "name": "Clock", "type": "query", "body": CLOCK}],
            }
        )
    )
    with pytest.raises(InvalidManifest):
        TrustedDocuments.load(path, schema._schema)


def test_a_manifest_document_that_does_not_validate_refuses_to_load(tmp_path):
    path = write_manifest(tmp_path / "stale.json", {"Gone": "{ removedField }"})
    with pytest.raises(InvalidManifest, match="removedField"):
        TrustedDocuments.load(path, schema._schema)


# over WebSocket: strawberry ignores extensions and documentId there; our handlers do not


@pytest.fixture
def allowlist_server(settings: Settings, manifest) -> Iterator[LiveServer]:
    server = LiveServer(
        create_app(
            settings.model_copy(
                update={"trusted_documents_manifest": manifest, "trusted_documents_only": True}
            )
        )
    )
    server.start()
    yield server
    server.stop()


async def test_allowlist_mode_over_graphql_transport_ws(allowlist_server, rt):
    async with await _open(allowlist_server, TRANSPORT_WS) as ws:
        await _init(ws)
        await _send(ws, {"id": "adhoc", "type": "subscribe", "payload": {"query": ADHOC_TICKS}})
        refused = await _receive(ws)
        document_id = f"sha256:{sha256(TICKS)}"
        await _send(
            ws, {"id": "trusted", "type": "subscribe", "payload": {"documentId": document_id}}
        )
        ticks = [await _receive(ws), await _receive(ws), await _receive(ws)]
    assert refused["id"] == "adhoc" and refused["type"] == "error"
    assert refused["payload"][0]["extensions"]["code"] == "TRUSTED_DOCUMENT_REQUIRED"
    assert [(m["id"], m["type"]) for m in ticks] == [
        ("trusted", "next"),
        ("trusted", "next"),
        ("trusted", "complete"),
    ]


async def test_allowlist_mode_over_the_legacy_protocol(allowlist_server, rt):
    async with await _open(allowlist_server, LEGACY_WS) as ws:
        await _init(ws)
        await _send(ws, {"id": "adhoc", "type": "start", "payload": {"query": ADHOC_TICKS}})
        refused = await _receive(ws)
        hashed = {"extensions": apq_extensions(TICKS)}
        await _send(ws, {"id": "apq", "type": "start", "payload": hashed})
        tick = await _receive(ws)
    assert (refused["id"], refused["type"]) == ("adhoc", "error")
    assert refused["payload"]["extensions"]["code"] == "TRUSTED_DOCUMENT_REQUIRED"
    assert (tick["id"], tick["type"]) == ("apq", "data")
    assert tick["payload"]["data"]["serverTime"]


async def test_apq_over_websocket_registers_and_runs_by_hash(settings, rt):
    server = LiveServer(create_app(settings))
    await asyncio.to_thread(server.start)
    try:
        async with await _open(server, TRANSPORT_WS) as ws:
            await _init(ws)
            hashed = {"extensions": apq_extensions(TICKS)}
            await _send(ws, {"id": "miss", "type": "subscribe", "payload": hashed})
            miss = await _receive(ws)
            await _send(
                ws, {"id": "reg", "type": "subscribe", "payload": {**hashed, "query": TICKS}}
            )
            registered = [await _receive(ws) for _ in range(3)]
            await _send(ws, {"id": "hit", "type": "subscribe", "payload": hashed})
            hit = await _receive(ws)
    finally:
        await asyncio.to_thread(server.stop)
    assert miss["type"] == "error"
    assert miss["payload"][0]["message"] == "PersistedQueryNotFound"
    assert miss["payload"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert [m["type"] for m in registered] == ["next", "next", "complete"]
    assert (hit["id"], hit["type"]) == ("hit", "next")


# abuse: what one client may store, and what misses and registrations cost


def _padded(query: str, size: int) -> str:
    """``query`` grown to ``size`` bytes by a comment."""
    return query + "\n#" + "x" * (size - len(query) - 2)


async def test_a_document_too_large_to_register_is_refused_and_stores_nothing(rt):
    largest, too_large = _padded(CLOCK, 1024), _padded(CLOCK, 1025)
    async with client_with(rt, persisted_query_max_bytes=1024) as http:
        refused = await _post(http, query=too_large, extensions=apq_extensions(too_large))
        stored = await _post(http, query=largest, extensions=apq_extensions(largest))
    assert refused.status_code == 400
    assert _only_error(refused.json()) == {
        "message": "The document is 1025 bytes; a persisted query may be at most 1024 bytes",
        "code": "PERSISTED_QUERY_TOO_LARGE",
    }
    assert stored.json()["data"]["serverTime"]
    assert await rt.redis.keys(rt.redis_key("apq", "*")) == [
        rt.redis_key("apq", sha256(largest)).encode()
    ]


async def test_registrations_per_client_are_bounded(rt, gql):
    documents = [f"query Q{i} {{ serverTime }}" for i in range(4)]
    auth = await signed_in(gql)
    async with client_with(rt, persisted_query_registrations=2) as http:
        anonymous = [
            await _post(http, query=d, extensions=apq_extensions(d)) for d in documents[:3]
        ]
        third = await _post(http, extensions=apq_extensions(documents[2]))
        user = await http.post(
            "/graphql",
            json={"query": documents[3], "extensions": apq_extensions(documents[3])},
            headers={"authorization": f"Bearer {auth['accessToken']}"},
        )
    assert [r.json()["data"]["serverTime"] is not None for r in anonymous] == [True] * 3
    assert _only_error(third.json()) == NOT_FOUND  # ran, was not stored
    assert user.json()["data"]["serverTime"]  # a user has a budget of their own
    stored = {k.decode() for k in await rt.redis.keys(rt.redis_key("apq", "*"))}
    assert stored == {rt.redis_key("apq", sha256(d)) for d in (*documents[:2], documents[3])}


async def test_misses_and_registrations_draw_from_the_rate_limit_budget(rt):
    def remaining(response) -> int:
        return int(response.headers["ratelimit-remaining"])

    async with client_with(rt, rate_limit_anonymous=30, rate_limit_window_seconds=3600) as http:
        first = await _post(http, query=CLOCK)  # cost 1
        await _post(http, extensions=apq_extensions(CLOCK))  # a miss: 1
        second = await _post(http, query=CLOCK)
        registered = await _post(http, query=CLOCK, extensions=apq_extensions(CLOCK))  # 1 + 10
        other = apq_extensions("{ unknown }")
        misses = [await _post(http, extensions=other) for _ in range(17)]
    assert (remaining(first), remaining(second), remaining(registered)) == (29, 27, 16)
    assert [_only_error(m.json()) for m in misses[:16]] == [NOT_FOUND] * 16
    assert misses[16].status_code == 429
    assert _only_error(misses[16].json())["code"] == "RATE_LIMITED"
