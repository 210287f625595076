"""WebSocket authority: an open socket keeps only what its credential allows now.

A signed-in socket (access token or API key in ``connection_init``)

- re-checks its credential before every operation, with the same checks as an HTTP
  request (``sessions.reauthenticate``: the Redis deny-list and the user's token cut-off,
  coalesced; ``api_keys.reauthenticate_api_key``), and takes the user as re-read (a
  demoted admin is no longer one);
- re-checks at once when any process announces that the user's credentials changed
  (``app.accounts.credential_signals``, over the pub/sub hub), every
  ``ws_auth_recheck_seconds`` as a backstop, and at its access token's expiry.

When the credential no longer holds, the socket's operations are ended and it is closed:

    4440  "Token expired: refresh and reconnect"      the access token reached its exp
                                                      (also at connection_init)
    4403  "Session revoked: sign in again"            logout, logout everywhere, reset
    4403  "API key revoked: use a valid key"          (or "API key expired: ...")

Every socket, signed in or not, must send ``connection_init`` within
``ws_connection_init_timeout_seconds`` (4408, both protocols), and a client address may
hold ``ws_max_connections_per_client`` sockets open on one server process (4430).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from app.accounts.api_keys import reauthenticate_api_key
from app.accounts.credential_signals import credentials_channel
from app.accounts.sessions import reauthenticate
from app.core.errors import ApiKeyExpired, InvalidApiKey, InvalidToken, TransientError
from app.events.pubsub import Dropped, PubSubHub, Reason
from graphql_schema.gateway.admission import Refused
from graphql_schema.gateway.context import Context

log = logging.getLogger(__name__)

INIT_TIMEOUT = 4408  # graphql-transport-ws's own code, for the legacy protocol too
REVOKED = 4403
EXPIRED = 4440
TOO_MANY_SOCKETS = 4430


class CredentialExpired(Exception):
    """``connection_init`` carried an access token past its exp (raised by the view's
    ``on_ws_connect``): the socket closes with 4440, not strawberry's 4403 for a refusal."""


@dataclass(frozen=True, slots=True)
class Closing:
    """Why a socket is closed: its close code and reason."""

    code: int
    reason: str


TOKEN_EXPIRED = Closing(EXPIRED, "Token expired: refresh and reconnect")
SESSION_REVOKED = Closing(REVOKED, "Session revoked: sign in again")
KEY_REVOKED = Closing(REVOKED, "API key revoked: use a valid key")
KEY_EXPIRED = Closing(REVOKED, "API key expired: use a valid key")
CLIENT_SOCKETS = Closing(TOO_MANY_SOCKETS, "Too many open sockets from this client")
NO_INIT = Closing(INIT_TIMEOUT, "Connection initialisation timeout")


async def recheck(context: Context) -> Closing | None:
    """Re-read the socket's credential into ``context`` (the user too); why to close
    when it no longer holds. Errors reaching Redis or PostgreSQL are raised."""
    rt = context.rt
    if context.auth is not None:
        if context.auth.claims.expires_at <= rt.now():
            return TOKEN_EXPIRED
        try:
            context.auth = await reauthenticate(rt=rt, claims=context.auth.claims)
        except InvalidToken:
            return SESSION_REVOKED
    elif context.api_key is not None:
        try:
            context.api_key = await reauthenticate_api_key(
                rt=rt, key_id=context.api_key.key.id, client_ip=context.client_ip
            )
        except ApiKeyExpired:
            return KEY_EXPIRED
        except InvalidApiKey:
            return KEY_REVOKED
    return None


class ClientSockets:
    """Open sockets per client address in this process. Counted per process, not in
    Redis: exact and free (no counter left behind by a crashed process, no round trip
    per connection), and it bounds what one address costs each process; across N
    processes a client holds at most N times the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    @contextlib.contextmanager
    def opened(self, client: str | None) -> Iterator[bool]:
        """Yields whether the socket may stay open; counted while it is."""
        key = client or "unknown"
        if self._open[key] >= self.limit:
            yield False
            return
        self._open[key] += 1
        try:
            yield True
        finally:
            self._open[key] -= 1
            if not self._open[key]:
                del self._open[key]


Closer = Callable[[Closing], Awaitable[None]]


class CredentialWatch:
    """One signed-in socket's watcher task: on a credential-change signal for its user,
    at its token's expiry, or every ``ws_auth_recheck_seconds``, re-check the credential
    and ``close`` the socket when it no longer holds."""

    def __init__(self, *, context: Context, hub: PubSubHub | None, close: Closer) -> None:
        self._context = context
        self._hub = hub  # None: an app without its lifespan (tests' ASGI transport)
        self._close = close
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="ws-credential-watch")

    async def stop(self) -> None:
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self) -> None:
        user_id = self._context.user_id
        assert user_id is not None
        name = credentials_channel(self._context.rt, user_id)
        while self._hub is None:
            await asyncio.sleep(self._wait())
            if await self._holds_not():
                return
        while True:
            try:
                async with self._hub.subscribe(name) as signals:
                    # subscribed first, then checked: no change falls between the two
                    if await self._holds_not() or not await self._follow(signals):
                        return
            except Exception:  # the hub unavailable: re-check on the timer meanwhile
                log.warning("credential signals unavailable", exc_info=True)
                await asyncio.sleep(self._wait())
                if await self._holds_not():
                    return

    async def _follow(self, signals: AsyncIterator[Any]) -> bool:
        """Re-check on each signal and timer; False once closed or the hub shut down,
        True when the subscription was dropped (subscribe again)."""
        while True:
            try:
                async with asyncio.timeout(self._wait()):
                    event = await anext(signals)
            except TimeoutError:
                event = None
            except StopAsyncIteration:
                return True
            if isinstance(event, Dropped):
                if event.reason is Reason.SHUTDOWN:
                    return False
                return True
            if await self._holds_not():
                return False

    def _wait(self) -> float:
        """Seconds until the next timed re-check: the backstop or the token's expiry."""
        context = self._context
        wait = context.rt.settings.ws_auth_recheck_seconds
        if context.auth is not None:
            expires_at = context.auth.claims.expires_at
        elif context.api_key is not None and context.api_key.key.expires_at is not None:
            expires_at = context.api_key.key.expires_at
        else:
            return wait
        return min(wait, max((expires_at - context.rt.now()).total_seconds(), 0) + 0.01)

    async def _holds_not(self) -> bool:
        """Re-check; close the socket and say so when the credential no longer holds."""
        try:
            closing = await recheck(self._context)
        except Exception:  # Redis or PostgreSQL unavailable: keep it, check again later
            log.warning("could not re-check a socket's credential", exc_info=True)
            return False
        if closing is None:
            return False
        await self._close(closing)
        return True


class SocketAuthority:
    """Mixed into both protocols' handlers (graphql_schema/gateway/view.py), before strawberry's
    base class, which provides what is declared here. A handler implements
    ``end_operations``, runs ``connection_init`` through ``initialise`` (which watches the
    credential once the connection is acknowledged) and calls ``authorised`` before each
    operation."""

    view: Any  # graphql_schema.gateway.view.GraphQLView
    context: Context
    websocket: Any
    connection_acknowledged: bool
    _credential_watch: CredentialWatch | None = None

    async def handle(self) -> None:
        with self.view.client_sockets.opened(self.context.client_ip) as allowed:
            if not allowed:
                await self.close_for(CLIENT_SOCKETS)
                return
            try:
                await super().handle()  # type: ignore[misc]
            finally:
                if self._credential_watch is not None:
                    await self._credential_watch.stop()

    async def end_operations(self) -> None:
        raise NotImplementedError

    async def authorised(self) -> bool:
        """Before an operation: re-check the credential; False (and the socket closed)
        when it no longer holds. ``Refused`` (TRY_AGAIN) when it cannot be checked."""
        try:
            closing = await recheck(self.context)
        except Exception as error:
            log.warning("could not re-check a socket's credential", exc_info=True)
            raise Refused(TransientError.default_message, code=TransientError.code) from error
        if closing is None:
            return True
        await self.close_for(closing)
        return False

    async def initialise(self, handle_init: Awaitable[None]) -> None:
        """Run strawberry's ``connection_init`` handling, then watch the credential; an
        expired access token closes the socket with 4440 (refresh and reconnect)."""
        try:
            await handle_init
        except CredentialExpired:
            await self.close_for(TOKEN_EXPIRED)
            return
        self.watch_credential()

    def watch_credential(self) -> None:
        if (
            not self.connection_acknowledged
            or self.context.user is None
            or self._credential_watch is not None  # a second connection_init
        ):
            return
        hub = getattr(self.context.request.app.state, "hub", None)
        self._credential_watch = CredentialWatch(
            context=self.context, hub=hub, close=self.close_for
        )
        self._credential_watch.start()

    async def close_for(self, closing: Closing) -> None:
        """End the socket's operations (nothing more is sent), then close it."""
        log.info(
            "closing a WebSocket",
            extra={"code": closing.code, "reason": closing.reason, "user_id": self.context.user_id},
        )
        await self.end_operations()
        with contextlib.suppress(Exception):  # already closed by the client
            await self.websocket.close(code=closing.code, reason=closing.reason)


async def init_deadline(seconds: float, *, initialised: Callable[[], bool], close: Closer) -> None:
    """Close a socket that has not sent ``connection_init`` within ``seconds``."""
    await asyncio.sleep(seconds)
    if not initialised():
        await close(NO_INIT)
