"""Pure domain tests: password policy and hashing, TOTP, signed tokens. No database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.accounts.domain import totp
from app.accounts.domain.emails import normalise_display_name, normalise_email
from app.accounts.domain.passwords import check_password_policy, hash_password, verify_password
from app.accounts.domain.tokens import TokenSigner, hash_opaque_token, new_opaque_token
from app.core.errors import InvalidToken, ValidationFailed, WeakPassword

NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)


def signer(**overrides) -> TokenSigner:
    args = {
        "jwt_secret": "j" * 40,
        "secret_key": "s" * 40,
        "issuer": "cryptoorchestrator",
        "access_ttl": timedelta(minutes=15),
    }
    return TokenSigner(**{**args, **overrides})


@pytest.mark.parametrize("password", ["qwertyuiop", "Password123", "aaaaaaaaaaaa", "abababababab"])
def test_weak_passwords_are_refused(password):
    with pytest.raises(WeakPassword) as error:
        check_password_policy(password)
    assert error.value.field == "password"


def test_a_long_uncommon_password_passes():
    check_password_policy("violet-kettle-orbit-93")


def test_hash_and_verify():
    hashed = hash_password("violet-kettle-orbit-93")
    assert verify_password(hashed, "violet-kettle-orbit-93")
    assert not verify_password(hashed, "violet-kettle-orbit-94")
    assert not verify_password(None, "violet-kettle-orbit-93")  # unknown user
    assert not verify_password("not-a-hash", "x")


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        (" Alice@Example.COM ", "alice@example.com"),
        ("bob+tag@sub.example.org", "bob+tag@sub.example.org"),
    ],
)
def test_email_normalisation(raw, normalised):
    assert normalise_email(raw) == normalised


@pytest.mark.parametrize("raw", ["", "a", "a@", "@b.c", "a b@c.d", "x" * 250 + "@e.com"])
def test_bad_emails(raw):
    with pytest.raises(ValidationFailed):
        normalise_email(raw)


def test_display_name_whitespace_is_collapsed():
    assert normalise_display_name("  Ada   Lovelace ") == "Ada Lovelace"
    with pytest.raises(ValidationFailed):
        normalise_display_name("x" * 65)


def test_totp_accepts_adjacent_steps_and_refuses_replay():
    secret = totp.new_secret()
    code = pyotp.TOTP(secret).at(NOW)
    step = totp.matching_step(secret, code, now=NOW, last_step=None)
    assert step == int(NOW.timestamp()) // 30
    assert totp.matching_step(secret, code, now=NOW + timedelta(seconds=30), last_step=None) == step
    assert totp.matching_step(secret, code, now=NOW + timedelta(seconds=90), last_step=None) is None
    assert totp.matching_step(secret, code, now=NOW, last_step=step) is None  # replay


@given(st.text(max_size=12))
def test_totp_never_accepts_garbage(code):
    secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    expected = {pyotp.TOTP(secret).at(NOW + timedelta(seconds=30 * d)) for d in (-1, 0, 1)}
    step = totp.matching_step(secret, code, now=NOW, last_step=None)
    assert (step is not None) == (code.strip().replace(" ", "") in expected)


def test_recovery_codes_are_distinct_and_normalisable():
    codes = totp.new_recovery_codes()
    assert len(set(codes)) == totp.RECOVERY_CODE_COUNT
    assert all(totp.normalise_recovery_code(c.upper().replace("-", " ")) == c for c in codes)


def test_access_token_round_trip():
    issued = signer().issue_access(user_id=7, role="USER", now=datetime.now(UTC))
    claims = signer().decode_access(issued.token)
    assert claims.user_id == 7
    assert claims.jti == issued.claims.jti


def test_access_token_from_another_key_or_issuer_is_refused():
    token = signer(jwt_secret="k" * 40).issue_access(user_id=1, role="USER", now=datetime.now(UTC))
    with pytest.raises(InvalidToken):
        signer().decode_access(token.token)
    token = signer(issuer="someone-else").issue_access(
        user_id=1, role="USER", now=datetime.now(UTC)
    )
    with pytest.raises(InvalidToken):
        signer().decode_access(token.token)


def test_email_tokens_are_bound_to_their_purpose_and_expire():
    s = signer()
    token = s.sign_email_token(
        purpose="verify-email",
        user_id=3,
        fingerprint="fp",
        ttl=timedelta(hours=1),
        now=datetime.now(UTC),
    )
    assert s.verify_email_token(token, purpose="verify-email").user_id == 3
    with pytest.raises(InvalidToken):
        s.verify_email_token(token, purpose="reset-password")
    old = s.sign_email_token(
        purpose="verify-email",
        user_id=3,
        fingerprint="fp",
        ttl=timedelta(hours=1),
        now=datetime.now(UTC) - timedelta(hours=2),
    )
    with pytest.raises(InvalidToken, match="expired"):
        s.verify_email_token(old, purpose="verify-email")


def test_access_and_email_tokens_use_different_keys():
    s = signer()
    access = s.issue_access(user_id=1, role="USER", now=datetime.now(UTC)).token
    with pytest.raises(InvalidToken):
        s.verify_email_token(access, purpose="access")


def test_opaque_tokens_are_random_and_hashed():
    a, b = new_opaque_token(), new_opaque_token()
    assert a != b and len(a) >= 43
    assert hash_opaque_token(a) == hash_opaque_token(a) != hash_opaque_token(b)
