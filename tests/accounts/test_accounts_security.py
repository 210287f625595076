"""Issue 17 (security), items 4, 5, 6, 8 and 9: no token in production logs, no demo
seed in production, mail bombing limits, no account enumeration, re-authentication for
security-sensitive changes. All through HTTP on PostgreSQL and Redis."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from email import message_from_bytes
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from app.accounts.domain import totp
from app.asgi import create_app
from app.core.settings import Environment, Settings
from app.runtime import Runtime, build_runtime
from db.models import ApiKey, User
from tests.support import ROOT, GraphQLClient, Mailbox
from tests.support.documents import (
    CONFIRM_2FA,
    DISABLE_2FA,
    ENABLE_2FA,
    ERROR_FIELDS,
    ME,
    PASSWORD,
    REFRESH,
    REGISTER,
    REQUEST_RESET,
    RESEND_VERIFICATION,
    login,
    register,
    signed_in,
)
from tests.support.partner import CREATE_API_KEY, client_with

NEW_PASSWORD = "a brand new passphrase 7"
PRODUCTION_SECRETS = {
    "jwt_secret": "j" * 40,
    "secret_key": "s" * 40,
    "seed_demo_data": False,
    "stripe_api_key": "sk_live_" + "k" * 24,
    "stripe_webhook_secret": "whsec_" + "w" * 32,
    "exchange_master_keys": "k1:a2V5LWJ5dGVzLTAxMjM0NTY3ODlhYmNkZWZnaGlqa2w=",
}
CHANGE_PASSWORD = (
    "mutation($current: String!, $new: String!, $totp: String) {"
    " changePassword(currentPassword: $current, newPassword: $new, totpCode: $totp) {"
    f" __typename ... on UserPayload {{ user {{ email }} }} {ERROR_FIELDS}"
    " ... on InvalidCredentials { field } ... on WeakPassword { field } } }"
)
CHANGE_EMAIL = (
    "mutation($email: String!, $password: String!, $totp: String) {"
    " changeEmail(newEmail: $email, password: $password, totpCode: $totp) {"
    f" __typename ... on ChangeEmailPayload {{ accepted newEmail }} {ERROR_FIELDS}"
    " ... on InvalidCredentials { field } } }"
)
CONFIRM_EMAIL_CHANGE = (
    "mutation($t: String!) { confirmEmailChange(token: $t) {"
    f" __typename ... on UserPayload {{ user {{ email emailVerified }} }} {ERROR_FIELDS} }} }}"
)


def _token(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


async def _count(rt: Runtime, model: type) -> int:
    async with rt.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model))


# --- item 4: no mail token or link in a production log ---------------------------------


def test_production_refuses_to_start_without_smtp_url():
    base = {**PRODUCTION_SECRETS, "env": "production", "database_url": "postgresql://db/x"}
    base["redis_url"] = "redis://r:6379/0"
    with pytest.raises(ValidationError, match="SMTP_URL is required in production"):
        Settings(**base)
    assert Settings(**base, smtp_url="smtps://mail.example.com:465").is_production


@contextmanager
def every_log_record() -> Iterator[list[logging.LogRecord]]:
    """Every record of every logger at every level while inside."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.NOTSET)
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    saved = [(logger, logger.level, logger.disabled) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
        logger.addHandler(handler)
    try:
        yield records
    finally:
        for logger, level, disabled in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.disabled = disabled


def _record_text(record: logging.LogRecord) -> str:
    parts = [record.getMessage(), *(str(v) for v in vars(record).values())]
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


@asynccontextmanager
async def app_client(
    rt: Runtime, *, unvalidated: dict[str, object] | None = None, **overrides: object
) -> AsyncIterator[tuple[GraphQLClient, Runtime]]:
    """An app on a runtime built (mailer included) from the test's settings with
    ``overrides`` (validated), then ``unvalidated`` (set past validation)."""
    settings = Settings.model_validate({**rt.settings.model_dump(), **overrides})
    settings = settings.model_copy(update=unvalidated or {})
    assert settings.database_url and settings.redis_url
    runtime = build_runtime(
        settings, database_url=settings.database_url, redis_url=settings.redis_url
    )
    try:
        transport = httpx.ASGITransport(app=create_app(runtime=runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield GraphQLClient(http), runtime
    finally:
        await runtime.aclose()


def _eml_bodies(folder: Path) -> list[str]:
    return [
        message_from_bytes(path.read_bytes()).get_payload(decode=True).decode()
        for path in folder.glob("*.eml")
    ]


def _links(texts: list[str]) -> list[str]:
    return [link for text in texts for link in re.findall(r"https?://\S+\?token=\S+", text)]


@pytest.mark.parametrize("transport", ["smtp", "folder"])
async def test_no_mail_token_or_link_reaches_any_log_in_production(
    rt, mailbox: Mailbox, tmp_path: Path, transport: str
):
    # "folder": a production process whose settings escaped validation without SMTP_URL
    unvalidated = {"smtp_url": None} if transport == "folder" else {}
    production = {"env": Environment.PRODUCTION, **PRODUCTION_SECRETS, "data_dir": tmp_path}
    async with app_client(rt, unvalidated=unvalidated, **production) as (gql, runtime):
        with every_log_record() as records:
            await register(gql)  # a verification link
            auth = await login(gql)
            await gql.data(RESEND_VERIFICATION, token=auth["accessToken"])  # another
            await gql.data(REQUEST_RESET, {"email": "carol@example.com"})  # a reset link
            await register(gql)  # the address has an account: a notice

    if transport == "smtp":
        bodies = [m.get_payload(decode=True).decode() for m in mailbox.messages]
    else:
        bodies = _eml_bodies(runtime.settings.mail_dir)
    links = _links(bodies)
    assert len(links) == 3, bodies  # two verification links and a reset link were mailed
    ours = [r for r in records if not r.name.startswith("mail.log")]  # not the test's server
    assert ours, "no log record captured: the capture is broken"
    logged = "\n".join(_record_text(r) for r in ours)
    for link in links:
        assert _token(link) not in logged
        assert link not in logged
        assert urlsplit(link).path + "?token=" not in logged


async def test_development_still_logs_the_mail_for_newcomers(rt, tmp_path: Path):
    overrides = {"env": Environment.DEVELOPMENT, "smtp_url": None, "data_dir": tmp_path}
    async with app_client(rt, **overrides) as (gql, runtime):
        with every_log_record() as records:
            await register(gql)
    [link] = _links(_eml_bodies(runtime.settings.mail_dir))
    assert any(link in _record_text(r) for r in records if r.name == "app.adapters.mail")


# --- item 5: no demo seed in production ------------------------------------------------


async def test_seed_command_refuses_production_and_creates_nothing(rt):
    env = {
        **os.environ,
        "ENV": "production",
        "DATABASE_URL": rt.settings.database_url,
        "REDIS_URL": rt.settings.redis_url,
        "REDIS_PREFIX": rt.settings.redis_prefix,
        "SMTP_URL": "smtps://mail.example.com:465",
        **{name.upper(): str(value) for name, value in PRODUCTION_SECRETS.items()},
    }
    done = subprocess.run(  # noqa: ASYNC221 (the test waits for the command on purpose)
        [sys.executable, "-m", "app", "seed"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0, done.stdout + done.stderr
    assert "Refusing to seed demo data in production" in done.stderr
    assert await _count(rt, User) == 0


# --- item 6: mail bombing --------------------------------------------------------------


async def test_aliased_resets_in_one_request_send_one_mail(gql, mailbox):
    await register(gql)
    mailbox.clear()
    fields = " ".join(
        f"r{i}: requestPasswordReset(email: $email) {{ __typename {ERROR_FIELDS} }}"
        for i in range(25)
    )
    data = await gql.data(
        f"mutation($email: String!) {{ {fields} }}", {"email": "carol@example.com"}
    )
    answers = [data[f"r{i}"] for i in range(25)]
    assert answers[0] == {"__typename": "RequestPasswordResetPayload"}
    assert {a["code"] for a in answers[1:]} == {"RATE_LIMITED"}
    assert len(mailbox.to("carol@example.com")) == 1


async def test_one_mail_sending_field_per_request_across_mutations(gql, mailbox):
    document = (
        "mutation($a: String!, $b: String!, $p: String!) {"
        f' a: register(email: $a, password: $p, displayName: "A") {{ __typename {ERROR_FIELDS} }}'
        f" b: requestPasswordReset(email: $b) {{ __typename {ERROR_FIELDS} }} }}"
    )
    variables = {"a": "a@example.com", "b": "b@example.com", "p": PASSWORD}
    data = await gql.data(document, variables)
    assert data["a"] == {"__typename": "RegisterPayload"}
    assert data["b"]["code"] == "RATE_LIMITED"
    assert [m["To"] for m in mailbox.messages] == ["a@example.com"]


async def test_mails_per_address_are_limited_and_the_answer_stays_the_same(gql, rt, mailbox):
    limit = rt.settings.mail_per_address_limit
    await register(gql)  # one mail
    for _ in range(limit + 3):
        data = await gql.data(REQUEST_RESET, {"email": "carol@example.com"})
        assert data["requestPasswordReset"] == {
            "__typename": "RequestPasswordResetPayload",
            "accepted": True,
        }
        data = await gql.data(REQUEST_RESET, {"email": "nobody@example.com"})
        assert data["requestPasswordReset"]["__typename"] == "RequestPasswordResetPayload"
    assert len(mailbox.to("carol@example.com")) == limit
    assert len(mailbox.to("nobody@example.com")) == limit
    # registering the address again is answered as always, without a mail
    assert (await register(gql))["__typename"] == "RegisterPayload"
    assert len(mailbox.to("carol@example.com")) == limit


async def test_resend_verification_over_the_limit_is_rate_limited(gql, rt, mailbox):
    auth = await signed_in(gql)  # one mail
    for _ in range(rt.settings.mail_per_address_limit - 1):
        data = await gql.data(RESEND_VERIFICATION, token=auth["accessToken"])
        assert data["resendVerificationEmail"]["__typename"] == "UserPayload"
    over = await gql(RESEND_VERIFICATION, token=auth["accessToken"], expect_status=200)
    assert over["data"]["resendVerificationEmail"]["code"] == "RATE_LIMITED"
    assert len(mailbox.to("carol@example.com")) == rt.settings.mail_per_address_limit


async def test_the_mail_budget_is_shared_by_every_process(rt, mailbox):
    # two apps on two runtimes (as two server processes would be) share Redis
    async with client_with(rt) as first, app_client(rt) as (second, _):
        for http in (GraphQLClient(first), second):
            for _ in range(rt.settings.mail_per_address_limit):
                await http.data(REQUEST_RESET, {"email": "nobody@example.com"})
    assert len(mailbox.to("nobody@example.com")) == rt.settings.mail_per_address_limit


# --- item 8: account enumeration -------------------------------------------------------


async def test_register_answers_a_taken_address_like_a_new_one(gql, mailbox, sql_statements):
    await register(gql, "taken@example.com")
    mailbox.clear()
    answers, statements, mails = {}, {}, {}
    for address in ("taken@example.com", "fresh@example.com"):
        sql_statements.reset()
        data = await gql.data(REGISTER, {"email": address, "password": PASSWORD, "name": "X"})
        answers[address] = {**data["register"], "email": "<address>"}
        statements[address] = [re.sub(r"\s+", " ", s) for s in sql_statements.statements]
        mails[address] = [m["Subject"] for m in mailbox.to(address)]
    assert answers["taken@example.com"] == answers["fresh@example.com"]
    assert answers["fresh@example.com"]["__typename"] == "RegisterPayload"
    assert statements["taken@example.com"] == statements["fresh@example.com"]
    assert mails["taken@example.com"] == mails["fresh@example.com"] == ["Verify your email address"]
    notice = mailbox.to("taken@example.com")[0].get_payload(decode=True).decode()
    assert "already has one" in notice
    assert "token=" not in notice


async def test_password_reset_does_the_same_work_for_known_and_unknown(
    gql, mailbox, sql_statements
):
    await register(gql, "known@example.com")
    mailbox.clear()
    answers, statements, mails = {}, {}, {}
    for address in ("known@example.com", "unknown@example.com"):
        sql_statements.reset()
        data = await gql.data(REQUEST_RESET, {"email": address})
        answers[address] = data["requestPasswordReset"]
        statements[address] = [re.sub(r"\s+", " ", s) for s in sql_statements.statements]
        mails[address] = [m["Subject"] for m in mailbox.to(address)]
    assert answers["known@example.com"] == answers["unknown@example.com"]
    assert statements["known@example.com"] == statements["unknown@example.com"]
    assert mails["known@example.com"] == mails["unknown@example.com"] == ["Reset your password"]


# --- item 9: re-authentication for security-sensitive changes -------------------------


def _at_step(rt: Runtime, steps: int):
    moment = rt.now() + timedelta(seconds=30 * steps)
    return lambda: moment


async def _with_two_factor(gql, rt, token: str) -> str:
    setup = (await gql.data(ENABLE_2FA, token=token))["enableTwoFactor"]
    code = totp.current_code(setup["secret"], now=rt.now())
    confirmed = (await gql.data(CONFIRM_2FA, {"code": code}, token=token))["confirmTwoFactor"]
    assert confirmed["__typename"] == "ConfirmTwoFactorPayload", confirmed
    return setup["secret"]


async def test_an_access_token_alone_cannot_switch_two_factor_on(gql):
    auth = await signed_in(gql)
    token = auth["accessToken"]
    old_client = await gql("mutation { enableTwoFactor { __typename } }", token=token)
    assert "errors" in old_client  # the password is a required argument now
    wrong = await gql.data(ENABLE_2FA, {"password": "not my password 123"}, token=token)
    assert wrong["enableTwoFactor"]["code"] == "INVALID_CREDENTIALS"
    early = await gql.data(CONFIRM_2FA, {"code": "123456"}, token=token)
    assert early["confirmTwoFactor"]["code"] == "TWO_FACTOR_NOT_PENDING"  # no secret made
    ok = await gql.data(ENABLE_2FA, token=token)  # with the password
    assert ok["enableTwoFactor"]["__typename"] == "EnableTwoFactorPayload"


async def test_an_access_token_and_a_code_cannot_switch_two_factor_off(gql, rt):
    auth = await signed_in(gql)
    secret = await _with_two_factor(gql, rt, auth["accessToken"])
    rt.clock = _at_step(rt, 2)
    code = totp.current_code(secret, now=rt.now())
    wrong = await gql.data(
        DISABLE_2FA, {"code": code, "password": "not my password 123"}, token=auth["accessToken"]
    )
    assert wrong["disableTwoFactor"]["code"] == "INVALID_CREDENTIALS"
    me = (await gql.data(ME, token=auth["accessToken"]))["me"]
    assert me["twoFactorEnabled"] is True
    off = await gql.data(DISABLE_2FA, {"code": code}, token=auth["accessToken"])
    assert off["disableTwoFactor"]["user"] == {"twoFactorEnabled": False}


async def test_a_new_api_key_needs_the_password_and_the_code(gql, rt):
    auth = await signed_in(gql)
    token = auth["accessToken"]
    variables = {"name": "bot", "scopes": ["READ_ACCOUNT"]}
    wrong = await gql.data(
        CREATE_API_KEY, {**variables, "password": "not my password 123"}, token=token
    )
    assert wrong["createApiKey"]["code"] == "INVALID_CREDENTIALS"
    assert await _count(rt, ApiKey) == 0

    secret = await _with_two_factor(gql, rt, token)
    no_code = await gql.data(CREATE_API_KEY, variables, token=token)
    assert no_code["createApiKey"]["code"] == "TWO_FACTOR_REQUIRED"
    bad_code = await gql.data(CREATE_API_KEY, {**variables, "totp": "000000"}, token=token)
    assert bad_code["createApiKey"]["code"] == "INVALID_TWO_FACTOR_CODE"
    assert await _count(rt, ApiKey) == 0
    rt.clock = _at_step(rt, 2)
    code = totp.current_code(secret, now=rt.now())
    ok = await gql.data(CREATE_API_KEY, {**variables, "totp": code}, token=token)
    assert ok["createApiKey"]["__typename"] == "CreateApiKeyPayload"


async def test_wrong_passwords_in_reauthentication_back_off_like_logins(gql, rt):
    auth = await signed_in(gql)
    variables = {"name": "bot", "scopes": ["READ_ACCOUNT"], "password": "guess number 0001"}
    for _ in range(rt.settings.login_backoff_after_failures):
        data = await gql.data(CREATE_API_KEY, variables, token=auth["accessToken"])
        assert data["createApiKey"]["code"] == "INVALID_CREDENTIALS"
    refused = await gql(
        CREATE_API_KEY,
        {**variables, "password": PASSWORD},
        token=auth["accessToken"],
        expect_status=429,
    )
    assert refused["data"]["createApiKey"]["code"] == "RATE_LIMITED"
    assert await _count(rt, ApiKey) == 0


async def test_change_password_needs_the_current_one_and_revokes_every_session(gql, rt):
    auth = await signed_in(gql)
    other = await login(gql)
    wrong = await gql.data(
        CHANGE_PASSWORD,
        {"current": "not my password 123", "new": NEW_PASSWORD},
        token=auth["accessToken"],
    )
    assert wrong["changePassword"]["code"] == "INVALID_CREDENTIALS"
    assert wrong["changePassword"]["field"] == "currentPassword"
    weak = await gql.data(
        CHANGE_PASSWORD, {"current": PASSWORD, "new": "password1"}, token=auth["accessToken"]
    )
    assert weak["changePassword"]["field"] == "newPassword"
    assert (await login(gql))["__typename"] == "AuthPayload"  # unchanged so far

    done = await gql.data(
        CHANGE_PASSWORD, {"current": PASSWORD, "new": NEW_PASSWORD}, token=auth["accessToken"]
    )
    assert done["changePassword"]["__typename"] == "UserPayload"
    assert (await login(gql))["code"] == "INVALID_CREDENTIALS"
    assert (await login(gql, password=NEW_PASSWORD))["__typename"] == "AuthPayload"
    # every session from before, like a reset
    for session in (auth, other):
        await gql(ME, token=session["accessToken"], expect_status=401)
        refreshed = (await gql.data(REFRESH, {"t": session["refreshToken"]}))["refreshToken"]
        assert refreshed["code"] == "INVALID_REFRESH_TOKEN"


async def test_change_password_with_two_factor_needs_the_code(gql, rt):
    auth = await signed_in(gql)
    secret = await _with_two_factor(gql, rt, auth["accessToken"])
    variables = {"current": PASSWORD, "new": NEW_PASSWORD}
    no_code = await gql.data(CHANGE_PASSWORD, variables, token=auth["accessToken"])
    assert no_code["changePassword"]["code"] == "TWO_FACTOR_REQUIRED"
    rt.clock = _at_step(rt, 2)
    code = totp.current_code(secret, now=rt.now())
    done = await gql.data(CHANGE_PASSWORD, {**variables, "totp": code}, token=auth["accessToken"])
    assert done["changePassword"]["__typename"] == "UserPayload"


async def test_change_email_needs_the_password_and_the_new_address_confirms(gql, rt, mailbox):
    auth = await signed_in(gql)
    mailbox.clear()
    token = auth["accessToken"]
    wrong = await gql.data(
        CHANGE_EMAIL, {"email": "new@example.com", "password": "not my password 123"}, token=token
    )
    assert wrong["changeEmail"]["code"] == "INVALID_CREDENTIALS"
    assert mailbox.messages == []

    asked = await gql.data(
        CHANGE_EMAIL, {"email": " New@Example.com", "password": PASSWORD}, token=token
    )
    assert asked["changeEmail"] == {
        "__typename": "ChangeEmailPayload",
        "accepted": True,
        "newEmail": "new@example.com",
    }
    [notice] = mailbox.to("carol@example.com")
    assert "new@example.com" in notice.get_payload(decode=True).decode()
    link = mailbox.last_link("new@example.com", "/confirm-email-change")
    assert (await gql.data(ME, token=token))["me"]["email"] == "carol@example.com"

    done = await gql.data(CONFIRM_EMAIL_CHANGE, {"t": _token(link)})
    assert done["confirmEmailChange"]["user"] == {"email": "new@example.com", "emailVerified": True}
    again = await gql.data(CONFIRM_EMAIL_CHANGE, {"t": _token(link)})
    assert again["confirmEmailChange"]["code"] == "INVALID_TOKEN"
    assert (await login(gql, "new@example.com"))["__typename"] == "AuthPayload"
    assert (await login(gql, "carol@example.com"))["code"] == "INVALID_CREDENTIALS"


async def test_email_change_to_a_taken_address_is_only_refused_at_the_link(gql, mailbox):
    await register(gql, "taken@example.com")
    auth = await signed_in(gql)
    asked = await gql.data(
        CHANGE_EMAIL,
        {"email": "taken@example.com", "password": PASSWORD},
        token=auth["accessToken"],
    )
    assert asked["changeEmail"]["__typename"] == "ChangeEmailPayload"  # no enumeration
    link = mailbox.last_link("taken@example.com", "/confirm-email-change")
    refused = await gql.data(CONFIRM_EMAIL_CHANGE, {"t": _token(link)})
    assert refused["confirmEmailChange"]["code"] == "EMAIL_ALREADY_REGISTERED"
    assert (await gql.data(ME, token=auth["accessToken"]))["me"]["email"] == "carol@example.com"


async def test_the_mailed_email_change_link_works_in_a_browser(gql, client, mailbox):
    auth = await signed_in(gql)
    variables = {"email": "new@example.com", "password": PASSWORD}
    await gql.data(CHANGE_EMAIL, variables, token=auth["accessToken"])
    link = mailbox.last_link("new@example.com", "/confirm-email-change")
    assert link.startswith("http://testserver/confirm-email-change?token=")
    page = await client.get(link)
    assert page.status_code == 200
    assert "new@example.com" in page.text
    assert (await client.get(link)).status_code == 400  # once only
    assert (await gql.data(ME, token=auth["accessToken"]))["me"]["email"] == "new@example.com"


async def test_switching_two_factor_off_with_an_empty_code_asks_for_the_code(gql, rt):
    """``code: String!`` accepts "": the typed TwoFactorRequired (a union member), not a
    failed field."""
    auth = await signed_in(gql)
    await _with_two_factor(gql, rt, auth["accessToken"])
    empty = await gql.data(DISABLE_2FA, {"code": ""}, token=auth["accessToken"])
    assert empty["disableTwoFactor"]["__typename"] == "TwoFactorRequired"
    assert empty["disableTwoFactor"]["code"] == "TWO_FACTOR_REQUIRED"
    me = (await gql.data(ME, token=auth["accessToken"]))["me"]
    assert me["twoFactorEnabled"] is True
