"""Envelope encryption of API secrets (AES-256-GCM).

Each secret gets its own random data key; the secret is sealed with the data key, and
the data key is wrapped (sealed) with a master key of the key ring. Both carry the
``Binding`` (user, exchange, connection) as associated data, the wrapped key its master
key's id too: a sealed secret copied onto another row, user or exchange does not open.
Rotation re-wraps the data keys with the active master key; the sealed secrets
themselves do not change.

A sealed secret's layout: ``key_id`` (the master key's), ``wrapped_key`` (12-byte nonce
+ the data key sealed, 48 bytes), ``ciphertext`` (12-byte nonce + the secret sealed)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.core.errors import InvariantViolation

_NONCE = 12
_VERSION = b"co-exchange-secret/v1"


@dataclass(frozen=True, slots=True)
class Binding:
    """What a sealed secret belongs to: its associated data."""

    user_id: int
    exchange: str
    connection_id: int

    def associated_data(self, key_id: str | None = None) -> bytes:
        """The secret's (no key id), or the data key's wrapped by master ``key_id``."""
        parts = [f"user={self.user_id}", f"exchange={self.exchange}",
                 f"connection={self.connection_id}"]  # fmt: skip
        if key_id is not None:
            parts.append(f"key={key_id}")
        return b"|".join([_VERSION, *(p.encode() for p in parts)])


@dataclass(frozen=True, slots=True, repr=False)
class SealedSecret:
    key_id: str
    wrapped_key: bytes
    ciphertext: bytes

    def __repr__(self) -> str:
        return f"SealedSecret(key_id={self.key_id!r})"


class SecretUnreadable(InvariantViolation):
    """A sealed secret that does not open: unknown master key, or tampered with, or
    moved to another binding. Never the user's fault: stop and look."""


class KeyRing:
    """The master keys by id; ``active`` seals new secrets."""

    def __init__(self, keys: Mapping[str, bytes], *, active: str) -> None:
        if active not in keys or any(len(k) != 32 for k in keys.values()):
            raise ValueError("a key ring needs 32-byte keys and its active key among them")
        self._keys = dict(keys)
        self.active = active

    def __repr__(self) -> str:
        return f"KeyRing(active={self.active!r}, ids={sorted(self._keys)!r})"

    def _master(self, key_id: str) -> AESGCM:
        try:
            return AESGCM(self._keys[key_id])
        except KeyError:
            raise SecretUnreadable(f"master key {key_id!r} is not in the key ring") from None

    def seal(self, plaintext: bytes, binding: Binding) -> SealedSecret:
        data_key = AESGCM.generate_key(bit_length=256)
        return SealedSecret(
            key_id=self.active,
            wrapped_key=self._wrap(data_key, binding),
            ciphertext=_seal(AESGCM(data_key), plaintext, binding.associated_data()),
        )

    def unseal(self, sealed: SealedSecret, binding: Binding) -> bytes:
        data_key = self._unwrap(sealed, binding)
        return _open(AESGCM(data_key), sealed.ciphertext, binding.associated_data())

    def rewrap(self, sealed: SealedSecret, binding: Binding) -> SealedSecret:
        """``sealed`` with its data key wrapped by the active master key instead (itself
        when it already is); the ciphertext is untouched."""
        if sealed.key_id == self.active:
            return sealed
        data_key = self._unwrap(sealed, binding)
        return SealedSecret(self.active, self._wrap(data_key, binding), sealed.ciphertext)

    def _wrap(self, data_key: bytes, binding: Binding) -> bytes:
        aad = binding.associated_data(self.active)
        return _seal(self._master(self.active), data_key, aad)

    def _unwrap(self, sealed: SealedSecret, binding: Binding) -> bytes:
        aad = binding.associated_data(sealed.key_id)
        return _open(self._master(sealed.key_id), sealed.wrapped_key, aad)


def _seal(cipher: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return nonce + cipher.encrypt(nonce, plaintext, aad)


def _open(cipher: AESGCM, sealed: bytes, aad: bytes) -> bytes:
    try:
        return cipher.decrypt(sealed[:_NONCE], sealed[_NONCE:], aad)
    except InvalidTag:
        raise SecretUnreadable("a sealed secret does not open with its binding") from None
