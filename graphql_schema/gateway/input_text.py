"""Text no argument may carry: a NUL byte (PostgreSQL refuses it in text) or an unpaired
surrogate (not Unicode: it cannot be encoded as UTF-8). Refused for every String and ID
argument at once, as ``VALIDATION_FAILED`` naming the argument (a literal) or the
variable, before any resolver runs."""

from __future__ import annotations

import re
from typing import Any

from graphql import ArgumentNode, GraphQLError, ObjectFieldNode, StringValueNode, ValidationRule

from app.core.errors import ValidationFailed

_UNSAFE = re.compile("[\x00\ud800-\udfff]")
MESSAGE = "Text may not contain NUL bytes or unpaired surrogates"


def unsafe_text_error(field: str, node: Any = None) -> GraphQLError:
    return GraphQLError(MESSAGE, node, original_error=ValidationFailed(MESSAGE, field=field))


def unsafe_variable(value: Any, path: str = "") -> str | None:
    """The path (``name.key.0``) of the first string in variables that holds unsafe text."""
    if isinstance(value, str):
        return path if _UNSAFE.search(value) else None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = unsafe_variable(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


class UnsafeTextLiteral(ValidationRule):
    """A string literal in the document with unsafe text (``"\\u0000"``)."""

    def enter_string_value(
        self, node: StringValueNode, _key: Any, parent: Any, _path: Any, ancestors: Any
    ) -> None:
        if _UNSAFE.search(node.value):
            names = [
                a.name.value
                for a in (*ancestors, parent)
                if isinstance(a, ArgumentNode | ObjectFieldNode)
            ]
            self.report_error(unsafe_text_error(".".join(names), node))
