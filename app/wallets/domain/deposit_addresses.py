"""Crypto deposit addresses and transaction hashes, per chain (formats as data).

Each user gets one address per crypto currency, derived deterministically as
HMAC-SHA256(key, "deposit-address:{user_id}:{currency}") and rendered in the chain's
own format: bech32 P2WPKH for Bitcoin (with a real BIP-173 checksum), a 20-byte hex
account for Ethereum and ERC-20 USDT (lower case, which wallets accept; the EIP-55
mixed-case checksum needs keccak-256, which the standard library lacks), base58 of 32
bytes for Solana. The derivation stands in for a wallet service's HD derivation: the
platform never holds keys here, the admin credit records what arrived.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from app.core.errors import DepositMethodNotSupported, ValidationFailed

TX_HASH_FIELD = "txHash"


# --- encodings ---------------------------------------------------------------------------

_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _bech32_polymod(values: list[int]) -> int:
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for i, generator in enumerate(_BECH32_GENERATOR):
            if (top >> i) & 1:
                checksum ^= generator
    return checksum


def _five_bit_groups(data: bytes) -> list[int]:
    bits = "".join(f"{byte:08b}" for byte in data)
    bits += "0" * (-len(bits) % 5)
    return [int(bits[i : i + 5], 2) for i in range(0, len(bits), 5)]


def bech32_segwit_v0(hrp: str, program: bytes) -> str:
    """A version-0 segwit address (BIP-173)."""
    data = [0, *_five_bit_groups(program)]
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    polymod = _bech32_polymod([*expanded, *data, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_BECH32_CHARSET[d] for d in [*data, *checksum])


def base58(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    encoded = ""
    while number:
        number, digit = divmod(number, 58)
        encoded = _BASE58_ALPHABET[digit] + encoded
    leading_zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * leading_zeros + encoded


# --- chains ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Chain:
    network: str
    render: Callable[[bytes], str]  # 32 derived bytes -> address
    tx_hash: re.Pattern[str]
    case_insensitive: bool  # addresses and hashes compare in lower case


BITCOIN = Chain(
    network="Bitcoin",
    render=lambda digest: bech32_segwit_v0("bc", digest[:20]),
    tx_hash=re.compile(r"[0-9a-f]{64}"),
    case_insensitive=True,
)
ETHEREUM = Chain(
    network="Ethereum",
    render=lambda digest: "0x" + digest[:20].hex(),
    tx_hash=re.compile(r"0x[0-9a-f]{64}"),
    case_insensitive=True,
)
ERC20 = Chain(
    network="Ethereum (ERC-20)",
    render=ETHEREUM.render,
    tx_hash=ETHEREUM.tx_hash,
    case_insensitive=True,
)
SOLANA = Chain(
    network="Solana",
    render=base58,
    tx_hash=re.compile(r"[1-9A-HJ-NP-Za-km-z]{64,88}"),
    case_insensitive=False,
)
CHAINS: Mapping[str, Chain] = {"BTC": BITCOIN, "ETH": ETHEREUM, "USDT": ERC20, "SOL": SOLANA}


def chain_for(currency: str) -> Chain:
    chain = CHAINS.get(currency)
    if chain is None:
        raise DepositMethodNotSupported(
            f"{currency} cannot be deposited to an address", field="currency"
        )
    return chain


def derive_address(*, key: bytes, user_id: int, currency: str) -> str:
    message = f"deposit-address:{user_id}:{currency}".encode()
    return chain_for(currency).render(hmac.new(key, message, hashlib.sha256).digest())


def normalise_address(currency: str, address: str) -> str:
    cleaned = address.strip()
    return cleaned.lower() if chain_for(currency).case_insensitive else cleaned


def normalise_tx_hash(currency: str, tx_hash: str) -> str:
    chain = chain_for(currency)
    cleaned = tx_hash.strip()
    if chain.case_insensitive:
        cleaned = cleaned.lower()
    if not chain.tx_hash.fullmatch(cleaned):
        raise ValidationFailed(
            f"This is not a {chain.network} transaction hash", field=TX_HASH_FIELD
        )
    return cleaned
