from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from strawberry.types import Info

from app.core.errors import TransientError, UserError
from app.events.pubsub import Dropped, Message
from app.events.topics import Payload, Topic, channel
from graphql_schema.errors import Error, to_graphql_error

T = TypeVar("T")
P = TypeVar("P")
E = TypeVar("E", bound=Payload)


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
    info: Info, topic: Topic[Any], *, user_id: int | None = None, symbol: str | None = None
) -> AbstractAsyncContextManager[AsyncIterator[Any]]:
    """This process's subscription to an outbox topic (one user's, with ``user_id``; a
    market's, with ``symbol``)."""
    name = channel(info.context.rt.settings.redis_prefix, topic.named(symbol), user_id)
    return info.context.request.app.state.hub.subscribe(name)


async def stream_events(
    info: Info,
    topic: Topic[E],
    convert: Callable[[E], T],
    *,
    user_id: int | None = None,
    symbol: str | None = None,
) -> AsyncGenerator[T, None]:
    """A subscription's items: each event's payload (``topic``'s type) through
    ``convert``; a dropped stream ends with a TransientError (the client subscribes
    again)."""
    async with subscribe(info, topic, user_id=user_id, symbol=symbol) as subscription:
        async for event in subscription:
            if isinstance(event, Message):
                yield convert(topic.parse(event.data["payload"]))
            elif isinstance(event, Dropped):
                raise TransientError("The stream ended: subscribe again")


async def stream_user_topics(
    info: Info, converts: Mapping[Topic[Any], Callable[[Any], T]], *, user_id: int
) -> AsyncGenerator[T, None]:
    """``stream_events`` over several of one user's topics (each with its ``convert``)
    as one stream, in the order the events were written: the hub delivers in publish
    order, and events that arrive together are taken by their outbox id."""
    async with contextlib.AsyncExitStack() as stack:
        subscriptions = [
            (topic, await stack.enter_async_context(subscribe(info, topic, user_id=user_id)))
            for topic in converts
        ]
        waiting = {i: asyncio.ensure_future(anext(s)) for i, (_, s) in enumerate(subscriptions)}
        try:
            while True:
                await asyncio.wait(waiting.values(), return_when=asyncio.FIRST_COMPLETED)
                arrived: list[tuple[int, Topic[Any], Any]] = []
                for i, task in list(waiting.items()):
                    if not task.done():
                        continue
                    topic, subscription = subscriptions[i]
                    event = task.result()
                    if isinstance(event, Dropped):
                        raise TransientError("The stream ended: subscribe again")
                    if isinstance(event, Message):
                        arrived.append((event.data["id"], topic, event.data["payload"]))
                    waiting[i] = asyncio.ensure_future(anext(subscription))
                for _, topic, payload in sorted(arrived, key=lambda a: a[0]):
                    yield converts[topic](topic.parse(payload))
        finally:
            for task in waiting.values():
                task.cancel()
