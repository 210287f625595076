"""The exchanges accounts can be connected at (an allow-list, like Freqtrade's), and
what differs between them, as data: whether keys have a passphrase, where the key's
permissions are read, what to tell the user about IP allowlists."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from app.exchanges.domain.errors import UnsupportedExchange


class ExchangeId(StrEnum):
    """ccxt's id of each exchange."""

    BINANCE = "binance"
    KRAKEN = "kraken"
    OKX = "okx"
    BYBIT = "bybit"
    COINBASE = "coinbase"


@dataclass(frozen=True, slots=True)
class ExchangeFacts:
    id: ExchangeId
    name: str
    needs_passphrase: bool
    permissions_endpoint: str  # the exchange's own, where a key's permissions are read
    ip_allowlist_guidance: str


_IP = (
    "Restrict the key to this platform's outgoing IP addresses (ask support for the "
    "list): a key bound to IPs is useless to anyone who steals it."
)
FACTS: dict[ExchangeId, ExchangeFacts] = {
    facts.id: facts
    for facts in (
        ExchangeFacts(
            ExchangeId.BINANCE, "Binance", False, "GET /sapi/v1/account/apiRestrictions",
            "API Management → Edit restrictions → 'Restrict access to trusted IPs only'. "
            + _IP,
        ),
        ExchangeFacts(
            ExchangeId.KRAKEN, "Kraken", False, "POST /0/private/GetApiKeyInfo",
            "Settings → API → the key → 'IP address allowlist'. " + _IP,
        ),
        ExchangeFacts(
            ExchangeId.OKX, "OKX", True, "GET /api/v5/account/config",
            "API → the key → 'IP address' (keys without one expire after 14 days of "
            "inactivity at OKX). " + _IP,
        ),
        ExchangeFacts(
            ExchangeId.BYBIT, "Bybit", False, "GET /v5/user/query-api",
            "API → the key → 'Only IPs with permissions granted are allowed to access the "
            "OpenAPI' (keys without IPs expire after 3 months at Bybit). " + _IP,
        ),
        ExchangeFacts(
            ExchangeId.COINBASE, "Coinbase", False, "GET /api/v3/brokerage/key_permissions",
            "Developer platform → the API key → 'IP allowlist'. " + _IP,
        ),
    )
}  # fmt: skip
SUPPORTED: tuple[ExchangeId, ...] = tuple(FACTS)


def parse_exchange(text: str) -> ExchangeId:
    """The exchange named ``text`` (ccxt's id, any case); ``UnsupportedExchange`` else."""
    try:
        return ExchangeId(text.strip().lower())
    except ValueError:
        raise UnsupportedExchange(
            f"Supported exchanges: {', '.join(SUPPORTED)}", field="exchange"
        ) from None
