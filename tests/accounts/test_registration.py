"""register, verifyEmail (following the mailed link), resendVerificationEmail, me."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from app.runtime import Runtime, utcnow
from db.models import User
from tests.support.documents import (
    ME,
    PASSWORD,
    REGISTER,
    RESEND_VERIFICATION,
    VERIFY_EMAIL,
    login,
    register,
    signed_in,
)


async def _user_count(rt: Runtime) -> int:
    async with rt.sessions() as session:
        return await session.scalar(select(func.count()).select_from(User))


async def test_register_normalises_email_and_hashes_password(gql, rt):
    accepted = await register(gql, email="  Carol.Smith@Example.COM ")
    assert accepted == {
        "__typename": "RegisterPayload",
        "accepted": True,
        "email": "carol.smith@example.com",
    }
    auth = await login(gql, "carol.smith@example.com")
    user = (await gql.data(ME, token=auth["accessToken"]))["me"]
    assert user["email"] == "carol.smith@example.com"
    assert user["emailVerified"] is False
    assert user["role"] == "USER"
    async with rt.sessions() as session:
        row = await session.scalar(select(User))
    assert row.password_hash.startswith("$argon2id$")
    assert PASSWORD not in row.password_hash


@pytest.mark.parametrize(
    ("email", "password", "code", "field"),
    [
        ("not-an-email", PASSWORD, "VALIDATION_FAILED", "email"),
        ("", PASSWORD, "VALIDATION_FAILED", "email"),
        ("dave@example.com", "short1", "WEAK_PASSWORD", "password"),
        ("dave@example.com", "password123", "WEAK_PASSWORD", "password"),  # common
        ("dave@example.com", "1234567890", "WEAK_PASSWORD", "password"),  # common
        ("dave@example.com", "dave@example.com", "WEAK_PASSWORD", "password"),
        ("dave@example.com", "x" * 300, "WEAK_PASSWORD", "password"),
    ],
)
async def test_bad_registration_is_a_typed_error_and_creates_nothing(
    gql, rt, mailbox, email, password, code, field
):
    data = await gql.data(REGISTER, {"email": email, "password": password, "name": "Dave"})
    assert data["register"]["code"] == code
    assert data["register"]["field"] == field
    assert await _user_count(rt) == 0
    assert mailbox.messages == []


async def test_blank_display_name_is_rejected(gql, rt):
    data = await gql.data(REGISTER, {"email": "e@example.com", "password": PASSWORD, "name": "  "})
    assert data["register"]["__typename"] == "ValidationFailed"
    assert data["register"]["field"] == "displayName"
    assert await _user_count(rt) == 0


async def test_duplicate_email_creates_no_account_case_insensitively(gql, rt):
    # The answer no longer says "already registered" (issue 17, item 8: enumeration);
    # tests/accounts/test_accounts_security.py checks that it is the answer a new address gets.
    await register(gql, email="carol@example.com")
    data = await gql.data(
        REGISTER, {"email": "CAROL@example.com", "password": PASSWORD, "name": "C"}
    )
    assert data["register"]["__typename"] == "RegisterPayload"
    assert await _user_count(rt) == 1


async def test_mailed_link_verifies_the_email(gql, client, mailbox):
    await register(gql)
    link = mailbox.last_link("carol@example.com", "/verify-email")
    assert link.startswith("http://testserver/verify-email?token=")

    page = await client.get(link)
    assert page.status_code == 200
    assert "verified" in page.text

    auth = await login(gql)
    me = (await gql.data(ME, token=auth["accessToken"]))["me"]
    assert me["emailVerified"] is True


async def test_verify_email_mutation_with_the_mailed_token(gql, mailbox):
    await register(gql)
    token = parse_qs(urlsplit(mailbox.last_link("carol@example.com", "/verify-email")).query)[
        "token"
    ][0]
    data = await gql.data(VERIFY_EMAIL, {"t": token})
    assert data["verifyEmail"] == {"__typename": "UserPayload", "user": {"emailVerified": True}}
    again = await gql.data(VERIFY_EMAIL, {"t": token})
    assert again["verifyEmail"]["__typename"] == "UserPayload"  # idempotent


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c"])
async def test_forged_verification_token_is_refused(gql, client, token):
    await register(gql)
    data = await gql.data(VERIFY_EMAIL, {"t": token})
    assert data["verifyEmail"]["code"] == "INVALID_TOKEN"
    page = await client.get("/verify-email", params={"token": token})
    assert page.status_code == 400


async def test_access_token_is_not_a_verification_token(gql):
    auth = await signed_in(gql)
    data = await gql.data(VERIFY_EMAIL, {"t": auth["accessToken"]})
    assert data["verifyEmail"]["code"] == "INVALID_TOKEN"


async def test_expired_verification_token_is_refused(gql, rt, mailbox):
    auth = await signed_in(gql)
    two_days_ago = rt.now() - timedelta(days=2)
    rt.clock = lambda: two_days_ago  # the mail is signed two days ago, valid for 24 h
    await gql.data(RESEND_VERIFICATION, token=auth["accessToken"])
    rt.clock = utcnow
    link = mailbox.last_link("carol@example.com", "/verify-email")
    data = await gql.data(VERIFY_EMAIL, {"t": parse_qs(urlsplit(link).query)["token"][0]})
    assert data["verifyEmail"]["code"] == "INVALID_TOKEN"
    assert "expired" in data["verifyEmail"]["message"]
    assert (await gql.data(ME, token=auth["accessToken"]))["me"]["emailVerified"] is False


async def test_resend_verification_sends_a_new_mail(gql, mailbox):
    auth = await signed_in(gql)
    data = await gql.data(RESEND_VERIFICATION, token=auth["accessToken"])
    assert data["resendVerificationEmail"]["__typename"] == "UserPayload"
    assert len(mailbox.to("carol@example.com")) == 2


async def test_resend_verification_requires_sign_in_and_an_unverified_address(gql, client, mailbox):
    anonymous = await gql.data(RESEND_VERIFICATION)
    assert anonymous["resendVerificationEmail"]["code"] == "UNAUTHENTICATED"
    auth = await signed_in(gql)
    await client.get(mailbox.last_link("carol@example.com", "/verify-email"))
    data = await gql.data(RESEND_VERIFICATION, token=auth["accessToken"])
    assert data["resendVerificationEmail"]["code"] == "EMAIL_ALREADY_VERIFIED"


async def test_me_is_null_when_anonymous(gql):
    assert (await gql.data(ME)) == {"me": None}
