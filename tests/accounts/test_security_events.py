"""The security event trail: logins (success and failure), two-factor changes, password
resets and API key changes are recorded with the client's address, user agent and the
request id; a user sees their own events (newest first, keyset pages), admins everyone's."""

from __future__ import annotations

from datetime import timedelta

import pyotp
from sqlalchemy import select, update

from app.accounts.domain import totp
from app.accounts.security_events import SecurityEventKind, record_security_event
from db.models import SecurityEvent, User
from tests.support.documents import (
    CONFIRM_2FA,
    DISABLE_2FA,
    ENABLE_2FA,
    REQUEST_RESET,
    RESET_PASSWORD,
    login,
    register,
    signed_in,
)
from tests.support.partner import SECURITY_EVENTS, create_key


async def _events(gql, token: str, **variables) -> list[dict]:
    data = await gql.data(SECURITY_EVENTS, variables, token=token)
    return [e["node"] for e in data["securityEvents"]["edges"]]


async def _kinds(gql, token: str, **variables) -> list[str]:
    return [e["kind"] for e in await _events(gql, token, **variables)]


async def test_logins_are_recorded_with_address_agent_and_request_id(gql, client, rt):
    await register(gql)
    assert (await login(gql, password="not the password"))["code"] == "INVALID_CREDENTIALS"
    await client.post(
        "/graphql",
        json={
            "query": 'mutation { login(email: "carol@example.com", password: "x") { __typename } }'
        },
        headers={"user-agent": "partner-bot/1.0", "x-request-id": "req-42"},
    )
    auth = await login(gql)
    events = await _events(gql, auth["accessToken"])
    assert [e["kind"] for e in events] == ["LOGIN_SUCCEEDED", "LOGIN_FAILED", "LOGIN_FAILED"]
    assert all(e["ipAddress"] == "127.0.0.1" for e in events)
    assert events[1]["userAgent"] == "partner-bot/1.0"
    assert events[1]["details"] == {"reason": "INVALID_CREDENTIALS"}
    assert events[0]["user"] == {"email": "carol@example.com"}
    async with rt.sessions() as session:
        request_ids = (await session.scalars(select(SecurityEvent.request_id))).all()
    assert "req-42" in request_ids


async def test_a_failed_login_for_an_unknown_address_has_no_user(gql, rt):
    assert (await login(gql, "nobody@example.com"))["code"] == "INVALID_CREDENTIALS"
    async with rt.sessions() as session:
        [event] = (await session.scalars(select(SecurityEvent))).all()
    assert (event.kind, event.user_id) == ("LOGIN_FAILED", None)
    assert "nobody" not in str(event.details)


async def test_two_factor_changes_and_failed_codes_are_recorded(gql, rt):
    auth = await signed_in(gql)
    token = auth["accessToken"]
    setup = (await gql.data(ENABLE_2FA, token=token))["enableTwoFactor"]
    code = totp.current_code(setup["secret"], now=rt.now())
    await gql.data(CONFIRM_2FA, {"code": code}, token=token)
    assert (await login(gql, totp="000000"))["code"] == "INVALID_TWO_FACTOR_CODE"
    later = rt.now() + timedelta(seconds=60)  # the confirm code's step is spent
    rt.clock = lambda: later
    disabled = await gql.data(
        DISABLE_2FA, {"code": pyotp.TOTP(setup["secret"]).at(later)}, token=token
    )
    assert disabled["disableTwoFactor"]["__typename"] == "UserPayload"
    events = await _events(gql, token)
    assert [e["kind"] for e in events] == [
        "TWO_FACTOR_DISABLED",
        "LOGIN_FAILED",
        "TWO_FACTOR_ENABLED",
        "LOGIN_SUCCEEDED",
    ]
    assert events[1]["details"] == {"reason": "INVALID_TWO_FACTOR_CODE"}


async def test_password_resets_are_recorded(gql, mailbox):
    await register(gql)
    await gql.data(REQUEST_RESET, {"email": "carol@example.com"})
    link = mailbox.last_link("carol@example.com", "/reset-password")
    token = link.split("token=", 1)[1]
    new_password = "another long passphrase 9"
    await gql.data(RESET_PASSWORD, {"t": token, "p": new_password})
    auth = await login(gql, password=new_password)
    assert await _kinds(gql, auth["accessToken"]) == [
        "LOGIN_SUCCEEDED",
        "PASSWORD_RESET",
        "PASSWORD_RESET_REQUESTED",
    ]


async def test_an_event_rolls_back_with_its_transaction(rt, gql):
    await register(gql)
    async with rt.sessions() as session:
        user = await session.scalar(select(User))
    try:
        async with rt.sessions() as session, session.begin():
            await record_security_event(
                session, user_id=user.id, kind=SecurityEventKind.WITHDRAWAL_REQUESTED
            )
            raise RuntimeError("the withdrawal failed")
    except RuntimeError:
        pass
    async with rt.sessions() as session:
        assert (await session.scalars(select(SecurityEvent))).all() == []


# who sees what


async def test_users_see_their_own_events_newest_first_in_pages(gql):
    carol = await signed_in(gql)
    dave = await signed_in(gql, "dave@example.com")
    for n in range(3):
        await create_key(gql, carol["accessToken"], ["READ_ACCOUNT"], name=f"key {n}")
    first = await gql.data(SECURITY_EVENTS, {"first": 2}, token=carol["accessToken"])
    page = first["securityEvents"]
    assert [e["node"]["kind"] for e in page["edges"]] == ["API_KEY_CREATED"] * 2
    assert [e["node"]["details"]["name"] for e in page["edges"]] == ["key 2", "key 1"]
    assert page["pageInfo"]["hasNextPage"] is True
    rest = await gql.data(
        SECURITY_EVENTS, {"after": page["pageInfo"]["endCursor"]}, token=carol["accessToken"]
    )
    assert [e["node"]["kind"] for e in rest["securityEvents"]["edges"]] == [
        "API_KEY_CREATED",
        "LOGIN_SUCCEEDED",
    ]
    assert await _kinds(gql, dave["accessToken"]) == ["LOGIN_SUCCEEDED"]

    others = await gql(SECURITY_EVENTS, {"userId": carol["user"]["id"]}, token=dave["accessToken"])
    assert others["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    anonymous = await gql(SECURITY_EVENTS)
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_admins_see_everyones_events(gql, rt):
    carol = await signed_in(gql)
    await signed_in(gql, "dave@example.com")
    await register(gql, "root@example.com")
    async with rt.sessions() as session, session.begin():
        await session.execute(
            update(User).where(User.email == "root@example.com").values(role="ADMIN")
        )
    admin = await login(gql, "root@example.com")
    everyone = await _events(gql, admin["accessToken"], first=10)
    assert {e["user"]["email"] for e in everyone} == {
        "carol@example.com",
        "dave@example.com",
        "root@example.com",
    }
    carols = await _events(gql, admin["accessToken"], userId=carol["user"]["id"])
    assert [(e["kind"], e["user"]["email"]) for e in carols] == [
        ("LOGIN_SUCCEEDED", "carol@example.com")
    ]
