"""Signed tokens: JWT access tokens, emailed one-purpose tokens, opaque refresh tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from app.core.errors import InvalidToken

ACCESS_ALGORITHM = "HS256"
_ACCESS_AUDIENCE = "access"
_REQUIRED_CLAIMS = ["exp", "iat", "sub", "jti", "aud", "iss"]


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    role: str
    jti: str
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class IssuedAccessToken:
    token: str
    claims: AccessClaims


@dataclass(frozen=True, slots=True)
class EmailTokenClaims:
    user_id: int
    fingerprint: str


class TokenSigner:
    """HS256 everywhere; ``decode`` accepts only HS256, so ``alg: none`` and RS/HS
    confusion are refused. Access and emailed tokens use different keys and audiences."""

    def __init__(
        self, *, jwt_secret: str, secret_key: str, issuer: str, access_ttl: timedelta
    ) -> None:
        self._jwt_secret = jwt_secret
        self._secret_key = secret_key
        self._issuer = issuer
        self.access_ttl = access_ttl

    def issue_access(self, *, user_id: int, role: str, now: datetime) -> IssuedAccessToken:
        claims = AccessClaims(
            user_id=user_id,
            role=role,
            jti=uuid.uuid4().hex,
            issued_at=now,
            expires_at=now.replace(microsecond=0) + self.access_ttl,
        )
        payload = {
            "sub": str(user_id),
            "role": role,
            "jti": claims.jti,
            # Sub-second iat, so a token issued just before a password reset is refused.
            "iat": claims.issued_at.timestamp(),
            "exp": claims.expires_at,
            "iss": self._issuer,
            "aud": _ACCESS_AUDIENCE,
        }
        return IssuedAccessToken(jwt.encode(payload, self._jwt_secret, ACCESS_ALGORITHM), claims)

    def decode_access(self, token: str) -> AccessClaims:
        payload = self._decode(token, self._jwt_secret, audience=_ACCESS_AUDIENCE)
        try:
            return AccessClaims(
                user_id=int(payload["sub"]),
                role=str(payload.get("role", "USER")),
                jti=str(payload["jti"]),
                issued_at=datetime.fromtimestamp(payload["iat"], UTC),
                expires_at=datetime.fromtimestamp(payload["exp"], UTC),
            )
        except (ValueError, TypeError) as error:
            raise InvalidToken("Malformed access token") from error

    def sign_email_token(
        self, *, purpose: str, user_id: int, fingerprint: str, ttl: timedelta, now: datetime
    ) -> str:
        payload = {
            "sub": str(user_id),
            "fp": fingerprint,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + ttl,
            "iss": self._issuer,
            "aud": purpose,
        }
        return jwt.encode(payload, self._secret_key, ACCESS_ALGORITHM)

    def verify_email_token(self, token: str, *, purpose: str) -> EmailTokenClaims:
        payload = self._decode(token, self._secret_key, audience=purpose)
        try:
            return EmailTokenClaims(user_id=int(payload["sub"]), fingerprint=str(payload["fp"]))
        except (KeyError, ValueError) as error:
            raise InvalidToken(field="token") from error

    def keyed_hash(self, value: str) -> bytes:
        return hmac.new(self._secret_key.encode(), value.encode(), hashlib.sha256).digest()

    def _decode(self, token: str, key: str, *, audience: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[ACCESS_ALGORITHM],
                audience=audience,
                issuer=self._issuer,
                options={"require": _REQUIRED_CLAIMS},
                leeway=5,
            )
        except jwt.ExpiredSignatureError as error:
            expired = InvalidToken("The token has expired", field="token")
            expired.expired = True
            raise expired from error
        except jwt.PyJWTError as error:
            raise InvalidToken(field="token") from error


def new_opaque_token() -> str:
    return secrets.token_urlsafe(32)


def hash_opaque_token(token: str) -> bytes:
    """Refresh tokens carry 256 bits of entropy, so a plain SHA-256 is a safe lookup key."""
    return hashlib.sha256(token.encode()).digest()


def fingerprint(value: str) -> str:
    """Short digest binding an emailed token to state it must not outlive."""
    return hashlib.sha256(value.encode()).hexdigest()[:16]
