"""Global IDs in mutation arguments: parsed into primary keys, bad ones as typed errors."""

from __future__ import annotations

from strawberry import relay
from strawberry.relay.types import GlobalIDValueError

from app.errors import ValidationFailed


def node_pk(global_id: str, type_name: str, *, field: str) -> int:
    """The integer key of a ``type_name`` node's global ID; ``ValidationFailed`` for
    anything else (malformed, another type, not an integer)."""
    try:
        parsed = relay.GlobalID.from_id(global_id)
    except GlobalIDValueError:
        parsed = None
    if parsed is None or parsed.type_name != type_name or not parsed.node_id.isdigit():
        raise ValidationFailed(f"Not a {type_name} id", field=field)
    return int(parsed.node_id)
