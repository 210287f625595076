"""Global IDs in arguments: parsed into primary keys, bad ones as typed errors.

Every key is a PostgreSQL BIGINT: a node id whose number is not ASCII digits, or beyond
the int64 range, names nothing (it never reaches the database, which would refuse it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from strawberry import relay
from strawberry.relay.types import GlobalIDValueError

from app.core.errors import ValidationFailed

Row = TypeVar("Row")

MAX_KEY = 2**63 - 1  # BIGINT


def key_of(node_id: str) -> int | None:
    """The primary key a node id's text names, or None (not a positive BIGINT)."""
    if not (node_id.isascii() and node_id.isdigit()) or len(node_id) > 19:
        return None
    key = int(node_id)
    return key if 0 < key <= MAX_KEY else None


def node_keys(node_ids: Iterable[str]) -> list[int]:
    """Keys for ``resolve_nodes``: 0 (no row has it) for an id that names nothing."""
    return [key_of(node_id) or 0 for node_id in node_ids]


def pk_or_none(global_id: str, type_name: str) -> int | None:
    """The key of a ``type_name`` node's global ID; None for anything else."""
    try:
        parsed = relay.GlobalID.from_id(global_id)
    except GlobalIDValueError:
        return None
    return key_of(parsed.node_id) if parsed.type_name == type_name else None


def node_pk(global_id: str, type_name: str, *, field: str) -> int:
    """The integer key of a ``type_name`` node's global ID; ``ValidationFailed`` for
    anything else (malformed, another type, not a positive BIGINT)."""
    key = pk_or_none(global_id, type_name)
    if key is None:
        raise ValidationFailed(f"Not a {type_name} id", field=field)
    return key


async def owned_rows(
    info: Any,
    node_ids: Iterable[str],
    fetch: Callable[..., Awaitable[Mapping[int, Row]]],
) -> list[Row | None]:
    """``resolve_nodes``'s rows of things only their owner sees: ``fetch(session,
    user_id=, ids=)`` reads the viewer's rows by key; None for every id when no one is
    signed in, and for one that names nothing or someone else's."""
    keys = node_keys(node_ids)
    user_id = info.context.user_id
    if user_id is None:
        return [None for _ in keys]
    async with info.context.rt.reads() as session:
        rows = await fetch(session, user_id=user_id, ids=keys)
    return [rows.get(k) for k in keys]
