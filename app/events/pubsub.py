"""Fan-out hub: one Redis pub/sub connection per process, many local subscribers.

    async with hub.subscribe(channel) as subscription:
        snapshot = await read_from_postgresql()       # after subscribe(): nothing is missed
        async for event in subscription:
            match event:
                case Message(data=data): ...           # decoded JSON, shared: read-only
                case Gap(): ...                        # messages may be lost: re-read PostgreSQL
                case Dropped(): ...                    # the subscription ended: tell the client

Delivery semantics
    Redis pub/sub is at-most-once: a message published while the connection is down, or
    while a channel is being (re)subscribed, is gone. The hub never hides that. Within one
    channel, messages arrive in publish order; a message is decoded once and the same
    ``Message`` object goes to every subscriber of the channel.

    ``subscribe()`` returns only after Redis confirmed the SUBSCRIBE, so a consumer that
    subscribes first and then reads its snapshot from PostgreSQL misses nothing; it drops
    events already covered by the snapshot by their sequence (the outbox id, or a
    per-stream ``sequence``; events may also arrive twice, the outbox relay is at-least-once).

    ``Gap`` means "messages on this channel may have been lost; the subscription goes on".
    It is sent after a reconnect, once the channel is subscribed again (so the consumer's
    re-read from PostgreSQL cannot fall into a hole), and for a message that is not JSON.
    ``Dropped`` ends a subscription: the consumer was too slow (its bounded queue was full;
    its queued events are discarded) or the hub is shutting down. Every subscription that
    the hub ends, ends with exactly one ``Dropped``; iteration stops after it.

How it works
    One reader task owns the PubSub connection: it alone sends SUBSCRIBE/UNSUBSCRIBE
    (reference counted: the first local subscriber of a channel subscribes, the last one
    to leave unsubscribes) and reads with ``get_message(timeout=poll_interval)``, so
    redis-py never sees two coroutines on one socket. A new channel therefore waits up to
    ``poll_interval`` for its SUBSCRIBE to go out.

    redis-py 8.1 (checked): a client from ``Redis.from_url`` has no retries
    (``Retry(NoBackoff(), 0)``). When the server drops the connection, ``get_message``
    disconnects, reconnects and re-subscribes every channel in ``PubSub.channels`` (its
    ``on_connect`` callback) and only then raises ``ConnectionError`` once; the
    confirmations follow as ``subscribe`` messages. If the server is down, the reconnect
    fails and the next call tries again. The hub registers its own connect callback to learn
    that a reconnect happened (whatever the retry policy), resynchronises its view of what
    Redis has subscribed, and sends the ``Gap`` per channel when the re-subscription is
    confirmed. The reader loop survives every exception: after one that redis-py has not
    already recovered from, it drops the connection (so everything is re-subscribed from a
    clean state) and backs off up to 2 s between attempts while Redis is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter, deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.core.errors import TransientError

log = logging.getLogger(__name__)

_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError)


class Reason(StrEnum):
    RECONNECTED = "reconnected"  # Gap: the connection to Redis was lost and re-established
    UNDECODABLE = "undecodable"  # Gap: a message on the channel was not JSON
    SLOW_CONSUMER = "slow_consumer"  # Dropped: the subscriber's queue was full
    SHUTDOWN = "shutdown"  # Dropped: the hub is closing


@dataclass(frozen=True, slots=True)
class Message:
    channel: str
    data: Any  # decoded JSON, the same object for every subscriber: never mutate it


@dataclass(frozen=True, slots=True)
class Gap:
    channel: str
    reason: Reason


@dataclass(frozen=True, slots=True)
class Dropped:
    channel: str
    reason: Reason


Event = Message | Gap | Dropped


@dataclass
class HubStats:
    decoded: int = 0  # messages decoded (once per message and channel)
    undecodable: int = 0
    delivered: int = 0  # events queued for subscribers
    gaps: int = 0  # Gap events sent, counted once per channel
    dropped: int = 0  # subscribers dropped as too slow
    reconnects: int = 0


class Subscription:
    """One consumer's events on one channel: an async iterator with a bounded queue."""

    def __init__(self, channel: str, capacity: int) -> None:
        self.channel = channel
        self._capacity = capacity
        self._events: deque[Event] = deque()
        self._wakeup = asyncio.Event()
        self._ended = False

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while not self._events:
            if self._ended:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._events.popleft()

    def _offer(self, event: Event) -> bool:
        """Queue ``event``; False when the queue is full."""
        if self._ended:
            return True
        if len(self._events) >= self._capacity:
            return False
        self._events.append(event)
        self._wakeup.set()
        return True

    def _end(self, reason: Reason) -> None:
        """Discard what is queued and leave only the final ``Dropped``."""
        if self._ended:
            return
        self._ended = True
        self._events.clear()
        self._events.append(Dropped(self.channel, reason))
        self._wakeup.set()


@dataclass(eq=False)
class _Channel:
    name: str
    subscribers: set[Subscription] = field(default_factory=set)
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # SUBSCRIBE confirmed
    missed: bool = False  # messages may have been lost: send a Gap once subscribed again


class PubSubHub:
    """Fans Redis pub/sub channels out to local subscribers over one PubSub connection
    taken from ``redis``'s pool. The reader task starts with the first subscription.
    Prefer ``from_url``: a named client of its own, without the send timeout whose
    ``asyncio.wait_for`` can swallow the reader's cancellation on Python 3.11 (``aclose``
    copes with that either way)."""

    def __init__(
        self,
        redis: Redis,
        *,
        queue_size: int = 256,
        poll_interval: float = 0.05,
        ready_timeout: float = 5.0,
        owns_client: bool = False,
    ) -> None:
        self._redis = redis
        self._owns_client = owns_client
        self._pubsub = redis.pubsub()
        self._queue_size = queue_size
        self._poll_interval = poll_interval
        self._ready_timeout = ready_timeout
        self._channels: dict[str, _Channel] = {}  # channels with local subscribers
        self._sent: set[str] = set()  # last command sent to Redis was SUBSCRIBE
        self._pending: Counter[str] = Counter()  # confirmations still to come
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.stats = HubStats()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        client_name: str,
        queue_size: int = 256,
        poll_interval: float = 0.05,
        ready_timeout: float = 5.0,
    ) -> PubSubHub:
        """A hub with its own client: the connection shows as ``client_name`` in
        CLIENT LIST, and connecting never waits longer than 5 s. No ``socket_timeout``
        (redis-py 8 defaults to 5 s): with one, redis-py sends through ``asyncio.wait_for``,
        which on Python 3.11 can swallow a cancellation; our reads pass their own timeout."""
        redis = Redis.from_url(
            url,
            client_name=client_name,
            health_check_interval=30,
            socket_connect_timeout=5,
            socket_timeout=None,
        )
        return cls(
            redis,
            queue_size=queue_size,
            poll_interval=poll_interval,
            ready_timeout=ready_timeout,
            owns_client=True,
        )

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        """Subscribe to ``channel``; entered once Redis confirmed the subscription.
        Raises TransientError when Redis does not confirm within ``ready_timeout``."""
        subscription = self._join(channel)
        try:
            await self._wait_until_ready(subscription)
            yield subscription
        finally:
            self._leave(subscription)

    def local_subscribers(self, channel: str) -> int:
        found = self._channels.get(channel)
        return len(found.subscribers) if found else 0

    def channel_count(self) -> int:
        return len(self._channels)

    def subscriber_count(self) -> int:
        return sum(len(c.subscribers) for c in self._channels.values())

    async def aclose(self) -> None:
        """Stop reading, end every subscription with ``Dropped(SHUTDOWN)``, close the
        connection."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._wakeup.set()
            self._task.cancel()
            await asyncio.wait([self._task])
        for channel in self._channels.values():
            for subscription in channel.subscribers:
                subscription._end(Reason.SHUTDOWN)
            channel.ready.set()
        self._channels.clear()
        await self._pubsub.aclose()
        if self._owns_client:
            await self._redis.aclose()

    # subscribers (called from consumer tasks; never touch the PubSub connection)

    def _join(self, name: str) -> Subscription:
        subscription = Subscription(name, self._queue_size)
        if self._closed:
            subscription._end(Reason.SHUTDOWN)
            return subscription
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = _Channel(name)
            if self._is_active(name):  # still subscribed in Redis (an unsubscribe not sent)
                channel.ready.set()
            self._wakeup.set()
        channel.subscribers.add(subscription)
        if self._task is None:
            self._task = asyncio.create_task(self._read_forever(), name="pubsub-hub")
        return subscription

    async def _wait_until_ready(self, subscription: Subscription) -> None:
        channel = self._channels.get(subscription.channel)
        if channel is None or subscription not in channel.subscribers:
            return  # already ended (hub closed)
        try:
            async with asyncio.timeout(self._ready_timeout):
                await channel.ready.wait()
        except TimeoutError:
            raise TransientError("Live updates are unavailable, try again") from None

    def _leave(self, subscription: Subscription) -> None:
        subscription._ended = True
        channel = self._channels.get(subscription.channel)
        if channel is None or subscription not in channel.subscribers:
            return
        channel.subscribers.discard(subscription)
        if not channel.subscribers:
            del self._channels[channel.name]
            self._wakeup.set()

    # the reader task: the only user of the PubSub connection

    async def _read_forever(self) -> None:
        failures = 0
        while not self._closed:  # also stops a reader whose cancellation got lost
            reconnects = self.stats.reconnects
            try:
                await self._step()
                failures = 0
                continue
            except _CONNECTION_ERRORS as error:
                if failures == 0:
                    log.warning("pub/sub connection lost: %s", error)
            except Exception:
                log.exception("pub/sub reader failed; reconnecting")
            failures += 1
            self._mark_missed()
            if self.stats.reconnects == reconnects or not self._connected():
                # not recovered yet: the next read reconnects and re-subscribes everything
                await self._drop_connection()
                await asyncio.sleep(_backoff(failures))

    async def _step(self) -> None:
        while self._idle() and not self._closed:
            self._wakeup.clear()
            await self._wakeup.wait()
        if self._closed:
            return
        await self._sync_subscriptions()
        message = await self._pubsub.get_message(timeout=self._poll_interval)
        if message is not None:
            self._dispatch(message)
            await asyncio.sleep(0)  # let consumers run between the messages of a burst

    def _idle(self) -> bool:
        return not (self._channels or self._sent or self._pending)

    async def _sync_subscriptions(self) -> None:
        """Send SUBSCRIBE for channels wanted locally and UNSUBSCRIBE for those no
        longer wanted; bookkeeping only once the command went out."""
        subscribe = [name for name in self._channels if name not in self._sent]
        unsubscribe = [name for name in self._sent if name not in self._channels]
        if subscribe:
            await self._connect()
            await self._pubsub.subscribe(*subscribe)
            self._pending.update(subscribe)
            self._sent.update(subscribe)
        if unsubscribe:
            await self._pubsub.unsubscribe(*unsubscribe)
            self._pending.update(unsubscribe)
            self._sent.difference_update(unsubscribe)

    async def _connect(self) -> None:
        if self._pubsub.connection is None:
            await self._pubsub.connect()
            assert self._pubsub.connection is not None
            # after redis-py's own callback, which re-subscribes PubSub.channels
            self._pubsub.connection.register_connect_callback(self._on_reconnect)

    def _on_reconnect(self, connection: AbstractConnection) -> None:
        """redis-py reconnected and has just re-sent SUBSCRIBE for ``PubSub.channels``;
        replies to commands sent before the disconnect will never come."""
        self.stats.reconnects += 1
        self._sent = {_text(name) for name in self._pubsub.channels}
        self._pending = Counter(self._sent)
        self._mark_missed()
        log.info("pub/sub reconnected", extra={"channels": len(self._sent)})

    def _connected(self) -> bool:
        connection = self._pubsub.connection
        return connection is not None and connection.is_connected

    async def _drop_connection(self) -> None:
        """Force a clean reconnect (and re-subscription) on the next read."""
        if self._pubsub.connection is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.connection.disconnect(nowait=True)

    def _mark_missed(self) -> None:
        for channel in self._channels.values():
            # subscribers of a channel not ready yet are still in subscribe(): no Gap
            channel.missed = channel.ready.is_set()

    def _is_active(self, name: str) -> bool:
        return name in self._sent and not self._pending[name]

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "message":
            self._deliver(_text(message["channel"]), message["data"])
        elif kind in ("subscribe", "unsubscribe"):
            self._confirm(_text(message["channel"]))

    def _confirm(self, name: str) -> None:
        if self._pending[name] > 1:
            self._pending[name] -= 1
            return
        self._pending.pop(name, None)
        channel = self._channels.get(name)
        if channel is None or name not in self._sent:
            return
        if channel.missed:
            channel.missed = False
            self.stats.gaps += 1
            self._broadcast(channel, Gap(name, Reason.RECONNECTED))
        channel.ready.set()

    def _deliver(self, name: str, raw: bytes) -> None:
        channel = self._channels.get(name)
        if channel is None:
            return  # the last local subscriber left; the UNSUBSCRIBE is on its way
        try:
            data = json.loads(raw)
        except ValueError:
            self.stats.undecodable += 1
            self.stats.gaps += 1
            log.warning("undecodable pub/sub message", extra={"channel": name})
            self._broadcast(channel, Gap(name, Reason.UNDECODABLE))
            return
        self.stats.decoded += 1
        self._broadcast(channel, Message(name, data))

    def _broadcast(self, channel: _Channel, event: Event) -> None:
        for subscription in tuple(channel.subscribers):
            if subscription._offer(event):
                self.stats.delivered += 1
            else:
                self._drop_slow(channel, subscription)

    def _drop_slow(self, channel: _Channel, subscription: Subscription) -> None:
        subscription._end(Reason.SLOW_CONSUMER)
        self.stats.dropped += 1
        log.info("dropped a slow pub/sub subscriber", extra={"channel": channel.name})
        self._leave(subscription)


async def publish(redis: Redis, channel: str, message: str | bytes, *, attempts: int = 3) -> int:
    """PUBLISH, tried again when the connection turns out to be dead: a pooled connection
    goes stale when Redis restarts, and clients from ``Redis.from_url`` do not retry.
    A retry after a timeout may publish twice; consumers dedupe on the event id.
    Returns how many Redis subscribers received it (hubs count once each)."""
    (received,) = await publish_many(redis, [(channel, message)], attempts=attempts)
    return received


async def publish_many(
    redis: Redis, messages: Sequence[tuple[str, str | bytes]], *, attempts: int = 3
) -> list[int]:
    """``publish`` for each (channel, message), in order and in one round trip (a
    pipeline), tried again as a whole; how many subscribers received each."""
    attempt = 1
    while True:
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for name, message in messages:
                    pipe.publish(name, message)
                return [int(n) for n in await pipe.execute()]
        except _CONNECTION_ERRORS as error:
            if attempt >= attempts:
                raise TransientError("Redis is unavailable, try again") from error
            log.warning("publish failed, retrying: %s", error)
            attempt += 1
            await asyncio.sleep(0.05 * attempt)


def _backoff(failures: int) -> float:
    return float(min(2.0, 0.05 * 2 ** (failures - 1)))


def _text(name: bytes | str) -> str:
    return name.decode() if isinstance(name, bytes) else name
