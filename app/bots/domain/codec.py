"""Bot states, settings and commands as JSON and back (pure), exactly: a value read back
equals the value written.

A frozen dataclass is an object of its fields (by name); ``Decimal`` a string, written
as ``str`` writes it; ``datetime`` ISO 8601; ``timedelta`` whole microseconds; an enum
its value; a tuple a list; ``None`` null. Reading follows the dataclass's annotations,
so the stored JSON needs no type tags. Anything else (a float, a dict, a list) is not
bot data: writing it is a bug, and reading JSON that does not fit the annotations is
refused (``InvariantViolation``: stored state is ours, so a mismatch is a bug too).
"""

from __future__ import annotations

import dataclasses
import json
import types
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import Enum
from functools import cache
from typing import Any, TypeVar, Union, cast, get_args, get_origin, get_type_hints

from app.core.errors import InvariantViolation

T = TypeVar("T")
MICROSECOND = timedelta(microseconds=1)


def to_json(value: object) -> Any:
    """``value`` as JSON-ready data (dicts, lists, strings, ints, bools, None)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, int | str):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvariantViolation("bot data holds aware datetimes only")
        return value.isoformat()
    if isinstance(value, timedelta):
        return value // MICROSECOND
    if isinstance(value, tuple):
        return [to_json(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    raise InvariantViolation(f"not bot data: {type(value).__name__}")


def dumps(value: object) -> str:
    """Canonical JSON text (keys sorted, no spaces)."""
    return json.dumps(to_json(value), sort_keys=True, separators=(",", ":"))


def from_json(kind: type[T], data: Any) -> T:
    """The ``kind`` value ``data`` holds."""
    try:
        return cast(T, _read(kind, data))
    except (KeyError, TypeError, ValueError, InvalidOperation) as error:
        raise InvariantViolation(f"not a {kind.__name__}: {error}") from error


def loads(kind: type[T], text: str) -> T:
    return from_json(kind, json.loads(text))


@cache
def _hints(kind: type) -> dict[str, Any]:
    return get_type_hints(kind)


def _read(kind: Any, data: Any) -> Any:
    origin = get_origin(kind)
    if origin is Union or origin is types.UnionType:
        options = [a for a in get_args(kind) if a is not type(None)]
        if data is None and len(options) < len(get_args(kind)):
            return None
        if len(options) != 1:
            raise TypeError(f"{kind} is not an optional of one type")
        return _read(options[0], data)
    if origin is tuple:
        args = get_args(kind)
        if not isinstance(data, list):
            raise TypeError(f"{kind} is a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_read(args[0], item) for item in data)
        if len(args) != len(data):
            raise ValueError(f"{kind} has {len(args)} items")
        return tuple(_read(a, item) for a, item in zip(args, data, strict=True))
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        hints = _hints(kind)
        if not isinstance(data, dict):
            raise TypeError(f"{kind.__name__} is an object")
        fields = [f for f in dataclasses.fields(kind) if f.init]
        return kind(**{f.name: _read(hints[f.name], data[f.name]) for f in fields})
    return _scalar(kind, data)


def _scalar(kind: Any, data: Any) -> Any:
    if isinstance(kind, type) and issubclass(kind, Enum):
        return kind(data)
    if kind is Decimal:
        if not isinstance(data, str):
            raise TypeError("a Decimal is a string")
        return Decimal(data)
    if kind is datetime:
        moment = datetime.fromisoformat(_typed(str, data))
        if moment.tzinfo is None:
            raise ValueError("a datetime has a zone")
        return moment
    if kind is timedelta:
        return _typed(int, data) * MICROSECOND
    if kind in (bool, int, str):
        return _typed(kind, data)
    raise TypeError(f"{kind} is not bot data")


def _typed(kind: type[T], data: Any) -> T:
    if not isinstance(data, kind) or (kind is int and isinstance(data, bool)):
        raise TypeError(f"expected {kind.__name__}, got {type(data).__name__}")
    return data
