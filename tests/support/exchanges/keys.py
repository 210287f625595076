"""API keys for the stand-ins: each exchange's shape (Kraken's secret is base64; OKX's
key has a passphrase), random per call so that no two tests share one."""

from __future__ import annotations

import base64
import secrets

from tests.support.exchanges import Account


def new_account(exchange: str, **options: object) -> Account:
    if exchange == "kraken":
        key = base64.b64encode(secrets.token_bytes(42)).decode()
        secret = base64.b64encode(secrets.token_bytes(64)).decode()
    elif exchange == "coinbase":  # a legacy HMAC key (a 64-char secret: no JWT)
        key, secret = secrets.token_hex(8), secrets.token_urlsafe(48)[:64].replace("=", "x")
    else:
        key, secret = secrets.token_hex(32), secrets.token_hex(32)
    passphrase = f"pass-{secrets.token_hex(6)}" if exchange == "okx" else None
    return Account(api_key=key, secret=secret, passphrase=passphrase, **options)  # type: ignore[arg-type]


def other_secret(exchange: str) -> str:
    """A secret of the right shape that is not the key's."""
    return new_account(exchange).secret
