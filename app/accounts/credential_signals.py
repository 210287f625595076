"""Telling every server process that a user's credentials changed (logout, password
reset, an API key revoked): the user's open WebSockets re-check theirs at once and close
when it no longer holds (graphql_schema/gateway/ws_authority.py).

The signal is a Redis pub/sub message on the user's ``credentials`` channel, sent after
the change committed. It carries nothing: a socket re-reads its credential's state, so a
lost or duplicated signal cannot grant anything; a lost one only waits for the socket's
periodic re-check."""

from __future__ import annotations

import logging

from app.core.errors import TransientError
from app.events import topics
from app.events.pubsub import publish
from app.runtime import Runtime

log = logging.getLogger(__name__)


def credentials_channel(rt: Runtime, user_id: int) -> str:
    return topics.channel(rt.settings.redis_prefix, topics.CREDENTIALS.named(), user_id)


async def announce_credentials_changed(*, rt: Runtime, user_id: int) -> None:
    """Never fails the change itself, which has committed: Redis down only delays the
    sockets' closing until their periodic re-check."""
    try:
        signal = topics.credentials_changed(user_id)
        await publish(rt.redis, credentials_channel(rt, user_id), signal.json().encode())
    except TransientError:
        log.warning("could not announce a credential change", extra={"user_id": user_id})
