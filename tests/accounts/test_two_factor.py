"""enableTwoFactor / confirmTwoFactor / disableTwoFactor and login with a second factor."""

from __future__ import annotations

from datetime import timedelta

import pyotp

from app.accounts.domain import totp
from tests.support.documents import CONFIRM_2FA, DISABLE_2FA, ENABLE_2FA, ME, login, signed_in


async def _enable(gql, rt, token: str) -> tuple[str, list[str]]:
    setup = (await gql.data(ENABLE_2FA, token=token))["enableTwoFactor"]
    assert setup["otpauthUri"].startswith("otpauth://totp/")
    assert "issuer=CryptoOrchestrator" in setup["otpauthUri"]
    code = totp.current_code(setup["secret"], now=rt.now())
    confirmed = (await gql.data(CONFIRM_2FA, {"code": code}, token=token))["confirmTwoFactor"]
    assert confirmed["user"] == {"twoFactorEnabled": True}
    assert len(confirmed["recoveryCodes"]) == 10
    return setup["secret"], confirmed["recoveryCodes"]


def _step_later(rt, steps: int = 1):
    moment = rt.now() + timedelta(seconds=30 * steps)
    return lambda: moment


async def test_login_needs_a_totp_code_once_enabled(gql, rt):
    auth = await signed_in(gql)
    secret, _ = await _enable(gql, rt, auth["accessToken"])

    assert (await login(gql))["code"] == "TWO_FACTOR_REQUIRED"
    assert (await login(gql, totp="000000"))["code"] == "INVALID_TWO_FACTOR_CODE"
    rt.clock = _step_later(rt, 2)  # the confirm code's step is spent; use a fresh one
    good = await login(gql, totp=pyotp.TOTP(secret).at(rt.now()))
    assert good["__typename"] == "AuthPayload"


async def test_a_totp_code_cannot_be_replayed(gql, rt):
    auth = await signed_in(gql)
    secret, _ = await _enable(gql, rt, auth["accessToken"])
    rt.clock = _step_later(rt, 2)
    code = pyotp.TOTP(secret).at(rt.now())
    assert (await login(gql, totp=code))["__typename"] == "AuthPayload"
    assert (await login(gql, totp=code))["code"] == "INVALID_TWO_FACTOR_CODE"


async def test_recovery_codes_work_once_each(gql, rt):
    auth = await signed_in(gql)
    _, codes = await _enable(gql, rt, auth["accessToken"])
    assert (await login(gql, totp=codes[0].upper()))["__typename"] == "AuthPayload"
    assert (await login(gql, totp=codes[0]))["code"] == "INVALID_TWO_FACTOR_CODE"
    assert (await login(gql, totp=codes[1]))["__typename"] == "AuthPayload"


async def test_confirm_with_a_wrong_code_leaves_two_factor_off(gql, rt):
    auth = await signed_in(gql)
    await gql.data(ENABLE_2FA, token=auth["accessToken"])
    bad = await gql.data(CONFIRM_2FA, {"code": "123456"}, token=auth["accessToken"])
    assert bad["confirmTwoFactor"]["code"] == "INVALID_TWO_FACTOR_CODE"
    assert bad["confirmTwoFactor"]["__typename"] == "InvalidTwoFactorCode"
    me = (await gql.data(ME, token=auth["accessToken"]))["me"]
    assert me["twoFactorEnabled"] is False
    assert (await login(gql))["__typename"] == "AuthPayload"


async def test_confirm_before_enable_and_enable_twice(gql, rt):
    auth = await signed_in(gql)
    early = await gql.data(CONFIRM_2FA, {"code": "123456"}, token=auth["accessToken"])
    assert early["confirmTwoFactor"]["code"] == "TWO_FACTOR_NOT_PENDING"
    await _enable(gql, rt, auth["accessToken"])
    twice = await gql.data(ENABLE_2FA, token=auth["accessToken"])
    assert twice["enableTwoFactor"]["code"] == "TWO_FACTOR_ALREADY_ENABLED"


async def test_disable_needs_a_valid_code(gql, rt):
    auth = await signed_in(gql)
    secret, codes = await _enable(gql, rt, auth["accessToken"])
    wrong = await gql.data(DISABLE_2FA, {"code": "999999"}, token=auth["accessToken"])
    assert wrong["disableTwoFactor"]["code"] == "INVALID_TWO_FACTOR_CODE"
    assert (await login(gql))["code"] == "TWO_FACTOR_REQUIRED"

    rt.clock = _step_later(rt, 2)
    code = pyotp.TOTP(secret).at(rt.now())
    off = await gql.data(DISABLE_2FA, {"code": code}, token=auth["accessToken"])
    assert off["disableTwoFactor"]["user"] == {"twoFactorEnabled": False}
    assert (await login(gql))["__typename"] == "AuthPayload"
    # the old recovery codes died with it
    not_enabled = await gql.data(DISABLE_2FA, {"code": codes[2]}, token=auth["accessToken"])
    assert not_enabled["disableTwoFactor"]["code"] == "TWO_FACTOR_NOT_ENABLED"


async def test_two_factor_mutations_need_sign_in(gql):
    for document, variables in (
        (ENABLE_2FA, {}),
        (CONFIRM_2FA, {"code": "1"}),
        (DISABLE_2FA, {"code": "1"}),
    ):
        data = await gql.data(document, variables)
        (result,) = data.values()
        assert result["code"] == "UNAUTHENTICATED"
