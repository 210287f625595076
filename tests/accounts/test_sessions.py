"""login, refreshToken rotation and theft detection, logout, access-token checks."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import time
import uuid

import jwt
import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import event, select

from app.accounts.sessions import authenticate
from app.core.settings import DEV_JWT_SECRET
from bench.processes import free_port
from db.models import RefreshToken
from tests.support import RedisCommands
from tests.support.documents import LOGOUT, ME, PASSWORD, REFRESH, login, register, signed_in


async def test_login_returns_a_short_lived_jwt_and_a_refresh_token(gql, rt):
    await register(gql)
    auth = await login(gql)
    assert auth["__typename"] == "AuthPayload"
    claims = jwt.decode(
        auth["accessToken"],
        rt.settings.jwt_secret.get_secret_value(),
        algorithms=["HS256"],
        audience="access",
    )
    assert {"exp", "iat", "sub", "jti"} <= claims.keys()
    assert 14 * 60 <= claims["exp"] - claims["iat"] <= 15 * 60
    async with rt.sessions() as session:
        stored = (await session.scalars(select(RefreshToken))).all()
    assert len(stored) == 1
    assert auth["refreshToken"].encode() not in stored[0].token_hash  # only the hash is kept

    me = (await gql.data(ME, token=auth["accessToken"]))["me"]
    assert me["email"] == "carol@example.com"


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("carol@example.com", "wrong password 123"),
        ("nobody@example.com", PASSWORD),
        ("not an email", PASSWORD),
        ("CAROL@EXAMPLE.COM", PASSWORD.upper()),
    ],
)
async def test_wrong_password_and_unknown_email_get_the_same_error(gql, rt, email, password):
    await register(gql)
    result = await login(gql, email, password)
    assert result == {
        "__typename": "InvalidCredentials",
        "code": "INVALID_CREDENTIALS",
        "message": "Email or password is incorrect",
    }
    async with rt.sessions() as session:
        assert (await session.scalars(select(RefreshToken))).all() == []


async def test_email_is_case_insensitive_at_login(gql):
    await register(gql)
    assert (await login(gql, "CAROL@Example.com"))["__typename"] == "AuthPayload"


async def test_refresh_rotates_the_token(gql):
    auth = await signed_in(gql)
    first = (await gql.data(REFRESH, {"t": auth["refreshToken"]}))["refreshToken"]
    assert first["__typename"] == "AuthPayload"
    assert first["refreshToken"] != auth["refreshToken"]
    second = (await gql.data(REFRESH, {"t": first["refreshToken"]}))["refreshToken"]
    assert second["__typename"] == "AuthPayload"
    assert (await gql.data(ME, token=second["accessToken"]))["me"]["email"] == "carol@example.com"


async def test_reusing_a_rotated_refresh_token_revokes_the_whole_family(gql, rt):
    auth = await signed_in(gql)
    other_session = await login(gql)  # a second device: a different family
    rotated = (await gql.data(REFRESH, {"t": auth["refreshToken"]}))["refreshToken"]

    reuse = (await gql.data(REFRESH, {"t": auth["refreshToken"]}))["refreshToken"]
    assert reuse["code"] == "REFRESH_TOKEN_REUSED"
    # the thief's (or the user's) newest token of that family no longer works either
    after = (await gql.data(REFRESH, {"t": rotated["refreshToken"]}))["refreshToken"]
    assert after["code"] == "INVALID_REFRESH_TOKEN"
    # the other device is untouched
    other = (await gql.data(REFRESH, {"t": other_session["refreshToken"]}))["refreshToken"]
    assert other["__typename"] == "AuthPayload"


@pytest.mark.parametrize("token", ["", "nope", "x" * 500])
async def test_unknown_refresh_token_is_refused(gql, token):
    await signed_in(gql)
    result = (await gql.data(REFRESH, {"t": token}))["refreshToken"]
    assert result["code"] == "INVALID_REFRESH_TOKEN"


async def test_expired_refresh_token_is_refused(gql, rt):
    auth = await signed_in(gql)
    later = rt.now()
    rt.clock = lambda: later.replace(year=later.year + 1)
    result = (await gql.data(REFRESH, {"t": auth["refreshToken"]}))["refreshToken"]
    assert result["code"] == "INVALID_REFRESH_TOKEN"


async def test_logout_revokes_refresh_family_and_access_token(gql):
    auth = await signed_in(gql)
    out = await gql.data(LOGOUT, {"t": auth["refreshToken"]}, token=auth["accessToken"])
    assert out["logout"] == {"__typename": "LogoutPayload", "revoked": True}
    refreshed = (await gql.data(REFRESH, {"t": auth["refreshToken"]}))["refreshToken"]
    assert refreshed["code"] == "INVALID_REFRESH_TOKEN"
    body = await gql(ME, token=auth["accessToken"], expect_status=401)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_logout_everywhere_ends_every_session(gql):
    auth = await signed_in(gql)
    phone = await login(gql)
    await gql.data(LOGOUT, {"everywhere": True}, token=auth["accessToken"])
    await gql(ME, token=phone["accessToken"], expect_status=401)
    refreshed = (await gql.data(REFRESH, {"t": phone["refreshToken"]}))["refreshToken"]
    assert refreshed["code"] == "INVALID_REFRESH_TOKEN"
    again = await login(gql)
    assert (await gql.data(ME, token=again["accessToken"]))["me"] is not None


async def test_logout_with_someone_elses_refresh_token_is_refused(gql):
    carol = await signed_in(gql)
    dave = await signed_in(gql, "dave@example.com")
    out = await gql.data(LOGOUT, {"t": dave["refreshToken"]}, token=carol["accessToken"])
    assert out["logout"]["code"] == "INVALID_REFRESH_TOKEN"
    refreshed = (await gql.data(REFRESH, {"t": dave["refreshToken"]}))["refreshToken"]
    assert refreshed["__typename"] == "AuthPayload"


async def test_anonymous_logout_needs_a_refresh_token(gql):
    out = await gql.data(LOGOUT, {})
    assert out["logout"]["code"] == "INVALID_REFRESH_TOKEN"


async def test_requests_authenticating_at_once_each_get_their_own_user(gql, sql_statements):
    """Tokens are checked together (one denylist round trip, one user query for the
    requests of the same moment): each request still gets its own user, and a revoked
    token among them is refused."""
    carol = await signed_in(gql)
    dave = await signed_in(gql, "dave@example.com")
    erin = await signed_in(gql, "erin@example.com")
    await gql.data(LOGOUT, {"t": erin["refreshToken"]}, token=erin["accessToken"])
    sql_statements.reset()
    await gql.data(ME, token=carol["accessToken"])
    alone = sql_statements.count  # one request's statements, its token check included
    sql_statements.reset()
    people = [carol, dave, erin] * 8
    bodies = await asyncio.gather(
        *(gql(ME, token=p["accessToken"], expect_status=401 if p is erin else 200) for p in people)
    )
    for person, body in zip(people, bodies, strict=True):
        if person is erin:
            assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        else:
            assert body["data"]["me"]["email"] == (
                "carol@example.com" if person is carol else "dave@example.com"
            )
    # 16 answered requests checked one by one would run at least 16 x alone statements
    assert sql_statements.count < 16 * alone


async def test_the_denylist_check_and_the_user_query_go_out_together(gql, rt):
    """The token's denylist check (Redis) and its user's query (PostgreSQL) are sent
    without waiting for each other: here Redis's reply is read only once the query has
    gone out (checked one after the other they would wait for each other forever)."""
    auth = await signed_in(gql)
    query_sent = asyncio.Event()

    def on_statement(conn, cursor, statement: str, *args) -> None:
        if "users" in statement:
            query_sent.set()

    async def after_the_query() -> None:
        async with asyncio.timeout(20):  # only a guard against the deadlock
            await query_sent.wait()

    commands = RedisCommands(before_reply=after_the_query)
    redis = commands.client(rt.redis)
    event.listen(rt.engine.sync_engine, "before_cursor_execute", on_statement)
    try:
        checked = dataclasses.replace(rt, redis=redis, _coalescers={})
        authenticated = await authenticate(rt=checked, access_token=auth["accessToken"])
    finally:
        event.remove(rt.engine.sync_engine, "before_cursor_execute", on_statement)
        await redis.aclose()
    assert authenticated.user.email == "carol@example.com"
    assert commands.sent("EXISTS") == [["EXISTS"]]


async def test_a_failed_token_check_raises_its_own_error_and_leaves_nothing_running(gql, rt):
    """Redis unreachable: the request gets Redis's ConnectionError (not a group of
    errors), the user query running beside it has ended and given its connection back,
    and the next check on a working Redis goes through."""
    auth = await signed_in(gql)
    unreachable = Redis(host="127.0.0.1", port=free_port(), retry=Retry(NoBackoff(), 0))
    broken = dataclasses.replace(rt, redis=unreachable, _coalescers={})
    before = asyncio.all_tasks()
    try:
        with pytest.raises(RedisConnectionError):
            await authenticate(rt=broken, access_token=auth["accessToken"])
    finally:
        await unreachable.aclose()
    assert asyncio.all_tasks() - before == set()
    assert rt.engine.pool.checkedout() == 0
    again = await authenticate(rt=rt, access_token=auth["accessToken"])
    assert again.user.email == "carol@example.com"


def _forge(claims: dict, key: str = DEV_JWT_SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=alg)


def _none_alg(claims: dict) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _claims(user_id: str, **overrides) -> dict:
    now = int(time.time())
    base = {
        "sub": user_id,
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "iss": "cryptoorchestrator",
        "aud": "access",
        "role": "ADMIN",
    }
    return {**base, **overrides}


@pytest.mark.parametrize(
    "make_token",
    [
        lambda uid: _forge(_claims(uid), key="another-secret-of-sufficient-length!!"),
        lambda uid: _none_alg(_claims(uid)),
        lambda uid: _forge(_claims(uid, exp=int(time.time()) - 60, iat=int(time.time()) - 999)),
        lambda uid: _forge(_claims(uid, aud="verify-email")),
        lambda uid: _forge({k: v for k, v in _claims(uid).items() if k != "jti"}),
        lambda uid: _forge(_claims("not-a-number")),
        lambda uid: "not.a.jwt",
    ],
    ids=["wrong-key", "alg-none", "expired", "wrong-audience", "no-jti", "bad-sub", "garbage"],
)
async def test_bad_access_tokens_are_refused_with_401(gql, make_token):
    auth = await signed_in(gql)
    user_id = str(jwt.decode(auth["accessToken"], options={"verify_signature": False})["sub"])
    body = await gql(ME, token=make_token(user_id), expect_status=401)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "data" not in body


async def test_malformed_authorization_header_is_refused(gql, client):
    response = await client.post(
        "/graphql", json={"query": ME}, headers={"authorization": "Basic abc"}
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_login_mutation_rejects_unknown_arguments(gql):
    body = await gql(
        'mutation { login(email: "a@b.c", password: "x", role: ADMIN) { __typename } }'
    )
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "data" not in body or body["data"] is None
