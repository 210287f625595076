"""Cache-Control on /graphql: a persisted query over GET whose root fields are all public
market data, asked anonymously and answered without errors, may be cached by browsers
and CDNs for PUBLIC_QUERY_CACHE_SECONDS; everything else is ``private, no-store``."""

from __future__ import annotations

import json

import pytest

from tests.support.documents import signed_in
from tests.support.partner import (
    apq_extensions,
    client_with,
    create_key,
    key_header,
    sha256,
    write_manifest,
)

MARKETS = "query Markets { markets { symbol tickSize } }"
CLOCK_AND_CURRENCIES = "query Board { serverTime currencies { code } }"
ME = "query Me { me { email } }"
MIXED = "query Mixed { markets { symbol } me { email } }"
PAGE = "query Page($first: Int!) { transactions(first: $first) { edges { cursor } } }"
NO_STORE = "private, no-store"


def _params(query: str, **extra: str) -> dict[str, str]:
    return {"extensions": json.dumps(apq_extensions(query)), **extra}


async def _register(http, query: str) -> None:
    response = await http.post(
        "/graphql", json={"query": query, "extensions": apq_extensions(query)}
    )
    assert response.status_code == 200, response.text


async def _get(http, query: str, **kw):
    return await http.get("/graphql", params=_params(query), **kw)


def _vary(response) -> set[str]:
    return {v.strip().lower() for v in response.headers.get("vary", "").split(",") if v.strip()}


@pytest.mark.parametrize("query", [MARKETS, CLOCK_AND_CURRENCIES])
async def test_an_anonymous_persisted_market_data_get_is_publicly_cacheable(client, query):
    await _register(client, query)
    response = await _get(client, query)
    assert response.status_code == 200 and set(response.json()) == {"data"}, response.text
    assert response.headers["cache-control"] == "public, max-age=2"
    assert {"authorization", "x-api-key", "cookie"} <= _vary(response)
    # one caller's budget must not be served to the others from a shared cache
    assert not [name for name in response.headers if name.lower().startswith("ratelimit-")]


async def test_a_trusted_document_over_get_is_publicly_cacheable(rt, tmp_path):
    manifest = write_manifest(tmp_path / "manifest.json", {"Markets": MARKETS, "Me": ME})
    async with client_with(rt, trusted_documents_manifest=manifest) as http:
        markets = await http.get("/graphql", params={"documentId": f"sha256:{sha256(MARKETS)}"})
        me = await http.get("/graphql", params={"documentId": f"sha256:{sha256(ME)}"})
    assert markets.status_code == 200, markets.text
    assert markets.headers["cache-control"] == "public, max-age=2"
    assert me.status_code == 200 and me.json()["data"] == {"me": None}
    assert me.headers["cache-control"] == NO_STORE


async def test_the_public_lifetime_is_a_setting_and_zero_turns_it_off(rt):
    async with client_with(rt, public_query_cache_seconds=5) as http:
        await _register(http, MARKETS)
        assert (await _get(http, MARKETS)).headers["cache-control"] == "public, max-age=5"
    async with client_with(rt, public_query_cache_seconds=0) as http:
        assert (await _get(http, MARKETS)).headers["cache-control"] == NO_STORE


async def test_a_signed_in_or_api_key_or_cookie_get_is_never_stored(client, gql, rt):
    auth = await signed_in(gql)
    await _register(client, MARKETS)
    bearer = await _get(client, MARKETS, headers={"authorization": f"Bearer {auth['accessToken']}"})
    assert bearer.status_code == 200 and "errors" not in bearer.json(), bearer.text
    assert bearer.headers["cache-control"] == NO_STORE
    secret, _ = await create_key(gql, auth["accessToken"], scopes=["READ_MARKET_DATA"])
    keyed = await _get(client, MARKETS, headers=key_header(secret))
    assert keyed.status_code == 200 and "errors" not in keyed.json(), keyed.text
    assert keyed.headers["cache-control"] == NO_STORE
    cookie = await _get(client, MARKETS, headers={"cookie": "session=abc"})
    assert cookie.headers["cache-control"] == NO_STORE


async def test_account_data_errors_mutations_posts_and_plain_queries_are_never_stored(client):
    for query in (ME, MIXED, PAGE):
        await _register(client, query)
    me = await _get(client, ME)
    assert me.json()["data"] == {"me": None}  # no error, but about the caller
    mixed = await _get(client, MIXED)
    failed = await client.get(  # an error (the caller is anonymous)
        "/graphql", params=_params(PAGE, variables='{"first": 1}')
    )
    assert failed.json()["errors"]
    miss = await _get(client, "query Unknown { serverTime }")  # PersistedQueryNotFound
    assert miss.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    posted = await client.post(
        "/graphql", json={"query": MARKETS, "extensions": apq_extensions(MARKETS)}
    )
    plain = await client.get("/graphql", params={"query": MARKETS})
    assert plain.status_code == 200 and "errors" not in plain.json()
    mutation = await client.get("/graphql", params={"query": "mutation { logout { __typename } }"})
    assert mutation.status_code == 405
    for response in (me, mixed, failed, miss, posted, plain, mutation):
        assert response.headers["cache-control"] == NO_STORE, response.request.url
