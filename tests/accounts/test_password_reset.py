"""requestPasswordReset / resetPassword, following the mailed link."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from tests.support.documents import (
    ME,
    REFRESH,
    REQUEST_RESET,
    RESET_PASSWORD,
    login,
    register,
    signed_in,
)

NEW_PASSWORD = "a brand new passphrase 7"


def _token(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


async def test_reset_by_mailed_token_changes_password_and_revokes_sessions(gql, mailbox):
    auth = await signed_in(gql)
    accepted = await gql.data(REQUEST_RESET, {"email": "Carol@Example.com"})
    assert accepted["requestPasswordReset"] == {
        "__typename": "RequestPasswordResetPayload",
        "accepted": True,
    }
    link = mailbox.last_link("carol@example.com", "/reset-password")

    done = await gql.data(RESET_PASSWORD, {"t": _token(link), "p": NEW_PASSWORD})
    assert done["resetPassword"]["__typename"] == "UserPayload"

    # every refresh token and every access token from before the reset is dead
    refreshed = (await gql.data(REFRESH, {"t": auth["refreshToken"]}))["refreshToken"]
    assert refreshed["code"] == "INVALID_REFRESH_TOKEN"
    await gql(ME, token=auth["accessToken"], expect_status=401)
    assert (await login(gql))["code"] == "INVALID_CREDENTIALS"
    assert (await login(gql, password=NEW_PASSWORD))["__typename"] == "AuthPayload"


async def test_reset_token_works_once(gql, mailbox):
    await register(gql)
    await gql.data(REQUEST_RESET, {"email": "carol@example.com"})
    token = _token(mailbox.last_link("carol@example.com", "/reset-password"))
    await gql.data(RESET_PASSWORD, {"t": token, "p": NEW_PASSWORD})
    again = await gql.data(RESET_PASSWORD, {"t": token, "p": "yet another passphrase 9"})
    assert again["resetPassword"]["code"] == "INVALID_TOKEN"
    assert (await login(gql, password=NEW_PASSWORD))["__typename"] == "AuthPayload"


async def test_reset_with_weak_password_changes_nothing(gql, mailbox):
    auth = await signed_in(gql)
    await gql.data(REQUEST_RESET, {"email": "carol@example.com"})
    token = _token(mailbox.last_link("carol@example.com", "/reset-password"))
    weak = await gql.data(RESET_PASSWORD, {"t": token, "p": "password1"})
    assert weak["resetPassword"]["code"] == "WEAK_PASSWORD"
    assert (await gql.data(ME, token=auth["accessToken"]))["me"] is not None
    ok = await gql.data(RESET_PASSWORD, {"t": token, "p": NEW_PASSWORD})  # still usable
    assert ok["resetPassword"]["__typename"] == "UserPayload"


async def test_unknown_address_gets_the_same_answer_and_a_mail_without_a_link(gql, mailbox):
    # Issue 17, item 8: the mail side must not differ either, so an unknown address gets
    # one mail too, saying it has no account (it used to get none).
    await register(gql)
    mailbox.clear()
    result = await gql.data(REQUEST_RESET, {"email": "nobody@example.com"})
    assert result["requestPasswordReset"]["accepted"] is True
    [mail] = mailbox.to("nobody@example.com")
    body = mail.get_payload(decode=True).decode()
    assert "no account" in body
    assert "token=" not in body
    assert len(mailbox.messages) == 1


async def test_malformed_address_is_a_validation_error(gql):
    result = await gql.data(REQUEST_RESET, {"email": "nope"})
    assert result["requestPasswordReset"]["code"] == "VALIDATION_FAILED"


async def test_forged_reset_token_is_refused(gql):
    await register(gql)
    result = await gql.data(RESET_PASSWORD, {"t": "forged.token.value", "p": NEW_PASSWORD})
    assert result["resetPassword"]["code"] == "INVALID_TOKEN"
    assert (await login(gql))["__typename"] == "AuthPayload"


async def test_verification_token_cannot_reset_a_password(gql, mailbox):
    await register(gql)
    verify_token = _token(mailbox.last_link("carol@example.com", "/verify-email"))
    result = await gql.data(RESET_PASSWORD, {"t": verify_token, "p": NEW_PASSWORD})
    assert result["resetPassword"]["code"] == "INVALID_TOKEN"


async def test_reset_page_from_the_mail_link_works_without_javascript(gql, client, mailbox):
    await register(gql)
    await gql.data(REQUEST_RESET, {"email": "carol@example.com"})
    link = mailbox.last_link("carol@example.com", "/reset-password")
    form = await client.get(link)
    assert form.status_code == 200
    assert 'name="password"' in form.text
    posted = await client.post(
        "/reset-password", data={"token": _token(link), "password": NEW_PASSWORD}
    )
    assert posted.status_code == 200, posted.text
    assert (await login(gql, password=NEW_PASSWORD))["__typename"] == "AuthPayload"


async def test_a_reset_revokes_the_accounts_api_keys(gql, client, mailbox):
    from tests.support.partner import ME_EMAIL, create_key, key_header

    auth = await signed_in(gql)
    secret, _ = await create_key(gql, auth["accessToken"], ["READ_ACCOUNT"])
    before = await client.post("/graphql", json={"query": ME_EMAIL}, headers=key_header(secret))
    assert before.status_code == 200
    await gql.data(REQUEST_RESET, {"email": "carol@example.com"})
    token = _token(mailbox.last_link("carol@example.com", "/reset-password"))
    await gql.data(RESET_PASSWORD, {"t": token, "p": NEW_PASSWORD})
    after = await client.post("/graphql", json={"query": ME_EMAIL}, headers=key_header(secret))
    assert after.status_code == 401
    assert after.json()["errors"][0]["extensions"]["code"] == "API_KEY_REVOKED"
