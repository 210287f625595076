"""Idempotency keys for money mutations, stored with the effect in one transaction.

Flow inside the caller's transaction: ``claim`` first. A fresh key is inserted and the
caller does the work, then ``remember``s the response. A concurrent duplicate blocks on
the key's unique index until the first commits, then sees the stored response (or, if
the first rolled back, claims the key itself). Same key with a different request:
``IdempotencyKeyReused``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import IdempotencyKeyReused, ValidationFailed
from db.models import IdempotencyKey
from db.raw import driver

MAX_KEY_LENGTH = 255
FIELD = "idempotencyKey"


def request_hash(operation: str, params: dict[str, Any]) -> str:
    canonical = json.dumps({"op": operation, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise ValidationFailed(
            f"idempotencyKey must be 1 to {MAX_KEY_LENGTH} printable characters", field=FIELD
        )
    return key


async def claim(
    session: AsyncSession, *, user_id: int, key: str, operation: str, params: dict[str, Any]
) -> dict[str, Any] | None:
    """None: the key is ours, do the work. A dict: the stored response of the original."""
    digest = request_hash(operation, params)
    connection = await driver(session)
    inserted = await connection.fetchval(
        "INSERT INTO idempotency_keys (user_id, key, operation, request_hash)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
        user_id,
        check_key(key),
        operation,
        digest,
    )
    if inserted:
        return None
    stored = await connection.fetchrow(
        "SELECT request_hash, response FROM idempotency_keys WHERE user_id = $1 AND key = $2",
        user_id,
        key,
    )
    if stored["request_hash"] != digest or stored["response"] is None:
        raise IdempotencyKeyReused(field=FIELD)
    return stored["response"]


async def remember(
    session: AsyncSession, *, user_id: int, key: str, response: dict[str, Any]
) -> None:
    connection = await driver(session)
    await connection.execute(
        "UPDATE idempotency_keys SET response = $3::jsonb WHERE user_id = $1 AND key = $2",
        user_id,
        key,
        json.dumps(response),
    )


async def prune(session: AsyncSession, *, older_than: datetime) -> int:
    result = await session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.created_at < older_than)
    )
    return result.rowcount or 0
