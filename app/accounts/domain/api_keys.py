"""API key rules: scopes, the secret's format, names, expiry and IP allowlists."""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from app.core.errors import ValidationFailed

SECRET_PREFIX = "co_"
_SECRET_BYTES = 32
SHOWN_PREFIX_LENGTH = len(SECRET_PREFIX) + 6  # "co_Ab3dE9": enough to tell keys apart
MAX_NAME_LENGTH = 100
MAX_ALLOWED_NETWORKS = 50
MAX_LIFETIME = timedelta(days=2 * 365)
MAX_ACTIVE_KEYS = 25


class Scope(StrEnum):
    """What a key may do. A signed-in session may do everything; a key only what its
    scopes grant, and never account security (password, two-factor, keys), money
    movement (transfers, deposits, withdrawals) or administration."""

    READ_MARKET_DATA = "READ_MARKET_DATA"
    READ_ACCOUNT = "READ_ACCOUNT"
    TRADE = "TRADE"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)


def looks_like_secret(value: str) -> bool:
    return value.startswith(SECRET_PREFIX) and 40 <= len(value) <= 64


def hash_secret(secret: str) -> bytes:
    """256 bits of entropy: a plain SHA-256 is a safe lookup key (as for refresh tokens)."""
    return hashlib.sha256(secret.encode()).digest()


def normalise_name(raw: str) -> str:
    name = " ".join(raw.split())
    if not 1 <= len(name) <= MAX_NAME_LENGTH or not name.isprintable():
        raise ValidationFailed(
            f"Name the key with 1 to {MAX_NAME_LENGTH} printable characters", field="name"
        )
    return name


def normalise_scopes(scopes: Iterable[Scope]) -> list[str]:
    chosen = sorted({Scope(s).value for s in scopes})
    if not chosen:
        raise ValidationFailed("Give the key at least one scope", field="scopes")
    return chosen


def check_expiry(expires_at: datetime | None, *, now: datetime) -> datetime | None:
    if expires_at is None:
        return None
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    if expires_at <= now + timedelta(minutes=1):
        raise ValidationFailed("expiresAt must be in the future", field="expiresAt")
    if expires_at > now + MAX_LIFETIME:
        raise ValidationFailed("A key can live at most two years", field="expiresAt")
    return expires_at


def normalise_networks(raw: Iterable[str]) -> list[str]:
    """Addresses or CIDR networks (IPv4 or IPv6), normalised: ``10.0.0.7/8`` -> ``10.0.0.0/8``."""
    networks = []
    for value in raw:
        try:
            networks.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError as error:
            raise ValidationFailed(
                f"Not an IP address or network: {value!r}", field="allowedIps"
            ) from error
    if len(networks) > MAX_ALLOWED_NETWORKS:
        raise ValidationFailed(
            f"At most {MAX_ALLOWED_NETWORKS} addresses or networks", field="allowedIps"
        )
    return sorted(set(networks))


def ip_allowed(networks: Iterable[str], client_ip: str | None) -> bool:
    """An empty allowlist allows every address; otherwise the client must be in one."""
    networks = list(networks)
    if not networks:
        return True
    if not client_ip:
        return False
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(n) for n in networks)
