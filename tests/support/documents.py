"""GraphQL documents shared by the tests, and flows several tests need."""

from __future__ import annotations

from typing import Any

from tests.support import GraphQLClient

ERROR_FIELDS = "... on Error { __typename code message } "

PASSWORD = "correct horse battery staple 42"

REGISTER = (
    "mutation($email: String!, $password: String!, $name: String!) {"
    " register(email: $email, password: $password, displayName: $name) {"
    " __typename ... on RegisterPayload { accepted email }"
    f" {ERROR_FIELDS} ... on WeakPassword {{ field }} ... on ValidationFailed {{ field }} }} }}"
)
AUTH_FIELDS = (
    "__typename ... on AuthPayload { accessToken accessTokenExpiresAt refreshToken"
    " refreshTokenExpiresAt user { id email } } " + ERROR_FIELDS
)
LOGIN = (
    "mutation($email: String!, $password: String!, $totp: String) {"
    f" login(email: $email, password: $password, totpCode: $totp) {{ {AUTH_FIELDS} }} }}"
)
REFRESH = f"mutation($t: String!) {{ refreshToken(refreshToken: $t) {{ {AUTH_FIELDS} }} }}"
LOGOUT = (
    "mutation($t: String, $everywhere: Boolean! = false) {"
    " logout(refreshToken: $t, everywhere: $everywhere) {"
    f" __typename ... on LogoutPayload {{ revoked }} {ERROR_FIELDS} }} }}"
)
ME = "{ me { id email displayName emailVerified twoFactorEnabled role createdAt } }"
VERIFY_EMAIL = (
    "mutation($t: String!) { verifyEmail(token: $t) {"
    f" __typename ... on UserPayload {{ user {{ emailVerified }} }} {ERROR_FIELDS} }} }}"
)
RESEND_VERIFICATION = (
    "mutation { resendVerificationEmail {"
    f" __typename ... on UserPayload {{ user {{ email }} }} {ERROR_FIELDS} }} }}"
)
REQUEST_RESET = (
    "mutation($email: String!) { requestPasswordReset(email: $email) {"
    f" __typename ... on RequestPasswordResetPayload {{ accepted }} {ERROR_FIELDS} }} }}"
)
RESET_PASSWORD = (
    "mutation($t: String!, $p: String!) { resetPassword(token: $t, newPassword: $p) {"
    f" __typename ... on UserPayload {{ user {{ email }} }} {ERROR_FIELDS} }} }}"
)
# the re-authentication these mutations need: the test user's password unless given
ENABLE_2FA = (
    f'mutation($password: String! = "{PASSWORD}") {{ enableTwoFactor(password: $password) {{'
    f" __typename ... on EnableTwoFactorPayload {{ secret otpauthUri }} {ERROR_FIELDS} }} }}"
)
CONFIRM_2FA = (
    "mutation($code: String!) { confirmTwoFactor(code: $code) { __typename"
    " ... on ConfirmTwoFactorPayload { recoveryCodes user { twoFactorEnabled } }"
    f" {ERROR_FIELDS} }} }}"
)
DISABLE_2FA = (
    f'mutation($code: String!, $password: String! = "{PASSWORD}") {{'
    " disableTwoFactor(code: $code, password: $password) { __typename"
    f" ... on UserPayload {{ user {{ twoFactorEnabled }} }} {ERROR_FIELDS} }} }}"
)


async def register(
    gql: GraphQLClient, email: str = "carol@example.com", password: str = PASSWORD
) -> dict[str, Any]:
    """The RegisterPayload (the same for a new and a taken address)."""
    data = await gql.data(REGISTER, {"email": email, "password": password, "name": "Carol"})
    assert data["register"]["__typename"] == "RegisterPayload", data
    return data["register"]


async def login(
    gql: GraphQLClient,
    email: str = "carol@example.com",
    password: str = PASSWORD,
    totp: str | None = None,
) -> dict[str, Any]:
    data = await gql.data(LOGIN, {"email": email, "password": password, "totp": totp})
    return data["login"]


async def signed_in(gql: GraphQLClient, email: str = "carol@example.com") -> dict[str, Any]:
    """Register and log in; returns the AuthPayload."""
    await register(gql, email)
    payload = await login(gql, email)
    assert payload["__typename"] == "AuthPayload", payload
    return payload
