"""Shared execution of public market-data subscriptions over graphql-transport-ws.

Strawberry runs a subscription once per operation: with 1,000 sockets on one order
book every event is executed and JSON-encoded 1,000 times. Here the sockets that sent
the same document with the same variables (and operation name) share one execution:

    SharedStream: schema.stream once, each result encoded once (P)
        ├─ Member (socket 1, operation "1"):  '{"id":"1","type":"next","payload":' + P + '}'
        ├─ Member (socket 2, operation "a"):  '{"id":"a","type":"next","payload":' + P + '}'
        └─ ...

Per socket there is only the splice of its operation id into the encoded message and
the send: made by the stream's task while the socket keeps up, else queued for the
operation's own task (``Member``). Each member is registered as strawberry's
``Operation`` with that task, so ``complete``, a closing socket and the subscription
limit work as for any operation.

What may be shared (``SHAREABLE``): root subscription fields whose results depend on
their arguments only, never on the caller (no user, no API key, no loaders of the
user): ``orderBook``, ``trades``, ``ticker``. A document is shared only when its
subscription has exactly that one root field (no directives, no fragment at the root);
anything else (``myOrders``, ``myFills``, ``notifications``, ``serverTime`` whose
``count`` runs per subscriber, documents mixing fields) takes strawberry's usual path.
Admission (persisted documents, scopes of API keys, cost, rate limit) runs for every
subscriber before it gets here, in the view; the shared execution itself runs with an
anonymous context of its own (these fields need no user; an API key's scope was checked
by admission).

How a subscriber joins (``Join``):

- ``LIVE`` (trades, ticker): every result stands alone; a subscriber receives the
  stream's results from the moment it joined (the stream is subscribed already, so it
  misses nothing a subscription of its own would have seen).
- ``SEQUENCED`` (orderBook): a SNAPSHOT carrying ``sequence``, then results carrying
  ``sequence`` and ``previousSequence`` (the resolver's gap handling re-snapshots). The
  document must select both fields (else it is not shared). A subscriber that arrives
  before the stream's first result takes the stream from its start (the stream's
  snapshot is read after the subscriber arrived). A later one runs its own execution
  first, the "head" (its own snapshot, its own error handling), and switches to the
  shared stream at the first shared result that continues what it last received
  (``previousSequence`` = its ``sequence``), or at a shared SNAPSHOT sent after it; its
  own execution is then closed. While the shared stream is behind it waits; while the
  shared stream is ahead it takes the next result from its own execution and tries
  again (the last ``RING_SIZE`` shared results are kept for that). When the shared
  stream ends first, it stays on its own execution.

Delivery: every member has a bounded queue (``QUEUE_SIZE`` messages). A member whose
queue is full is dropped: what it had queued is discarded and it gets a ``next`` with a
``TRY_AGAIN`` error, then ``complete`` (as when the pub/sub hub drops a slow
subscription); the others go on. The stream ends when its last member leaves (its
execution is cancelled, which unsubscribes it from the hub), or when the execution
ends: its final error and ``complete`` go to every member.

Errors in shared results carry the shared execution's request id (``shared-...``), not
the subscriber's. The legacy graphql-ws protocol is not shared.

This module holds the streams and their registry; which documents are shared and under
which key is ``shared_plans``; the messages and a member's queue are ``shared_delivery``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLError
from starlette.websockets import WebSocket
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.types.execution import ExecutionResult
from strawberry.utils.aio import aclosing

from app.core.errors import TransientError
from app.core.logs import request_id_var
from graphql_schema.gateway.context import Context
from graphql_schema.gateway.shared_delivery import (
    COMPLETE,
    INCREMENTAL_MESSAGE,
    Item,
    Member,
    encode,
    first_item,
    next_payload,
)
from graphql_schema.gateway.shared_plans import Join, Plan, Shape
from resolvers.loaders import build_loaders

log = logging.getLogger(__name__)

QUEUE_SIZE = 256  # messages per member before it is dropped as too slow
RING_SIZE = 64  # shared results kept for late subscribers to join at
YIELD_EVERY = 128  # members sent to between two turns of the event loop
SLOW_MESSAGE = "The stream ended: this connection fell too far behind; subscribe again"


@dataclass
class Stats:
    streams: int = 0  # shared executions started
    joined: int = 0  # operations served from a shared stream
    heads: int = 0  # late subscribers that ran their own execution first
    switched: int = 0  # ... and then switched to the shared stream
    results: int = 0  # shared results executed and encoded (once each)
    deliveries: int = 0  # results queued for members
    dropped: int = 0  # members dropped as too slow


@dataclass(frozen=True, slots=True)
class _Entry:
    index: int
    sequence: int | None
    previous: int | None
    item: Item


class SharedStream:
    """One execution of a plan, its results broadcast to the members."""

    def __init__(self, streams: SharedStreams, plan: Plan, context: Context) -> None:
        self.streams = streams
        self.plan = plan
        self.context = context
        self.members: set[Member] = set()
        self.heads = 0  # late subscribers on their own execution, to join later
        self.emitted = 0  # results broadcast
        self.ring: deque[_Entry] = deque(maxlen=RING_SIZE)
        self.ending = False  # the execution finished: join a new stream
        self._news: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="shared-subscription")

    @property
    def usable(self) -> bool:
        return not self.ending

    async def _run(self) -> None:
        request_id_var.set(self.context.request_id)
        plan = self.plan
        try:
            source = await self.streams.schema.stream(
                plan.query,
                variable_values=plan.variables,
                context_value=self.context,
                root_value=None,
                operation_name=plan.operation_name,
            )
            async with aclosing(source):
                first = True
                async for result in source:
                    final = first_item(result) if first else None
                    if final is None and not isinstance(result, ExecutionResult):
                        final = ("error", [GraphQLError(INCREMENTAL_MESSAGE).formatted])
                    if final is not None:
                        self.ending = True
                        await self._broadcast(_Entry(-1, None, None, final))
                        return
                    first = False
                    await self._emit(result)
                self.ending = True
            await self._broadcast(_Entry(-1, None, None, COMPLETE))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("shared subscription failed")
            self.ending = True
            await self._broadcast(_Entry(-1, None, None, COMPLETE))
        finally:
            self.ending = True
            self.streams._forget(self)
            self._tell()

    async def _emit(self, result: ExecutionResult) -> None:
        shape = self.plan.shape
        sequence = previous = None
        if shape.join is Join.SEQUENCED and isinstance(result.data, dict):
            value = result.data.get(shape.response_key)
            if isinstance(value, dict):
                sequence = value.get(shape.sequence_key or "")
                previous = value.get(shape.previous_key or "")
        entry = _Entry(self.emitted, sequence, previous, ("next", encode(next_payload(result))))
        self.emitted += 1
        self.ring.append(entry)
        self.streams.stats.results += 1
        await self._broadcast(entry)

    async def _broadcast(self, entry: _Entry) -> None:
        """Offer ``entry`` to every member (in turn: most are sent to right here), letting
        the rest of the process run every ``YIELD_EVERY`` members. A member that joins
        meanwhile starts after it (LIVE), or takes it from the ring (a late SEQUENCED
        subscriber: ``emitted`` already counts it)."""
        stats = self.streams.stats
        item = entry.item
        for n, member in enumerate(tuple(self.members), 1):
            if member.offer(item):
                stats.deliveries += 1
            else:
                self._drop(member)
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        self._tell()

    def _drop(self, member: Member) -> None:
        stats = self.streams.stats
        stats.dropped += 1
        self.members.discard(member)
        error = GraphQLError(
            SLOW_MESSAGE,
            path=[self.plan.shape.response_key],
            extensions={"code": TransientError.code, "requestId": self.context.request_id},
        )
        member.end_with(("next", encode({"data": None, "errors": [error.formatted]})), COMPLETE)
        log.info("dropped a slow subscriber of a shared subscription")

    def _tell(self) -> None:
        """Wake the late subscribers waiting for the next result."""
        news, self._news = self._news, None
        if news is not None and not news.done():
            news.set_result(None)

    async def news(self) -> None:
        if self._news is None:
            self._news = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._news)

    # late subscribers (SEQUENCED)

    def continuation(self, held: int, since: int) -> int | None:
        """Where in the ring a member holding ``held`` (its last result was sent when
        ``since`` results had been emitted) continues: the first result that follows
        ``held``, or a SNAPSHOT emitted since; None when there is none (yet)."""
        for position, entry in enumerate(self.ring):
            if entry.previous == held:
                return position
            if entry.index >= since and entry.previous is None and entry.sequence is not None:
                return position
        return None

    def passed(self, held: int) -> bool:
        """The stream already sent a result beyond ``held`` (and none that follows it)."""
        last = self.ring[-1] if self.ring else None
        return last is not None and last.sequence is not None and last.sequence > held

    def attach_from(self, member: Member, position: int) -> None:
        stats = self.streams.stats
        for entry in list(self.ring)[position:]:
            if not member.offer(entry.item):
                self._drop(member)
                return
            stats.deliveries += 1  # a result the head's own execution had not sent yet
        self.members.add(member)


class SharedStreams:
    """Every shared stream of one server process (one per view)."""

    def __init__(self, schema: Any) -> None:
        self.schema = schema
        self.streams: dict[tuple[str, str, str | None], SharedStream] = {}
        self.stats = Stats()

    def _forget(self, stream: SharedStream) -> None:
        if self.streams.get(stream.plan.key) is stream:
            del self.streams[stream.plan.key]

    def _release(self, stream: SharedStream) -> None:
        """Cancel a stream nobody is on any more."""
        if stream.members or stream.heads or stream.ending:
            return
        self._forget(stream)
        if stream.task is not None:
            stream.task.cancel()

    def _stream_for(self, plan: Plan, context: Context) -> SharedStream:
        stream = self.streams.get(plan.key)
        if stream is None or not stream.usable:
            stream = SharedStream(self, plan, _anonymous_context(context))
            self.streams[plan.key] = stream
            self.stats.streams += 1
            stream.start()
        return stream

    async def serve(
        self,
        *,
        plan: Plan,
        operation: Any,  # strawberry's graphql_transport_ws Operation
        context: Context,
        run_own: Callable[[], Awaitable[AsyncIterator[Any]]],
        send_text: Callable[[str], Awaitable[None]],
        close: Callable[[str], Awaitable[None]],
    ) -> None:
        """The operation's task: join the plan's stream and send what it broadcasts.
        ``run_own`` starts this operation's own execution (a late subscriber's head)."""
        self.stats.joined += 1
        member = Member(QUEUE_SIZE, operation, send_text)
        stream = self._stream_for(plan, context)
        late = plan.shape.join is Join.SEQUENCED and stream.emitted > 0
        try:
            if late:
                stream.heads += 1
                try:
                    own = await self._head(stream, member, operation, run_own, send_text, close)
                finally:
                    stream.heads -= 1
                if own:
                    return
            else:
                stream.members.add(member)
            while True:
                kind, value = await member.get()
                if kind == "next":
                    if operation.completed:
                        return
                    await send_text(member.message(value))
                elif kind == "complete":
                    await operation.send_operation_message({"id": operation.id, "type": "complete"})
                    return
                elif kind == "error":
                    await operation.send_operation_message(
                        {"id": operation.id, "type": "error", "payload": value}
                    )
                    return
                else:  # close
                    await close(value)
                    return
        except WebSocketDisconnected:
            return  # the socket's handler ends the other operations
        except Exception:
            log.warning("a shared subscription's send failed", exc_info=True)
            # as strawberry's own operations end on an error: complete, and free the id
            # (else it would count against the socket's subscription limit for good)
            with contextlib.suppress(Exception):
                await operation.send_operation_message({"id": operation.id, "type": "complete"})
            operation.handler.operations.pop(operation.id, None)
            return
        finally:
            stream.members.discard(member)
            member.cancel()
            self._release(stream)

    async def _head(
        self,
        stream: SharedStream,
        member: Member,
        operation: Any,
        run_own: Callable[[], Awaitable[AsyncIterator[Any]]],
        send_text: Callable[[str], Awaitable[None]],
        close: Callable[[str], Awaitable[None]],
    ) -> bool:
        """A late subscriber's own execution until it lines up with the stream. True:
        the operation ended on its own execution (completed, refused, closed)."""
        self.stats.heads += 1
        shape = stream.plan.shape
        source = await run_own()
        async with aclosing(source):  # type: ignore[type-var]
            results = source.__aiter__()
            first = True
            held: int | None = None
            since = 0
            while True:
                if held is not None and stream.usable:
                    position = stream.continuation(held, since)
                    if position is not None:
                        stream.attach_from(member, position)
                        self.stats.switched += 1
                        return False
                    if not stream.passed(held):
                        await stream.news()
                        continue
                try:
                    result = await results.__anext__()
                except StopAsyncIteration:
                    await operation.send_operation_message({"id": operation.id, "type": "complete"})
                    return True
                final = first_item(result) if first else None
                if final is None and not isinstance(result, ExecutionResult):
                    final = ("error", [GraphQLError(INCREMENTAL_MESSAGE).formatted])
                if final is not None:
                    kind, value = final
                    if kind == "close":
                        await close(value)
                    else:
                        await operation.send_operation_message(
                            {"id": operation.id, "type": "error", "payload": value}
                        )
                    return True
                first = False
                if operation.completed:
                    return True
                await send_text(member.message(encode(next_payload(result))))
                held = _sequence(result, shape)
                since = stream.emitted


def _sequence(result: ExecutionResult, shape: Shape) -> int | None:
    data = result.data
    value = data.get(shape.response_key) if isinstance(data, dict) else None
    sequence = value.get(shape.sequence_key or "") if isinstance(value, dict) else None
    return sequence if isinstance(sequence, int) else None


async def _never_receive() -> Any:
    await asyncio.Event().wait()


async def _no_send(message: Any) -> None:
    raise RuntimeError("a shared subscription has no socket of its own")


def _anonymous_context(context: Context) -> Context:
    """The shared execution's context: nobody's (no user, no key, no headers), on the
    same app (the resolvers reach the pub/sub hub through ``request.app``)."""
    scope = {**context.request.scope, "headers": [], "client": None, "query_string": b""}
    request = WebSocket(scope, receive=_never_receive, send=_no_send)
    return Context(
        rt=context.rt,
        request=request,
        response=None,
        loaders=build_loaders(context.rt),
        request_id=f"shared-{uuid.uuid4().hex[:16]}",
    )
