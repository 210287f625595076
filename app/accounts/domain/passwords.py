"""Password policy and hashing (argon2id)."""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from app.core.errors import WeakPassword

MIN_LENGTH = 10
MAX_LENGTH = 256  # argon2 cost grows with input; refuse absurd inputs early

_hasher = PasswordHasher()
# Verified against when the email is unknown, so both failures cost one argon2 verification.
_DUMMY_HASH = _hasher.hash("not-a-real-password-only-for-timing")


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS  # 30,000 most common passwords

    return frozenset(FREQUENCY_LISTS["passwords"])


def check_password_policy(password: str, *, email: str = "", display_name: str = "") -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"Password must be at least {MIN_LENGTH} characters", field="password")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"Password must be at most {MAX_LENGTH} characters", field="password")
    lowered = password.lower()
    if lowered in _common_passwords():
        raise WeakPassword("This password is too common", field="password")
    personal = {email.lower(), email.split("@")[0].lower(), display_name.lower()} - {""}
    if lowered in personal:
        raise WeakPassword("Password must not be your email or name", field="password")
    if len(set(password)) < 4:
        raise WeakPassword("Password has too few distinct characters", field="password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant-work check: an unknown user (``None``) still costs one verification."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
