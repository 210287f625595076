"""Delivery of a shared subscription's results to one operation over graphql-transport-ws
(``shared_subscriptions``): the messages as strawberry's own operations send them
(``next`` with the operation's id spliced into a payload encoded once, ``error``,
``complete``, or closing the socket), and ``Member``, one operation's bounded queue with
the direct send while its socket keeps up."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from graphql import GraphQLError
from graphql.error import GraphQLSyntaxError
from strawberry.schema.exceptions import CannotGetOperationTypeError
from strawberry.types.execution import ExecutionResult, PreExecutionError

INCREMENTAL_MESSAGE = "Incremental delivery is not supported over graphql-transport-ws"

# what a stream sends to its members: ("next", encoded payload), ("error", [errors]),
# ("close", reason), ("complete", None)
Item = tuple[str, Any]


COMPLETE: Item = ("complete", None)


def encode(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def next_payload(result: ExecutionResult) -> dict[str, Any]:
    """As strawberry's ``Operation.send_next`` builds it."""
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [error.formatted for error in result.errors]
    if result.extensions:
        payload["extensions"] = result.extensions
    return payload


def close_reason(error: GraphQLError) -> str | None:
    """When strawberry closes the socket instead of answering (its handler's rule)."""
    if isinstance(error, GraphQLSyntaxError):
        return error.message
    if isinstance(error.original_error, CannotGetOperationTypeError):
        return error.original_error.as_http_error_reason()
    return None


def first_item(result: Any) -> Item | None:
    """The item for a first result that ends the operation before it streams."""
    if isinstance(result, PreExecutionError):
        assert result.errors
        reason = close_reason(result.errors[0])
        if reason is not None:
            return ("close", reason)
        return ("error", [error.formatted for error in result.errors])
    if not isinstance(result, ExecutionResult):
        return ("error", [GraphQLError(INCREMENTAL_MESSAGE).formatted])
    return None


class Member:
    """One operation's place in a stream. While its socket keeps up, the stream sends
    each result straight away, from its own task: the send is started by hand and, as a
    WebSocket send finishes without waiting unless the socket's buffer is full, it is
    done before the next member's (no task switch per delivery). A send that has to
    wait is continued by a task of its own; from then on results queue (bounded) and
    the operation's task sends them, until the queue is empty again. Final items
    (complete, error, close) always go through the queue, after what is queued."""

    __slots__ = (
        "_busy",
        "_capacity",
        "_final",
        "_in_flight",
        "_items",
        "_operation",
        "_prefix",
        "_send_text",
        "_waiter",
        "failure",
    )

    def __init__(
        self, capacity: int, operation: Any, send_text: Callable[[str], Awaitable[None]]
    ) -> None:
        self._items: deque[Item] = deque()
        self._capacity = capacity
        self._operation = operation
        self._send_text = send_text
        self._prefix = '{"id":' + encode(operation.id) + ',"type":"next","payload":'
        self._waiter: asyncio.Future[None] | None = None
        self._final = False
        self._busy = False  # the operation's task delivers: a backlog or a send in flight
        self._in_flight: asyncio.Future[Any] | None = None
        self.failure: BaseException | None = None  # a send failed: the operation ends

    def message(self, payload: str) -> str:
        """The ``next`` message of this operation with an encoded payload."""
        return self._prefix + payload + "}"

    def offer(self, item: Item) -> bool:
        """Deliver or queue ``item``; False when the queue is full."""
        if self._final:
            return True
        if not self._busy and item[0] == "next":
            self._send_now(item[1])
            return True
        if len(self._items) >= self._capacity:
            return False
        self._items.append(item)
        self._busy = True
        self._wake()
        return True

    def end_with(self, *items: Item) -> None:
        """Discard what is queued; ``items`` are the last."""
        self._final = True
        self._busy = True
        self._items.clear()
        self._items.extend(items)
        self._wake()

    def _send_now(self, payload: str) -> None:
        if self._operation.completed:
            return
        send = self._send_text(self.message(payload))
        try:
            waiting_on = send.send(None)  # type: ignore[attr-defined]
        except StopIteration:
            return  # sent
        except Exception as error:  # the socket is gone
            self._busy = True
            self.failure = error
            self._wake()
            return
        self._busy = True
        self._in_flight = asyncio.ensure_future(_Resume(send, waiting_on))
        self._in_flight.add_done_callback(self._sent)

    def _sent(self, future: asyncio.Future[Any]) -> None:
        self._wake()

    async def get(self) -> Item:
        """The next item for the operation's task to send (raises what a send raised)."""
        while True:
            if self.failure is not None:
                raise self.failure
            in_flight = self._in_flight
            if in_flight is not None and in_flight.done():
                self._in_flight = None
                if not in_flight.cancelled() and in_flight.exception() is not None:
                    raise in_flight.exception()  # type: ignore[misc]
                continue
            if in_flight is None:
                if self._items:
                    return self._items.popleft()
                if not self._final:
                    self._busy = False  # caught up: the stream sends directly again
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def cancel(self) -> None:
        if self._in_flight is not None:
            self._in_flight.cancel()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Resume:
    """Awaitable: a coroutine started by hand (``send(None)``) and suspended on
    ``waiting_on``, continued by the task that awaits this (as Python 3.12's eager
    tasks do): the future it yielded goes to the task, and whatever the task sends or
    throws goes on to the coroutine."""

    __slots__ = ("_coroutine", "_waiting_on")

    def __init__(self, coroutine: Any, waiting_on: Any) -> None:
        self._coroutine = coroutine
        self._waiting_on = waiting_on

    def __await__(self) -> Any:
        coroutine, waiting_on = self._coroutine, self._waiting_on
        while True:
            try:
                yield waiting_on
            except BaseException as error:
                try:
                    waiting_on = coroutine.throw(error)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                waiting_on = coroutine.send(None)
            except StopIteration as stop:
                return stop.value
