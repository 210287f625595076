"""Which subscribe messages may share one execution (``shared_subscriptions``), and
under which key: a document whose subscription has exactly one root field of
``SHAREABLE`` (no directives, no fragment at the root), keyed by the normalized
document, its variables and its operation name. The document's shape is read once per
text (cached)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Any

from graphql import FieldNode, OperationType, get_operation_ast, print_ast

from graphql_schema.gateway.limits import parse_document


class Join(Enum):
    LIVE = "live"
    SEQUENCED = "sequenced"


# Root subscription fields whose results depend on their arguments only.
SHAREABLE: dict[str, Join] = {
    "orderBook": Join.SEQUENCED,
    "trades": Join.LIVE,
    "ticker": Join.LIVE,
}


@dataclass(frozen=True, slots=True)
class Shape:
    """What a document's text says about sharing it (cached per text)."""

    normalized: str
    response_key: str
    join: Join
    sequence_key: str | None
    previous_key: str | None


@dataclass(frozen=True, slots=True)
class Plan:
    key: tuple[str, str, str | None]  # (normalized document, variables, operation name)
    query: str
    variables: dict[str, Any] | None
    operation_name: str | None
    shape: Shape


@lru_cache(maxsize=512)
def _shape(query: str, operation_name: str | None, max_tokens: int) -> Shape | None:
    try:
        document = parse_document(query, max_tokens=max_tokens)
    except Exception:  # not parsed: strawberry's usual path reports it
        return None
    operation = get_operation_ast(document, operation_name)
    if operation is None or operation.operation is not OperationType.SUBSCRIPTION:
        return None
    selections = operation.selection_set.selections
    if operation.directives or len(selections) != 1 or not isinstance(selections[0], FieldNode):
        return None
    root = selections[0]
    join = SHAREABLE.get(root.name.value)
    if join is None or root.directives:
        return None
    response_key = (root.alias or root.name).value
    sequence_key = previous_key = None
    if join is Join.SEQUENCED:
        keys = {
            s.name.value: (s.alias or s.name).value
            for s in (root.selection_set.selections if root.selection_set else ())
            if isinstance(s, FieldNode) and not s.directives
        }
        sequence_key, previous_key = keys.get("sequence"), keys.get("previousSequence")
        if sequence_key is None or previous_key is None:
            return None  # a late subscriber could not be lined up with the stream
    return Shape(print_ast(document), response_key, join, sequence_key, previous_key)


def plan_for(payload: Any, *, max_tokens: int) -> Plan | None:
    """How the subscribe ``payload`` (after admission) is shared; None: not shareable."""
    if not isinstance(payload, dict):
        return None
    query = payload.get("query")
    variables = payload.get("variables")
    operation_name = payload.get("operationName")
    if not isinstance(query, str) or not (variables is None or isinstance(variables, dict)):
        return None
    if not (operation_name is None or isinstance(operation_name, str)):
        return None
    shape = _shape(query, operation_name, max_tokens)
    if shape is None:
        return None
    try:
        encoded = json.dumps(variables or {}, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return None
    return Plan(
        (shape.normalized, encoded, operation_name), query, variables, operation_name, shape
    )
