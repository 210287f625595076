from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from app.errors import UserError
from graphql_schema.errors import Error, to_graphql_error

T = TypeVar("T")
P = TypeVar("P")


async def attempt(call: Awaitable[T], ok: Callable[[T], P]) -> P | Error:
    """Await one service call; map its result, or its expected error to a typed error."""
    try:
        value = await call
    except UserError as error:
        return to_graphql_error(error)
    return ok(value)
