"""What a connected account is made of, as the rest of the code sees it: the
credentials (never shown: ``repr`` hides them), a key's permissions, balances and the
outcome of checking a key."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from app.core.errors import ValidationFailed
from app.exchanges.domain.catalogue import FACTS, ExchangeId
from app.exchanges.domain.errors import (
    ExchangeKeyAllowsWithdrawals,
    ExchangePermissionDenied,
    PassphraseRequired,
)

MAX_CREDENTIAL_LENGTH = 4096  # longer than any exchange's key, secret or PEM private key


@dataclass(frozen=True, slots=True, repr=False)
class Credentials:
    api_key: str
    secret: str
    passphrase: str | None = None

    def __repr__(self) -> str:
        return "Credentials(<hidden>)"

    __str__ = __repr__

    def to_bytes(self) -> bytes:
        """What is sealed."""
        fields = {"apiKey": self.api_key, "secret": self.secret, "passphrase": self.passphrase}
        return json.dumps(fields, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Credentials:
        fields = json.loads(data)
        return cls(fields["apiKey"], fields["secret"], fields["passphrase"])


def credentials_for(
    exchange: ExchangeId, *, api_key: str, secret: str, passphrase: str | None
) -> Credentials:
    """The credentials as given, checked for shape (not yet with the exchange)."""
    passphrase = passphrase or None
    fields = {"apiKey": api_key, "secret": secret, "passphrase": passphrase or ""}
    for name, value in fields.items():
        if len(value) > MAX_CREDENTIAL_LENGTH or "\x00" in value or value != value.strip():
            raise ValidationFailed(f"{name} is malformed", field=name)
    for name in ("apiKey", "secret"):
        if not fields[name]:
            raise ValidationFailed(f"{name} is required", field=name)
    if FACTS[exchange].needs_passphrase and passphrase is None:
        raise PassphraseRequired(field="passphrase")
    return Credentials(api_key=api_key, secret=secret, passphrase=passphrase)


@dataclass(frozen=True, slots=True)
class KeyPermissions:
    """What the exchange says the key may do; None where it does not say."""

    can_read: bool | None
    can_trade: bool | None
    can_withdraw: bool | None
    ip_restricted: bool | None

    def refusal(self) -> ExchangePermissionDenied | ExchangeKeyAllowsWithdrawals | None:
        """Why a key with these permissions is not accepted (None: it is)."""
        if self.can_withdraw:
            return ExchangeKeyAllowsWithdrawals(field="apiKey")
        if self.can_read is False:
            return ExchangePermissionDenied(
                "The API key may not read balances: enable reading", field="apiKey"
            )
        return None


UNKNOWN_PERMISSIONS = KeyPermissions(None, None, None, None)


@dataclass(frozen=True, slots=True)
class Balance:
    currency: str  # ccxt's unified code, e.g. BTC (Kraken's XXBT is BTC)
    free: Decimal
    used: Decimal
    total: Decimal


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """The outcome of checking a key: its permissions, and the balances it read."""

    permissions: KeyPermissions
    balances: tuple[Balance, ...]


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if value in (0, 1, "0", "1"):
        return bool(int(value))
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def binance_permissions(raw: Mapping[str, Any]) -> KeyPermissions:
    """GET /sapi/v1/account/apiRestrictions."""
    return KeyPermissions(
        can_read=_flag(raw.get("enableReading")),
        can_trade=_flag(raw.get("enableSpotAndMarginTrading")),
        can_withdraw=_flag(raw.get("enableWithdrawals")),
        ip_restricted=_flag(raw.get("ipRestrict")),
    )


def kraken_permissions(raw: Mapping[str, Any]) -> KeyPermissions:
    """POST /0/private/GetApiKeyInfo: ``result.permissions`` names what the key may do."""
    result = raw.get("result") or {}
    granted = set(result.get("permissions") or [])
    return KeyPermissions(
        can_read="query-funds" in granted,
        can_trade="modify-trades" in granted,
        can_withdraw="withdraw-funds" in granted,
        ip_restricted=bool(result.get("ipAllowlist")),
    )


def okx_permissions(raw: Mapping[str, Any]) -> KeyPermissions:
    """GET /api/v5/account/config: ``perm`` is e.g. "read_only,trade"; ``ip`` the IPs."""
    data = (raw.get("data") or [{}])[0]
    granted = {p.strip() for p in str(data.get("perm", "")).split(",") if p.strip()}
    return KeyPermissions(
        can_read="read_only" in granted or bool(granted),
        can_trade="trade" in granted,
        can_withdraw="withdraw" in granted,
        ip_restricted=bool(str(data.get("ip", "")).strip()),
    )


def bybit_permissions(raw: Mapping[str, Any]) -> KeyPermissions:
    """GET /v5/user/query-api: ``permissions.Wallet`` holds "Withdraw" when it may."""
    result = raw.get("result") or {}
    permissions = result.get("permissions") or {}
    ips = [ip for ip in result.get("ips") or [] if ip and ip != "*"]
    return KeyPermissions(
        can_read=True,  # every Bybit key may read
        can_trade=_flag(result.get("readOnly")) is False,
        can_withdraw="Withdraw" in (permissions.get("Wallet") or []),
        ip_restricted=bool(ips),
    )


def coinbase_permissions(raw: Mapping[str, Any]) -> KeyPermissions:
    """GET /api/v3/brokerage/key_permissions: ``can_transfer`` is sending funds out."""
    return KeyPermissions(
        can_read=_flag(raw.get("can_view")),
        can_trade=_flag(raw.get("can_trade")),
        can_withdraw=_flag(raw.get("can_transfer")),
        ip_restricted=None,  # not reported
    )


PERMISSION_READERS: dict[ExchangeId, Callable[[Mapping[str, Any]], KeyPermissions]] = {
    ExchangeId.BINANCE: binance_permissions,
    ExchangeId.KRAKEN: kraken_permissions,
    ExchangeId.OKX: okx_permissions,
    ExchangeId.BYBIT: bybit_permissions,
    ExchangeId.COINBASE: coinbase_permissions,
}
