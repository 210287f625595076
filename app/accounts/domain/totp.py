"""TOTP (RFC 6238) with replay protection, and one-time recovery codes."""

from __future__ import annotations

import secrets
from datetime import datetime

import pyotp

STEP_SECONDS = 30
VALID_WINDOW = 1  # accept the previous and the next 30 s step for clock drift
RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


def current_code(secret: str, *, now: datetime) -> str:
    return pyotp.TOTP(secret).at(now)


def matching_step(secret: str, code: str, *, now: datetime, last_step: int | None) -> int | None:
    """The time step ``code`` belongs to, or None. A step at or before ``last_step``
    was already used and does not match again (no replay within the window)."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    now_step = int(now.timestamp()) // STEP_SECONDS
    for step in range(now_step - VALID_WINDOW, now_step + VALID_WINDOW + 1):
        if last_step is not None and step <= last_step:
            continue
        if secrets.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def new_recovery_codes() -> list[str]:
    def one() -> str:
        chars = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
        return f"{chars[:5]}-{chars[5:]}"

    return [one() for _ in range(RECOVERY_CODE_COUNT)]


def normalise_recovery_code(code: str) -> str:
    cleaned = code.strip().lower().replace(" ", "").replace("-", "")
    return f"{cleaned[:5]}-{cleaned[5:]}"


def looks_like_recovery_code(code: str) -> bool:
    return len(code.strip().replace("-", "").replace(" ", "")) == 10
