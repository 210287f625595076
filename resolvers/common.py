from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from strawberry.types import Info

from app.core.errors import TransientError, UserError
from app.events.outbox import channel
from app.events.pubsub import Dropped, Message
from graphql_schema.errors import Error, to_graphql_error

T = TypeVar("T")
P = TypeVar("P")


async def attempt(call: Awaitable[T], ok: Callable[[T], P | Awaitable[P]]) -> P | Error:
    """Await one service call; map its result (``ok``, awaited when it is a coroutine:
    a mapping that loads what it shows), or its expected error to a typed error."""
    try:
        value = await call
    except UserError as error:
        return to_graphql_error(error)
    mapped = ok(value)
    return await mapped if inspect.isawaitable(mapped) else mapped  # type: ignore[return-value]


def subscribe(
    info: Info, topic: str, user_id: int | None = None
) -> AbstractAsyncContextManager[AsyncIterator[Any]]:
    """This process's subscription to an outbox topic (one user's, with ``user_id``)."""
    name = channel(info.context.rt.settings.redis_prefix, topic, user_id)
    return info.context.request.app.state.hub.subscribe(name)


async def stream_events(
    info: Info, topic: str, user_id: int | None, convert: Callable[[dict[str, Any]], Any]
) -> AsyncGenerator[Any, None]:
    """A subscription's items: each event's payload through ``convert``; a dropped
    stream ends with a TransientError (the client subscribes again)."""
    async with subscribe(info, topic, user_id) as subscription:
        async for event in subscription:
            if isinstance(event, Message):
                yield convert(event.data["payload"])
            elif isinstance(event, Dropped):
                raise TransientError("The stream ended: subscribe again")
