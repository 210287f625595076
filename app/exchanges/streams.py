"""Order streams: accounts with orders to follow, at exchanges with an order stream
(``ccxt.pro``'s watch_orders / watch_my_trades, ``ExchangeConnector.streamed``), are
followed by it; the others by ``following.poll_live``.

``OrderStreams.supervise`` (a background job, every ``exchange_stream_check_seconds``)
opens a stream per such ACTIVE account and closes it when the account has nothing left
to follow, is suspended or disconnected, or its key changed (a new key version: the
stream is opened again with the new key). A stream runs in a task of its own:

    subscribe -> reconcile_account -> record each update as it arrives
                 (and reconcile again every ``exchange_stream_reconcile_seconds``)
    a dropped connection or a failure: wait (backoff, doubling up to its maximum),
    subscribe again, reconcile again: what happened in the gap is read then.

Where the stream has no trades (Coinbase's ``user`` channel), an order it reports
filled further has its fills read at once (``reconcile_account``).

Updates are recorded by ``following.record_streamed``, reconciliation's own recording (each
fill once, each order moved forward only), so the stream, the reconciliations and the
poller in another process never double nor miss anything between them. An account whose
stream is healthy (subscribed and reconciled) is skipped by the poller (``healthy``).

One worker process streams an account at a time: a stream is opened only under the
account's lease in Redis (``StreamLeases``: ``SET NX`` with an expiry, renewed every
third of it while the stream lives, deleted when it stops). A worker that dies leaves
its leases to expire (``LEASE_SECONDS``); another worker's ``supervise`` takes them
then. A lease, not a PostgreSQL advisory lock: a lock is held by a session, so each of
up to ``MAX_STREAMS`` streams would hold a database connection of its own. Without
Redis no lease is taken and no stream opened: the poller follows the accounts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import select

from app.core.errors import UserError
from app.exchanges.accounts import ACTIVE, binding_of, sealed_of
from app.exchanges.ccxt_edge import key_version
from app.exchanges.connector import OrderStream
from app.exchanges.domain.catalogue import ExchangeId
from app.exchanges.following import followed, reconcile_account, record_streamed
from app.runtime import Runtime
from db.models import ExchangeConnection, ExchangeOrder

log = logging.getLogger(__name__)

MAX_STREAMS = 5000  # per process
LEASE_SECONDS = 10.0  # an account's stream lease; renewed every third of it

# the lease is taken, or renewed when this holder has it already
_TAKE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class StreamLeases:
    """Per account, which worker process may stream it: a Redis key holding the holder's
    token, with an expiry."""

    def __init__(self, seconds: float = LEASE_SECONDS) -> None:
        self.seconds = seconds
        self.token = uuid.uuid4().hex

    async def take(self, rt: Runtime, connection_id: int) -> bool:
        """Take or renew the account's lease; whether this holder has it (a Redis
        failure: not)."""
        try:
            taken = await rt.redis.eval(  # type: ignore[misc]
                _TAKE, 1, self.key(rt, connection_id), self.token, int(self.seconds * 1000)
            )
        except Exception:  # Redis away: no stream (the poller follows the account)
            log.warning("exchange stream lease unavailable", extra={"connection": connection_id})
            return False
        return bool(taken)

    async def held_elsewhere(self, rt: Runtime, connection_ids: list[int]) -> set[int]:
        """Of ``connection_ids``, those whose lease another holder has now."""
        if not connection_ids:
            return set()
        try:
            tokens = await rt.redis.mget([self.key(rt, c) for c in connection_ids])
        except Exception:  # Redis away: none (polled here too, recorded once)
            return set()
        mine = (self.token, self.token.encode())
        return {c for c, t in zip(connection_ids, tokens, strict=True) if t and t not in mine}

    async def release(self, rt: Runtime, connection_id: int) -> None:
        with contextlib.suppress(Exception):  # else it expires
            await rt.redis.eval(_RELEASE, 1, self.key(rt, connection_id), self.token)  # type: ignore[misc]

    @staticmethod
    def key(rt: Runtime, connection_id: int) -> str:
        return rt.redis_key("exchange-stream", str(connection_id))


@dataclass(frozen=True, slots=True)
class _Wanted:
    connection: ExchangeConnection
    version: str


async def _wanted(rt: Runtime) -> dict[int, _Wanted]:
    """The ACTIVE accounts with orders to follow at exchanges with an order stream."""
    async with rt.reads() as session:
        rows = await session.scalars(
            select(ExchangeConnection)
            .where(
                ExchangeConnection.status == ACTIVE,
                ExchangeConnection.id.in_(
                    select(ExchangeOrder.connection_id).where(followed(rt.now()))
                ),
            )
            .order_by(ExchangeConnection.id)
            .limit(MAX_STREAMS)
        )
        found = list(rows)
    streamed = [r for r in found if rt.exchanges.streamed(ExchangeId(r.exchange))]
    return {r.id: _Wanted(r, key_version(sealed_of(r))) for r in streamed}


class OrderStreams:
    """This process's order streams, one task per account (``supervise`` keeps them)."""

    def __init__(self, leases: StreamLeases | None = None) -> None:
        self._tasks: dict[int, tuple[str, asyncio.Task[None]]] = {}
        self.healthy: set[int] = set()  # subscribed and reconciled: the poller skips them
        self.leases = leases or StreamLeases()
        self._rt: Runtime | None = None
        self._wanted: list[int] = []  # the accounts that wanted a stream at the last look

    def __len__(self) -> int:
        return len(self._tasks)

    async def supervise(self, rt: Runtime) -> int:
        """Start and stop streams to match the accounts that want one; how many run."""
        self._rt = rt
        wanted = await _wanted(rt)
        self._wanted = list(wanted)
        for connection_id, (version, task) in list(self._tasks.items()):
            entry = wanted.get(connection_id)
            if entry is None or entry.version != version or task.done():
                await self._stop(connection_id)
        for connection_id, entry in wanted.items():
            if connection_id not in self._tasks and await self.leases.take(rt, connection_id):
                task = asyncio.create_task(self._held(rt, entry.connection),
                                           name=f"exchange-stream-{connection_id}")  # fmt: skip
                self._tasks[connection_id] = (entry.version, task)
        return len(self._tasks)

    async def skipped(self, rt: Runtime) -> set[int]:
        """The accounts the poller here leaves alone: streamed healthily here, or whose
        stream another worker holds (that worker's poller follows it while its stream is
        down)."""
        others = [c for c in self._wanted if c not in self._tasks]
        return self.healthy | await self.leases.held_elsewhere(rt, others)

    async def aclose(self) -> None:
        for connection_id in list(self._tasks):
            await self._stop(connection_id)

    async def _stop(self, connection_id: int) -> None:
        _, task = self._tasks.pop(connection_id)
        self.healthy.discard(connection_id)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if self._rt is not None:
            await self.leases.release(self._rt, connection_id)

    async def _held(self, rt: Runtime, connection: ExchangeConnection) -> None:
        """Follow the account while this process holds its lease (renewed every third of
        it); the lease lost (expired, taken by another worker): stop (``supervise``
        releases it and takes it again when it can)."""
        follow = asyncio.create_task(self._follow(rt, connection))
        try:
            while not follow.done():
                await asyncio.wait({follow}, timeout=self.leases.seconds / 3)
                if not follow.done() and not await self.leases.take(rt, connection.id):
                    log.warning("exchange stream lease lost", extra={"connection": connection.id})
                    return
        finally:
            self.healthy.discard(connection.id)  # the poller follows it from now on
            follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follow

    async def _follow(self, rt: Runtime, connection: ExchangeConnection) -> None:
        """Stream, reconcile on every (re)connect, reconnect with backoff, until stopped."""
        settings = rt.settings
        wait = 0.0
        exchange, cid = ExchangeId(connection.exchange), connection.id
        while True:
            try:
                async with rt.exchanges.order_stream(
                    exchange, sealed_of(connection), binding_of(connection)
                ) as stream:

                    async def watching() -> None:  # the watchers started: close the gap
                        await reconcile_account(rt, connection_id=cid)
                        self.healthy.add(cid)
                        log.info("exchange order stream open", extra={"connection": cid})

                    await _pump(rt, cid, stream, watching)
            except UserError as error:  # dropped, the exchange unavailable, refused
                log.warning("exchange order stream interrupted",
                            extra={"connection": cid, "code": error.code})  # fmt: skip
            except Exception:  # a bug, the database away: logged, tried again later
                log.exception("exchange order stream failed", extra={"connection": cid})
            finally:
                opened = cid in self.healthy  # it had been open: wait from the start again
                self.healthy.discard(cid)
            first = settings.exchange_stream_backoff_seconds
            wait = first if opened or not wait else wait * 2
            await asyncio.sleep(min(wait, settings.exchange_stream_backoff_max_seconds))


async def _pump(
    rt: Runtime, connection_id: int, stream: OrderStream, watching: Callable[[], Awaitable[None]]
) -> None:
    """Record the stream's updates until it fails (raised); ``watching()`` once the
    watchers run; reconcile now and then."""

    async def orders() -> None:
        while True:
            reported = await stream.orders()
            result = await record_streamed(rt, connection_id=connection_id, reported=reported)
            if result.orders_filled and not stream.has_trades:  # its fills: read them
                await reconcile_account(rt, connection_id=connection_id)

    async def trades() -> None:
        while True:
            streamed = await stream.trades()
            await record_streamed(rt, connection_id=connection_id, reported=streamed.orders,
                                  trades=streamed.trades)  # fmt: skip

    async def safety_net() -> None:
        while True:
            await asyncio.sleep(rt.settings.exchange_stream_reconcile_seconds)
            await reconcile_account(rt, connection_id=connection_id)

    loops: list[Callable[[], Awaitable[None]]] = [orders, safety_net]
    if stream.has_trades:
        loops.append(trades)
    tasks = [asyncio.create_task(loop()) for loop in loops]
    try:
        await asyncio.sleep(0)  # the watchers send their subscriptions
        await watching()
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
